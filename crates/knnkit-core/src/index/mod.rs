//! The one seam every index kind plugs into: [`Index`].
//!
//! ## Why a trait (and not an enum over the kinds)
//!
//! The store, the Ray shards and the Python bindings hold "some index" and do the same things to
//! it: add vectors under int64 ids, remove ids, look vectors up, search with a filter, report its
//! size, write it to a file, open it again. A trait object (`Box<dyn Index>`) lets each of them
//! do that without knowing the kind, and a new kind plugs in by implementing the trait and
//! registering a reader in [`file`] — no `match` to extend in every caller. Kind-specific calls
//! (HNSW's `consolidate`, IVF's `train`) stay on the concrete types, reached through
//! [`Index::as_any`] where a holder needs them.
//!
//! ## What every kind shares
//!
//! - **Vectors** are float32 rows of `dim` values, stored in *slots*; **ids** are caller-chosen
//!   non-negative int64 values (−1 marks a missing result), validated, mapped to slots,
//!   deleted and turned into filters by one type ([`IdMap`]).
//! - **Filters** ([`Filter`]) are turned into a per-slot [`Allowed`] set once per call, by
//!   [`Index::allowed`]; searches then return `min(k, allowed)` results.
//! - **Results** ([`Hits`]) have exactly `k` places per query, padded with id −1 and the
//!   metric's missing distance; the work is capped at what the index holds.
//! - **Range search** is native for flat; the approximate kinds get [`range_by_knn`]: a k-search
//!   whose `k` doubles until the farthest result falls outside the radius.
//! - **Files**: one format ([`crate::io`]), one writer per kind ([`Index::write`]) and one
//!   reader ([`file::open`]) that returns the right kind.
//!
//! Layout: `mod.rs` (the trait and the shared types), `kinds.rs` (its implementation for flat,
//! HNSW and IVF), `file.rs` (each kind's header and sections in the file format).

pub mod file;
mod kinds;

pub use file::{from_file, open};
pub use kinds::{DEFAULT_EF_SEARCH, DEFAULT_NPROBE};

use std::any::Any;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::filter::Allowed;
use crate::flat::{Radius, RangeResult};
use crate::ids::IdMap;
use crate::metric::Metric;

/// Which stored vectors a search may return.
#[derive(Clone, Copy, Debug)]
pub enum Filter<'a> {
    /// Only these ids (unknown ids are ignored).
    Ids(&'a [i64]),
    /// A boolean per id: id `i` is allowed when `mask[i]` (ids past the end are not).
    Mask(&'a [bool]),
}

impl Filter<'_> {
    /// The live slots of `map` this filter allows (every kind, float64 flat included).
    pub fn allowed(self, map: &IdMap) -> Allowed {
        match self {
            Filter::Ids(ids) => map.allowed_from_ids(ids),
            Filter::Mask(mask) => map.allowed_from_mask(mask),
        }
    }
}

/// Per-call search settings; each kind reads those it has (`None`: the kind's default).
#[derive(Clone, Copy, Default)]
pub struct SearchOptions<'a> {
    /// Threads for a batch of queries (0 or 1: the calling thread).
    pub threads: usize,
    /// HNSW beam width.
    pub ef_search: Option<usize>,
    /// IVF lists scanned per query.
    pub nprobe: Option<usize>,
    /// Polled while searching; returning true stops the search with [`Error::Interrupted`].
    pub interrupt: Option<&'a (dyn Fn() -> bool + Sync)>,
}

/// The `k` nearest stored vectors of each query: row `q` is `distances[q*k..(q+1)*k]` and
/// `ids[q*k..(q+1)*k]`, closest first, padded with id −1.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hits {
    pub k: usize,
    pub distances: Vec<f32>,
    pub ids: Vec<i64>,
    /// Distances computed (codes and exact), where the kind counts them.
    pub distance_computations: u64,
}

/// What an index holds, for monitoring and for callers that size work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live vectors.
    pub len: usize,
    /// Slots in use, removed ones not yet reclaimed included.
    pub slots: usize,
    /// Bytes held in process memory (mapped sections count 0).
    pub memory_bytes: usize,
}

/// An index of float32 vectors under int64 ids. See the module comment.
///
/// Every method leaves the index as it was when it returns an error. Implementations are
/// `Send + Sync`: searches take `&self` and may run from many threads at once.
pub trait Index: AsAny + Send + Sync {
    /// The kind's name, as written in files: `"flat"`, `"hnsw"`, `"ivf"`.
    fn kind(&self) -> &'static str;
    /// Values per vector.
    fn dim(&self) -> usize;
    /// The metric distances are reported in.
    fn metric(&self) -> Metric;
    /// The ids of the slots: every kind keeps them in one [`IdMap`], and the defaults below
    /// (ids, membership, filters, counts) read it.
    fn id_map(&self) -> &IdMap;
    /// Bytes held in process memory (mapped sections count 0).
    fn memory_usage(&self) -> usize;
    /// The stored vector of `id` (for code-only kinds, its decoded approximation).
    fn get(&self, id: i64) -> Option<Vec<f32>>;
    /// Adds the rows of `data` (row-major, `dim` columns) under `ids` (one per row: non-negative,
    /// unique, not live). Kinds that need training (IVF) train on the first batch.
    fn add(&mut self, data: &[f32], ids: &[i64], threads: usize) -> Result<()>;
    /// Removes `ids` (unknown ones are skipped); returns how many were live.
    fn remove(&mut self, ids: &[i64]) -> usize;
    /// The `k` nearest live (and allowed) vectors of each row of `queries`.
    fn search(
        &self,
        queries: &[f32],
        k: usize,
        allowed: Option<&Allowed>,
        opts: &SearchOptions<'_>,
    ) -> Result<Hits>;
    /// The file header entries and sections of this index (see [`file`]); `extra` entries
    /// (e.g. a caller's parameters or the sequence number a snapshot covers) are added to the
    /// header.
    fn encode(&self, extra: &Map<String, Value>) -> Result<Vec<u8>>;

    /// Number of live vectors.
    fn len(&self) -> usize {
        self.id_map().n_live()
    }
    /// True when no vector is live.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Ids of the live vectors (in slot order).
    fn ids(&self) -> Vec<i64> {
        self.id_map().live_ids()
    }
    /// True when `id` is live.
    fn contains(&self, id: i64) -> bool {
        self.id_map().slot(id).is_some()
    }
    /// The slots a filter allows, for [`Index::search`].
    fn allowed(&self, filter: Filter<'_>) -> Allowed {
        filter.allowed(self.id_map())
    }
    /// Every live (and allowed) vector within `radius` of each query (similarity at least
    /// `radius` for inner product), closest first.
    fn range_search(
        &self,
        queries: &[f32],
        radius: Radius<'_, f32>,
        allowed: Option<&Allowed>,
        opts: &SearchOptions<'_>,
    ) -> Result<RangeResult<f32>> {
        range_by_knn(self, queries, radius, allowed, opts)
    }
    /// Size and memory.
    fn stats(&self) -> Stats {
        Stats {
            len: self.len(),
            slots: self.id_map().len(),
            memory_bytes: self.memory_usage(),
        }
    }
    /// Writes the index to `path` atomically and durably (see [`crate::io::write_atomic`]).
    fn write(&self, path: &Path, extra: &Map<String, Value>) -> Result<()> {
        crate::io::write_atomic(path, &self.encode(extra)?)
    }
}

/// The concrete index behind a `dyn Index`, for kind-specific calls (`Hnsw::consolidate`,
/// `Ivf::train`): `index.as_any().downcast_ref::<Hnsw>()`.
pub trait AsAny {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Range search on top of k-search: `k` starts at 32 and doubles, for the queries whose
/// farthest result is still inside the radius, until it covers every allowed vector.
pub fn range_by_knn<I: Index + ?Sized>(
    index: &I,
    queries: &[f32],
    radius: Radius<'_, f32>,
    allowed: Option<&Allowed>,
    opts: &SearchOptions<'_>,
) -> Result<RangeResult<f32>> {
    let d = index.dim();
    if !queries.len().is_multiple_of(d) {
        return Err(Error::DimensionMismatch {
            expected: d,
            got: queries.len() % d,
        });
    }
    let nq = queries.len() / d;
    let r = |q: usize| match radius {
        Radius::All(r) => r,
        Radius::PerQuery(r) => r[q],
    };
    if let Radius::PerQuery(r) = radius {
        if r.len() != nq {
            return Err(Error::Shape {
                name: "radius",
                expected: nq,
                got: r.len(),
            });
        }
    }
    let sim = index.metric().is_similarity();
    if let Some(bad) = (0..nq)
        .map(r)
        .find(|&r| !r.is_finite() || (!sim && r < 0.0))
    {
        return Err(Error::param(
            "radius",
            "finite values (non-negative for distances)",
            bad,
        ));
    }
    let inside = |dist: f32, q: usize| if sim { dist >= r(q) } else { dist <= r(q) };
    let n = allowed.map_or(index.len(), Allowed::count);
    let mut hits: Vec<(Vec<f32>, Vec<i64>)> = vec![Default::default(); nq];
    let mut todo: Vec<usize> = (0..nq).collect();
    let mut k = n.clamp(1, 32);
    while !todo.is_empty() && n > 0 {
        let mut q_rows = Vec::with_capacity(todo.len() * d);
        for &q in &todo {
            q_rows.extend_from_slice(&queries[q * d..(q + 1) * d]);
        }
        let res = index.search(&q_rows, k, allowed, opts)?;
        let mut next = Vec::new();
        for (row, &q) in todo.iter().enumerate() {
            let (dist, ids) = (
                &res.distances[row * k..(row + 1) * k],
                &res.ids[row * k..(row + 1) * k],
            );
            let keep = |j: usize| ids[j] >= 0 && inside(dist[j], q);
            let h = &mut hits[q];
            h.0.clear();
            h.1.clear();
            for j in (0..k).filter(|&j| keep(j)) {
                h.0.push(dist[j]);
                h.1.push(ids[j]);
            }
            if keep(k - 1) && k < n {
                next.push(q);
            }
        }
        todo = next;
        k = (2 * k).min(n);
    }
    let mut out = RangeResult {
        lims: Vec::with_capacity(nq + 1),
        distances: Vec::new(),
        indices: Vec::new(),
    };
    out.lims.push(0);
    for (dist, ids) in hits {
        out.distances.extend(dist);
        out.indices.extend(ids);
        out.lims.push(out.indices.len() as i64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
