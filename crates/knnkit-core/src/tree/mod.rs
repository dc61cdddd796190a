//! Space-partitioning trees: the KD-tree and the ball tree, laid out exactly like scikit-learn's.
//!
//! Layout (flat arrays, no pointers, so a tree pickles or saves as it is):
//! - `idx_array` (n): a permutation of the row numbers; node `i` owns the points
//!   `idx_array[idx_start..idx_end]`.
//! - `nodes` (n_nodes): `idx_start`, `idx_end`, `is_leaf`, `radius` per node. The tree is complete
//!   and implicit: the children of node `i` are `2i + 1` and `2i + 2`; `n_nodes = 2^n_levels − 1`
//!   with `n_levels = 1 + floor(log2(max(1, (n − 1) / leaf_size)))`, so a leaf holds between
//!   `leaf_size` and `2 · leaf_size` points (all of them when `n < leaf_size`).
//! - `bounds`: KD-tree `(2, n_nodes, d)` (lower then upper corner of each node's tight box);
//!   ball tree `(1, n_nodes, d)` (each node's centroid; its radius is in `nodes`).
//! - `data` (n × d): the rows *in tree order* (`data[p] = X[idx_array[p]]`), so a leaf is one
//!   contiguous block. The caller keeps the original `X` if it needs it.
//!
//! Build: each node takes the dimension of largest spread and splits its points at the median
//! with the same selection routine as scikit-learn (libstdc++'s `nth_element` on (value, index),
//! replayed step by step in [`select`]), so `idx_array`, `nodes` and `bounds` equal
//! scikit-learn's. Subtrees are built in parallel. Cost: O(n · d · log(n / leaf_size)).
//!
//! Queries (k-nearest, radius, kernel density, two-point correlation) walk the tree per query row,
//! in parallel over query rows, pruning nodes by the bound of [`kdtree`] or [`balltree`]. Point
//! distances are summed in coordinate order (as scikit-learn does), so float64 distances equal
//! scikit-learn's bit for bit. Rankings use the metric's *reduced* distance (squared L2, Σ|d|ᵖ).
//! Ties in k-nearest results go to the lower row number. The arrays handed to a query are
//! validated first ([`TreeView::new`]): malformed arrays give an error, never a panic.

pub mod balltree;
mod build;
mod density;
pub mod kdtree;
pub mod kernels;
mod query;
pub mod select;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::flat::SearchParams;
use crate::float::Float;
use crate::metric::Metric;
use crate::pool;

pub use density::KernelKind;
pub use query::{KnnOptions, RadiusOptions};

/// Which tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Axis-aligned boxes.
    KdTree,
    /// Centroid and radius.
    BallTree,
}

impl Kind {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "kd_tree" | "kdtree" => Ok(Kind::KdTree),
            "ball_tree" | "balltree" => Ok(Kind::BallTree),
            other => Err(Error::param("tree", "'kd_tree' or 'ball_tree'", other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::KdTree => "kd_tree",
            Kind::BallTree => "ball_tree",
        }
    }

    /// Rows of `d` values per node in `bounds` (2 for the box corners, 1 for the centroid).
    pub fn bound_rows(self) -> usize {
        match self {
            Kind::KdTree => 2,
            Kind::BallTree => 1,
        }
    }
}

/// One node: the points `idx_array[idx_start..idx_end]`, whether it is a leaf, and its radius
/// (ball tree: largest distance from the centroid; KD-tree: the half-diagonal of its box, as
/// scikit-learn defines it — only used to choose which node of a pair to split).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node {
    pub idx_start: usize,
    pub idx_end: usize,
    pub is_leaf: bool,
    pub radius: f64,
}

impl Node {
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.idx_end - self.idx_start
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.idx_end == self.idx_start
    }

    #[inline(always)]
    fn range(&self) -> Range<usize> {
        self.idx_start..self.idx_end
    }
}

/// The metrics the trees compute natively (scikit-learn's `minkowski` family).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TreeMetric {
    Euclidean,
    Manhattan,
    Chebyshev,
    /// p ≥ 1, finite, not 1 or 2.
    Minkowski(f64),
}

impl TreeMetric {
    /// Names accepted by [`TreeMetric::parse`].
    pub const NAMES: &'static [&'static str] = &[
        "euclidean",
        "l2",
        "minkowski",
        "p",
        "manhattan",
        "cityblock",
        "l1",
        "chebyshev",
        "infinity",
    ];

    /// Parses a metric name as scikit-learn's trees do (`minkowski` with p = 1, 2, ∞ becomes
    /// manhattan, euclidean, chebyshev).
    pub fn parse(name: &str, p: f64) -> Result<Self> {
        let name = if name == "p" { "minkowski" } else { name };
        let unknown = || Error::param("metric", format!("one of {}", Self::NAMES.join(", ")), name);
        if !Self::NAMES.contains(&name) {
            return Err(unknown());
        }
        Ok(match Metric::parse(name, p)? {
            Metric::Euclidean => TreeMetric::Euclidean,
            Metric::Manhattan => TreeMetric::Manhattan,
            Metric::Chebyshev => TreeMetric::Chebyshev,
            Metric::Minkowski(p) => TreeMetric::Minkowski(p),
            _ => return Err(unknown()),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TreeMetric::Euclidean => "euclidean",
            TreeMetric::Manhattan => "manhattan",
            TreeMetric::Chebyshev => "chebyshev",
            TreeMetric::Minkowski(_) => "minkowski",
        }
    }

    /// The Minkowski exponent (∞ for chebyshev).
    pub fn p(&self) -> f64 {
        match self {
            TreeMetric::Euclidean => 2.0,
            TreeMetric::Manhattan => 1.0,
            TreeMetric::Chebyshev => f64::INFINITY,
            TreeMetric::Minkowski(p) => *p,
        }
    }
}

/// The arithmetic of one metric, monomorphised into the query loops.
pub(crate) trait Ops<T: Float>: Copy + Send + Sync {
    /// Reduced distance between two rows, summed in coordinate order.
    fn rdist(&self, a: &[T], b: &[T]) -> T;
    /// Reduced distances from `q` to the eight rows of a block ([`kernels`]), each summed in
    /// coordinate order (equal to [`Ops::rdist`] bit for bit).
    fn rdist8(&self, q: &[T], blk: &[T]) -> [T; kernels::LANES];
    fn rdist_to_dist(&self, r: T) -> T;
    fn dist_to_rdist(&self, d: T) -> T;
    /// Contribution of one coordinate gap (≥ 0) to a reduced distance.
    fn pow(&self, x: T) -> T;
    /// Folds a contribution into a reduced distance (sum, or max for chebyshev).
    fn fold(&self, acc: T, v: T) -> T;
    /// The same metric with its block kernel inlined at the call site (the baseline
    /// instruction set, no call) rather than called through the dispatched pointer.
    #[inline(always)]
    fn inlined(self) -> Self {
        self
    }
    #[inline(always)]
    fn dist(&self, a: &[T], b: &[T]) -> T {
        self.rdist_to_dist(self.rdist(a, b))
    }
}

/// The block kernel through the dispatched pointer, or (`.1`) inlined.
#[derive(Clone, Copy)]
pub(crate) struct Euclid<T>(kernels::Block<T>, bool);
#[derive(Clone, Copy)]
pub(crate) struct L1<T>(kernels::Block<T>, bool);
#[derive(Clone, Copy)]
pub(crate) struct Linf<T>(kernels::Block<T>, bool);
#[derive(Clone, Copy)]
pub(crate) struct Mink<T> {
    p: T,
    inv_p: T,
}

impl<T: Float> Ops<T> for Euclid<T> {
    #[inline(always)]
    fn rdist8(&self, q: &[T], blk: &[T]) -> [T; kernels::LANES] {
        if self.1 {
            kernels::sq(q, blk)
        } else {
            (self.0)(q, blk)
        }
    }
    #[inline(always)]
    fn inlined(self) -> Self {
        Euclid(self.0, true)
    }
    #[inline(always)]
    fn rdist(&self, a: &[T], b: &[T]) -> T {
        let mut s = T::ZERO;
        for (&x, &y) in a.iter().zip(b) {
            let t = x - y;
            s += t * t;
        }
        s
    }
    #[inline(always)]
    fn rdist_to_dist(&self, r: T) -> T {
        r.sqrt()
    }
    #[inline(always)]
    fn dist_to_rdist(&self, d: T) -> T {
        d * d
    }
    #[inline(always)]
    fn pow(&self, x: T) -> T {
        x * x
    }
    #[inline(always)]
    fn fold(&self, acc: T, v: T) -> T {
        acc + v
    }
}

impl<T: Float> Ops<T> for L1<T> {
    #[inline(always)]
    fn rdist8(&self, q: &[T], blk: &[T]) -> [T; kernels::LANES] {
        if self.1 {
            kernels::l1(q, blk)
        } else {
            (self.0)(q, blk)
        }
    }
    #[inline(always)]
    fn inlined(self) -> Self {
        L1(self.0, true)
    }
    #[inline(always)]
    fn rdist(&self, a: &[T], b: &[T]) -> T {
        let mut s = T::ZERO;
        for (&x, &y) in a.iter().zip(b) {
            s += (x - y).abs();
        }
        s
    }
    #[inline(always)]
    fn rdist_to_dist(&self, r: T) -> T {
        r
    }
    #[inline(always)]
    fn dist_to_rdist(&self, d: T) -> T {
        d
    }
    #[inline(always)]
    fn pow(&self, x: T) -> T {
        x
    }
    #[inline(always)]
    fn fold(&self, acc: T, v: T) -> T {
        acc + v
    }
}

impl<T: Float> Ops<T> for Linf<T> {
    #[inline(always)]
    fn rdist8(&self, q: &[T], blk: &[T]) -> [T; kernels::LANES] {
        if self.1 {
            kernels::linf(q, blk)
        } else {
            (self.0)(q, blk)
        }
    }
    #[inline(always)]
    fn inlined(self) -> Self {
        Linf(self.0, true)
    }
    #[inline(always)]
    fn rdist(&self, a: &[T], b: &[T]) -> T {
        let mut s = T::ZERO;
        for (&x, &y) in a.iter().zip(b) {
            s = s.max((x - y).abs());
        }
        s
    }
    #[inline(always)]
    fn rdist_to_dist(&self, r: T) -> T {
        r
    }
    #[inline(always)]
    fn dist_to_rdist(&self, d: T) -> T {
        d
    }
    #[inline(always)]
    fn pow(&self, x: T) -> T {
        x
    }
    #[inline(always)]
    fn fold(&self, acc: T, v: T) -> T {
        acc.max(v)
    }
}

impl<T: Float> Ops<T> for Mink<T> {
    #[inline(always)]
    fn rdist8(&self, q: &[T], blk: &[T]) -> [T; kernels::LANES] {
        kernels::minkowski(q, blk, self.p)
    }
    #[inline(always)]
    fn rdist(&self, a: &[T], b: &[T]) -> T {
        let mut s = T::ZERO;
        for (&x, &y) in a.iter().zip(b) {
            s += (x - y).abs().powf(self.p);
        }
        s
    }
    #[inline(always)]
    fn rdist_to_dist(&self, r: T) -> T {
        r.powf(self.inv_p)
    }
    #[inline(always)]
    fn dist_to_rdist(&self, d: T) -> T {
        d.powf(self.p)
    }
    #[inline(always)]
    fn pow(&self, x: T) -> T {
        x.powf(self.p)
    }
    #[inline(always)]
    fn fold(&self, acc: T, v: T) -> T {
        acc + v
    }
}

/// Runs `$body` with `$m` bound to the [`Ops`] of `$metric` (one monomorphised copy per metric).
macro_rules! with_ops {
    ($metric:expr, $t:ty, |$m:ident| $body:expr) => {
        match $metric {
            $crate::tree::TreeMetric::Euclidean => {
                let $m = $crate::tree::Euclid($crate::tree::kernels::kernels::<$t>().sq, false);
                $body
            }
            $crate::tree::TreeMetric::Manhattan => {
                let $m = $crate::tree::L1($crate::tree::kernels::kernels::<$t>().l1, false);
                $body
            }
            $crate::tree::TreeMetric::Chebyshev => {
                let $m = $crate::tree::Linf($crate::tree::kernels::kernels::<$t>().linf, false);
                $body
            }
            $crate::tree::TreeMetric::Minkowski(p) => {
                let $m = $crate::tree::Mink::<$t> {
                    p: <$t as $crate::float::Float>::from_f64(p),
                    inv_p: <$t as $crate::float::Float>::from_f64(1.0 / p),
                };
                $body
            }
        }
    };
}
pub(crate) use with_ops;

/// Node bounds of one tree kind: lower (and upper) bounds of the distance between a point, or
/// another node, and any point of a node.
pub(crate) trait Bounds<T: Float>: Send + Sync {
    /// Reduced-distance lower bound between `q` and the points of `node`.
    fn min_rdist<M: Ops<T>>(t: &TreeView<T>, m: &M, node: usize, q: &[T]) -> T;
    /// (lower, upper) bounds of the distance between `q` and the points of `node`.
    fn min_max_dist<M: Ops<T>>(t: &TreeView<T>, m: &M, node: usize, q: &[T]) -> (T, T);
    /// (lower, upper) distance bounds between the points of two nodes of two trees.
    fn min_max_dist_dual<M: Ops<T>>(
        a: &TreeView<T>,
        na: usize,
        b: &TreeView<T>,
        nb: usize,
        m: &M,
    ) -> (T, T);
    /// Reduced-distance lower bound between two nodes of two trees.
    fn min_rdist_dual<M: Ops<T>>(
        a: &TreeView<T>,
        na: usize,
        b: &TreeView<T>,
        nb: usize,
        m: &M,
    ) -> T;
    /// Distance computations one bound costs (for the call counter).
    const CALLS: u64;
}

/// Runs `$body` with the type `$b` bound to the [`Bounds`] of `$kind`.
macro_rules! with_bounds {
    ($kind:expr, $t:ty, |$b:ident| $body:expr) => {
        match $kind {
            $crate::tree::Kind::KdTree => {
                type $b = $crate::tree::kdtree::KdBounds;
                $body
            }
            $crate::tree::Kind::BallTree => {
                type $b = $crate::tree::balltree::BallBounds;
                $body
            }
        }
    };
}
pub(crate) use with_bounds;

/// Work counters of a query, as scikit-learn's trees report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distance computations (points and, for the ball tree, node centroids).
    pub n_calls: u64,
    /// Nodes pruned by their bound.
    pub n_trims: u64,
    /// Leaves scanned.
    pub n_leaves: u64,
    /// Internal nodes split.
    pub n_splits: u64,
}

impl Stats {
    fn add(mut self, o: Stats) -> Stats {
        self.n_calls += o.n_calls;
        self.n_trims += o.n_trims;
        self.n_leaves += o.n_leaves;
        self.n_splits += o.n_splits;
        self
    }
}

/// A built tree, owning its arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree<T> {
    pub kind: Kind,
    pub metric: TreeMetric,
    pub d: usize,
    pub leaf_size: usize,
    /// Rows in tree order (position p holds `X[idx_array[p]]`), packed in blocks of 8
    /// positions, dimension-major ([`kernels::pack_blocks`]).
    pub blocks: Vec<T>,
    pub idx_array: Vec<i64>,
    pub nodes: Vec<Node>,
    /// `bound_rows × n_nodes × d` values.
    pub bounds: Vec<T>,
    /// Sample weights in tree order, if any.
    pub weights: Option<Vec<T>>,
}

impl<T: Float> Tree<T> {
    /// A borrowed view for queries.
    pub fn view(&self) -> TreeView<'_, T> {
        TreeView {
            kind: self.kind,
            metric: self.metric,
            d: self.d,
            n: self.idx_array.len(),
            leaf_size: self.leaf_size,
            blocks: &self.blocks,
            idx_array: &self.idx_array,
            nodes: Cow::Borrowed(&self.nodes),
            bounds: &self.bounds,
            weights: self.weights.as_deref(),
        }
    }
}

/// Number of levels and of nodes of a tree over `n` points (scikit-learn's formula).
pub fn tree_shape(n: usize, leaf_size: usize) -> (usize, usize) {
    let ratio = (n.saturating_sub(1)) as f64 / leaf_size.max(1) as f64;
    let levels = (ratio.max(1.0).log2() + 1.0) as usize;
    let levels = levels.clamp(1, 63);
    (levels, (1usize << levels) - 1)
}

/// A tree's arrays, borrowed and validated (what every query runs on).
#[derive(Clone, Debug)]
pub struct TreeView<'a, T> {
    pub kind: Kind,
    pub metric: TreeMetric,
    pub d: usize,
    pub n: usize,
    pub leaf_size: usize,
    /// Rows in tree order, in blocks ([`kernels::pack_blocks`]).
    pub blocks: &'a [T],
    pub idx_array: &'a [i64],
    pub nodes: Cow<'a, [Node]>,
    pub bounds: &'a [T],
    pub weights: Option<&'a [T]>,
}

impl<'a, T: Float> TreeView<'a, T> {
    /// Checks the arrays of a tree (lengths, node ranges, the implicit child layout) so that no
    /// query can index out of range, whatever the arrays hold.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        metric: TreeMetric,
        d: usize,
        leaf_size: usize,
        blocks: &'a [T],
        idx_array: &'a [i64],
        nodes: Cow<'a, [Node]>,
        bounds: &'a [T],
        weights: Option<&'a [T]>,
    ) -> Result<Self> {
        if d == 0 {
            return Err(Error::param("dimension", "at least 1 feature", 0));
        }
        let n = idx_array.len();
        if n == 0 {
            return Err(Error::param("tree", "at least one point", 0));
        }
        let want = n.div_ceil(kernels::LANES) * kernels::LANES * d;
        if blocks.len() != want {
            return Err(Error::Shape {
                name: "tree data blocks",
                expected: want,
                got: blocks.len(),
            });
        }
        let n_nodes = nodes.len();
        if n_nodes == 0 || !(n_nodes + 1).is_power_of_two() {
            return Err(Error::param("node_data", "2^levels - 1 nodes", n_nodes));
        }
        let want = kind.bound_rows() * n_nodes * d;
        if bounds.len() != want {
            return Err(Error::Shape {
                name: "node_bounds",
                expected: want,
                got: bounds.len(),
            });
        }
        for (i, nd) in nodes.iter().enumerate() {
            let ok_range = nd.idx_start <= nd.idx_end && nd.idx_end <= n;
            let ok_children = nd.is_leaf || 2 * i + 2 < n_nodes;
            if !ok_range || !ok_children || nd.radius.is_nan() {
                return Err(Error::param(
                    "node_data",
                    format!("nodes within 0..{n} whose children exist"),
                    format!(
                        "node {i} = ({}, {}, leaf {}, radius {})",
                        nd.idx_start, nd.idx_end, nd.is_leaf, nd.radius
                    ),
                ));
            }
        }
        if let Some(w) = weights {
            if w.len() != n {
                return Err(Error::Shape {
                    name: "sample_weight",
                    expected: n,
                    got: w.len(),
                });
            }
        }
        Ok(TreeView {
            kind,
            metric,
            d,
            n,
            leaf_size: leaf_size.max(1),
            blocks,
            idx_array,
            nodes,
            bounds,
            weights,
        })
    }

    /// Copies the row at position `p` into `buf`.
    pub(crate) fn gather(&self, p: usize, buf: &mut Vec<T>) {
        const L: usize = kernels::LANES;
        let base = (p / L) * self.d * L + p % L;
        buf.clear();
        buf.extend((0..self.d).map(|j| self.blocks[base + j * L]));
    }

    /// Calls `f(position, reduced distance)` for the positions `range`, in order, eight rows
    /// per kernel call.
    #[inline(always)]
    pub(crate) fn for_each_rdist<M: Ops<T>>(
        &self,
        m: &M,
        q: &[T],
        range: Range<usize>,
        mut f: impl FnMut(usize, T),
    ) {
        const L: usize = kernels::LANES;
        let w = self.d * L;
        let (mut p, end) = (range.start, range.end);
        while p < end {
            let b = p / L;
            let out = m.rdist8(q, &self.blocks[b * w..(b + 1) * w]);
            let stop = end.min((b + 1) * L);
            for pos in p..stop {
                f(pos, out[pos - b * L]);
            }
            p = stop;
        }
    }

    #[inline(always)]
    pub(crate) fn bound(&self, which: usize, node: usize) -> &'a [T] {
        let off = (which * self.nodes.len() + node) * self.d;
        &self.bounds[off..off + self.d]
    }

    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    fn check_queries(&self, queries: &[T]) -> Result<usize> {
        if !queries.len().is_multiple_of(self.d) {
            return Err(Error::param(
                "queries",
                format!("a length that is a multiple of d = {}", self.d),
                queries.len(),
            ));
        }
        Ok(queries.len() / self.d)
    }
}

/// Query rows per unit of parallel work.
fn chunk_len(nq: usize, threads: usize) -> usize {
    (nq / (threads.max(1) * 8)).clamp(1, 256)
}

/// Fewer query rows than this run on the calling thread.
const SMALL_QUERIES: usize = 64;

/// Runs `f` over chunks of the query rows `0..nq`, in parallel (interruptible between chunks),
/// and returns the chunk results in order.
fn run_chunks<R: Send>(
    nq: usize,
    params: &SearchParams,
    f: impl Fn(Range<usize>) -> R + Sync,
) -> Result<Vec<R>> {
    let threads = params.threads.max(1);
    if nq < SMALL_QUERIES || threads == 1 && params.interrupt.is_none() {
        return Ok(vec![f(0..nq)]);
    }
    let len = chunk_len(nq, threads);
    let chunks: Vec<Range<usize>> = (0..nq.div_ceil(len))
        .map(|c| c * len..((c + 1) * len).min(nq))
        .collect();
    let work = |stop: &AtomicBool| -> Vec<Option<R>> {
        chunks
            .par_iter()
            .map(|r| {
                if stop.load(Ordering::Relaxed) {
                    None
                } else {
                    Some(f(r.clone()))
                }
            })
            .collect()
    };
    let out = pool::run_interruptible(threads, params.interrupt, work)?;
    out.into_iter()
        .map(|r| r.ok_or(Error::Interrupted))
        .collect()
}
