//! HNSW: hierarchical navigable small-world graph (Malkov & Yashunin, 2016), float32.
//!
//! # Layout (slots, not pointers, so the graph saves and loads as flat arrays)
//!
//! - Every stored vector has a *slot* `0..n`; `ids` ([`IdMap`]) maps slots and user ids both
//!   ways and holds the tombstones.
//! - `vectors` (n × d float32) holds the vectors exactly as added; cosine keeps `inv_norms`
//!   (1/‖x‖, 0 for a zero vector) instead of normalising the stored data.
//! - Level 0 is one flat array `links0` of `n × (m0 + 1)` u32: a count, then up to `m0 = 2m`
//!   neighbour slots. Upper levels (about 1 node in `m`) are `upper[slot]`: for each level
//!   `1..=levels[slot]`, a count then up to `m` slots.
//! - With codes (SQ8: n × d bytes; SQ4: n × d/2), `codes` and `code_norms` (‖x̂‖²) encode the
//!   vector that search compares (normalised for cosine); traversal scores codes, and the final
//!   candidates are re-ranked on `vectors`, so returned distances are exact float32 distances.
//!   Cosine scores a code as the cosine of the decoded vector, ⟨q, x̂⟩/‖x̂‖ (`code_inv` holds
//!   1/‖x̂‖, derived, not saved): coarse codes change the decoded norm, and an inner product
//!   alone would favour the codes that happen to decode longer.
//! - The code ranges are learnt from the first `add` and relearnt (every code re-encoded) when
//!   more than [`CODE_OUTSIDE_SHARE`] of a later `add`'s coded values fall outside them and
//!   either the slots have grown by [`CODE_RETRAIN_GROWTH`] since the last training or the
//!   index is still small ([`CODE_RETRAIN_SMALL`] slots, where a retraining costs about what
//!   linking one row does): a first batch of one row does not freeze the ranges, rows added one
//!   at a time to a small index are never clamped, and the cost stays amortised O(n·d).
//!
//! # Keys
//!
//! Search ranks by a key where smaller is closer: ‖q − x‖² (euclidean, sqeuclidean), −⟨q, x⟩
//! (inner product), −cos(q, x) (cosine).
//!
//! # Build: deterministic batch insertion
//!
//! Points are inserted in batches whose size doubles from 1 up to [`BATCH_FRACTION`] of the
//! index. Within a batch every new point searches the graph as it was before the batch (in
//! parallel, read-only) and picks its neighbours with the paper's heuristic (Alg. 4); then the
//! reverse edges are added, grouped by target node, each over-full list pruned with the same
//! heuristic. No step depends on thread timing, so a build is identical for a given seed,
//! whatever the thread count.
//!
//! # Deletes
//!
//! `remove` tombstones slots ([`IdMap::tombstone`]): they leave results at once but still
//! route searches. When the
//! deleted share passes [`CONSOLIDATE_FRACTION`] (or on `consolidate`), every list that points
//! to a deleted node is rebuilt from its live neighbours and theirs (one hop through the deleted
//! node) with the heuristic, and the arrays are compacted: memory is given back. One hop can
//! leave a node with no live neighbour (all of them and theirs deleted): after compaction,
//! every live node that no link reaches any more from the entry point (itself chosen among
//! the top-level nodes that have level-0 neighbours) is linked again as a new node would be,
//! so no live vector becomes unreachable. A removed id
//! may be added again before that: it then maps to the new live slot, and the deleted
//! slot keeps the id until it is compacted away (a saved file may hold it twice, once live).
//!
//! # Failure
//!
//! `add` validates before changing anything; once linking has started, an interrupt (or a
//! failure) restores every list the new nodes changed (an undo log of the old lists) and drops
//! the new slots: the index is as it was before the call.
//!
//! # Invariants (checked by `from_parts` for loaded files)
//!
//! Every neighbour slot is `< n`; a slot in a level-`l` list has level ≥ `l`; the entry point
//! has the top level; counts never exceed the capacities; `n` ≤ [`MAX_SLOTS`]; an id is on at
//! most one live slot.

mod build;
mod search;
#[cfg(test)]
mod tests;

use crate::ids::IdMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::mem::reserve_huge;
use crate::metric::kernels::{select, Kernels};
use crate::metric::Metric;
pub(crate) use crate::metric::Space;
use crate::quant::sq4::{self, dot_u4_i16};
use crate::quant::sq8::{dot_u8_i16, I16Kernel};
use crate::quant::{Sq4, Sq8};
use crate::store::Store;
use crate::validate::{check_range, check_searchable, MAX_DIM, MAX_EF, MAX_SLOTS};

pub use search::{SearchOptions, SearchStats};

/// Largest batch inserted at once, as a fraction of the index size after the add.
pub const BATCH_FRACTION: f64 = 0.02;
/// Deleted share of the slots that triggers consolidation in `remove`.
pub const CONSOLIDATE_FRACTION: f64 = 0.1;
/// Highest level a node can get.
pub const MAX_LEVEL: u8 = 16;
/// Slot value meaning "none".
pub(crate) const NONE: u32 = u32::MAX;
/// Share of a new batch's coded values outside the code ranges above which the ranges are
/// relearnt (when the index has also grown enough since they were learnt, or is small).
pub const CODE_OUTSIDE_SHARE: f64 = 0.03;
/// Growth of the slots since the last training that allows a retraining (amortises the
/// re-encoding: O(n·d) in total).
pub const CODE_RETRAIN_GROWTH: f64 = 1.25;
/// Up to this many slots, every add whose rows fall outside the ranges retrains them.
pub const CODE_RETRAIN_SMALL: usize = 1024;
/// At most this many rows (evenly strided) train relearnt code ranges.
pub const CODE_RETRAIN_SAMPLE: usize = 1 << 17;

/// Construction parameters, with the paper's names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HnswParams {
    /// Neighbours per node on the upper levels (2m on level 0).
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Seed of the level draws.
    pub seed: u64,
    /// Codes kept next to the vectors and traversed (exact re-rank on the float32 vectors).
    pub codes: Codes,
}

/// The compact codes graph traversal scores (then re-ranked exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codes {
    /// No codes: traversal computes exact distances on the float32 vectors.
    Flat,
    /// One byte per coordinate.
    Sq8,
    /// Half a byte per coordinate (packed in blocks of 64 dimensions).
    Sq4,
}

impl Codes {
    /// Bits per coordinate (0 for flat), as saved in files.
    pub fn bits(self) -> u8 {
        match self {
            Codes::Flat => 0,
            Codes::Sq8 => 8,
            Codes::Sq4 => 4,
        }
    }

    /// The codes called `name` (`"flat"`, `"sq8"`, `"sq4"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "flat" => Some(Codes::Flat),
            "sq8" => Some(Codes::Sq8),
            "sq4" => Some(Codes::Sq4),
            _ => None,
        }
    }

    /// The codes of `bits` bits per coordinate.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Codes::Flat),
            8 => Some(Codes::Sq8),
            4 => Some(Codes::Sq4),
            _ => None,
        }
    }

    /// Bytes of one code of dimension `d`.
    pub fn bytes(self, d: usize) -> usize {
        match self {
            Codes::Flat => 0,
            Codes::Sq8 => d,
            Codes::Sq4 => sq4::code_bytes(d),
        }
    }
}

/// A query prepared for scoring codes: the integer weights' scale, the constant ⟨q, lo⟩ the
/// integer dot product leaves out, and the offset that turns a code key into an estimate of the
/// exact key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeQuery {
    pub scale: f32,
    pub c0: f32,
    pub offset: f32,
}

/// A trained scalar quantizer of the traversal codes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Quant {
    Sq8(Sq8),
    Sq4(Sq4),
}

impl Quant {
    fn train(codes: Codes, data: &[f32], d: usize) -> Result<Option<Self>> {
        Ok(match codes {
            Codes::Flat => None,
            Codes::Sq8 => Some(Quant::Sq8(Sq8::train(data, d)?)),
            Codes::Sq4 => Some(Quant::Sq4(Sq4::train(data, d)?)),
        })
    }

    fn from_parts(codes: Codes, lo: Vec<f32>, step: Vec<f32>) -> Result<Option<Self>> {
        Ok(match codes {
            Codes::Flat => None,
            Codes::Sq8 => Some(Quant::Sq8(Sq8::from_parts(lo, step)?)),
            Codes::Sq4 => Some(Quant::Sq4(Sq4::from_parts(lo, step)?)),
        })
    }

    /// How many values of `x` (rows of the quantizer's dimension) fall outside the ranges.
    fn outside(&self, x: &[f32]) -> usize {
        let (lo, step, levels) = match self {
            Quant::Sq8(q) => (&q.lo, &q.step, 255.0),
            Quant::Sq4(q) => (&q.lo, &q.step, 15.0),
        };
        let d = lo.len();
        x.chunks_exact(d)
            .map(|r| {
                r.iter()
                    .zip(lo.iter().zip(step))
                    .filter(|(&v, (&l, &s))| {
                        // Half a step of slack: rounding to the nearest level.
                        v < l - 0.5 * s || v > l + (levels + 0.5) * s
                    })
                    .count()
            })
            .sum()
    }

    fn ranges(&self) -> (&[f32], &[f32]) {
        match self {
            Quant::Sq8(q) => (&q.lo, &q.step),
            Quant::Sq4(q) => (&q.lo, &q.step),
        }
    }

    fn encode(&self, x: &[f32], out: &mut [u8]) -> f32 {
        match self {
            Quant::Sq8(q) => q.encode(x, out),
            Quant::Sq4(q) => q.encode(x, out),
        }
    }

    /// Integer query weights into `wq`; returns their scale and the constant ⟨q, lo⟩.
    pub(crate) fn prepare(&self, q: &[f32], w: &mut Vec<f32>, wq: &mut Vec<i16>) -> (f32, f32) {
        match self {
            Quant::Sq8(s) => {
                let c0 = s.prepare(q, w);
                (s.prepare_i16(w, wq), c0)
            }
            Quant::Sq4(s) => {
                let c0 = s.prepare(q, w);
                (s.prepare_i16(w, wq), c0)
            }
        }
    }

    fn kernel(&self) -> I16Kernel {
        match self {
            Quant::Sq8(_) => dot_u8_i16(),
            Quant::Sq4(_) => dot_u4_i16(),
        }
    }
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            seed: 0,
            codes: Codes::Flat,
        }
    }
}

/// A candidate: key and slot, ordered by key then slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cand {
    pub key: f32,
    pub id: u32,
}

impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.total_cmp(&other.key).then(self.id.cmp(&other.id))
    }
}

/// The graph index.
pub struct Hnsw {
    pub(crate) d: usize,
    pub(crate) metric: Metric,
    pub(crate) space: Space,
    pub(crate) params: HnswParams,
    pub(crate) m0: usize,
    pub(crate) vectors: Store<f32>,
    pub(crate) inv_norms: Vec<f32>,
    pub(crate) ids: IdMap,
    pub(crate) levels: Vec<u8>,
    pub(crate) links0: Store<u32>,
    pub(crate) upper: Vec<Vec<u32>>,
    pub(crate) entry: u32,
    pub(crate) max_level: usize,
    pub(crate) sq: Option<Quant>,
    /// Bytes of one code (0 without codes).
    pub(crate) cb: usize,
    pub(crate) codes: Store<u8>,
    pub(crate) code_norms: Store<f32>,
    /// 1/‖x̂‖ of every code (cosine only; derived from `code_norms`).
    pub(crate) code_inv: Vec<f32>,
    /// Points ever inserted (drives the level draws).
    pub(crate) inserted: u64,
    /// Slots at the last [`Hnsw::reorder`]; `add` reorders again once the index has doubled.
    pub(crate) ordered: usize,
    /// Slots when the code ranges were last learnt (see [`CODE_OUTSIDE_SHARE`]).
    pub(crate) coded_at: usize,
    /// While an `add` links: the lists of pre-existing nodes it changed, as they were.
    pub(crate) undo: Option<build::Undo>,
    /// Vectors linked so far by the running `add` (read from another thread for progress).
    pub(crate) progress: Arc<AtomicUsize>,
    pub(crate) scratch: Mutex<Vec<search::Scratch>>,
    pub(crate) k: Kernels<f32>,
    pub(crate) i16k: I16Kernel,
}

/// Everything a saved index holds, as flat arrays (see [`Hnsw::to_parts`]).
#[derive(Clone, Debug, Default)]
pub struct HnswParts {
    pub d: usize,
    pub metric: String,
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
    pub inserted: u64,
    pub entry: u32,
    pub vectors: Store<f32>,
    pub ids: Vec<i64>,
    pub levels: Vec<u8>,
    pub links0: Store<u32>,
    /// `upper` of all slots concatenated; slot `i` owns `upper_offsets[i]..upper_offsets[i + 1]`.
    pub upper: Vec<u32>,
    pub upper_offsets: Vec<u64>,
    pub deleted: Vec<u8>,
    /// Bits per coordinate of the codes (0: none, 8: SQ8, 4: SQ4).
    pub code_bits: u8,
    /// The quantizer's ranges (empty without codes).
    pub sq_lo: Vec<f32>,
    pub sq_step: Vec<f32>,
    /// Codes and their ‖x̂‖² (recomputed from the vectors when empty).
    pub codes: Store<u8>,
    pub code_norms: Store<f32>,
}

impl Hnsw {
    /// An empty index. `metric`: euclidean, sqeuclidean, inner_product or cosine.
    pub fn new(d: usize, metric: Metric, params: HnswParams) -> Result<Self> {
        check_range("dim", d, 1, MAX_DIM)?;
        check_range("m", params.m, 2, 256)?;
        check_range("ef_construction", params.ef_construction, 1, MAX_EF)?;
        let space = Space::of(metric)?;
        Ok(Hnsw {
            d,
            metric,
            space,
            params,
            m0: 2 * params.m,
            vectors: Store::default(),
            inv_norms: Vec::new(),
            ids: IdMap::new(),
            levels: Vec::new(),
            links0: Store::default(),
            upper: Vec::new(),
            entry: NONE,
            max_level: 0,
            sq: None,
            cb: params.codes.bytes(d),
            codes: Store::default(),
            code_norms: Store::default(),
            code_inv: Vec::new(),
            inserted: 0,
            ordered: 0,
            coded_at: 0,
            undo: None,
            progress: Arc::new(AtomicUsize::new(0)),
            scratch: Mutex::new(Vec::new()),
            k: select::<f32>(),
            i16k: dot_u8_i16(),
        })
    }

    /// A counter of the vectors the running `add` has linked so far (for progress reports from
    /// another thread).
    pub fn progress_counter(&self) -> Arc<AtomicUsize> {
        self.progress.clone()
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The metric distances are returned in.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Construction parameters.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Number of live (not deleted) vectors.
    pub fn len(&self) -> usize {
        self.ids.n_live()
    }

    /// True when no live vector is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots in use, deleted ones included (they are reclaimed by consolidation).
    pub fn slots(&self) -> usize {
        self.ids.len()
    }

    /// Number of deleted slots not yet reclaimed.
    pub fn n_deleted(&self) -> usize {
        self.ids.n_deleted()
    }

    /// Ids of the live vectors, in slot order.
    pub fn live_ids(&self) -> Vec<i64> {
        self.ids.live_ids()
    }

    /// Slots and ids both ways, tombstones, filters ([`IdMap::allowed_from_ids`],
    /// [`IdMap::allowed_from_mask`]).
    pub fn id_map(&self) -> &IdMap {
        &self.ids
    }

    /// The stored vector of `id`, or `None`.
    pub fn get(&self, id: i64) -> Option<&[f32]> {
        let slot = self.ids.slot(id)?;
        Some(self.row(slot as u32))
    }

    /// Bytes held by vectors, codes, links and ids.
    pub fn memory_usage(&self) -> usize {
        use std::mem::size_of;
        self.vectors.heap_bytes()
            + self.inv_norms.capacity() * 4
            + self.ids.memory_usage()
            + self.levels.capacity()
            + self.links0.heap_bytes()
            + self.upper.capacity() * size_of::<Vec<u32>>()
            + self.upper.iter().map(|v| v.capacity() * 4).sum::<usize>()
            + self.codes.heap_bytes()
            + self.code_norms.heap_bytes()
            + self.code_inv.capacity() * 4
    }

    #[inline(always)]
    pub(crate) fn row(&self, slot: u32) -> &[f32] {
        let s = slot as usize * self.d;
        &self.vectors[s..s + self.d]
    }

    #[inline(always)]
    pub(crate) fn code(&self, slot: u32) -> &[u8] {
        let s = slot as usize * self.cb;
        &self.codes[s..s + self.cb]
    }

    /// Neighbour capacity of a level.
    #[inline(always)]
    pub(crate) fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.params.m
        }
    }

    /// Neighbours of `slot` on `level` (the slot must have that level).
    #[inline(always)]
    pub(crate) fn neighbors(&self, slot: u32, level: usize) -> &[u32] {
        let (list, start) = self.list_of(slot, level);
        let cnt = list[start] as usize;
        &list[start + 1..start + 1 + cnt]
    }

    #[inline(always)]
    pub(crate) fn list_of(&self, slot: u32, level: usize) -> (&[u32], usize) {
        if level == 0 {
            (&self.links0, slot as usize * (self.m0 + 1))
        } else {
            (
                &self.upper[slot as usize],
                (level - 1) * (self.params.m + 1),
            )
        }
    }

    pub(crate) fn set_neighbors(&mut self, slot: u32, level: usize, nbrs: &[u32]) {
        debug_assert!(nbrs.len() <= self.cap(level));
        let (list, start) = if level == 0 {
            (self.links0.to_mut(), slot as usize * (self.m0 + 1))
        } else {
            (
                &mut self.upper[slot as usize],
                (level - 1) * (self.params.m + 1),
            )
        };
        list[start] = nbrs.len() as u32;
        list[start + 1..start + 1 + nbrs.len()].copy_from_slice(nbrs);
    }

    /// Exact key between two stored slots.
    #[inline]
    pub(crate) fn key_nodes(&self, a: u32, b: u32) -> f32 {
        let (x, y) = (self.row(a), self.row(b));
        match self.space {
            Space::L2 => (self.k.sqeuclidean)(x, y),
            Space::Ip => -(self.k.dot)(x, y),
            Space::Cosine => {
                -(self.k.dot)(x, y) * self.inv_norms[a as usize] * self.inv_norms[b as usize]
            }
        }
    }

    /// Exact key of a prepared query (normalised for cosine) to a slot.
    #[inline(always)]
    pub(crate) fn key_query(&self, q: &[f32], slot: u32) -> f32 {
        let x = self.row(slot);
        match self.space {
            Space::L2 => (self.k.sqeuclidean)(q, x),
            Space::Ip => -(self.k.dot)(q, x),
            Space::Cosine => -(self.k.dot)(q, x) * self.inv_norms[slot as usize],
        }
    }

    /// Approximate key from the SQ8 code (`wq`, `scale` from [`Sq8::prepare_i16`]); equal to
    /// the key of the decoded vector up to a per-query constant.
    #[inline(always)]
    pub(crate) fn key_code(&self, wq: &[i16], cq: CodeQuery, slot: u32) -> f32 {
        let dot = cq.scale * (self.i16k)(wq, self.code(slot)) as f32;
        match self.space {
            Space::L2 => self.code_norms[slot as usize] - 2.0 * dot,
            Space::Ip => -dot,
            Space::Cosine => -(cq.c0 + dot) * self.code_inv[slot as usize],
        }
    }

    /// Refreshes `code_inv` (cosine) from `code_norms` for slots `from..`.
    fn refresh_code_inv(&mut self, from: usize) {
        if self.space != Space::Cosine || self.sq.is_none() {
            return;
        }
        self.code_inv.truncate(from);
        self.code_inv
            .extend(
                self.code_norms[from..]
                    .iter()
                    .map(|&n| if n > 0.0 { 1.0 / n.sqrt() } else { 0.0 }),
            );
    }

    /// Maps a key back to the metric's units.
    #[inline]
    pub fn key_to_distance(&self, key: f32) -> f32 {
        self.metric.index_key_to_distance(key)
    }

    /// Writes the prepared form of query `q` into `out`: normalised for cosine, as is otherwise.
    pub(crate) fn prepare_query(&self, q: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(q);
        if self.space == Space::Cosine {
            let n = (self.k.dot)(q, q).sqrt();
            let inv = if n > 0.0 { 1.0 / n } else { 0.0 };
            out.iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// The vector the SQ8 codes encode for `slot`'s row (normalised for cosine).
    fn coded_vector(&self, slot: u32, buf: &mut Vec<f32>) {
        buf.clear();
        buf.extend_from_slice(self.row(slot));
        if self.space == Space::Cosine {
            let inv = self.inv_norms[slot as usize];
            buf.iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// (Re)computes codes for slots `from..` (the quantizer must be trained).
    fn encode_from(&mut self, from: usize) {
        let Some(sq) = self.sq.take() else { return };
        let n = self.ids.len();
        let cb = self.cb;
        let more = (n * cb).saturating_sub(self.codes.len());
        reserve_huge(self.codes.to_mut(), more);
        self.codes.to_mut().resize(n * cb, 0);
        self.code_norms.to_mut().resize(n, 0.0);
        let mut buf = Vec::with_capacity(self.d);
        for slot in from..n {
            self.coded_vector(slot as u32, &mut buf);
            let out = &mut self.codes.to_mut()[slot * cb..(slot + 1) * cb];
            let norm = sq.encode(&buf, out);
            self.code_norms.to_mut()[slot] = norm;
        }
        self.sq = Some(sq);
        self.refresh_code_inv(from);
    }

    /// Deterministic level of the `j`-th inserted point: ⌊−ln(U)·mL⌋ with mL = 1/ln(m).
    fn draw_level(&self, j: u64) -> u8 {
        let mut z = self
            .params
            .seed
            .wrapping_add(j.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Uniform in (0, 1].
        let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.params.m as f64).ln();
        ((-u.ln() * ml).floor() as u64).min(MAX_LEVEL as u64) as u8
    }

    /// Appends vectors (not yet linked) and returns the first new slot. Validates first, so a
    /// failure leaves the index unchanged.
    fn append(&mut self, data: &[f32], ids: &[i64]) -> Result<usize> {
        let n_new = ids.len();
        if data.len() != n_new * self.d {
            return Err(Error::Shape {
                name: "vectors",
                expected: n_new * self.d,
                got: data.len(),
            });
        }
        check_searchable(data, self.d, "vectors")?;
        let start = self.ids.len();
        // A removed id (deleted slot not yet compacted) may be added again.
        self.ids.check_new(ids)?;
        self.ids.try_reserve(n_new)?;
        reserve_huge(self.vectors.to_mut(), data.len());
        self.vectors.to_mut().extend_from_slice(data);
        if self.space == Space::Cosine {
            let dot = self.k.dot;
            self.inv_norms.extend(data.chunks_exact(self.d).map(|r| {
                let n = dot(r, r).sqrt();
                if n > 0.0 {
                    1.0 / n
                } else {
                    0.0
                }
            }));
        }
        for i in 0..n_new {
            let level = self.draw_level(self.inserted + i as u64);
            self.levels.push(level);
            self.upper
                .push(vec![0; level as usize * (self.params.m + 1)]);
        }
        self.ids.push(ids);
        reserve_huge(self.links0.to_mut(), n_new * (self.m0 + 1));
        self.links0
            .to_mut()
            .resize((start + n_new) * (self.m0 + 1), 0);
        self.inserted += n_new as u64;
        if self.params.codes != Codes::Flat {
            match self.retrain_from(start) {
                Some(from) => {
                    // The first training sees every row of the first batch (as it always
                    // has); a retraining sees an even sample.
                    let first = self.sq.is_none();
                    let rows: Vec<u32> = if first || self.ids.len() - from <= CODE_RETRAIN_SAMPLE {
                        (from as u32..self.ids.len() as u32).collect()
                    } else {
                        let n = self.ids.len() - from;
                        (0..CODE_RETRAIN_SAMPLE)
                            .map(|i| (from + i * n / CODE_RETRAIN_SAMPLE) as u32)
                            .collect()
                    };
                    let mut sample = Vec::with_capacity(rows.len() * self.d);
                    let mut buf = Vec::new();
                    for &slot in &rows {
                        self.coded_vector(slot, &mut buf);
                        sample.extend_from_slice(&buf);
                    }
                    self.sq = Quant::train(self.params.codes, &sample, self.d)?;
                    if let Some(q) = &self.sq {
                        self.i16k = q.kernel();
                    }
                    self.coded_at = self.ids.len();
                    self.encode_from(0);
                }
                None => self.encode_from(start),
            }
        }
        Ok(start)
    }

    /// Whether the code ranges are (re)learnt for an add whose new slots start at `start`:
    /// `Some(first slot of the training rows)` — the new rows on the first add, every row
    /// when the new rows fall outside the ranges and the index has grown enough since the last
    /// training or is small (see the module comment).
    fn retrain_from(&self, start: usize) -> Option<usize> {
        let Some(q) = &self.sq else {
            return Some(start);
        };
        let n = self.ids.len();
        let grown = n as f64 >= CODE_RETRAIN_GROWTH * self.coded_at.max(1) as f64;
        if !grown && n > CODE_RETRAIN_SMALL {
            return None;
        }
        let mut buf = Vec::new();
        let mut outside = 0usize;
        for slot in start..n {
            self.coded_vector(slot as u32, &mut buf);
            outside += q.outside(&buf);
        }
        let share = outside as f64 / ((n - start) * self.d) as f64;
        (share > CODE_OUTSIDE_SHARE).then_some(0)
    }

    /// Drops slots `from..` that were appended but never linked.
    fn truncate(&mut self, from: usize) {
        self.ids.truncate(from);
        self.vectors.to_mut().truncate(from * self.d);
        if self.space == Space::Cosine {
            self.inv_norms.truncate(from);
        }
        self.levels.truncate(from);
        self.upper.truncate(from);
        self.links0.to_mut().truncate(from * (self.m0 + 1));
        if self.sq.is_some() {
            self.codes.to_mut().truncate(from * self.cb);
            self.code_norms.to_mut().truncate(from);
            self.code_inv.truncate(from.min(self.code_inv.len()));
        }
    }

    /// Marks `ids` deleted (unknown or already deleted ids are skipped) and returns how many were
    /// live. Consolidates when the deleted share passes [`CONSOLIDATE_FRACTION`].
    pub fn remove(&mut self, ids: &[i64], threads: usize) -> usize {
        let removed = ids
            .iter()
            .filter(|&&id| self.ids.tombstone(id).is_some())
            .count();
        if self.n_deleted() as f64 > CONSOLIDATE_FRACTION * self.ids.len() as f64 {
            self.consolidate(threads);
        }
        removed
    }

    /// Repairs every list that points to a deleted node and compacts the arrays (memory of
    /// deleted vectors is given back).
    pub fn consolidate(&mut self, threads: usize) {
        if self.n_deleted() == 0 {
            return;
        }
        if self.n_deleted() == self.ids.len() {
            let params = self.params;
            let (d, metric) = (self.d, self.metric);
            let inserted = self.inserted;
            *self = Hnsw::new(d, metric, params).expect("parameters were valid");
            self.inserted = inserted;
            return;
        }
        build::repair_deleted(self, threads);
        self.compact();
        self.reconnect();
    }

    /// Drops deleted slots and renumbers the rest in slot order.
    fn compact(&mut self) {
        let order: Vec<u32> = (0..self.ids.len() as u32)
            .filter(|&s| !self.ids.is_deleted(s as usize))
            .collect();
        self.renumber(&order);
    }

    /// Renumbers the live slots in breadth-first order of the level-0 graph from the entry
    /// point, so that neighbours sit close together in memory: a search then touches fewer
    /// pages and cache lines. Deleted slots are dropped. Results do not change (ids are kept).
    pub fn reorder(&mut self) {
        let n = self.ids.len();
        if n == 0 {
            return;
        }
        let mut seen = vec![false; n];
        let mut order: Vec<u32> = Vec::with_capacity(self.len());
        let starts = std::iter::once(self.entry).chain(0..n as u32);
        for start in starts {
            if start == NONE || seen[start as usize] || self.ids.is_deleted(start as usize) {
                continue;
            }
            seen[start as usize] = true;
            let mut head = order.len();
            order.push(start);
            while head < order.len() {
                let u = order[head];
                head += 1;
                for &v in self.neighbors(u, 0) {
                    if !seen[v as usize] && !self.ids.is_deleted(v as usize) {
                        seen[v as usize] = true;
                        order.push(v);
                    }
                }
            }
        }
        self.renumber(&order);
        self.ordered = self.ids.len();
    }

    /// Rebuilds every per-slot array with `order[i]` (an old live slot) as new slot `i`;
    /// slots not in `order` are dropped, and links to them removed.
    fn renumber(&mut self, order: &[u32]) {
        let n = self.ids.len();
        let mut remap = vec![NONE; n];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let live = order.len();
        let (d, m0, m) = (self.d, self.m0, self.params.m);
        let mut vectors = Vec::new();
        reserve_huge(&mut vectors, live * d);
        let mut inv_norms = Vec::with_capacity(if self.space == Space::Cosine { live } else { 0 });
        let mut levels = Vec::with_capacity(live);
        let mut links0 = Vec::new();
        reserve_huge(&mut links0, live * (m0 + 1));
        let mut upper = Vec::with_capacity(live);
        let mut codes = Vec::new();
        if self.sq.is_some() {
            reserve_huge(&mut codes, live * self.cb);
        }
        let mut code_norms = Vec::with_capacity(if self.sq.is_some() { live } else { 0 });
        let remap_list = |list: &[u32], cap: usize, out: &mut Vec<u32>| {
            let cnt = (list[0] as usize).min(cap);
            let before = out.len();
            out.push(0);
            out.extend(
                list[1..1 + cnt]
                    .iter()
                    .map(|&s| remap[s as usize])
                    .filter(|&s| s != NONE),
            );
            let kept = out.len() - before - 1;
            out[before] = kept as u32;
            out.resize(before + 1 + cap, 0);
        };
        for &slot in order {
            let slot = slot as usize;
            vectors.extend_from_slice(&self.vectors[slot * d..(slot + 1) * d]);
            if self.space == Space::Cosine {
                inv_norms.push(self.inv_norms[slot]);
            }
            levels.push(self.levels[slot]);
            let s0 = slot * (m0 + 1);
            remap_list(&self.links0[s0..s0 + m0 + 1], m0, &mut links0);
            let mut up = Vec::with_capacity(self.upper[slot].len());
            for l in 0..self.levels[slot] as usize {
                let s = l * (m + 1);
                remap_list(&self.upper[slot][s..s + m + 1], m, &mut up);
            }
            upper.push(up);
            if self.sq.is_some() {
                codes.extend_from_slice(&self.codes[slot * self.cb..(slot + 1) * self.cb]);
                code_norms.push(self.code_norms[slot]);
            }
        }
        self.ids.renumber(order);
        self.vectors = vectors.into();
        self.inv_norms = inv_norms;
        self.levels = levels;
        self.links0 = links0.into();
        self.upper = upper;
        self.codes = codes.into();
        self.code_norms = code_norms.into();
        self.refresh_code_inv(0);
        self.entry = if self.entry != NONE && remap[self.entry as usize] != NONE {
            remap[self.entry as usize]
        } else {
            NONE
        };
        self.reset_entry();
    }

    /// Makes the entry point a node of the highest level: the current one if it still is and
    /// has level-0 neighbours, else the lowest such slot with level-0 neighbours (an isolated
    /// entry point would hide the whole graph), else the lowest such slot.
    fn reset_entry(&mut self) {
        let top = self.levels.iter().copied().max().unwrap_or(0) as usize;
        let linked = |p: u32| !self.neighbors(p, 0).is_empty();
        let at_top = |p: &u32| self.levels[*p as usize] as usize == top;
        if self.entry == NONE || !at_top(&self.entry) || !linked(self.entry) {
            let mut candidates = (0..self.levels.len() as u32).filter(at_top);
            let first = candidates.clone().next();
            self.entry = candidates.find(|&p| linked(p)).or(first).unwrap_or(NONE);
        }
        self.max_level = top;
    }

    /// Flat arrays for saving.
    pub fn to_parts(&self) -> HnswParts {
        let mut upper = Vec::new();
        let mut upper_offsets = Vec::with_capacity(self.upper.len() + 1);
        upper_offsets.push(0u64);
        for u in &self.upper {
            upper.extend_from_slice(u);
            upper_offsets.push(upper.len() as u64);
        }
        let (sq_lo, sq_step) = self.sq.as_ref().map_or((Vec::new(), Vec::new()), |s| {
            let (lo, step) = s.ranges();
            (lo.to_vec(), step.to_vec())
        });
        HnswParts {
            d: self.d,
            metric: self.metric.name().to_string(),
            m: self.params.m,
            ef_construction: self.params.ef_construction,
            seed: self.params.seed,
            inserted: self.inserted,
            entry: self.entry,
            vectors: self.vectors.to_vec().into(),
            ids: self.ids.ids().to_vec(),
            levels: self.levels.clone(),
            links0: self.links0.to_vec().into(),
            upper,
            upper_offsets,
            deleted: (0..self.ids.len())
                .map(|s| u8::from(self.ids.is_deleted(s)))
                .collect(),
            code_bits: self.params.codes.bits(),
            sq_lo,
            sq_step,
            codes: self.codes.to_vec().into(),
            code_norms: self.code_norms.to_vec().into(),
        }
    }

    /// Rebuilds an index from saved arrays, validating every size, count and slot first, so a
    /// damaged or crafted file gives [`Error::Corrupt`] and never a crash.
    pub fn from_parts(p: HnswParts) -> Result<Self> {
        let corrupt = |what: String| Error::Corrupt(format!("hnsw: {what}"));
        let metric = Metric::parse(&p.metric, 2.0).map_err(|e| corrupt(e.to_string()))?;
        let params = HnswParams {
            m: p.m,
            ef_construction: p.ef_construction,
            seed: p.seed,
            codes: Codes::from_bits(p.code_bits)
                .ok_or_else(|| corrupt(format!("unknown code bits {}", p.code_bits)))?,
        };
        let mut h = Hnsw::new(p.d, metric, params).map_err(|e| corrupt(e.to_string()))?;
        let n = p.ids.len();
        let (d, m, m0) = (h.d, h.params.m, h.m0);
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(corrupt(what.to_string()))
            }
        };
        check(n <= MAX_SLOTS, "more slots than a u32 slot can number")?;
        check(
            params.codes != Codes::Flat || (p.sq_lo.is_empty() && p.sq_step.is_empty()),
            "code ranges in an index without codes",
        )?;
        check(
            n.checked_mul(d) == Some(p.vectors.len()),
            "vectors do not match ids × dim",
        )?;
        check(
            p.levels.len() == n && p.deleted.len() == n,
            "levels or deleted flags do not match ids",
        )?;
        check(
            n.checked_mul(m0 + 1) == Some(p.links0.len()),
            "level-0 links do not match ids × (2m + 1)",
        )?;
        check(
            p.upper_offsets.len() == n + 1,
            "upper offsets do not match ids",
        )?;
        check(
            p.levels.iter().all(|&l| l <= MAX_LEVEL),
            "a level above the maximum",
        )?;
        check(
            p.deleted.iter().all(|&f| f <= 1),
            "deleted flags must be 0 or 1",
        )?;
        check(
            (n == 0 && p.entry == NONE) || (p.entry as usize) < n,
            "entry point out of range",
        )?;
        let mut upper = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b) = (p.upper_offsets[i], p.upper_offsets[i + 1]);
            let want = p.levels[i] as u64 * (m as u64 + 1);
            check(
                a <= b && b - a == want && b <= p.upper.len() as u64,
                "upper links do not match the levels",
            )?;
            upper.push(p.upper[a as usize..b as usize].to_vec());
        }
        check(
            p.upper_offsets[n] == p.upper.len() as u64,
            "upper links have trailing data",
        )?;
        let list_ok = |list: &[u32], cap: usize, level: usize| {
            let cnt = list[0] as usize;
            cnt <= cap
                && list[1..1 + cnt]
                    .iter()
                    .all(|&s| (s as usize) < n && p.levels[s as usize] as usize >= level)
        };
        for i in 0..n {
            check(
                list_ok(&p.links0[i * (m0 + 1)..(i + 1) * (m0 + 1)], m0, 0),
                "a level-0 list is invalid",
            )?;
            for l in 1..=p.levels[i] as usize {
                let s = (l - 1) * (m + 1);
                check(
                    list_ok(&upper[i][s..s + m + 1], m, l),
                    "an upper list is invalid",
                )?;
            }
        }
        if n > 0 {
            let top = p.levels.iter().copied().max().unwrap_or(0);
            check(
                p.levels[p.entry as usize] == top,
                "entry point is not on the top level",
            )?;
            h.max_level = top as usize;
        }
        // An id may repeat on deleted slots (removed, then added again); at most one of its
        // slots is live.
        let ids = IdMap::with_deleted(p.ids, p.deleted.iter().map(|&f| f == 1).collect())?;
        check(
            p.inserted >= n as u64,
            "insert counter below the number of slots",
        )?;
        check_searchable(&p.vectors, d, "the stored vectors")
            .map_err(|e| corrupt(e.to_string()))?;
        h.vectors = p.vectors.into_huge();
        h.ids = ids;
        h.levels = p.levels;
        h.links0 = p.links0.into_huge();
        h.upper = upper;
        h.entry = p.entry;
        h.inserted = p.inserted;
        h.ordered = n;
        h.coded_at = n;
        if h.space == Space::Cosine {
            let dot = h.k.dot;
            h.inv_norms = h
                .vectors
                .chunks_exact(d)
                .map(|r| {
                    let v = dot(r, r).sqrt();
                    if v > 0.0 {
                        1.0 / v
                    } else {
                        0.0
                    }
                })
                .collect();
        }
        let untrained = params.codes != Codes::Flat && p.sq_lo.is_empty() && p.sq_step.is_empty();
        if untrained {
            // An index with codes that never held a vector (or lost them all) has no ranges yet:
            // the first add learns them.
            check(n == 0, "codes setting does not match the sections")?;
            check(
                p.codes.is_empty() && p.code_norms.is_empty(),
                "codes without code ranges",
            )?;
        }
        if params.codes != Codes::Flat && !untrained {
            h.sq = Quant::from_parts(params.codes, p.sq_lo, p.sq_step)
                .map_err(|e| corrupt(e.to_string()))?;
            check(
                h.sq.as_ref().is_some_and(|s| s.ranges().0.len() == d),
                "code ranges do not match dim",
            )?;
            if let Some(q) = &h.sq {
                h.i16k = q.kernel();
            }
            if p.codes.len() == n * h.cb && p.code_norms.len() == n {
                check(
                    p.code_norms.iter().all(|v| v.is_finite() && *v >= 0.0),
                    "code norms must be finite and non-negative",
                )?;
                h.codes = p.codes.into_huge();
                h.code_norms = p.code_norms;
                h.refresh_code_inv(0);
            } else {
                check(p.codes.is_empty(), "codes do not match the vectors")?;
                h.encode_from(0);
            }
        }
        Ok(h)
    }
}
