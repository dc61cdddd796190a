//! k-nearest and radius queries on a tree.
//!
//! k-nearest, depth-first (scikit-learn's default): an explicit stack of (bound, node); a node
//! whose reduced-distance lower bound exceeds the current k-th best is trimmed, a leaf is scanned
//! (its rows are contiguous), an internal node pushes both children, nearest on top.
//! Breadth-first: the same with a min-heap of nodes by bound. Dual-tree: a tree is built over the
//! queries, and node pairs are pruned by the bound between them and the worst k-th distance of
//! the query node (scikit-learn's algorithm); results are the same in all three modes.
//! Single-tree queries are visited in Z-order ([`spatial_order`], so neighbouring queries reuse
//! the cached nodes and leaves), the per-query k-best set is reused and written straight into
//! the output, the first leaf's points enter by one selection of their k best, a leaf block
//! whose eight distances all exceed the k-th best costs one branch (a lane mask), and the block
//! kernel is inlined into the traversal instead of called through the dispatch pointer. None of
//! this changes a query's answer or its work counters.
//!
//! Radius: depth-first, left to right (so unsorted results come in scikit-learn's order); a
//! node entirely inside the radius is taken whole without computing its distances unless they
//! are asked for.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};
use crate::flat::{Neighbors, Radius, RangeResult, SearchParams};
use crate::float::Float;
use crate::topk::{cmp_candidates, cmp_keys, sort_candidates, Candidate, TopK};

use super::{kernels, run_chunks, with_bounds, with_ops, Bounds, Ops, Stats, Tree, TreeView};

/// How a k-nearest query runs (every mode gives the same neighbours).
#[derive(Clone, Copy, Debug, Default)]
pub struct KnnOptions {
    /// Visit nodes in order of their bound (a priority queue) rather than depth-first.
    pub breadth_first: bool,
    /// Build a tree over the queries and prune pairs of nodes.
    pub dualtree: bool,
}

/// What a radius query returns.
#[derive(Clone, Copy, Debug, Default)]
pub struct RadiusOptions {
    /// Only count the neighbours (the result has `lims` only).
    pub count_only: bool,
    /// Also return the distances.
    pub return_distance: bool,
    /// Sort each query's neighbours by distance (then index); otherwise tree order.
    pub sort_results: bool,
}

/// Largest k kept in a sorted array (above it, the binary heap of [`TopK`]).
const SMALL_K: usize = 32;

/// The k best (reduced distance, row) pairs of one query. Small k: a sorted array, where an
/// insertion is a short shift and the result needs no sort; large k: the shared heap. Ties go to
/// the lower row number either way. `push` expects `key <= threshold()`.
enum Set<T> {
    Small {
        k: usize,
        len: usize,
        keys: Vec<T>,
        ids: Vec<usize>,
    },
    Heap(TopK<T>, usize),
}

impl<T: Float> Set<T> {
    fn new(k: usize) -> Self {
        if k <= SMALL_K {
            Set::Small {
                k,
                len: 0,
                keys: vec![T::INFINITY; k],
                ids: vec![0; k],
            }
        } else {
            Set::Heap(TopK::new(k), k)
        }
    }

    #[inline(always)]
    fn threshold(&self) -> T {
        match self {
            Set::Small { k, len, keys, .. } => {
                if len < k {
                    T::INFINITY
                } else {
                    keys[*k - 1]
                }
            }
            Set::Heap(h, _) => h.threshold(),
        }
    }

    #[inline(always)]
    fn push(&mut self, key: T, id: usize) {
        match self {
            Set::Small { k, len, keys, ids } => {
                let mut i = *len;
                if *len == *k {
                    let (lk, li) = (keys[*k - 1], ids[*k - 1]);
                    if *k == 0 || key > lk || (key == lk && id > li) {
                        return;
                    }
                    i = *k - 1;
                } else {
                    *len += 1;
                }
                while i > 0 && (keys[i - 1] > key || (keys[i - 1] == key && ids[i - 1] > id)) {
                    keys[i] = keys[i - 1];
                    ids[i] = ids[i - 1];
                    i -= 1;
                }
                keys[i] = key;
                ids[i] = id;
            }
            Set::Heap(h, _) => h.push(key, id),
        }
    }

    fn into_sorted(self) -> Vec<Candidate<T>> {
        match self {
            Set::Small { len, keys, ids, .. } => keys.into_iter().zip(ids).take(len).collect(),
            Set::Heap(h, _) => h.into_sorted(),
        }
    }

    /// Empties the set for the next query (keeps its buffers).
    #[inline(always)]
    fn reset(&mut self) {
        match self {
            Set::Small { len, .. } => *len = 0,
            Set::Heap(h, k) => *h = TopK::new(*k),
        }
    }

    /// Writes the held candidates, best first, into `keys` and `ids` (each of length k; the set
    /// must be full) and empties the set.
    #[inline(always)]
    fn drain_into(&mut self, out_keys: &mut [T], out_ids: &mut [i64]) {
        match self {
            Set::Small { len, keys, ids, .. } => {
                let held = keys.iter().zip(ids.iter()).take(*len);
                for ((ok, oi), (&key, &id)) in out_keys.iter_mut().zip(out_ids.iter_mut()).zip(held)
                {
                    *ok = key;
                    *oi = id as i64;
                }
                *len = 0;
            }
            Set::Heap(h, k) => {
                let full = std::mem::replace(h, TopK::new(*k));
                for (j, (key, id)) in full.into_sorted().into_iter().enumerate() {
                    out_keys[j] = key;
                    out_ids[j] = id as i64;
                }
            }
        }
    }
}

/// The k best of one query ([`Set`]) and a scratch buffer for the first leaves.
struct Best<T> {
    set: Set<T>,
    k: usize,
    held: usize,
    scratch: Vec<Candidate<T>>,
}

impl<T: Float> Best<T> {
    fn new(k: usize) -> Self {
        Best {
            set: Set::new(k),
            k,
            held: 0,
            scratch: Vec::new(),
        }
    }

    #[inline(always)]
    fn threshold(&self) -> T {
        self.set.threshold()
    }

    #[inline(always)]
    fn is_full(&self) -> bool {
        self.held >= self.k
    }

    #[inline(always)]
    fn push(&mut self, key: T, id: usize) {
        self.held += 1;
        self.set.push(key, id);
    }

    fn into_sorted(self) -> Vec<Candidate<T>> {
        self.set.into_sorted()
    }

    #[inline(always)]
    fn reset(&mut self) {
        self.held = 0;
        self.set.reset();
    }

    #[inline(always)]
    fn drain_into(&mut self, out_keys: &mut [T], out_ids: &mut [i64]) {
        self.held = 0;
        self.set.drain_into(out_keys, out_ids);
    }

    /// Offers many candidates at once (the points of a leaf while fewer than k are held): the
    /// k best of them by (key, row) are selected first, so only k are inserted, in order. The
    /// held set ends the same as with one push per candidate.
    #[inline(always)]
    fn push_all(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.len() > self.k && self.k > 0 {
            scratch.select_nth_unstable_by(self.k - 1, cmp_candidates);
            scratch.truncate(self.k);
        }
        scratch.sort_unstable_by(cmp_candidates);
        for &(key, id) in &scratch {
            if key <= self.threshold() {
                self.push(key, id);
            }
        }
        scratch.clear();
        self.scratch = scratch;
    }
}

/// Query rows in Z-order (Morton order of their coordinates, quantised over the queries' own
/// bounding box): consecutive queries then visit the same nodes, so a run over many queries
/// reads the tree from cache. Only the visiting order changes; every query's answer and work
/// are the same.
fn spatial_order<T: Float>(queries: &[T], nq: usize, d: usize) -> Vec<u32> {
    if nq < 2 * super::SMALL_QUERIES || nq > u32::MAX as usize || d == 0 {
        return (0..nq as u32).collect();
    }
    let dims = d.min(16);
    let bits = (63 / dims).min(16);
    let mut lo = vec![f64::INFINITY; dims];
    let mut hi = vec![f64::NEG_INFINITY; dims];
    for q in queries.chunks_exact(d) {
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(&q[..dims]) {
            *l = l.min(x.to_f64());
            *h = h.max(x.to_f64());
        }
    }
    let top = ((1u64 << bits) - 1) as f64;
    let scale: Vec<f64> = (0..dims)
        .map(|j| {
            let w = hi[j] - lo[j];
            if w > 0.0 && w.is_finite() {
                top / w
            } else {
                0.0
            }
        })
        .collect();
    let mut keyed: Vec<(u64, u32)> = queries
        .chunks_exact(d)
        .enumerate()
        .map(|(i, q)| {
            let mut cells = [0u64; 16];
            let coords = q[..dims].iter().zip(lo.iter().zip(&scale));
            for (cell, (&x, (&l, &s))) in cells.iter_mut().zip(coords) {
                let c = (x.to_f64() - l) * s;
                *cell = if c > 0.0 {
                    (c as u64).min(top as u64)
                } else {
                    0
                };
            }
            let mut key = 0u64;
            for b in (0..bits).rev() {
                for cell in cells.iter().take(dims) {
                    key = (key << 1) | ((cell >> b) & 1);
                }
            }
            (key, i as u32)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// A node waiting in the breadth-first queue: smallest bound first.
#[derive(Clone, Copy)]
struct Pending<T> {
    bound: T,
    node: usize,
}

impl<T: Float> PartialEq for Pending<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<T: Float> Eq for Pending<T> {}
impl<T: Float> PartialOrd for Pending<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T: Float> Ord for Pending<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        cmp_keys(o.bound, self.bound).then(o.node.cmp(&self.node))
    }
}

impl<'a, T: Float> TreeView<'a, T> {
    /// The `k` nearest tree points of every query row (row-major, `d` columns), closest first,
    /// with work counters. `k` must not exceed the number of points; `k = 0` gives empty rows.
    ///
    /// ```
    /// use knnkit_core::flat::SearchParams;
    /// use knnkit_core::tree::{Kind, KnnOptions, Tree, TreeMetric};
    /// let x = [0.0f64, 0.0, 3.0, 4.0, 1.0, 1.0];
    /// let tree = Tree::build(&x, 2, Kind::BallTree, TreeMetric::Euclidean, 40, None, 1)?;
    /// let (res, _stats) = tree.view().knn(&[0.0, 0.0], 2, KnnOptions::default(), &SearchParams::default())?;
    /// assert_eq!(res.indices, vec![0, 2]);
    /// assert_eq!(res.distances, vec![0.0, 2f64.sqrt()]);
    /// # Ok::<(), knnkit_core::Error>(())
    /// ```
    pub fn knn(
        &self,
        queries: &[T],
        k: usize,
        opts: KnnOptions,
        params: &SearchParams,
    ) -> Result<(Neighbors<T>, Stats)> {
        let nq = self.check_queries(queries)?;
        if k > self.n {
            return Err(Error::param(
                "k",
                format!("k <= the number of training points ({})", self.n),
                k,
            ));
        }
        let too_big = || Error::param("k", "a k whose n_queries × k results fit in memory", k);
        let total = nq.checked_mul(k).ok_or_else(too_big)?;
        let mut distances: Vec<T> = Vec::new();
        let mut indices: Vec<i64> = Vec::new();
        distances
            .try_reserve_exact(total)
            .and_then(|()| indices.try_reserve_exact(total))
            .map_err(|_| too_big())?;
        let mut stats = Stats::default();
        if k > 0 && nq > 0 {
            if opts.dualtree {
                let (per_query, st) = self.knn_dual(queries, k, params)?;
                stats = st;
                for cands in &per_query {
                    for &(key, i) in cands {
                        distances.push(key);
                        indices.push(i as i64);
                    }
                }
            } else {
                distances.resize(total, T::ZERO);
                indices.resize(total, 0);
                stats = self.knn_single(
                    queries,
                    nq,
                    k,
                    opts.breadth_first,
                    params,
                    &mut distances,
                    &mut indices,
                )?;
            }
            with_ops!(self.metric, T, |m| {
                for key in distances.iter_mut() {
                    *key = Ops::<T>::rdist_to_dist(&m, *key);
                }
            });
        }
        Ok((
            Neighbors {
                k,
                distances,
                indices,
            },
            stats,
        ))
    }

    /// Single-tree k-nearest, in parallel over chunks of query rows (visited in
    /// [`spatial_order`]); writes each query's k reduced distances and rows, best first, into
    /// `keys` and `ids` (n_queries × k, query order).
    #[allow(clippy::too_many_arguments)]
    fn knn_single(
        &self,
        queries: &[T],
        nq: usize,
        k: usize,
        breadth_first: bool,
        params: &SearchParams,
        keys: &mut [T],
        ids: &mut [i64],
    ) -> Result<Stats> {
        let order = spatial_order(queries, nq, self.d);
        let parts = run_chunks(nq, params, |range| {
            with_bounds!(self.kind, T, |B| with_ops!(self.metric, T, |m| {
                let m = m.inlined();
                let mut stack = Vec::new();
                let mut queue = BinaryHeap::new();
                let mut st = Stats::default();
                let mut heap = Best::new(k);
                let mut out_keys = vec![T::ZERO; range.len() * k];
                let mut out_ids = vec![0i64; range.len() * k];
                for (o, pos) in range.enumerate() {
                    let qi = order[pos] as usize;
                    let q = &queries[qi * self.d..(qi + 1) * self.d];
                    heap.reset();
                    if breadth_first {
                        self.knn_bf::<B, _>(&m, q, &mut heap, &mut queue, &mut st);
                    } else {
                        self.knn_df::<B, _>(&m, q, &mut heap, &mut stack, &mut st);
                    }
                    heap.drain_into(
                        &mut out_keys[o * k..(o + 1) * k],
                        &mut out_ids[o * k..(o + 1) * k],
                    );
                }
                (out_keys, out_ids, st)
            }))
        })?;
        let mut stats = Stats::default();
        let mut pos = 0;
        for (out_keys, out_ids, st) in parts {
            for (kc, ic) in out_keys.chunks_exact(k).zip(out_ids.chunks_exact(k)) {
                let qi = order[pos] as usize;
                keys[qi * k..(qi + 1) * k].copy_from_slice(kc);
                ids[qi * k..(qi + 1) * k].copy_from_slice(ic);
                pos += 1;
            }
            stats = stats.add(st);
        }
        Ok(stats)
    }

    /// Scans a leaf into the k best: eight distances per kernel call, then one compare per
    /// block (a lane mask) and one per point that can enter. While fewer than k are held (the
    /// first leaf), the leaf's distances are gathered and only their k best inserted.
    #[inline(always)]
    fn scan_leaf<M: Ops<T>>(&self, m: &M, q: &[T], node: usize, heap: &mut Best<T>) -> u64 {
        const L: usize = kernels::LANES;
        let nd = self.nodes[node];
        if !heap.is_full() {
            let mut scratch = std::mem::take(&mut heap.scratch);
            self.for_each_rdist(m, q, nd.range(), |p, r| {
                scratch.push((r, self.idx_array[p] as usize))
            });
            heap.scratch = scratch;
            heap.push_all();
            return nd.len() as u64;
        }
        let w = self.d * L;
        let mut thr = heap.threshold();
        let (mut p, end) = (nd.idx_start, nd.idx_end);
        while p < end {
            let b = p / L;
            let out = m.rdist8(q, &self.blocks[b * w..(b + 1) * w]);
            let stop = end.min((b + 1) * L);
            let (lo, hi) = (p - b * L, stop - b * L);
            // Lanes that can enter, as a bit mask: one branch per block in the common case.
            let mut mask = 0u32;
            for (l, &r) in out.iter().enumerate() {
                mask |= u32::from(r <= thr) << l;
            }
            mask &= ((1u32 << hi) - 1) & !((1u32 << lo) - 1);
            while mask != 0 {
                let l = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let r = out[l];
                if r <= thr {
                    heap.push(r, self.idx_array[b * L + l] as usize);
                    thr = heap.threshold();
                }
            }
            p = stop;
        }
        nd.len() as u64
    }

    #[inline(always)]
    fn knn_df<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        q: &[T],
        heap: &mut Best<T>,
        stack: &mut Vec<(T, usize)>,
        st: &mut Stats,
    ) {
        stack.clear();
        stack.push((B::min_rdist(self, m, 0, q), 0));
        st.n_calls += <B as Bounds<T>>::CALLS;
        while let Some((bound, node)) = stack.pop() {
            if bound > heap.threshold() {
                st.n_trims += 1;
            } else if self.nodes[node].is_leaf {
                st.n_leaves += 1;
                st.n_calls += self.scan_leaf(m, q, node, heap);
            } else {
                st.n_splits += 1;
                let (c1, c2) = (2 * node + 1, 2 * node + 2);
                let b1 = B::min_rdist(self, m, c1, q);
                let b2 = B::min_rdist(self, m, c2, q);
                st.n_calls += 2 * <B as Bounds<T>>::CALLS;
                if b1 <= b2 {
                    stack.push((b2, c2));
                    stack.push((b1, c1));
                } else {
                    stack.push((b1, c1));
                    stack.push((b2, c2));
                }
            }
        }
    }

    #[inline(always)]
    fn knn_bf<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        q: &[T],
        heap: &mut Best<T>,
        queue: &mut BinaryHeap<Pending<T>>,
        st: &mut Stats,
    ) {
        queue.clear();
        queue.push(Pending {
            bound: B::min_rdist(self, m, 0, q),
            node: 0,
        });
        st.n_calls += <B as Bounds<T>>::CALLS;
        while let Some(Pending { bound, node }) = queue.pop() {
            if bound > heap.threshold() {
                st.n_trims += 1;
            } else if self.nodes[node].is_leaf {
                st.n_leaves += 1;
                st.n_calls += self.scan_leaf(m, q, node, heap);
            } else {
                st.n_splits += 1;
                for c in [2 * node + 1, 2 * node + 2] {
                    queue.push(Pending {
                        bound: B::min_rdist(self, m, c, q),
                        node: c,
                    });
                    st.n_calls += <B as Bounds<T>>::CALLS;
                }
            }
        }
    }

    /// Dual-tree k-nearest: a tree over the queries, traversed against this one. The queries'
    /// tree is split into subtrees that run in parallel.
    fn knn_dual(
        &self,
        queries: &[T],
        k: usize,
        params: &SearchParams,
    ) -> Result<(Vec<Vec<Candidate<T>>>, Stats)> {
        let qtree = Tree::build(
            queries,
            self.d,
            self.kind,
            self.metric,
            self.leaf_size,
            None,
            params.threads,
        )?;
        let other = qtree.view();
        let nq = other.n;
        // Parallel tasks: the query tree's nodes at the first level with enough of them.
        let tasks = subtree_roots(&other, params.threads);
        let parts = run_chunks(tasks.len(), params, |range| {
            with_bounds!(self.kind, T, |B| with_ops!(self.metric, T, |m| {
                range
                    .map(|t| {
                        let root2 = tasks[t];
                        let nd2 = other.nodes[root2];
                        let mut heaps: Vec<Best<T>> =
                            (0..nd2.len()).map(|_| Best::new(k)).collect();
                        let mut bounds = vec![T::INFINITY; other.n_nodes()];
                        let mut st = Stats::default();
                        let b = B::min_rdist_dual(self, 0, &other, root2, &m);
                        st.n_calls += <B as Bounds<T>>::CALLS;
                        self.knn_dual_node::<B, _>(
                            &m,
                            0,
                            &other,
                            root2,
                            b,
                            nd2.idx_start,
                            root2,
                            &mut heaps,
                            &mut bounds,
                            &mut st,
                        );
                        (nd2.idx_start, heaps, st)
                    })
                    .collect::<Vec<_>>()
            }))
        })?;
        // Back to query order: position p of the query tree is query row idx_array[p].
        let mut out: Vec<Vec<Candidate<T>>> = (0..nq).map(|_| Vec::new()).collect();
        let mut stats = Stats::default();
        for (start, heaps, st) in parts.into_iter().flatten() {
            for (off, heap) in heaps.into_iter().enumerate() {
                out[other.idx_array[start + off] as usize] = heap.into_sorted();
            }
            stats = stats.add(st);
        }
        Ok((out, stats))
    }

    /// scikit-learn's `_query_dual_depthfirst`: `bounds[i]` is the largest k-th distance of the
    /// queries under node `i` of the query tree (so a pair is pruned when its lower bound exceeds
    /// it). `heaps` holds the queries `base..` of the task's subtree `root2`.
    #[allow(clippy::too_many_arguments)]
    fn knn_dual_node<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        n1: usize,
        other: &TreeView<T>,
        n2: usize,
        bound: T,
        base: usize,
        root2: usize,
        heaps: &mut [Best<T>],
        bounds: &mut [T],
        st: &mut Stats,
    ) {
        let (nd1, nd2) = (self.nodes[n1], other.nodes[n2]);
        if bound > bounds[n2] {
            st.n_trims += 1;
        } else if nd1.is_leaf && nd2.is_leaf {
            st.n_leaves += 1;
            let mut worst = T::ZERO;
            let mut q = Vec::with_capacity(self.d);
            for p2 in nd2.range() {
                let heap = &mut heaps[p2 - base];
                if heap.threshold() >= bound {
                    other.gather(p2, &mut q);
                    st.n_calls += self.scan_leaf(m, &q, n1, heap);
                }
                worst = worst.max(heap.threshold());
            }
            bounds[n2] = worst;
            // Tighten the bounds of the ancestors (within this task's subtree).
            let mut node = n2;
            while node > root2 {
                let parent = (node - 1) / 2;
                let b = bounds[2 * parent + 1].max(bounds[2 * parent + 2]);
                if b < bounds[parent] {
                    bounds[parent] = b;
                    node = parent;
                } else {
                    break;
                }
            }
        } else if nd1.is_leaf || (!nd2.is_leaf && nd2.radius > nd1.radius) {
            st.n_splits += 1;
            let (c1, c2) = (2 * n2 + 1, 2 * n2 + 2);
            let b1 = B::min_rdist_dual(self, n1, other, c1, m);
            let b2 = B::min_rdist_dual(self, n1, other, c2, m);
            st.n_calls += 2 * <B as Bounds<T>>::CALLS;
            let order = if b1 < b2 {
                [(c1, b1), (c2, b2)]
            } else {
                [(c2, b2), (c1, b1)]
            };
            for (c, b) in order {
                self.knn_dual_node::<B, M>(m, n1, other, c, b, base, root2, heaps, bounds, st);
            }
        } else {
            st.n_splits += 1;
            let (c1, c2) = (2 * n1 + 1, 2 * n1 + 2);
            let b1 = B::min_rdist_dual(self, c1, other, n2, m);
            let b2 = B::min_rdist_dual(self, c2, other, n2, m);
            st.n_calls += 2 * <B as Bounds<T>>::CALLS;
            let order = if b1 < b2 {
                [(c1, b1), (c2, b2)]
            } else {
                [(c2, b2), (c1, b1)]
            };
            for (c, b) in order {
                self.knn_dual_node::<B, M>(m, c, other, n2, b, base, root2, heaps, bounds, st);
            }
        }
    }

    /// Every tree point within `radius` of each query row: CSR `lims`, and the indices (and
    /// distances, if asked) unless `count_only`.
    pub fn radius(
        &self,
        queries: &[T],
        radius: Radius<T>,
        opts: RadiusOptions,
        params: &SearchParams,
    ) -> Result<(RangeResult<T>, Stats)> {
        let nq = self.check_queries(queries)?;
        if let Radius::PerQuery(rs) = radius {
            if rs.len() != nq {
                return Err(Error::Shape {
                    name: "radius",
                    expected: nq,
                    got: rs.len(),
                });
            }
        }
        let r_of = |i: usize| match radius {
            Radius::All(r) => r,
            Radius::PerQuery(rs) => rs[i],
        };
        let parts = run_chunks(nq, params, |range| {
            with_bounds!(self.kind, T, |B| with_ops!(self.metric, T, |m| {
                let mut counts = Vec::with_capacity(range.len());
                let mut idx = Vec::new();
                let mut dist = Vec::new();
                let mut stack = Vec::new();
                let mut st = Stats::default();
                for qi in range {
                    let q = &queries[qi * self.d..(qi + 1) * self.d];
                    let (i0, d0) = (idx.len(), dist.len());
                    let c = self.radius_one::<B, _>(
                        &m,
                        q,
                        r_of(qi),
                        opts,
                        &mut idx,
                        &mut dist,
                        &mut stack,
                        &mut st,
                    );
                    if opts.sort_results && opts.return_distance {
                        let mut pairs: Vec<Candidate<T>> = dist[d0..]
                            .iter()
                            .zip(&idx[i0..])
                            .map(|(&d, &i)| (d, i as usize))
                            .collect();
                        sort_candidates(&mut pairs);
                        for (o, (d, i)) in pairs.into_iter().enumerate() {
                            dist[d0 + o] = d;
                            idx[i0 + o] = i as i64;
                        }
                    }
                    counts.push(c);
                }
                (counts, idx, dist, st)
            }))
        })?;
        let mut lims = Vec::with_capacity(nq + 1);
        lims.push(0i64);
        let (mut indices, mut distances) = (Vec::new(), Vec::new());
        let mut stats = Stats::default();
        let mut total = 0i64;
        for (counts, idx, dist, st) in parts {
            for c in counts {
                total += c as i64;
                lims.push(total);
            }
            if indices.is_empty() {
                indices = idx;
                distances = dist;
            } else {
                indices.extend_from_slice(&idx);
                distances.extend_from_slice(&dist);
            }
            stats = stats.add(st);
        }
        Ok((
            RangeResult {
                lims,
                distances,
                indices,
            },
            stats,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn radius_one<B: Bounds<T>, M: Ops<T>>(
        &self,
        m: &M,
        q: &[T],
        r: T,
        opts: RadiusOptions,
        idx: &mut Vec<i64>,
        dist: &mut Vec<T>,
        stack: &mut Vec<usize>,
        st: &mut Stats,
    ) -> usize {
        let mut count = 0;
        let rr = m.dist_to_rdist(r);
        stack.clear();
        stack.push(0);
        while let Some(node) = stack.pop() {
            let nd = self.nodes[node];
            let (lo, hi) = B::min_max_dist(self, m, node, q);
            st.n_calls += <B as Bounds<T>>::CALLS;
            if lo > r {
                st.n_trims += 1;
            } else if hi <= r {
                count += nd.len();
                if !opts.count_only {
                    idx.extend_from_slice(&self.idx_array[nd.range()]);
                    if opts.return_distance {
                        self.for_each_rdist(m, q, nd.range(), |_, r| dist.push(m.rdist_to_dist(r)));
                        st.n_calls += nd.len() as u64;
                    }
                }
            } else if nd.is_leaf {
                st.n_leaves += 1;
                self.for_each_rdist(m, q, nd.range(), |p, d| {
                    if d <= rr {
                        count += 1;
                        if !opts.count_only {
                            idx.push(self.idx_array[p]);
                            if opts.return_distance {
                                dist.push(m.rdist_to_dist(d));
                            }
                        }
                    }
                });
                st.n_calls += nd.len() as u64;
            } else {
                st.n_splits += 1;
                stack.push(2 * node + 2);
                stack.push(2 * node + 1);
            }
        }
        count
    }
}

/// Roots of the subtrees a traversal of `t` is split into: the nodes of the first level with at
/// least `4 × threads` nodes (or the leaves).
pub(super) fn subtree_roots<T: Float>(t: &TreeView<T>, threads: usize) -> Vec<usize> {
    let want = 4 * threads.max(1);
    let mut level_start = 0;
    let mut width = 1;
    while width < want && level_start + width < t.n_nodes() {
        // Stop at leaves: a level is complete, so the first leaf means all are leaves.
        if t.nodes[level_start].is_leaf {
            break;
        }
        level_start += width;
        width *= 2;
    }
    (level_start..(level_start + width).min(t.n_nodes())).collect()
}
