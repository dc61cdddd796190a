//! Graph search: greedy descent through the upper levels, a beam search (`ef`) on level 0, then
//! an exact re-rank when traversal scored SQ8 codes.
//!
//! Filters: below [`FILTER_EXACT_FRACTION`] of the index the allowed vectors are scanned exactly;
//! otherwise the beam walks the graph with the filter, and a neighbour the filter rejects is
//! looked through (its own neighbours are tried: the two-hop expansion of ACORN), so the walk
//! stays connected. If the walk finds fewer than `min(k, allowed)` vectors, the allowed set is
//! scanned exactly: a search never returns fewer results than exist.
//!
//! No allocation per query: scratch buffers (visited tags cleared in O(1) by a generation
//! counter, heaps, query buffers) come from a pool in the index.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::{Cand, CodeQuery, Hnsw, Space, NONE};
use crate::error::{Error, Result};
pub use crate::filter::Allowed;
use crate::pool;
use crate::validate::{check_searchable, result_size, try_filled};

/// Filters allowing fewer than this share of the index are served by an exact scan.
pub const FILTER_EXACT_FRACTION: f64 = 0.02;

/// With code traversal, at least the best `RERANK_FACTOR × k` candidates (by code distance) are
/// re-ranked on the float32 vectors; more when the codes' error says a further one could still
/// make the top `k` (see `search_one`).
pub const RERANK_FACTOR: usize = 2;
/// Safety factor on the largest code error seen among the first re-ranked candidates.
pub const RERANK_ERROR_MARGIN: f32 = 1.5;

/// Per-call search parameters.
#[derive(Clone, Copy)]
pub struct SearchOptions<'a> {
    /// Beam width on level 0 (raised to `k` when smaller).
    pub ef_search: usize,
    /// Threads for a batch of queries.
    pub threads: usize,
    /// Polled from the calling thread; returning true stops the search.
    pub interrupt: Option<&'a (dyn Fn() -> bool + Sync)>,
}

impl Default for SearchOptions<'_> {
    fn default() -> Self {
        SearchOptions {
            ef_search: 64,
            threads: 1,
            interrupt: None,
        }
    }
}

/// Work done by a search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Distances computed (codes and exact).
    pub distance_computations: u64,
    /// Nodes whose neighbour lists were read.
    pub visited_nodes: u64,
    /// Queries answered by an exact scan (tiny filters, or a walk that found too few).
    pub exact_fallbacks: u64,
}

impl SearchStats {
    fn add(&mut self, o: &SearchStats) {
        self.distance_computations += o.distance_computations;
        self.visited_nodes += o.visited_nodes;
        self.exact_fallbacks += o.exact_fallbacks;
    }
}

/// Results of a batch: `k` per query, closest first, missing ones are id −1 / key +inf.
#[derive(Clone, Debug, Default)]
pub struct HnswResult {
    pub distances: Vec<f32>,
    pub ids: Vec<i64>,
    pub stats: SearchStats,
}

/// Visited tags and heaps of one search.
pub(crate) struct Visit {
    tags: Vec<u16>,
    generation: u16,
    cand: BinaryHeap<Reverse<Cand>>,
    res: BinaryHeap<Cand>,
    pub out: Vec<Cand>,
    /// Unvisited neighbours of the node being expanded.
    fresh: Vec<u32>,
    pub stats: SearchStats,
}

impl Visit {
    fn new() -> Self {
        Visit {
            tags: Vec::new(),
            generation: 0,
            cand: BinaryHeap::new(),
            res: BinaryHeap::new(),
            out: Vec::new(),
            fresh: Vec::new(),
            stats: SearchStats::default(),
        }
    }

    fn begin(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tags.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `slot` visited; false if it already was.
    #[inline(always)]
    fn visit(&mut self, slot: u32) -> bool {
        let t = &mut self.tags[slot as usize];
        if *t == self.generation {
            false
        } else {
            *t = self.generation;
            true
        }
    }
}

/// Scratch of one searching thread.
pub(crate) struct Scratch {
    pub v: Visit,
    pub q: Vec<f32>,
    pub w: Vec<f32>,
    pub wq: Vec<i16>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            v: Visit::new(),
            q: Vec::new(),
            w: Vec::new(),
            wq: Vec::new(),
        }
    }
}

#[inline(always)]
fn prefetch<T>(data: &[T], start: usize, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let base = data[start..].as_ptr() as *const i8;
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch never faults; the address is inside (or one line past) `data`.
            unsafe { _mm_prefetch(base.wrapping_add(off), _MM_HINT_T0) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, start, bytes);
}

impl Hnsw {
    pub(crate) fn take_scratch(&self) -> Scratch {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_else(Scratch::new)
    }

    pub(crate) fn give_scratch(&self, s: Scratch) {
        self.scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Query weights for scoring codes (`None` without codes); returns their scale and the
    /// offset that turns a code key into an estimate of the exact key.
    pub(crate) fn prepare_codes(
        &self,
        q: &[f32],
        w: &mut Vec<f32>,
        wq: &mut Vec<i16>,
    ) -> Option<CodeQuery> {
        let (scale, c0) = self.sq.as_ref()?.prepare(q, w, wq);
        // L2 and inner-product code keys leave out ⟨q, lo⟩ (and, for L2, ‖q‖²): constant per
        // query; cosine keys include it (they are divided by each code's norm)
        let offset = match self.space {
            Space::L2 => (self.k.dot)(q, q) - 2.0 * c0,
            Space::Ip => -c0,
            Space::Cosine => 0.0,
        };
        Some(CodeQuery { scale, c0, offset })
    }

    /// Prefetches what scoring `slot` will read.
    #[inline(always)]
    fn prefetch_slot(&self, slot: u32, codes: bool) {
        let s = slot as usize;
        if codes {
            prefetch(&self.codes, s * self.cb, self.cb);
        } else {
            prefetch(&self.vectors, s * self.d, self.d * 4);
        }
    }

    /// Prefetches the neighbour list of `slot` on `level`.
    #[inline(always)]
    fn prefetch_links(&self, slot: u32, level: usize) {
        if level == 0 {
            prefetch(
                &self.links0,
                slot as usize * (self.m0 + 1),
                (self.m0 + 1) * 4,
            );
        }
    }

    /// Greedy walk (beam of one) from `cur` down to `stop_level + 1`.
    pub(crate) fn descend(
        &self,
        mut cur: Cand,
        stop_level: usize,
        key: &impl Fn(u32) -> f32,
        stats: &mut SearchStats,
    ) -> Cand {
        for level in (stop_level + 1..=self.max_level).rev() {
            loop {
                let mut moved = false;
                stats.visited_nodes += 1;
                for &nb in self.neighbors(cur.id, level) {
                    let k = key(nb);
                    stats.distance_computations += 1;
                    if k < cur.key {
                        cur = Cand { key: k, id: nb };
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        cur
    }

    /// Beam search of width `ef` on `level` from the entries in `v.out`; leaves the best `ef`
    /// eligible (live and allowed) nodes in `v.out`, closest first.
    pub(crate) fn search_level(
        &self,
        v: &mut Visit,
        level: usize,
        ef: usize,
        key: &impl Fn(u32) -> f32,
        allowed: Option<&Allowed>,
        codes: bool,
    ) {
        v.begin(self.ids.len());
        v.cand.clear();
        v.res.clear();
        let dead = self.ids.tombstones();
        let eligible =
            |s: u32| dead.is_none_or(|d| !d[s as usize]) && allowed.is_none_or(|a| a.contains(s));
        let entries = std::mem::take(&mut v.out);
        for &e in &entries {
            if v.visit(e.id) {
                v.cand.push(Reverse(e));
                if eligible(e.id) {
                    v.res.push(e);
                    if v.res.len() > ef {
                        v.res.pop();
                    }
                }
            }
        }
        v.out = entries;
        let mut bound = if v.res.len() >= ef {
            v.res.peek().map_or(f32::INFINITY, |c| c.key)
        } else {
            f32::INFINITY
        };
        // One candidate: score it and keep it if it can still enter the results.
        macro_rules! consider {
            ($nb:expr) => {{
                let nb: u32 = $nb;
                let k = key(nb);
                v.stats.distance_computations += 1;
                if k < bound || v.res.len() < ef {
                    let c = Cand { key: k, id: nb };
                    v.cand.push(Reverse(c));
                    if eligible(nb) {
                        v.res.push(c);
                        if v.res.len() > ef {
                            v.res.pop();
                        }
                        if v.res.len() >= ef {
                            bound = v.res.peek().map_or(f32::INFINITY, |c| c.key);
                        }
                    }
                }
            }};
        }
        while let Some(Reverse(c)) = v.cand.pop() {
            if c.key > bound {
                break;
            }
            v.stats.visited_nodes += 1;
            // The next node to expand is probably the new best candidate: fetch its list now.
            if let Some(Reverse(next)) = v.cand.peek() {
                self.prefetch_links(next.id, level);
            }
            let nbrs = self.neighbors(c.id, level);
            if let Some(a) = allowed {
                for &nb in nbrs {
                    if !v.visit(nb) {
                        continue;
                    }
                    if a.contains(nb) {
                        consider!(nb);
                    } else {
                        // Look through a rejected neighbour to its allowed neighbours.
                        for &nb2 in self.neighbors(nb, level) {
                            if a.contains(nb2) && v.visit(nb2) {
                                consider!(nb2);
                            }
                        }
                    }
                }
                continue;
            }
            // Collect the unvisited neighbours and prefetch them all before scoring any, so
            // their memory loads overlap.
            let mut fresh = std::mem::take(&mut v.fresh);
            fresh.clear();
            for &nb in nbrs {
                if v.visit(nb) {
                    self.prefetch_slot(nb, codes);
                    fresh.push(nb);
                }
            }
            for &nb in &fresh {
                consider!(nb);
            }
            v.fresh = fresh;
        }
        v.out.clear();
        v.out.extend(v.res.drain());
        v.out.sort_unstable();
    }

    /// The `k` nearest eligible nodes of one query (`s.q` prepared), exact keys, closest first.
    fn search_one(&self, s: &mut Scratch, k: usize, ef: usize, allowed: Option<&Allowed>) -> usize {
        let Scratch { v, q, w, wq } = s;
        v.out.clear();
        let live = self.len();
        let wanted = allowed.map_or(live, |a| a.count()).min(k);
        if self.entry == NONE || wanted == 0 {
            return 0;
        }
        let small_filter = allowed
            .is_some_and(|a| (a.count() as f64) < FILTER_EXACT_FRACTION * self.ids.len() as f64);
        if !small_filter {
            let prepared = self.prepare_codes(q, w, wq);
            let codes = prepared.is_some();
            let (qv, wv): (&[f32], &[i16]) = (q, wq);
            let key = |slot: u32| match prepared {
                Some(cq) => self.key_code(wv, cq, slot),
                None => self.key_query(qv, slot),
            };
            let start = Cand {
                key: key(self.entry),
                id: self.entry,
            };
            let cur = self.descend(start, 0, &key, &mut v.stats);
            v.out.push(cur);
            self.search_level(v, 0, ef.max(k), &key, allowed, codes);
            if let Some(cq) = prepared {
                let done = self.rerank(v, qv, k, cq.offset);
                v.stats.distance_computations += done as u64;
                v.out.truncate(done);
                v.out.sort_unstable();
            }
            v.out.truncate(k);
        }
        if v.out.len() < wanted {
            self.scan_exact(s, k, allowed);
        }
        s.v.out.len()
    }

    /// Re-scores the candidates in `v.out` (sorted by code key) exactly, in order: the first
    /// [`RERANK_FACTOR`]` × k`, then each further one while its code key, less the codes' error, is
    /// below the `k`-th exact key so far. The error is the largest |code key + `offset` − exact
    /// key| among the first ones, times [`RERANK_ERROR_MARGIN`]: data on which the codes are
    /// coarse (tight clusters) re-rank more, data on which they are sharp no more than the
    /// minimum. Returns how many were re-scored (the prefix of `v.out` now holding exact keys).
    pub(crate) fn rerank(&self, v: &mut Visit, q: &[f32], k: usize, offset: f32) -> usize {
        let n = v.out.len();
        let first = (RERANK_FACTOR * k).min(n);
        for c in &v.out[..first] {
            prefetch(&self.vectors, c.id as usize * self.d, self.d * 4);
        }
        let mut err = 0f32;
        v.res.clear(); // the k best exact keys so far (a max-heap)
        let take = |c: &mut Cand, res: &mut BinaryHeap<Cand>| -> f32 {
            let code = c.key + offset;
            c.key = self.key_query(q, c.id);
            res.push(*c);
            if res.len() > k {
                res.pop();
            }
            (code - c.key).abs()
        };
        for c in &mut v.out[..first] {
            err = err.max(take(c, &mut v.res));
        }
        let margin = RERANK_ERROR_MARGIN * err;
        let mut done = first;
        while done < n {
            let kth = if v.res.len() >= k {
                v.res.peek().map_or(f32::INFINITY, |c| c.key)
            } else {
                f32::INFINITY
            };
            if v.out[done].key + offset - margin >= kth {
                break;
            }
            if done + 1 < n {
                prefetch(
                    &self.vectors,
                    v.out[done + 1].id as usize * self.d,
                    self.d * 4,
                );
            }
            take(&mut v.out[done], &mut v.res);
            done += 1;
        }
        v.res.clear();
        done
    }

    /// Exact scan of the eligible nodes (tiny filters, or too few found by the walk).
    fn scan_exact(&self, s: &mut Scratch, k: usize, allowed: Option<&Allowed>) {
        let Scratch { v, q, .. } = s;
        v.stats.exact_fallbacks += 1;
        v.res.clear();
        for slot in 0..self.ids.len() as u32 {
            if self.ids.is_deleted(slot as usize) || allowed.is_some_and(|a| !a.contains(slot)) {
                continue;
            }
            let c = Cand {
                key: self.key_query(q, slot),
                id: slot,
            };
            v.stats.distance_computations += 1;
            if v.res.len() < k {
                v.res.push(c);
            } else if v.res.peek().is_some_and(|w| c < *w) {
                v.res.pop();
                v.res.push(c);
            }
        }
        v.out.clear();
        v.out.extend(v.res.drain());
        v.out.sort_unstable();
    }

    /// Searches `queries` (row-major, `dim` columns) for their `k` nearest live vectors.
    ///
    /// The work (beam width, heaps, re-rank) is sized by `min(k, live vectors)`; only the
    /// result has `k` places per query (padded with id −1), and a result of more than
    /// [`crate::validate::max_result_values`] values, or one that cannot be allocated, is
    /// refused before anything is allocated. The interrupt is polled between queries (and
    /// between chunks of queries when threaded). An index mapped from a file that another
    /// program truncated meanwhile reports `Corrupt` (see [`crate::sigbus`]).
    pub fn search(
        &self,
        queries: &[f32],
        k: usize,
        opts: &SearchOptions,
        allowed: Option<&Allowed>,
    ) -> Result<HnswResult> {
        let out = self.search_unchecked(queries, k, opts, allowed)?;
        self.vectors.check()?;
        self.links0.check()?;
        self.codes.check()?;
        self.code_norms.check()?;
        Ok(out)
    }

    fn search_unchecked(
        &self,
        queries: &[f32],
        k: usize,
        opts: &SearchOptions,
        allowed: Option<&Allowed>,
    ) -> Result<HnswResult> {
        let d = self.d;
        if !queries.len().is_multiple_of(d) {
            return Err(Error::DimensionMismatch {
                expected: d,
                got: queries.len(),
            });
        }
        if k == 0 {
            return Err(Error::param("k", "a positive integer", 0));
        }
        check_searchable(queries, d, "queries")?;
        if opts.ef_search == 0 {
            return Err(Error::param("ef_search", "a positive integer", 0));
        }
        let nq = queries.len() / d;
        let total = result_size(nq, k)?;
        let mut out = HnswResult {
            distances: try_filled("k", total, f32::INFINITY)?,
            ids: try_filled("k", total, -1)?,
            stats: SearchStats::default(),
        };
        // Work is capped at what the index holds; `k` only sizes the (padded) result rows.
        let (k_row, k) = (k, k.min(self.len()).max(1));
        let ef = opts.ef_search.min(self.ids.len().max(1));
        if self.metric.is_similarity() {
            out.distances.fill(f32::NEG_INFINITY);
        }
        let run_one = |s: &mut Scratch, q: &[f32], dist: &mut [f32], ids: &mut [i64]| {
            self.prepare_query(q, &mut s.q);
            let found = self.search_one(s, k, ef, allowed);
            for (j, c) in s.v.out[..found].iter().enumerate() {
                dist[j] = self.key_to_distance(c.key);
                ids[j] = self.ids.id(c.id as usize);
            }
        };
        if nq <= 1 || opts.threads <= 1 {
            let mut s = self.take_scratch();
            s.v.stats = SearchStats::default();
            let mut stopped = false;
            for (i, ((q, dist), ids)) in queries
                .chunks_exact(d)
                .zip(out.distances.chunks_exact_mut(k_row))
                .zip(out.ids.chunks_exact_mut(k_row))
                .enumerate()
            {
                if i % 16 == 15 && opts.interrupt.is_some_and(|f| f()) {
                    stopped = true;
                    break;
                }
                run_one(&mut s, q, dist, ids);
            }
            out.stats = s.v.stats;
            self.give_scratch(s);
            return if stopped {
                Err(Error::Interrupted)
            } else {
                Ok(out)
            };
        }
        let k = k_row;
        let chunk = nq.div_ceil(opts.threads * 8).clamp(1, 256);
        let (dists, idss) = (&mut out.distances, &mut out.ids);
        let stats = pool::run_interruptible(opts.threads, opts.interrupt, |stop: &AtomicBool| {
            queries
                .par_chunks(chunk * d)
                .zip(dists.par_chunks_mut(chunk * k))
                .zip(idss.par_chunks_mut(chunk * k))
                .map(|((qs, ds), is)| {
                    let mut s = self.take_scratch();
                    s.v.stats = SearchStats::default();
                    if !stop.load(Ordering::Relaxed) {
                        for ((q, dist), ids) in qs
                            .chunks_exact(d)
                            .zip(ds.chunks_exact_mut(k))
                            .zip(is.chunks_exact_mut(k))
                        {
                            run_one(&mut s, q, dist, ids);
                        }
                    }
                    let st = s.v.stats;
                    self.give_scratch(s);
                    st
                })
                .reduce(SearchStats::default, |mut a, b| {
                    a.add(&b);
                    a
                })
        })?;
        out.stats = stats;
        Ok(out)
    }
}
