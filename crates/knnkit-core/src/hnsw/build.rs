//! Insertion (deterministic batches, see the module comment) and the repair of lists that point
//! to deleted nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::search::Scratch;
use super::{Cand, Hnsw, BATCH_FRACTION, NONE};

/// Indexes at least this large are reordered for locality when an `add` doubles them.
pub const REORDER_MIN: usize = 1024;
use crate::error::{Error, Result};
use crate::pool;

/// Neighbour lists planned for one new node: `lists[l]` for levels `0..=min(level, top)`.
type Plan = Vec<Vec<u32>>;

/// What a running `add` changed in the graph that existed before it: the old lists of the
/// pre-existing nodes it rewrote (reverse edges), the entry point and the insert counter.
/// Restoring them and dropping the new slots puts the index back as it was.
pub(crate) struct Undo {
    start: usize,
    entry: u32,
    max_level: usize,
    inserted: u64,
    lists: HashMap<(u32, usize), Vec<u32>>,
}

impl Hnsw {
    /// Adds `data` (row-major, `dim` columns) with `ids` and links the new vectors into the
    /// graph. Validates everything first (dimension, searchable values — see
    /// [`crate::validate::check_searchable`] —, new and unique ids, slot capacity), so an error
    /// leaves the index unchanged. An interrupt stops between batches and undoes the batches
    /// linked so far (the old lists of the nodes they changed are restored, the new slots
    /// dropped): the index is as it was before the call, and [`Error::Interrupted`] is returned.
    pub fn add(
        &mut self,
        data: &[f32],
        ids: &[i64],
        threads: usize,
        interrupt: Option<&(dyn Fn() -> bool + Sync)>,
    ) -> Result<()> {
        if !data.len().is_multiple_of(self.d) {
            return Err(Error::DimensionMismatch {
                expected: self.d,
                got: data.len(),
            });
        }
        if ids.is_empty() && data.is_empty() {
            return Ok(());
        }
        let (entry, max_level, inserted) = (self.entry, self.max_level, self.inserted);
        let start = self.append(data, ids)?;
        let end = self.ids.len();
        self.undo = Some(Undo {
            start,
            entry,
            max_level,
            inserted,
            lists: HashMap::new(),
        });
        self.progress.store(0, Ordering::Relaxed);
        let done = pool::run_interruptible(threads, interrupt, |stop| {
            self.insert_range(start, end, threads, stop)
        });
        let undo = self.undo.take();
        match done {
            Ok(linked) if linked == end => {
                if self.ids.len() >= REORDER_MIN && self.ids.len() >= 2 * self.ordered {
                    self.reorder();
                }
                Ok(())
            }
            other => {
                if let Some(u) = undo {
                    self.roll_back(u);
                }
                Err(other.err().unwrap_or(Error::Interrupted))
            }
        }
    }

    /// Puts the graph back as it was before the `add` that recorded `u`.
    fn roll_back(&mut self, u: Undo) {
        for ((slot, level), raw) in u.lists {
            let cap = self.cap(level);
            let (list, start) = if level == 0 {
                (self.links0.to_mut(), slot as usize * (self.m0 + 1))
            } else {
                (
                    &mut self.upper[slot as usize],
                    (level - 1) * (self.params.m + 1),
                )
            };
            list[start..start + cap + 1].copy_from_slice(&raw);
        }
        self.truncate(u.start);
        self.entry = u.entry;
        self.max_level = u.max_level;
        self.inserted = u.inserted;
    }

    /// Records the list of `target` on `level` before an `add` rewrites it (pre-existing nodes
    /// only, first change only).
    fn remember(&mut self, target: u32, level: usize) {
        let Some(mut u) = self.undo.take() else {
            return;
        };
        if (target as usize) < u.start {
            // The whole slot (count and capacity), so a rolled-back index is bit for bit the
            // one before.
            u.lists.entry((target, level)).or_insert_with(|| {
                let (list, start) = self.list_of(target, level);
                list[start..start + self.cap(level) + 1].to_vec()
            });
        }
        self.undo = Some(u);
    }

    /// Links slots `start..end`; returns the end of the linked prefix (less than `end` only if
    /// stopped).
    fn insert_range(
        &mut self,
        start: usize,
        end: usize,
        threads: usize,
        stop: &AtomicBool,
    ) -> usize {
        let cap = ((BATCH_FRACTION * end as f64).ceil() as usize).max(1);
        let mut next = start;
        while next < end {
            if stop.load(Ordering::Relaxed) {
                return next;
            }
            let batch = next.clamp(1, cap).min(end - next);
            let slots: Vec<u32> = (next as u32..(next + batch) as u32).collect();
            let plans = self.plan_batch(&slots, threads);
            self.apply_batch(&slots, plans);
            next += batch;
            self.progress.store(next - start, Ordering::Relaxed);
        }
        end
    }

    /// Phase 1 (parallel, read-only): each new node searches the graph as it was before the batch.
    fn plan_batch(&self, slots: &[u32], threads: usize) -> Vec<Plan> {
        if self.entry == NONE {
            return vec![Vec::new(); slots.len()];
        }
        let chunk = slots.len().div_ceil(threads * 4).max(1);
        slots
            .par_chunks(chunk)
            .flat_map_iter(|part| {
                let mut s = self.take_scratch();
                let plans: Vec<Plan> = part.iter().map(|&p| self.plan(p, &mut s)).collect();
                self.give_scratch(s);
                plans
            })
            .collect()
    }

    /// With SQ8 codes the beam searches score codes (a quarter of the bytes); the candidates
    /// are then re-scored exactly before the heuristic picks neighbours.
    fn plan(&self, p: u32, s: &mut Scratch) -> Plan {
        let Scratch { v, q, w, wq } = s;
        self.prepare_query(self.row(p), q);
        let prepared = self.prepare_codes(q, w, wq);
        let (qv, wv): (&[f32], &[i16]) = (q, wq);
        let key = |slot: u32| match prepared {
            Some(cq) => self.key_code(wv, cq, slot),
            None => self.key_query(qv, slot),
        };
        let top = (self.levels[p as usize] as usize).min(self.max_level);
        let start = Cand {
            key: key(self.entry),
            id: self.entry,
        };
        let cur = self.descend(start, top, &key, &mut v.stats);
        v.out.clear();
        v.out.push(cur);
        let mut plan = vec![Vec::new(); top + 1];
        for level in (0..=top).rev() {
            let codes = prepared.is_some();
            self.search_level(v, level, self.params.ef_construction, &key, None, codes);
            if codes {
                v.out
                    .iter_mut()
                    .for_each(|c| c.key = self.key_query(qv, c.id));
                v.out.sort_unstable();
            }
            plan[level] = self.select_heuristic(&v.out, self.params.m);
            if codes && level > 0 {
                // Entries of the next level are compared with traversal keys.
                v.out.iter_mut().for_each(|c| c.key = key(c.id));
            }
        }
        plan
    }

    /// Phase 2 (deterministic): write the new lists, add reverse edges grouped by target, move
    /// the entry point up if a new node is higher.
    fn apply_batch(&mut self, slots: &[u32], plans: Vec<Plan>) {
        let mut reverse: Vec<(usize, u32, u32)> = Vec::new();
        for (&p, plan) in slots.iter().zip(&plans) {
            for (level, list) in plan.iter().enumerate() {
                self.set_neighbors(p, level, list);
                reverse.extend(list.iter().map(|&t| (level, t, p)));
            }
        }
        reverse.sort_unstable();
        let groups: Vec<&[(usize, u32, u32)]> =
            reverse.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1).collect();
        let this = &*self;
        let updates: Vec<(usize, u32, Vec<u32>)> = groups
            .par_iter()
            .map(|g| {
                let (level, target) = (g[0].0, g[0].1);
                let mut all = this.neighbors(target, level).to_vec();
                all.extend(g.iter().map(|e| e.2));
                (level, target, this.shrink(target, level, all))
            })
            .collect();
        for (level, target, list) in updates {
            self.remember(target, level);
            self.set_neighbors(target, level, &list);
        }
        for &p in slots {
            let l = self.levels[p as usize] as usize;
            if self.entry == NONE || l > self.max_level {
                self.entry = p;
                self.max_level = l;
            }
        }
    }

    /// A candidate list for `target` cut to the level's capacity with the heuristic (kept as is
    /// when it fits).
    fn shrink(&self, target: u32, level: usize, all: Vec<u32>) -> Vec<u32> {
        let cap = self.cap(level);
        if all.len() <= cap {
            return all;
        }
        let mut cands: Vec<Cand> = all
            .iter()
            .map(|&x| Cand {
                key: self.key_nodes(target, x),
                id: x,
            })
            .collect();
        cands.sort_unstable();
        self.select_heuristic(&cands, cap)
    }

    /// The paper's neighbour heuristic (Alg. 4): walk candidates closest first and keep one
    /// unless a kept neighbour is closer to it than the base node is. Fewer than `m` candidates
    /// are all kept.
    pub(crate) fn select_heuristic(&self, sorted: &[Cand], m: usize) -> Vec<u32> {
        if sorted.len() <= m {
            return sorted.iter().map(|c| c.id).collect();
        }
        let mut kept: Vec<Cand> = Vec::with_capacity(m);
        for &c in sorted {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|s| self.key_nodes(c.id, s.id) >= c.key) {
                kept.push(c);
            }
        }
        kept.iter().map(|c| c.id).collect()
    }
}

impl Hnsw {
    /// Links again, as new nodes are linked, the live nodes that no link reaches from the
    /// entry point (after a repair: nodes whose neighbours and their neighbours were all
    /// deleted). One node at a time, each searching the graph the previous ones joined; its
    /// nearest neighbour then links back to it even where the heuristic would not (its
    /// farthest neighbour makes room), and the pass repeats for nodes that this cut off, a
    /// few times at most.
    pub(super) fn reconnect(&mut self) {
        const ROUNDS: usize = 4;
        for _ in 0..ROUNDS {
            let orphans = self.unreachable();
            if orphans.is_empty() {
                return;
            }
            let mut s = self.take_scratch();
            for &p in &orphans {
                let mut plan = self.plan(p, &mut s);
                for list in &mut plan {
                    list.retain(|&x| x != p && !self.ids.is_deleted(x as usize));
                }
                let nearest = plan.first().and_then(|l| l.first()).copied();
                self.apply_batch(&[p], vec![plan]);
                if let Some(t) = nearest {
                    let mut list = self.neighbors(t, 0).to_vec();
                    if !list.contains(&p) {
                        if list.len() >= self.cap(0) {
                            list.pop();
                        }
                        list.push(p);
                        self.set_neighbors(t, 0, &list);
                    }
                }
            }
            self.give_scratch(s);
        }
    }

    /// Live nodes that no path of links (at any level) reaches from the entry point.
    fn unreachable(&self) -> Vec<u32> {
        if self.entry == NONE {
            return Vec::new();
        }
        let n = self.ids.len();
        let mut seen = vec![false; n];
        let mut stack = vec![self.entry];
        seen[self.entry as usize] = true;
        while let Some(u) = stack.pop() {
            for level in 0..=self.levels[u as usize] as usize {
                for &v in self.neighbors(u, level) {
                    if !seen[v as usize] {
                        seen[v as usize] = true;
                        stack.push(v);
                    }
                }
            }
        }
        (0..n as u32)
            .filter(|&u| !seen[u as usize] && !self.ids.is_deleted(u as usize))
            .collect()
    }
}

/// Rebuilds every list that points to a deleted node from its live neighbours and the live
/// neighbours of the deleted ones (one hop), pruned with the heuristic. Where one hop leaves
/// fewer than half a list's capacity (the neighbourhood was mostly deleted), the live nodes a
/// search for the node finds (routing through the deleted ones) are candidates too: one hop
/// alone could isolate the node.
pub(super) fn repair_deleted(h: &mut Hnsw, threads: usize) {
    let this = &*h;
    let n = this.ids.len() as u32;
    let updates: Vec<(u32, usize, Vec<u32>)> = pool::install(threads, || {
        (0..n)
            .into_par_iter()
            .filter(|&u| !this.ids.is_deleted(u as usize))
            .filter(|&u| {
                (0..=this.levels[u as usize] as usize).any(|level| {
                    this.neighbors(u, level)
                        .iter()
                        .any(|&x| this.ids.is_deleted(x as usize))
                })
            })
            .map_init(
                || this.take_scratch(),
                |s, u| {
                    // One hop through each deleted neighbour, per level with a deleted one.
                    let mut lists: Vec<(usize, Vec<u32>)> = Vec::new();
                    for level in 0..=this.levels[u as usize] as usize {
                        let nbrs = this.neighbors(u, level);
                        if !nbrs.iter().any(|&x| this.ids.is_deleted(x as usize)) {
                            continue;
                        }
                        let mut all: Vec<u32> = Vec::with_capacity(3 * this.cap(level));
                        for &x in nbrs {
                            if this.ids.is_deleted(x as usize) {
                                all.extend(
                                    this.neighbors(x, level)
                                        .iter()
                                        .filter(|&&y| y != u && !this.ids.is_deleted(y as usize)),
                                );
                            } else {
                                all.push(x);
                            }
                        }
                        all.sort_unstable();
                        all.dedup();
                        lists.push((level, all));
                    }
                    // Few candidates left (the neighbourhood was mostly deleted): search.
                    if lists.iter().any(|(l, all)| all.len() < this.cap(*l) / 2) {
                        let found = this.plan(u, s);
                        for (level, all) in &mut lists {
                            if let Some(f) = found.get(*level) {
                                all.extend(f.iter().filter(|&&y| y != u));
                            }
                            all.sort_unstable();
                            all.dedup();
                        }
                    }
                    lists
                        .into_iter()
                        .map(|(level, all)| {
                            let mut cands: Vec<Cand> = all
                                .iter()
                                .map(|&x| Cand {
                                    key: this.key_nodes(u, x),
                                    id: x,
                                })
                                .collect();
                            cands.sort_unstable();
                            (u, level, this.select_heuristic(&cands, this.cap(level)))
                        })
                        .collect::<Vec<_>>()
                },
            )
            .flatten_iter()
            .collect()
    });
    for (u, level, list) in updates {
        h.set_neighbors(u, level, &list);
    }
}
