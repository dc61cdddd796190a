//! IVF: an inverted file over a k-means coarse quantizer, with flat, SQ8 or PQ lists.
//!
//! # Layout
//!
//! - `centroids` (nlist × d): trained by seeded k-means++ / Lloyd ([`crate::kmeans`]); unit
//!   length for cosine (spherical k-means on normalised vectors).
//! - One [`List`] per centroid, each contiguous: the slots it holds, and per entry either the
//!   float32 vector (`flat`), an SQ8 code of the (normalised, for cosine) vector, or a PQ code of
//!   the residual `x − centroid` (IVFADC).
//! - Per slot: id (an [`IdMap`]), its place `(list, position)`, and — for code lists with `refine` — the float32
//!   vector, used to re-rank the best `REFINE_FACTOR × k` code candidates exactly.
//!
//! # Search
//!
//! Rank the centroids, scan the `nprobe` nearest lists (code lists score with the integer SQ8
//! kernel or PQ lookup tables), keep the best candidates, re-rank them exactly when the float32
//! vectors are kept. Filters skip disallowed slots; when a filter is small or the probed lists
//! hold fewer than `min(k, allowed)` allowed vectors, every list is scanned.
//!
//! # Deletes
//!
//! `remove` swaps the last entry of the list (and the last slot, [`IdMap::swap_remove`]) into
//! the hole: memory is given back at once and no tombstones exist.
//!
//! # Limits
//!
//! `nlist` ≤ [`MAX_NLIST`], `dim` ≤ [`MAX_DIM`], slots ≤ [`MAX_SLOTS`] (they are `u32`), checked
//! before anything is allocated; a loader checks every count and every stored value (finite
//! centroids, codebooks and vectors) before use.

#[cfg(test)]
mod tests;

use crate::ids::IdMap;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::filter::Allowed;
use crate::flat::{self, Base, SearchParams};
use crate::kmeans::{self, kmeans, KMeansParams};
use crate::metric::kernels::{select, Kernels};
use crate::metric::{Metric, Space};
use crate::pool;
use crate::quant::sq8::{dot_u8_i16, I16Kernel};
use crate::quant::{Pq, Sq8};
use crate::topk::TopK;
use crate::validate::{
    check_range, check_searchable, result_size, try_filled, MAX_DIM, MAX_NLIST, MAX_SLOTS,
};

/// With codes and `refine`, this many × k code candidates are re-ranked exactly.
pub const REFINE_FACTOR: usize = 4;
/// Filters allowing fewer than this share of the index scan every list.
pub const FILTER_ALL_LISTS_FRACTION: f64 = 0.05;

/// What the lists store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeKind {
    Flat,
    Sq8,
    Pq { m: usize, nbits: usize },
}

/// Construction parameters (faiss's names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IvfParams {
    pub nlist: usize,
    pub codes: CodeKind,
    /// Keep the float32 vectors of code lists and re-rank with them.
    pub refine: bool,
    pub seed: u64,
}

/// One inverted list.
#[derive(Clone, Debug, Default)]
pub struct List {
    slots: Vec<u32>,
    /// Flat lists: the vectors.
    vecs: Vec<f32>,
    /// Flat cosine lists: 1/‖x‖ per entry.
    inv: Vec<f32>,
    /// Code lists: `code_size` bytes per entry.
    codes: Vec<u8>,
    /// SQ8 lists: ‖x̂‖² per entry.
    cnorm: Vec<f32>,
}

/// Results of a batch: `k` per query, closest first, missing ones id −1.
#[derive(Clone, Debug, Default)]
pub struct IvfResult {
    pub distances: Vec<f32>,
    pub ids: Vec<i64>,
    pub distance_computations: u64,
}

/// The inverted-file index.
pub struct Ivf {
    d: usize,
    metric: Metric,
    space: Space,
    params: IvfParams,
    centroids: Vec<f32>,
    sq: Option<Sq8>,
    pq: Option<Pq>,
    lists: Vec<List>,
    ids: IdMap,
    place: Vec<(u32, u32)>,
    /// Slot-order float32 vectors (code lists with `refine`).
    vectors: Vec<f32>,
    /// Slot-order 1/‖x‖ (cosine code lists with `refine`).
    inv_norms: Vec<f32>,
    k: Kernels<f32>,
    i16k: I16Kernel,
}

/// Everything a saved index holds, as flat arrays.
#[derive(Clone, Debug, Default)]
pub struct IvfParts {
    pub d: usize,
    pub metric: String,
    pub nlist: usize,
    /// "flat", "sq8" or "pq".
    pub codes: String,
    pub pq_m: usize,
    pub nbits: usize,
    pub refine: bool,
    pub seed: u64,
    pub centroids: Vec<f32>,
    pub list_offsets: Vec<u64>,
    pub list_slots: Vec<u32>,
    pub list_vecs: Vec<f32>,
    pub list_codes: Vec<u8>,
    pub ids: Vec<i64>,
    pub vectors: Vec<f32>,
    pub sq_lo: Vec<f32>,
    pub sq_step: Vec<f32>,
    pub pq_centroids: Vec<f32>,
}

fn inv_norm(dot: fn(&[f32], &[f32]) -> f32, x: &[f32]) -> f32 {
    let n = dot(x, x).sqrt();
    if n > 0.0 {
        1.0 / n
    } else {
        0.0
    }
}

impl Ivf {
    /// An untrained index. `metric`: euclidean, sqeuclidean, inner_product or cosine.
    pub fn new(d: usize, metric: Metric, params: IvfParams) -> Result<Self> {
        check_range("dim", d, 1, MAX_DIM)?;
        check_range("nlist", params.nlist, 1, MAX_NLIST)?;
        if let CodeKind::Pq { m, nbits } = params.codes {
            Pq::check(d, m, nbits)?;
        }
        let space = Space::of(metric)?;
        Ok(Ivf {
            d,
            metric,
            space,
            params,
            centroids: Vec::new(),
            sq: None,
            pq: None,
            lists: try_filled("nlist", params.nlist, List::default())?,
            ids: IdMap::new(),
            place: Vec::new(),
            vectors: Vec::new(),
            inv_norms: Vec::new(),
            k: select::<f32>(),
            i16k: dot_u8_i16(),
        })
    }

    pub fn dim(&self) -> usize {
        self.d
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn is_trained(&self) -> bool {
        !self.centroids.is_empty()
    }

    pub fn params(&self) -> IvfParams {
        self.params
    }

    /// Ids in slot order.
    pub fn ids(&self) -> &[i64] {
        self.ids.ids()
    }

    /// Slots and ids both ways, filters ([`IdMap::allowed_from_ids`],
    /// [`IdMap::allowed_from_mask`]).
    pub fn id_map(&self) -> &IdMap {
        &self.ids
    }

    /// Sizes of the lists.
    pub fn list_sizes(&self) -> Vec<usize> {
        self.lists.iter().map(|l| l.slots.len()).collect()
    }

    fn keeps_vectors(&self) -> bool {
        self.params.codes != CodeKind::Flat && self.params.refine
    }

    fn code_size(&self) -> usize {
        match self.params.codes {
            CodeKind::Flat => 0,
            CodeKind::Sq8 => self.d,
            CodeKind::Pq { m, .. } => m,
        }
    }

    /// The vector as the quantizers see it: normalised for cosine.
    fn oriented(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend_from_slice(x);
        if self.space == Space::Cosine {
            let inv = inv_norm(self.k.dot, x);
            out.iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// Bytes held by centroids, lists, vectors and ids.
    pub fn memory_usage(&self) -> usize {
        let lists: usize = self
            .lists
            .iter()
            .map(|l| {
                l.slots.capacity() * 4
                    + l.vecs.capacity() * 4
                    + l.inv.capacity() * 4
                    + l.codes.capacity()
                    + l.cnorm.capacity() * 4
            })
            .sum();
        self.centroids.capacity() * 4
            + lists
            + self.ids.memory_usage()
            + self.place.capacity() * 8
            + self.vectors.capacity() * 4
            + self.inv_norms.capacity() * 4
            + self.pq.as_ref().map_or(0, |p| p.centroids.len() * 4)
    }

    /// Trains the coarse centroids (and SQ8 ranges / PQ codebooks) on `data` (n ≥ nlist rows):
    /// seeded k-means ([`crate::kmeans`], spherical for cosine), then
    /// [`Ivf::train_with_centroids`]'s code training.
    pub fn train(&mut self, data: &[f32], threads: usize) -> Result<()> {
        self.train_from(data, None, threads)
    }

    /// Trains the SQ8 ranges / PQ codebooks on `data` exactly as [`Ivf::train`] does, with the
    /// given coarse `centroids` (nlist × d, row-major, finite) instead of k-means ones — e.g.
    /// centroids trained elsewhere (on a GPU). For cosine, rows not of unit length are
    /// normalised as spherical k-means leaves them. Given `train`'s own k-means centroids, the
    /// index is identical.
    pub fn train_with_centroids(
        &mut self,
        data: &[f32],
        centroids: &[f32],
        threads: usize,
    ) -> Result<()> {
        self.train_from(data, Some(centroids), threads)
    }

    fn train_from(&mut self, data: &[f32], given: Option<&[f32]>, threads: usize) -> Result<()> {
        if self.is_trained() {
            return Err(Error::param("train", "an untrained index", "a trained one"));
        }
        check_searchable(data, self.d, "training vectors")?;
        let d = self.d;
        if let Some(c) = given {
            let want = self.params.nlist * d;
            if c.len() != want {
                return Err(Error::param(
                    "centroids",
                    format!("nlist × dim = {} × {d} = {want} values", self.params.nlist),
                    format!("{} values", c.len()),
                ));
            }
            check_searchable(c, d, "centroids")?;
        }
        let mut buf = Vec::with_capacity(d);
        let oriented: Vec<f32> = data
            .chunks_exact(d)
            .flat_map(|r| {
                self.oriented(r, &mut buf);
                buf.clone()
            })
            .collect();
        let spherical = self.space == Space::Cosine;
        let centroids = match given {
            Some(c) => {
                let mut c = c.to_vec();
                if spherical {
                    // Rows already of unit length (k-means' own) are kept bit for bit.
                    c.chunks_exact_mut(d)
                        .filter(|r| (r.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() > 1e-5)
                        .for_each(kmeans::normalize);
                }
                c
            }
            None => {
                let mut p = KMeansParams::new(self.params.nlist, self.params.seed, threads);
                p.spherical = spherical;
                kmeans(&oriented, d, &p)?
            }
        };
        match self.params.codes {
            CodeKind::Flat => {}
            CodeKind::Sq8 => self.sq = Some(Sq8::train(&oriented, d)?),
            CodeKind::Pq { m, nbits } => {
                let labels = self.assign_with(&centroids, &oriented, threads)?;
                let residuals: Vec<f32> = oriented
                    .chunks_exact(d)
                    .zip(&labels)
                    .flat_map(|(r, &l)| {
                        let c = &centroids[l as usize * d..(l as usize + 1) * d];
                        r.iter().zip(c).map(|(a, b)| a - b).collect::<Vec<_>>()
                    })
                    .collect();
                self.pq = Some(Pq::train(
                    &residuals,
                    d,
                    m,
                    nbits,
                    self.params.seed ^ 0x5151,
                    threads,
                )?);
            }
        }
        self.centroids = centroids;
        Ok(())
    }

    /// Coarse assignment of oriented rows: nearest centroid (largest dot for inner product).
    fn assign_with(&self, centroids: &[f32], rows: &[f32], threads: usize) -> Result<Vec<u32>> {
        let metric = if self.space == Space::Ip {
            Metric::InnerProduct
        } else {
            Metric::SqEuclidean
        };
        let params = SearchParams {
            threads,
            interrupt: None,
            bf16: true,
        };
        let res = flat::knn(&Base::new(centroids, self.d), rows, 1, metric, &params)?;
        Ok(res.indices.iter().map(|&i| i.max(0) as u32).collect())
    }

    /// Adds vectors with their ids (the index must be trained). Validates first: an error
    /// leaves the index unchanged.
    /// Sizes each list (and the slot arrays) for the entries `labels` brings: an array growing
    /// by at least a quarter of its length gets exactly that room, so bulk loads leave no
    /// doubling slack (about a third of the memory otherwise); smaller additions grow as usual,
    /// amortised.
    fn reserve_lists(&mut self, labels: &[u32], code_size: usize) {
        fn grow<T>(v: &mut Vec<T>, extra: usize) {
            if extra * 4 >= v.len() {
                v.reserve_exact(extra);
            } else {
                v.reserve(extra);
            }
        }
        let mut counts = vec![0usize; self.lists.len()];
        for &l in labels {
            counts[l as usize] += 1;
        }
        let flat = self.params.codes == CodeKind::Flat;
        let cosine = self.space == Space::Cosine;
        let sq8 = self.params.codes == CodeKind::Sq8;
        let d = self.d;
        for (list, &c) in self.lists.iter_mut().zip(&counts) {
            if c == 0 {
                continue;
            }
            grow(&mut list.slots, c);
            if flat {
                grow(&mut list.vecs, c * d);
                if cosine {
                    grow(&mut list.inv, c);
                }
            } else {
                grow(&mut list.codes, c * code_size);
                if sq8 {
                    grow(&mut list.cnorm, c);
                }
            }
        }
        if self.keeps_vectors() {
            grow(&mut self.vectors, labels.len() * d);
            if cosine {
                grow(&mut self.inv_norms, labels.len());
            }
        }
        grow(&mut self.place, labels.len());
    }

    pub fn add(&mut self, data: &[f32], ids: &[i64], threads: usize) -> Result<()> {
        if !self.is_trained() {
            return Err(Error::param(
                "add",
                "a trained index (call train first)",
                "untrained",
            ));
        }
        check_searchable(data, self.d, "vectors")?;
        if data.len() != ids.len() * self.d {
            return Err(Error::Shape {
                name: "ids",
                expected: data.len() / self.d,
                got: ids.len(),
            });
        }
        self.ids.check_new(ids)?;
        let d = self.d;
        let mut buf = Vec::with_capacity(d);
        let oriented: Vec<f32> = data
            .chunks_exact(d)
            .flat_map(|r| {
                self.oriented(r, &mut buf);
                buf.clone()
            })
            .collect();
        let labels = self.assign_with(&self.centroids, &oriented, threads)?;
        let code_size = self.code_size();
        self.reserve_lists(&labels, code_size);
        let mut code = vec![0u8; code_size];
        // PQ: residuals to the assigned centroids, encoded in one parallel batch
        let pq_codes = match (&self.pq, self.params.codes) {
            (Some(pq), CodeKind::Pq { .. }) => {
                let mut resid = oriented.clone();
                for (r, &l) in resid.chunks_exact_mut(d).zip(&labels) {
                    let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
                    r.iter_mut().zip(c).for_each(|(a, b)| *a -= b);
                }
                pq.encode_batch(&resid, threads)
            }
            _ => Vec::new(),
        };
        let start = self.ids.len();
        for (i, &l) in labels.iter().enumerate() {
            let slot = (start + i) as u32;
            let x = &data[i * d..(i + 1) * d];
            let o = &oriented[i * d..(i + 1) * d];
            let list = &mut self.lists[l as usize];
            let pos = list.slots.len() as u32;
            list.slots.push(slot);
            match self.params.codes {
                CodeKind::Flat => {
                    list.vecs.extend_from_slice(x);
                    if self.space == Space::Cosine {
                        list.inv.push(inv_norm(self.k.dot, x));
                    }
                }
                CodeKind::Sq8 => {
                    let sq = self.sq.as_ref().expect("trained");
                    list.cnorm.push(sq.encode(o, &mut code));
                    list.codes.extend_from_slice(&code);
                }
                CodeKind::Pq { .. } => {
                    list.codes
                        .extend_from_slice(&pq_codes[i * code_size..(i + 1) * code_size]);
                }
            }
            if self.keeps_vectors() {
                self.vectors.extend_from_slice(x);
                if self.space == Space::Cosine {
                    self.inv_norms.push(inv_norm(self.k.dot, x));
                }
            }
            self.place.push((l, pos));
        }
        self.ids.push(ids);
        Ok(())
    }

    /// The stored float32 vector of `id` (flat lists, or code lists with `refine`); the decoded
    /// approximation otherwise.
    pub fn get(&self, id: i64) -> Option<Vec<f32>> {
        let slot = self.ids.slot(id)?;
        let d = self.d;
        let (l, p) = self.place[slot];
        let list = &self.lists[l as usize];
        let p = p as usize;
        Some(match self.params.codes {
            CodeKind::Flat => list.vecs[p * d..(p + 1) * d].to_vec(),
            _ if self.keeps_vectors() => self.vectors[slot * d..(slot + 1) * d].to_vec(),
            CodeKind::Sq8 => self
                .sq
                .as_ref()
                .expect("trained")
                .decode(&list.codes[p * d..(p + 1) * d]),
            CodeKind::Pq { m, .. } => {
                let mut out = Vec::new();
                self.pq
                    .as_ref()
                    .expect("trained")
                    .decode(&list.codes[p * m..(p + 1) * m], &mut out);
                let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
                out.iter_mut().zip(c).for_each(|(a, b)| *a += b);
                out
            }
        })
    }

    /// Deletes `ids` (unknown ones are skipped); returns how many were present.
    pub fn remove(&mut self, ids: &[i64]) -> usize {
        let mut removed = 0;
        for &id in ids {
            if let Some(slot) = self.ids.slot(id) {
                self.remove_slot(slot);
                removed += 1;
            }
        }
        if removed > 0 {
            self.shrink();
        }
        removed
    }

    /// Gives memory back where an array holds less than four fifths of its capacity (arrays
    /// are sized exactly on bulk adds, so a removal shows up here).
    fn shrink(&mut self) {
        fn fit<T>(v: &mut Vec<T>) {
            if v.capacity() > v.len() + v.len() / 4 + 16 {
                v.shrink_to_fit();
            }
        }
        for l in &mut self.lists {
            fit(&mut l.slots);
            fit(&mut l.vecs);
            fit(&mut l.inv);
            fit(&mut l.codes);
            fit(&mut l.cnorm);
        }
        fit(&mut self.place);
        fit(&mut self.vectors);
        fit(&mut self.inv_norms);
        self.ids.shrink();
    }

    fn remove_slot(&mut self, slot: usize) {
        let (d, cs) = (self.d, self.code_size());
        let (l, p) = self.place[slot];
        let (l, p) = (l as usize, p as usize);
        // Take the entry out of its list: the list's last entry moves into the hole.
        let list = &mut self.lists[l];
        let last = list.slots.len() - 1;
        list.slots.swap_remove(p);
        if p < last {
            let moved = list.slots[p] as usize;
            self.place[moved].1 = p as u32;
        }
        let list = &mut self.lists[l];
        if !list.vecs.is_empty() {
            list.vecs.copy_within(last * d..(last + 1) * d, p * d);
            list.vecs.truncate(last * d);
        }
        if !list.inv.is_empty() {
            list.inv.swap_remove(p);
        }
        if !list.codes.is_empty() {
            list.codes.copy_within(last * cs..(last + 1) * cs, p * cs);
            list.codes.truncate(last * cs);
        }
        if !list.cnorm.is_empty() {
            list.cnorm.swap_remove(p);
        }
        // Then the slot: the last slot moves into it.
        let last_slot = self.ids.len() - 1;
        if self.ids.swap_remove(slot).is_some() {
            let (ml, mp) = self.place[last_slot];
            self.lists[ml as usize].slots[mp as usize] = slot as u32;
        }
        self.place.swap_remove(slot);
        if self.keeps_vectors() {
            self.vectors
                .copy_within(last_slot * d..(last_slot + 1) * d, slot * d);
            self.vectors.truncate(last_slot * d);
            if self.space == Space::Cosine {
                self.inv_norms.swap_remove(slot);
            }
        }
    }

    /// Exact key of slot `slot` stored at (`list`, `pos`) to the oriented query.
    #[inline]
    fn exact_key(&self, q: &[f32], list: &List, pos: usize, slot: usize) -> f32 {
        let d = self.d;
        let (x, inv) = if self.params.codes == CodeKind::Flat {
            (
                &list.vecs[pos * d..(pos + 1) * d],
                list.inv.get(pos).copied().unwrap_or(1.0),
            )
        } else {
            (
                &self.vectors[slot * d..(slot + 1) * d],
                self.inv_norms.get(slot).copied().unwrap_or(1.0),
            )
        };
        match self.space {
            Space::L2 => (self.k.sqeuclidean)(q, x),
            Space::Ip => -(self.k.dot)(q, x),
            Space::Cosine => -(self.k.dot)(q, x) * inv,
        }
    }

    fn key_to_distance(&self, key: f32) -> f32 {
        self.metric.index_key_to_distance(key)
    }

    /// The best `k` of one (oriented) query over the `nprobe` nearest lists (all lists when
    /// `nprobe ≥ nlist`). Returns (key, slot) closest first and the distances computed.
    fn search_one(
        &self,
        q: &[f32],
        k: usize,
        nprobe: usize,
        allowed: Option<&Allowed>,
        scratch: &mut (Vec<f32>, Vec<i16>, Vec<f32>),
    ) -> (Vec<(f32, usize)>, u64) {
        let d = self.d;
        let nlist = self.params.nlist;
        let mut work = 0u64;
        // Rank centroids.
        let mut order: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(d)
            .enumerate()
            .map(|(j, c)| {
                let key = match self.space {
                    Space::L2 => (self.k.sqeuclidean)(q, c),
                    _ => -(self.k.dot)(q, c),
                };
                (key, j)
            })
            .collect();
        work += nlist as u64;
        let probe = nprobe.min(nlist);
        if probe < nlist {
            order.select_nth_unstable_by(probe - 1, |a, b| a.0.total_cmp(&b.0));
            order.truncate(probe);
        }
        let approx = self.params.codes != CodeKind::Flat;
        let keep = if approx && self.params.refine {
            REFINE_FACTOR * k
        } else {
            k
        };
        let mut top = TopK::<f32>::new(keep);
        let (w, wq, lut) = scratch;
        let sq_consts = self.sq.as_ref().map(|sq| {
            let c0 = sq.prepare(q, w);
            let scale = sq.prepare_i16(w, wq);
            (c0, scale, (self.k.dot)(q, q))
        });
        if let (Some(pq), Space::Ip | Space::Cosine) = (&self.pq, self.space) {
            pq.lut_dot(q, lut);
        }
        let mut resid = vec![0f32; d];
        for &(ckey, l) in &order {
            let list = &self.lists[l];
            if list.slots.is_empty() {
                continue;
            }
            if let (Some(pq), Space::L2) = (&self.pq, self.space) {
                let c = &self.centroids[l * d..(l + 1) * d];
                resid
                    .iter_mut()
                    .zip(q.iter().zip(c))
                    .for_each(|(r, (a, b))| *r = a - b);
                pq.lut_l2(&resid, lut);
            }
            for (pos, &slot) in list.slots.iter().enumerate() {
                if allowed.is_some_and(|a| !a.contains(slot)) {
                    continue;
                }
                work += 1;
                let key = match self.params.codes {
                    CodeKind::Flat => self.exact_key(q, list, pos, slot as usize),
                    CodeKind::Sq8 => {
                        let (c0, scale, qq) = sq_consts.expect("trained");
                        let code = &list.codes[pos * d..(pos + 1) * d];
                        let dot = c0 + scale * (self.i16k)(wq, code) as f32;
                        match self.space {
                            Space::L2 => qq + list.cnorm[pos] - 2.0 * dot,
                            _ => -dot,
                        }
                    }
                    CodeKind::Pq { m, .. } => {
                        let pq = self.pq.as_ref().expect("trained");
                        let s = pq.score(lut, &list.codes[pos * m..(pos + 1) * m]);
                        match self.space {
                            Space::L2 => s,
                            // −⟨q, c + r⟩, with −⟨q, c⟩ = the centroid's key.
                            _ => ckey - s,
                        }
                    }
                };
                top.push(key, slot as usize);
            }
        }
        let mut best = top.into_sorted();
        if approx && self.params.refine {
            for c in best.iter_mut() {
                let (l, p) = self.place[c.1];
                c.0 = self.exact_key(q, &self.lists[l as usize], p as usize, c.1);
            }
            work += best.len() as u64;
            best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            best.truncate(k);
        }
        (best, work)
    }

    /// Searches `queries` for their `k` nearest vectors over `nprobe` lists each.
    pub fn search(
        &self,
        queries: &[f32],
        k: usize,
        nprobe: usize,
        threads: usize,
        allowed: Option<&Allowed>,
    ) -> Result<IvfResult> {
        self.search_with(queries, k, nprobe, threads, allowed, None)
    }

    /// [`Ivf::search`], polling `interrupt` between queries (from the calling thread every
    /// 50 ms when threaded): when it returns true the search stops with
    /// [`Error::Interrupted`].
    ///
    /// The work (candidate heaps, re-rank) is sized by `min(k, stored vectors)`; only the
    /// result has `k` places per query (padded with id −1), and a result of more than
    /// [`crate::validate::max_result_values`] values, or one that cannot be allocated, is
    /// refused before anything is allocated.
    pub fn search_with(
        &self,
        queries: &[f32],
        k: usize,
        nprobe: usize,
        threads: usize,
        allowed: Option<&Allowed>,
        interrupt: Option<&(dyn Fn() -> bool + Sync)>,
    ) -> Result<IvfResult> {
        let d = self.d;
        if !queries.len().is_multiple_of(d) {
            return Err(Error::DimensionMismatch {
                expected: d,
                got: queries.len(),
            });
        }
        check_searchable(queries, d, "queries")?;
        if k == 0 || nprobe == 0 {
            return Err(Error::param("k and nprobe", "positive integers", 0));
        }
        let nq = queries.len() / d;
        let total_values = result_size(nq, k)?;
        let missing = if self.space == Space::Ip && self.metric.is_similarity() {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
        let mut out = IvfResult {
            distances: try_filled("k", total_values, missing)?,
            ids: try_filled("k", total_values, -1)?,
            distance_computations: 0,
        };
        if !self.is_trained() || self.ids.is_empty() {
            return Ok(out);
        }
        // Work is capped at what the index holds; `k` only sizes the (padded) result rows.
        let (k_row, k) = (k, k.min(self.ids.len()));
        let total = self.ids.len();
        let wanted = allowed.map_or(total, |a| a.count()).min(k);
        let small =
            allowed.is_some_and(|a| (a.count() as f64) < FILTER_ALL_LISTS_FRACTION * total as f64);
        let one =
            |q: &[f32], dist: &mut [f32], ids: &mut [i64], scratch: &mut _, buf: &mut Vec<f32>| {
                self.oriented(q, buf);
                let probe = if small { self.params.nlist } else { nprobe };
                let (mut best, mut work) = self.search_one(buf, k, probe, allowed, scratch);
                if best.len() < wanted && probe < self.params.nlist {
                    let (b, w) = self.search_one(buf, k, self.params.nlist, allowed, scratch);
                    best = b;
                    work += w;
                }
                for (j, &(key, slot)) in best.iter().take(k).enumerate() {
                    dist[j] = self.key_to_distance(key);
                    ids[j] = self.ids.id(slot);
                }
                work
            };
        if nq <= 1 || threads <= 1 {
            let mut scratch = (Vec::new(), Vec::new(), Vec::new());
            let mut buf = Vec::new();
            let mut work = 0;
            for (i, ((q, dd), ii)) in queries
                .chunks_exact(d)
                .zip(out.distances.chunks_exact_mut(k_row))
                .zip(out.ids.chunks_exact_mut(k_row))
                .enumerate()
            {
                if i % 16 == 15 && interrupt.is_some_and(|f| f()) {
                    return Err(Error::Interrupted);
                }
                work += one(q, dd, ii, &mut scratch, &mut buf);
            }
            out.distance_computations = work;
            return Ok(out);
        }
        let chunk = nq.div_ceil(threads.max(1) * 8).clamp(1, 64);
        let (dists, idss) = (&mut out.distances, &mut out.ids);
        let work: u64 = pool::run_interruptible(threads, interrupt, |stop| {
            queries
                .par_chunks(chunk * d)
                .zip(dists.par_chunks_mut(chunk * k_row))
                .zip(idss.par_chunks_mut(chunk * k_row))
                .map(|((qs, ds), is)| {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return 0;
                    }
                    let mut scratch = (Vec::new(), Vec::new(), Vec::new());
                    let mut buf = Vec::new();
                    qs.chunks_exact(d)
                        .zip(ds.chunks_exact_mut(k_row))
                        .zip(is.chunks_exact_mut(k_row))
                        .map(|((q, dd), ii)| one(q, dd, ii, &mut scratch, &mut buf))
                        .sum::<u64>()
                })
                .sum()
        })?;
        out.distance_computations = work;
        Ok(out)
    }

    /// Flat arrays for saving.
    pub fn to_parts(&self) -> IvfParts {
        let (codes, pq_m, nbits) = match self.params.codes {
            CodeKind::Flat => ("flat", 0, 0),
            CodeKind::Sq8 => ("sq8", 0, 0),
            CodeKind::Pq { m, nbits } => ("pq", m, nbits),
        };
        let mut p = IvfParts {
            d: self.d,
            metric: self.metric.name().to_string(),
            nlist: self.params.nlist,
            codes: codes.to_string(),
            pq_m,
            nbits,
            refine: self.params.refine,
            seed: self.params.seed,
            centroids: self.centroids.clone(),
            ids: self.ids.ids().to_vec(),
            vectors: self.vectors.clone(),
            ..Default::default()
        };
        p.list_offsets.push(0);
        for l in &self.lists {
            p.list_slots.extend_from_slice(&l.slots);
            p.list_vecs.extend_from_slice(&l.vecs);
            p.list_codes.extend_from_slice(&l.codes);
            p.list_offsets.push(p.list_slots.len() as u64);
        }
        if let Some(sq) = &self.sq {
            p.sq_lo = sq.lo.clone();
            p.sq_step = sq.step.clone();
        }
        if let Some(pq) = &self.pq {
            p.pq_centroids = pq.centroids.clone();
        }
        p
    }

    /// Rebuilds an index from saved arrays, validating every size and slot ([`Error::Corrupt`]
    /// otherwise).
    pub fn from_parts(p: IvfParts) -> Result<Self> {
        let corrupt = |what: &str| Error::Corrupt(format!("ivf: {what}"));
        let wrap = |e: Error| Error::Corrupt(format!("ivf: {e}"));
        let codes = match p.codes.as_str() {
            "flat" => CodeKind::Flat,
            "sq8" => CodeKind::Sq8,
            "pq" => CodeKind::Pq {
                m: p.pq_m,
                nbits: p.nbits,
            },
            _ => return Err(corrupt("unknown code kind")),
        };
        let metric = Metric::parse(&p.metric, 2.0).map_err(wrap)?;
        let params = IvfParams {
            nlist: p.nlist,
            codes,
            refine: p.refine,
            seed: p.seed,
        };
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(corrupt(what)) };
        // Counts from the header are checked against the sections (data that exists) before
        // anything is sized by them.
        check(
            p.list_offsets.len() == p.nlist.saturating_add(1),
            "list offsets do not match nlist",
        )?;
        check(
            p.ids.len() <= MAX_SLOTS,
            "more vectors than u32 slots can number",
        )?;
        let mut ix = Ivf::new(p.d, metric, params).map_err(wrap)?;
        let (d, n, nlist) = (ix.d, p.ids.len(), p.nlist);
        let searchable = |x: &[f32], dim: usize, what: &str| {
            check_searchable(x, dim, what).map_err(|e| corrupt(&e.to_string()))
        };
        let trained = !p.centroids.is_empty();
        check(
            !trained || p.centroids.len() == nlist.saturating_mul(d),
            "centroids do not match nlist × dim",
        )?;
        check(trained || n == 0, "vectors in an untrained index")?;
        searchable(&p.centroids, d, "the centroids")?;
        searchable(&p.vectors, d, "the stored vectors")?;
        searchable(&p.list_vecs, d, "the list vectors")?;
        check(
            p.list_offsets.windows(2).all(|w| w[0] <= w[1])
                && p.list_offsets.first() == Some(&0)
                && p.list_offsets.last() == Some(&(n as u64))
                && p.list_slots.len() == n,
            "list offsets are inconsistent",
        )?;
        let cs = ix.code_size();
        let flat = codes == CodeKind::Flat;
        check(
            p.list_vecs.len() == if flat { n * d } else { 0 },
            "list vectors do not match",
        )?;
        check(p.list_codes.len() == n * cs, "list codes do not match")?;
        if let CodeKind::Pq { nbits, .. } = codes {
            check(
                nbits >= 8 || p.list_codes.iter().all(|&c| (c as usize) < (1 << nbits)),
                "a PQ code is out of its codebook",
            )?;
        }
        check(
            p.vectors.len() == if ix.keeps_vectors() { n * d } else { 0 },
            "refine vectors do not match",
        )?;
        if trained {
            match codes {
                CodeKind::Flat => {}
                CodeKind::Sq8 => ix.sq = Some(Sq8::from_parts(p.sq_lo, p.sq_step).map_err(wrap)?),
                CodeKind::Pq { m, nbits } => {
                    searchable(&p.pq_centroids, d / m, "the PQ centroids")?;
                    ix.pq = Some(Pq::from_parts(d, m, nbits, p.pq_centroids).map_err(wrap)?)
                }
            }
            if let Some(sq) = &ix.sq {
                // Both ends of every range must be searchable values.
                let ends: Vec<f32> = sq
                    .lo
                    .iter()
                    .copied()
                    .chain(sq.lo.iter().zip(&sq.step).map(|(&l, &s)| l + 255.0 * s))
                    .collect();
                searchable(&ends, sq.lo.len(), "the SQ8 ranges")?;
            }
            check(
                ix.sq.as_ref().is_none_or(|s| s.dim() == d),
                "sq8 ranges do not match dim",
            )?;
        }
        let mut place = vec![(u32::MAX, 0u32); n];
        for l in 0..nlist {
            let (a, b) = (p.list_offsets[l] as usize, p.list_offsets[l + 1] as usize);
            let list = &mut ix.lists[l];
            for (pos, &slot) in p.list_slots[a..b].iter().enumerate() {
                check((slot as usize) < n, "a list holds a slot out of range")?;
                check(place[slot as usize].0 == u32::MAX, "a slot is in two lists")?;
                place[slot as usize] = (l as u32, pos as u32);
            }
            list.slots = p.list_slots[a..b].to_vec();
            if flat {
                list.vecs = p.list_vecs[a * d..b * d].to_vec();
                if ix.space == Space::Cosine {
                    list.inv = list
                        .vecs
                        .chunks_exact(d)
                        .map(|x| inv_norm(ix.k.dot, x))
                        .collect();
                }
            } else {
                list.codes = p.list_codes[a * cs..b * cs].to_vec();
                if let Some(sq) = &ix.sq {
                    list.cnorm = list
                        .codes
                        .chunks_exact(d)
                        .map(|c| sq.decode(c).iter().map(|v| v * v).sum())
                        .collect();
                }
            }
        }
        let ids = IdMap::from_ids(p.ids)?;
        if ix.keeps_vectors() && ix.space == Space::Cosine {
            ix.inv_norms = p
                .vectors
                .chunks_exact(d)
                .map(|x| inv_norm(ix.k.dot, x))
                .collect();
        }
        ix.centroids = p.centroids;
        ix.ids = ids;
        ix.place = place;
        ix.vectors = p.vectors;
        Ok(ix)
    }
}
