//! Exact (brute-force) k-nearest and radius search.
//!
//! Layout: the base is a row-major n × d slice, optionally with its squared row norms cached by
//! the caller (an index or a fitted estimator computes them once).
//!
//! Work is split into tasks = (block of queries) × (range of base rows). Many queries: one task
//! per query block, each scanning the whole base. Few queries: the base is split so every core
//! streams its own part (the memory-bandwidth path for single queries); the per-split top-k lists
//! are merged at the end.
//!
//! Dot-based metrics (sqeuclidean, euclidean, inner product, cosine) with enough queries use the
//! tiled kernel: a query block × base block of dot products is computed by a cache-blocked SIMD
//! matrix product into a buffer of at most `QB × BB` values, and fed straight into per-query
//! top-k heaps — the full query × base distance matrix never exists, so memory is bounded by a
//! tile whatever n and the number of queries. The tile's values are *approximate* (the expanded
//! form ‖x‖² + ‖y‖² − 2⟨x, y⟩ loses precision on near-duplicates; the bf16 pass, see [`tile`],
//! rounds its inputs), so each is turned into a proven lower bound of the exact key; a candidate
//! whose bound beats the query's current k-th key is re-scored on the spot with the direct kernel
//! (its rows are still in cache) and only that exact key enters the heap. Results are therefore
//! exactly those of the direct computation: a point queried against itself comes back at 0,
//! first. Float32 tiles come from packed micro-kernels on AVX-512 (bf16 products where the CPU has
//! AVX-512 BF16, else f32 FMAs; see [`tile`]); elsewhere, and for float64, a single-threaded GEMM
//! (the `gemm` crate) fills the tile.
//!
//! Other metrics compute each key directly with the SIMD kernels, blocked over base rows for cache
//! reuse.
//!
//! Ranking: what enters a heap, and what a radius test decides on, is always the *canonical* key
//! ([`Metric::canonical_key`]: coordinates in order, in f64, no fused multiply-add — scikit-learn's
//! tree arithmetic), never the SIMD kernel's value, whose summation order differs between SIMD
//! levels. The SIMD values (and the tiles' bounds) only screen: a row is re-scored canonically
//! when its value, widened by the bound of [`Metric::screen_slack`], could beat the query's k-th
//! canonical key (or reach the radius). So results — ties included — are the same on every CPU
//! and SIMD level, the same as the trees' (which sum in the same order), and float32 data rank by
//! their float64 distances as scikit-learn ranks them; the distances returned are the canonical
//! ones rounded to the data's type. Cost: O(nq · n · d) time; O(threads · QB · BB + nq · k)
//! memory.

use std::borrow::Cow;

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::metric::{squared_norms, Metric, Slack};
use crate::pool;
use crate::simd::Simd;
use crate::topk::{sort_candidates, Candidate, TopK};

pub mod index;
pub mod tile;

/// Query rows per block in the tiled path (larger blocks pack the base fewer times).
const QB: usize = 512;
/// Base rows per block in the tiled path (QB × BB values per buffer: 512 KiB in f32).
const BB: usize = 256;
/// Base rows per block in the direct path.
const BB_DIRECT: usize = 256;
/// Fewer queries than this use the direct (memory-streaming) path even for dot-based metrics.
const GEMM_MIN_QUERIES: usize = 16;
/// Searches with fewer multiply-adds than this (≈ 0.1 ms on one core) run on the calling thread.
const SMALL_WORK: f64 = 4e6;
/// Minimum base rows per split when the base is divided among cores.
const MIN_SPLIT_ROWS: usize = 1024;
/// Rows re-scored together once a query's heap is full (see [`Plan::scan_knn`]).
const RESCORE_LANES: usize = 4;
/// Base rows (and query rows) sampled to choose the shift of the tiled passes.
const SHIFT_SAMPLE: usize = 1024;
/// The tiled passes shift the data when the shift at least halves the sampled squared norms.
const SHIFT_GAIN: f64 = 0.5;
/// Few-query searches compute keys directly instead of streaming the bf16 copy when the shift
/// would shrink the squared norms below this fraction: the copy's bound (relative to ‖x‖‖y‖) then
/// admits almost every row, and each admitted row costs a canonical re-score.
const STREAM_OFFCENTRE: f64 = 1.0 / 32.0;

/// A read-only view of the base vectors.
#[derive(Clone, Copy, Debug)]
pub struct Base<'a, T> {
    /// Row-major n × d values.
    pub data: &'a [T],
    /// Number of features.
    pub d: usize,
    /// Squared norms of the rows, if the caller has them cached (see [`squared_norms`]).
    pub norms: Option<&'a [T]>,
    /// A bf16 copy of float32 data ([`tile::to_bf16`]), if the caller keeps one: few-query
    /// searches then stream half the bytes and re-score only the candidates its bound keeps.
    pub bf16: Option<&'a [u16]>,
}

impl<'a, T: Float> Base<'a, T> {
    pub fn new(data: &'a [T], d: usize) -> Self {
        Base {
            data,
            d,
            norms: None,
            bf16: None,
        }
    }

    pub fn with_bf16(mut self, copy: &'a [u16]) -> Self {
        self.bf16 = Some(copy);
        self
    }

    pub fn with_norms(mut self, norms: &'a [T]) -> Self {
        self.norms = Some(norms);
        self
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.data.len().checked_div(self.d).unwrap_or(0)
    }

    fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
}

/// How a search runs.
#[derive(Clone, Copy)]
pub struct SearchParams<'a> {
    /// Worker threads (see [`pool::resolve_threads`]).
    pub threads: usize,
    /// Polled between waves of work; returning true stops the search with [`Error::Interrupted`].
    pub interrupt: Option<&'a (dyn Fn() -> bool + Sync)>,
    /// Allow the bf16 first pass for float32 batches (results are the same either way).
    pub bf16: bool,
}

impl Default for SearchParams<'_> {
    fn default() -> Self {
        SearchParams {
            threads: pool::resolve_threads(None),
            interrupt: None,
            bf16: true,
        }
    }
}

/// k-nearest result: `nq × k` row-major distances and indices, closest first. Missing neighbours
/// (k > n) are index −1 with distance +inf (−inf for inner product).
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbors<T> {
    pub k: usize,
    pub distances: Vec<T>,
    pub indices: Vec<i64>,
}

/// Radius result in CSR form: neighbours of query i are `lims[i]..lims[i+1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeResult<T> {
    pub lims: Vec<i64>,
    pub distances: Vec<T>,
    pub indices: Vec<i64>,
}

/// Radius for a range search: one for all queries, or one per query.
#[derive(Clone, Copy, Debug)]
pub enum Radius<'a, T> {
    All(T),
    PerQuery(&'a [T]),
}

impl<T: Float> Radius<'_, T> {
    fn get(&self, i: usize) -> T {
        match self {
            Radius::All(r) => *r,
            Radius::PerQuery(r) => r[i],
        }
    }
}

/// Searches the k nearest rows of `base` for every row of `queries` (row-major, d columns).
///
/// ```
/// use knnkit_core::flat::{knn, Base, SearchParams};
/// use knnkit_core::metric::Metric;
/// let base = [0.0f32, 0.0, 1.0, 0.0, 5.0, 5.0];
/// let res = knn(&Base::new(&base, 2), &[0.9f32, 0.1], 2, Metric::Euclidean, &SearchParams::default()).unwrap();
/// assert_eq!(res.indices, vec![1, 0]);
/// ```
pub fn knn<T: Float>(
    base: &Base<T>,
    queries: &[T],
    k: usize,
    metric: Metric,
    params: &SearchParams,
) -> Result<Neighbors<T>> {
    knn_with(base, queries, k, metric, params, Shift::Auto)
}

/// Whether the euclidean tiled passes shift the data (tests compare the choices; results are the
/// same whatever it is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shift {
    /// When the sampled norms shrink enough ([`SHIFT_GAIN`]).
    Auto,
    /// Never.
    #[cfg_attr(not(test), allow(dead_code))]
    Off,
    /// Always (by the sampled mean), on the tiled passes.
    #[cfg_attr(not(test), allow(dead_code))]
    Always,
}

fn knn_with<T: Float>(
    base: &Base<T>,
    queries: &[T],
    k: usize,
    metric: Metric,
    params: &SearchParams,
    shift: Shift,
) -> Result<Neighbors<T>> {
    let plan = Plan::new(base, queries, metric, params, shift)?;
    if k == 0 {
        return Err(Error::param("k", "k >= 1", k));
    }
    // k is only a bound (k > n pads), but the padded result is nq × k: allocate it fallibly, so
    // an absurd k is an error rather than an abort.
    let too_big = || Error::param("k", "a k whose n_queries × k results fit in memory", k);
    let total = plan.nq.checked_mul(k).ok_or_else(too_big)?;
    let mut distances: Vec<T> = Vec::new();
    let mut indices: Vec<i64> = Vec::new();
    distances
        .try_reserve_exact(total)
        .and_then(|()| indices.try_reserve_exact(total))
        .map_err(|_| too_big())?;
    let per_query = plan.run(
        |task| plan.scan_knn(task, k),
        |_, parts| plan.finish_knn(k, parts),
    )?;
    let missing = metric.missing::<T>();
    for cands in per_query {
        for &(key, i) in &cands {
            distances.push(T::from_f64(metric.key_to_distance(key)));
            indices.push(i as i64);
        }
        for _ in cands.len()..k {
            distances.push(missing);
            indices.push(-1);
        }
    }
    Ok(Neighbors {
        k,
        distances,
        indices,
    })
}

/// Finds every base row within `radius` of each query (distance ≤ radius; for inner product,
/// similarity ≥ radius). Results are sorted closest first when `sort`, else in index order.
pub fn range_search<T: Float>(
    base: &Base<T>,
    queries: &[T],
    radius: Radius<T>,
    metric: Metric,
    sort: bool,
    params: &SearchParams,
) -> Result<RangeResult<T>> {
    range_search_with(base, queries, radius, metric, sort, params, Shift::Auto)
}

fn range_search_with<T: Float>(
    base: &Base<T>,
    queries: &[T],
    radius: Radius<T>,
    metric: Metric,
    sort: bool,
    params: &SearchParams,
    shift: Shift,
) -> Result<RangeResult<T>> {
    let plan = Plan::new(base, queries, metric, params, shift)?;
    match radius {
        Radius::All(r) => check_radius(r, metric)?,
        Radius::PerQuery(rs) => {
            if rs.len() != plan.nq {
                return Err(Error::Shape {
                    name: "radius",
                    expected: plan.nq,
                    got: rs.len(),
                });
            }
            rs.iter().try_for_each(|&r| check_radius(r, metric))?;
        }
    }
    let per_query = plan.run(
        |task| plan.scan_range(task, radius),
        |_, parts| {
            let mut all: Vec<Candidate<f64>> = parts.into_iter().flatten().collect();
            if sort {
                // Candidates hold distances; a similarity sorts largest first (negation is exact).
                let sim = metric.is_similarity();
                if sim {
                    all.iter_mut().for_each(|c| c.0 = -c.0);
                }
                sort_candidates(&mut all);
                if sim {
                    all.iter_mut().for_each(|c| c.0 = -c.0);
                }
            }
            all
        },
    )?;
    let total: usize = per_query.iter().map(Vec::len).sum();
    let mut lims = Vec::with_capacity(plan.nq + 1);
    let mut distances = Vec::with_capacity(total);
    let mut indices = Vec::with_capacity(total);
    lims.push(0);
    for cands in per_query {
        for (dist, i) in cands {
            distances.push(T::from_f64(dist));
            indices.push(i as i64);
        }
        lims.push(indices.len() as i64);
    }
    Ok(RangeResult {
        lims,
        distances,
        indices,
    })
}

fn check_radius<T: Float>(r: T, metric: Metric) -> Result<()> {
    let ok = if metric.is_similarity() {
        !r.to_f64().is_nan()
    } else {
        r >= T::ZERO
    };
    if ok {
        Ok(())
    } else {
        Err(Error::param("radius", "a non-negative number", r.to_f64()))
    }
}

/// One unit of work: queries `q0..q1` against base rows `b0..b1`.
#[derive(Clone, Copy, Debug)]
struct Task {
    q0: usize,
    q1: usize,
    b0: usize,
    b1: usize,
}

/// Everything a search needs, validated once.
struct Plan<'a, T: Float> {
    base: Base<'a, T>,
    norms: Cow<'a, [T]>,
    queries: &'a [T],
    qnorms: Vec<T>,
    nq: usize,
    n: usize,
    metric: Metric,
    pass: Pass,
    /// Square roots of the norms (for the error bounds of the tiled passes and the screen of the
    /// inner product).
    qroots: Vec<T>,
    broots: Vec<T>,
    /// Bound between the SIMD keys and the canonical ones (see [`Metric::screen_slack`]).
    slack: Slack,
    /// Relative error of a tile's dot products, as a multiple of ‖x‖‖y‖.
    dot_error: T,
    /// Euclidean tiled passes: the vector subtracted from queries and base rows before their dot
    /// products are taken (see [`choose_shift`]); distances do not change, but the tile's error
    /// bound, which scales with the norms, does.
    shift: Option<Vec<T>>,
    params: SearchParams<'a>,
}

/// How the keys of a task are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Exact keys, one pair at a time.
    Direct,
    /// Approximate dot products from a GEMM in the data's precision.
    Gemm,
    /// Approximate dot products from packed f32 tiles (float32 on AVX-512).
    Tile32,
    /// Approximate dot products from bf16 copies (float32 only).
    Bf16,
    /// Few queries, float32: approximate dot products streamed from the base's bf16 copy.
    Stream,
}

impl<'a, T: Float> Plan<'a, T> {
    fn new(
        base: &Base<'a, T>,
        queries: &'a [T],
        metric: Metric,
        params: &SearchParams<'a>,
        want_shift: Shift,
    ) -> Result<Self> {
        let d = base.d;
        if d == 0 {
            return Err(Error::param("dimension", "at least 1 feature", 0));
        }
        if !base.data.len().is_multiple_of(d) {
            return Err(Error::Shape {
                name: "base",
                expected: base.data.len() / d * d,
                got: base.data.len(),
            });
        }
        if !queries.len().is_multiple_of(d) {
            return Err(Error::param(
                "queries",
                format!("a length that is a multiple of d = {d}"),
                queries.len(),
            ));
        }
        let n = base.n();
        let nq = queries.len() / d;
        let needs_norms = metric.is_dot_based();
        let norms = match (needs_norms, base.norms) {
            (false, _) => Cow::Borrowed(&[][..]),
            (true, Some(nr)) if nr.len() == n => Cow::Borrowed(nr),
            (true, Some(nr)) => {
                return Err(Error::Shape {
                    name: "base norms",
                    expected: n,
                    got: nr.len(),
                })
            }
            (true, None) => Cow::Owned(squared_norms(base.data, d)),
        };
        let qnorms = if needs_norms {
            squared_norms(queries, d)
        } else {
            Vec::new()
        };
        if let Some(copy) = base.bf16 {
            if copy.len() != base.data.len() {
                return Err(Error::Shape {
                    name: "bf16 copy",
                    expected: base.data.len(),
                    got: copy.len(),
                });
            }
        }
        let euclidean = matches!(metric, Metric::Euclidean | Metric::SqEuclidean);
        let mut shift = None;
        let pass = if !(metric.is_dot_based() && d >= 4) {
            Pass::Direct
        } else if nq < GEMM_MIN_QUERIES {
            let far =
                || choose_shift(base.data, queries, d).is_some_and(|(_, r)| r < STREAM_OFFCENTRE);
            if base.bf16.is_some() && T::is_f32() && !(euclidean && far()) {
                Pass::Stream
            } else {
                Pass::Direct
            }
        } else if T::is_f32() && params.bf16 && tile::Kind::Bf16.enabled(Simd::get()) {
            Pass::Bf16
        } else if T::is_f32() && tile::Kind::F32.enabled(Simd::get()) {
            Pass::Tile32
        } else {
            Pass::Gemm
        };
        if euclidean && matches!(pass, Pass::Gemm | Pass::Tile32 | Pass::Bf16) {
            shift = choose_shift(base.data, queries, d)
                .filter(|&(_, ratio)| match want_shift {
                    Shift::Auto => ratio < SHIFT_GAIN,
                    Shift::Off => false,
                    Shift::Always => true,
                })
                .map(|(mu, _)| mu);
        }
        let dot_error = match pass {
            Pass::Bf16 => tile::dot_error(d),
            Pass::Stream => tile::stream_dot_error(d),
            _ => (d as f64 + 4.0) * T::EPSILON.to_f64(),
        };
        let roots = |v: &[T]| -> Vec<T> {
            if pass == Pass::Direct && metric != Metric::InnerProduct {
                Vec::new()
            } else {
                v.iter().map(|x| x.sqrt()).collect()
            }
        };
        let (qroots, broots) = (roots(&qnorms), roots(&norms));
        Ok(Plan {
            base: *base,
            norms,
            queries,
            qnorms,
            nq,
            n,
            metric,
            pass,
            qroots,
            broots,
            dot_error: T::from_f64(dot_error),
            slack: metric.screen_slack::<T>(d),
            shift,
            params: *params,
        })
    }

    fn query(&self, i: usize) -> &'a [T] {
        &self.queries[i * self.base.d..(i + 1) * self.base.d]
    }

    fn qnorm(&self, i: usize) -> T {
        self.qnorms.get(i).copied().unwrap_or(T::ZERO)
    }

    fn bnorm(&self, j: usize) -> T {
        self.norms.get(j).copied().unwrap_or(T::ZERO)
    }

    /// The canonical key between query `i` and base row `j` (what results rank by).
    fn canonical_key(&self, i: usize, j: usize) -> f64 {
        self.metric.canonical_key(self.query(i), self.base.row(j))
    }

    /// [`Plan::canonical_key`] of query `i` against several base rows at once.
    fn canonical_keys<const L: usize>(&self, i: usize, js: [usize; L]) -> [f64; L] {
        self.metric
            .canonical_keys(self.query(i), js.map(|j| self.base.row(j)))
    }

    /// Whether a row whose SIMD key (or a lower bound of it) is `lower` may have a canonical
    /// key `<= thr` (`thr` a canonical key; +inf admits everything).
    #[inline(always)]
    fn admit(&self, lower: T, thr: f64, i: usize, j: usize) -> bool {
        let v = lower.to_f64();
        match self.slack {
            Slack::Relative(_) | Slack::Absolute(_) => v <= self.cutoff(thr).unwrap_or(thr),
            Slack::Dot(c) => {
                let scale = self.qroots[i].to_f64() * self.broots[j].to_f64();
                v <= thr + c * scale
            }
        }
    }

    /// The largest SIMD key (or lower bound) [`Plan::admit`] lets through for threshold `thr`,
    /// when that does not depend on the row (every slack but the inner product's).
    #[inline(always)]
    fn cutoff(&self, thr: f64) -> Option<f64> {
        match self.slack {
            Slack::Relative(f) => Some(if thr > 0.0 { thr * f } else { thr / f }),
            Slack::Absolute(a) => Some(thr + a),
            Slack::Dot(_) => None,
        }
    }

    /// SIMD key between query `i` and base row `j` (a screen for the canonical key).
    fn exact_key(&self, i: usize, j: usize) -> T {
        self.metric.key(
            self.query(i),
            self.base.row(j),
            self.qnorm(i),
            self.bnorm(j),
        )
    }

    /// Runs the tasks on the pool (an interrupt stops it between tasks) and merges each query's
    /// per-split parts with `finish`.
    fn run<R: Send>(
        &self,
        scan: impl Fn(Task) -> Vec<Vec<Candidate<f64>>> + Sync,
        finish: impl Fn(usize, Vec<Vec<Candidate<f64>>>) -> R + Sync,
    ) -> Result<Vec<R>> {
        // Small searches (well under a millisecond) run on the calling thread: handing them to a
        // pool and watching for Ctrl-C would cost more than the search.
        let small = (self.nq as f64) * (self.n as f64) * (self.base.d as f64) < SMALL_WORK;
        let threads = if small { 1 } else { self.params.threads.max(1) };
        let qb = if matches!(self.pass, Pass::Gemm | Pass::Tile32 | Pass::Bf16) {
            QB
        } else if self.metric.is_dot_based() {
            GEMM_MIN_QUERIES
        } else {
            32
        };
        let qb = qb.min(self.nq.div_ceil(threads).max(1));
        let nqblocks = self.nq.div_ceil(qb);
        // Split the base when there are too few query blocks to keep every thread busy.
        let splits = if nqblocks >= 4 * threads || self.n <= MIN_SPLIT_ROWS {
            1
        } else {
            (4 * threads)
                .div_ceil(nqblocks)
                .min(self.n.div_ceil(MIN_SPLIT_ROWS))
                .max(1)
        };
        let split_len = self.n.div_ceil(splits).max(1);
        let tasks: Vec<Task> = (0..nqblocks)
            .flat_map(|b| {
                let (q0, q1) = (b * qb, ((b + 1) * qb).min(self.nq));
                (0..splits).map(move |s| Task {
                    q0,
                    q1,
                    b0: (s * split_len).min(self.n),
                    b1: ((s + 1) * split_len).min(self.n),
                })
            })
            .collect();
        let work = |stop: &AtomicBool| {
            let scan_one = |t: &Task| {
                if stop.load(Ordering::Relaxed) {
                    Vec::new()
                } else {
                    scan(*t)
                }
            };
            let parts: Vec<Vec<Vec<Candidate<f64>>>> = if small {
                tasks.iter().map(scan_one).collect()
            } else {
                tasks.par_iter().map(scan_one).collect()
            };
            if stop.load(Ordering::Relaxed) {
                return Vec::new();
            }
            // Regroup: for each query, its parts from every split (in split order).
            let mut per_query: Vec<Vec<Vec<Candidate<f64>>>> =
                (0..self.nq).map(|_| Vec::with_capacity(splits)).collect();
            for (t, part) in tasks.iter().zip(parts) {
                for (off, cands) in part.into_iter().enumerate() {
                    per_query[t.q0 + off].push(cands);
                }
            }
            if small {
                let finished = per_query.into_iter().enumerate();
                finished.map(|(q, parts)| finish(q, parts)).collect()
            } else {
                let finished = per_query.into_par_iter().enumerate();
                finished.map(|(q, parts)| finish(q, parts)).collect()
            }
        };
        if small {
            Ok(work(&AtomicBool::new(false)))
        } else {
            pool::run_interruptible(threads, self.params.interrupt, work)
        }
    }

    /// Top-k of one task, per query, best first, by canonical key.
    ///
    /// Once a query's heap is full, admitted rows are re-scored [`RESCORE_LANES`] at a time
    /// ([`Metric::canonical_keys`]), in index order: a row admitted against a threshold that a
    /// row of its batch then lowers is only re-scored in vain (its key fails `key <= thr`), so the
    /// heap sees the same rows as one at a time.
    fn scan_knn(&self, t: Task, k: usize) -> Vec<Vec<Candidate<f64>>> {
        // A split of m rows contributes at most m candidates (k itself may be huge).
        let k = k.min(t.b1 - t.b0).max(1);
        let mut heaps: Vec<TopK<f64>> = (t.q0..t.q1).map(|_| TopK::new(k)).collect();
        self.scan(t, |qi, j0, bounds| {
            let heap = &mut heaps[qi - t.q0];
            let mut thr = heap.threshold();
            let mut cut = self.cutoff(thr);
            let mut pending = [0usize; RESCORE_LANES];
            let mut np = 0;
            let n = bounds.len();
            // A heap that this block can fill is seeded with the block's rows of smallest bounds
            // first: the threshold is then near its final value from the start, rather than the
            // k-th of the first rows met (which admits about k·ln(n/k) rows in vain).
            let mut seeded = Vec::new();
            if heap.len() < k && k - heap.len() < n {
                let picks = smallest(bounds, k - heap.len());
                seeded = vec![false; n];
                for o in picks {
                    seeded[o] = true;
                    heap.push(self.canonical_key(qi, j0 + o), j0 + o);
                }
                thr = heap.threshold();
                cut = self.cutoff(thr);
            }
            let mut off = 0;
            while off < n {
                if let Some(c) = cut {
                    // Skip runs of rows whose bounds all exceed the cutoff, 8 at a time (a
                    // branch-free test the compiler vectorises).
                    while off + 8 <= n
                        && !bounds[off..off + 8]
                            .iter()
                            .fold(false, |any, &l| any | (l.to_f64() <= c))
                    {
                        off += 8;
                    }
                    if off >= n {
                        break;
                    }
                    // (NaN bounds fail the test, as in `admit`)
                    let admitted = bounds[off].to_f64() <= c;
                    if !admitted {
                        off += 1;
                        continue;
                    }
                } else if !self.admit(bounds[off], thr, qi, j0 + off) {
                    off += 1;
                    continue;
                }
                if seeded.get(off) == Some(&true) {
                    off += 1;
                    continue;
                }
                let j = j0 + off;
                off += 1;
                if heap.len() < k {
                    heap.push(self.canonical_key(qi, j), j);
                    thr = heap.threshold();
                    cut = self.cutoff(thr);
                    continue;
                }
                pending[np] = j;
                np += 1;
                if np == RESCORE_LANES {
                    let keys = self.canonical_keys(qi, pending);
                    for (&key, &j) in keys.iter().zip(&pending) {
                        if key <= thr {
                            heap.push(key, j);
                            thr = heap.threshold();
                        }
                    }
                    cut = self.cutoff(thr);
                    np = 0;
                }
            }
            for &j in &pending[..np] {
                let key = self.canonical_key(qi, j);
                if key <= thr {
                    heap.push(key, j);
                    thr = heap.threshold();
                }
            }
        });
        heaps.into_iter().map(TopK::into_sorted).collect()
    }

    /// Radius matches of one task, per query, in index order, as (canonical distance, index).
    /// A row matches when its canonical key is within the radius in key units (as scikit-learn's
    /// trees decide: `rdist <= r²` for euclidean, `<= rᵖ` for minkowski).
    fn scan_range(&self, t: Task, radius: Radius<T>) -> Vec<Vec<Candidate<f64>>> {
        let metric = self.metric;
        let mut found: Vec<Vec<Candidate<f64>>> = (t.q0..t.q1).map(|_| Vec::new()).collect();
        self.scan(t, |qi, j0, bounds| {
            let rkey = metric.distance_to_key(radius.get(qi).to_f64());
            let hits = &mut found[qi - t.q0];
            for (off, &lower) in bounds.iter().enumerate() {
                let j = j0 + off;
                if self.admit(lower, rkey, qi, j) {
                    let key = self.canonical_key(qi, j);
                    if key <= rkey {
                        hits.push((metric.key_to_distance(key), j));
                    }
                }
            }
        });
        found
    }

    /// Calls `visit(query, first_row, bounds)` for every query of the task and every block of
    /// base rows, with a lower bound of each row's exact key (the exact key on the direct pass).
    fn scan(&self, t: Task, mut visit: impl FnMut(usize, usize, &[T])) {
        match self.pass {
            Pass::Direct => self.scan_direct(t, &mut visit),
            Pass::Stream => self.scan_stream(t, &mut visit),
            Pass::Gemm | Pass::Tile32 | Pass::Bf16 => self.scan_tiled(t, &mut visit),
        }
    }

    fn scan_direct(&self, t: Task, visit: &mut impl FnMut(usize, usize, &[T])) {
        let mut keys = [T::ZERO; BB_DIRECT];
        let mut j0 = t.b0;
        while j0 < t.b1 {
            let j1 = (j0 + BB_DIRECT).min(t.b1);
            for qi in t.q0..t.q1 {
                for j in j0..j1 {
                    keys[j - j0] = self.exact_key(qi, j);
                }
                visit(qi, j0, &keys[..j1 - j0]);
            }
            j0 = j1;
        }
    }

    fn scan_stream(&self, t: Task, visit: &mut impl FnMut(usize, usize, &[T])) {
        let d = self.base.d;
        let copy = self.base.bf16.expect("stream pass needs the bf16 copy");
        let queries = T::as_f32(self.queries).expect("stream pass is float32 only");
        let dot = crate::metric::kernels::dot_bf16(Simd::get());
        let mut buf = [T::ZERO; BB_DIRECT];
        let mut j0 = t.b0;
        while j0 < t.b1 {
            let j1 = (j0 + BB_DIRECT).min(t.b1);
            for qi in t.q0..t.q1 {
                let q = &queries[qi * d..(qi + 1) * d];
                let row = &mut buf[..j1 - j0];
                for (j, g) in (j0..j1).zip(row.iter_mut()) {
                    *g = T::from_f64(dot(q, &copy[j * d..(j + 1) * d]) as f64);
                }
                let n = row.len();
                let (bn, br) = (&self.norms[j0..j0 + n], &self.broots[j0..j0 + n]);
                self.lower_bounds(row, (self.qnorm(qi), self.qroots[qi]), bn, br);
                visit(qi, j0, row);
            }
            j0 = j1;
        }
    }

    fn scan_tiled(&self, t: Task, visit: &mut impl FnMut(usize, usize, &[T])) {
        let d = self.base.d;
        let m = t.q1 - t.q0;
        let mut buf = vec![T::ZERO; m * BB];
        let mut lhs = &self.queries[t.q0 * d..t.q1 * d];
        let (mut qn, mut qr) = (&self.qnorms[t.q0..t.q1], &self.qroots[t.q0..t.q1]);
        // With a shift, the task's queries and each base block are shifted (and their norms
        // taken) here: O((m + n) · d) work against the tiles' O(m · n · d), and no second copy
        // of the base.
        let shifted_queries;
        let (shifted_qn, shifted_qr);
        if let Some(mu) = &self.shift {
            shifted_queries = shift_rows(lhs, mu);
            shifted_qn = squared_norms(&shifted_queries, d);
            shifted_qr = shifted_qn.iter().map(|x| x.sqrt()).collect::<Vec<T>>();
            lhs = &shifted_queries;
            (qn, qr) = (&shifted_qn, &shifted_qr);
        }
        let (mut srows, mut sroots) = (Vec::new(), Vec::new());
        let mut snorms: Vec<T>;
        let (mut qpack, mut bpack) = (Vec::new(), Vec::new());
        let kind = match self.pass {
            Pass::Bf16 => Some(tile::Kind::Bf16),
            Pass::Tile32 => Some(tile::Kind::F32),
            _ => None,
        };
        if let Some(kind) = kind {
            let lhs = T::as_f32(lhs).expect("tile passes are float32 only");
            tile::pack_queries(kind, lhs, d, &mut qpack);
        }
        let mut j0 = t.b0;
        while j0 < t.b1 {
            let j1 = (j0 + BB).min(t.b1);
            let nb = j1 - j0;
            let mut rhs = &self.base.data[j0 * d..j1 * d];
            let (mut bn, mut br) = (&self.norms[j0..j1], &self.broots[j0..j1]);
            if let Some(mu) = &self.shift {
                srows.clear();
                srows.extend(
                    rhs.chunks_exact(d)
                        .flat_map(|r| r.iter().zip(mu).map(|(&x, &c)| x - c)),
                );
                snorms = squared_norms(&srows, d);
                sroots.clear();
                sroots.extend(snorms.iter().map(|x| x.sqrt()));
                (rhs, bn, br) = (&srows, &snorms, &sroots);
            }
            match kind {
                Some(kind) => {
                    tile::pack_base(kind, T::as_f32(rhs).expect("float32"), d, &mut bpack);
                    let out = T::as_f32_mut(&mut buf[..m * nb]).expect("float32");
                    tile::dots(Simd::get(), kind, &qpack, m, &bpack, nb, d, out, nb);
                }
                None => gemm_nt(m, nb, d, lhs, rhs, &mut buf[..m * nb]),
            }
            for qi in t.q0..t.q1 {
                let row = &mut buf[(qi - t.q0) * nb..(qi - t.q0 + 1) * nb];
                let q = qi - t.q0;
                self.lower_bounds(row, (qn[q], qr[q]), bn, br);
                visit(qi, j0, row);
            }
            j0 = j1;
        }
    }

    /// Turns a row of approximate dot products (a query, with squared norm and norm `q`,
    /// against base rows of squared norms `bn` and norms `br`) into lower bounds of the exact
    /// keys, in place.
    ///
    /// With |ĝ − g| ≤ e·‖x‖‖y‖ for the tile's dot products (e = `dot_error`), and every f32/f64
    /// step (norms, the expanded form, the direct kernel the result is compared with) within
    /// (d + 4)·ε relative, the margins below bound |approximate key − exact key|.
    ///
    /// Shifted data (euclidean; the norms are then those of the shifted rows): x' = fl(x − μ) is
    /// within u·|x'ᵢ|/(1 − u) of x − μ in each coordinate (u = ε/2), so ‖x' − y'‖ is within
    /// η = 1.01·u·(‖x'‖ + ‖y'‖) of ‖x − y‖ and the squared distances differ by at most
    /// η·(2‖x' − y'‖ + η) ≤ 2.03·u·(‖x'‖ + ‖y'‖)² ≤ 4.06·u·(‖x'‖² + ‖y'‖²) = 2.03·ε·(‖x'‖² +
    /// ‖y'‖²): taking f = (d + 5)·ε instead of (d + 4)·ε adds 4·ε·(‖x'‖² + ‖y'‖²) to the margin.
    fn lower_bounds(&self, row: &mut [T], q: (T, T), bn: &[T], br: &[T]) {
        let (qn, qr) = q;
        let e = self.dot_error;
        let extra = if self.shift.is_some() { 5 } else { 4 };
        let f = T::from_usize(self.base.d + extra) * T::EPSILON;
        let two = T::from_f64(2.0);
        let four = T::from_f64(4.0);
        match self.metric {
            Metric::InnerProduct => {
                let c = (e + two * f) * qr;
                for (g, &b) in row.iter_mut().zip(br) {
                    *g = -*g - c * b;
                }
            }
            Metric::Cosine => {
                let slack = two * e + four * f;
                for (g, &b) in row.iter_mut().zip(bn) {
                    *g = self.metric.key_from_dot(*g, qn, b) - slack;
                }
            }
            _ => {
                let c = two * e * qr;
                for ((g, &b), &r) in row.iter_mut().zip(bn).zip(br) {
                    let key = qn + b - (*g + *g);
                    *g = key - (c * r + four * f * (qn + b));
                }
            }
        }
    }

    /// Merges a query's per-split top-k lists.
    fn finish_knn(&self, k: usize, parts: Vec<Vec<Candidate<f64>>>) -> Vec<Candidate<f64>> {
        let mut all: Vec<Candidate<f64>> = parts.into_iter().flatten().collect();
        sort_candidates(&mut all);
        all.truncate(k);
        all
    }
}

/// Offsets of the `m` smallest values of `v` (0 < m < v.len(); NaN counts as largest), in
/// increasing order: a bounded max-heap, so a value that does not enter costs one comparison.
fn smallest<T: Float>(v: &[T], m: usize) -> Vec<usize> {
    use std::collections::BinaryHeap;
    // f64 ordered as its total order, as an integer (NaN above +inf for positive NaN).
    let ord = |x: T| {
        let b = x.to_f64().to_bits() as i64;
        b ^ ((((b >> 63) as u64) >> 1) as i64)
    };
    let mut heap: BinaryHeap<(i64, usize)> = v[..m].iter().map(|&x| ord(x)).zip(0..).collect();
    for (o, &x) in v.iter().enumerate().skip(m) {
        let key = ord(x);
        let mut top = heap.peek_mut().expect("m > 0");
        if key < top.0 {
            *top = (key, o);
        }
    }
    let mut picks: Vec<usize> = heap.into_iter().map(|(_, o)| o).collect();
    picks.sort_unstable();
    picks
}

/// The shift for the euclidean tiled passes and the ratio it buys: the mean of up to
/// [`SHIFT_SAMPLE`] base rows spread over the base, and Σ‖v − μ‖² / Σ‖v‖² over those rows and up
/// to [`SHIFT_SAMPLE`] / 4 query rows (both in f64). `None` for an empty base or all-zero samples.
///
/// Any shift gives the same results (the keys are recomputed directly); the mean only makes the
/// tiles' error bound, which scales with ‖x‖‖y‖, as small as the data's spread allows: on data far
/// from the origin (pixels, counts, un-centred embeddings) the unshifted bound admits almost every
/// row to the direct re-score.
fn choose_shift<T: Float>(base: &[T], queries: &[T], d: usize) -> Option<(Vec<T>, f64)> {
    if base.len() < d {
        return None;
    }
    fn sample<T>(rows: &[T], d: usize, most: usize) -> impl Iterator<Item = &[T]> {
        let count = rows.len() / d;
        let step = count.div_ceil(most).max(1);
        (0..count)
            .step_by(step)
            .map(move |i| &rows[i * d..(i + 1) * d])
    }
    let mut sum = vec![0f64; d];
    let mut taken = 0usize;
    for row in sample(base, d, SHIFT_SAMPLE) {
        sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x.to_f64());
        taken += 1;
    }
    let mu: Vec<T> = sum.iter().map(|&s| T::from_f64(s / taken as f64)).collect();
    let (mut before, mut after) = (0f64, 0f64);
    let rows = sample(base, d, SHIFT_SAMPLE).chain(sample(queries, d, SHIFT_SAMPLE / 4));
    for row in rows {
        for (&x, &c) in row.iter().zip(&mu) {
            let (x, c) = (x.to_f64(), c.to_f64());
            before += x * x;
            after += (x - c) * (x - c);
        }
    }
    (before > 0.0 && before.is_finite()).then(|| (mu, after / before))
}

/// `rows` (row-major, each as long as `mu`) minus `mu`, in the data's precision.
fn shift_rows<T: Float>(rows: &[T], mu: &[T]) -> Vec<T> {
    rows.chunks_exact(mu.len())
        .flat_map(|r| r.iter().zip(mu).map(|(&x, &c)| x - c))
        .collect()
}

/// out (m × n, row-major) = a (m × k, row-major) · b (n × k, row-major)ᵀ, single-threaded
/// (parallelism is ours, across tasks).
fn gemm_nt<T: Float>(m: usize, n: usize, k: usize, a: &[T], b: &[T], out: &mut [T]) {
    assert!(a.len() >= m * k && b.len() >= n * k && out.len() >= m * n);
    // SAFETY: the three slices are at least as long as the strides below address (checked above),
    // `out` does not alias `a` or `b` (it is a distinct &mut), and T is f32 or f64 (Float is only
    // implemented for those), which `gemm` supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            T::ZERO,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests;
