//! [`Index`] for each kind: flat (exact), HNSW, IVF. Each method forwards to the kind's own
//! API; what differs between kinds (training, per-kind search settings) is settled here, once.
//! Ids, membership and filters go through each kind's [`crate::ids::IdMap`], the same way for
//! all.

use serde_json::{Map, Value};

use super::{file, Hits, Index, SearchOptions};
use crate::error::{Error, Result};
use crate::filter::Allowed;
use crate::flat::index::FlatIndex;
use crate::flat::{Radius, RangeResult, SearchParams};
use crate::hnsw::{self, Hnsw};
use crate::ids::IdMap;
use crate::ivf::Ivf;
use crate::metric::Metric;

/// HNSW's beam width and IVF's lists per query when the caller names none (the Python
/// façades' defaults).
pub const DEFAULT_EF_SEARCH: usize = 64;
pub const DEFAULT_NPROBE: usize = 8;

/// The trait methods every kind answers with its inherent method of the same name.
macro_rules! forward_to_inherent {
    () => {
        fn dim(&self) -> usize {
            Self::dim(self)
        }
        fn metric(&self) -> Metric {
            Self::metric(self)
        }
        fn id_map(&self) -> &IdMap {
            Self::id_map(self)
        }
        fn memory_usage(&self) -> usize {
            Self::memory_usage(self)
        }
    };
}

impl Index for FlatIndex<f32> {
    fn kind(&self) -> &'static str {
        "flat"
    }
    forward_to_inherent!();
    fn get(&self, id: i64) -> Option<Vec<f32>> {
        FlatIndex::get(self, id).map(<[f32]>::to_vec)
    }
    fn add(&mut self, data: &[f32], ids: &[i64], _threads: usize) -> Result<()> {
        FlatIndex::add(self, data, Some(ids))
    }
    fn remove(&mut self, ids: &[i64]) -> usize {
        FlatIndex::remove(self, ids)
    }
    fn search(
        &self,
        queries: &[f32],
        k: usize,
        allowed: Option<&Allowed>,
        opts: &SearchOptions<'_>,
    ) -> Result<Hits> {
        let res = FlatIndex::search(self, queries, k, allowed, &flat_params(self, opts))?;
        Ok(Hits {
            k,
            distances: res.distances,
            ids: res.indices,
            distance_computations: 0,
        })
    }
    fn range_search(
        &self,
        queries: &[f32],
        radius: Radius<'_, f32>,
        allowed: Option<&Allowed>,
        opts: &SearchOptions<'_>,
    ) -> Result<RangeResult<f32>> {
        FlatIndex::range_search(self, queries, radius, allowed, &flat_params(self, opts))
    }
    fn encode(&self, extra: &Map<String, Value>) -> Result<Vec<u8>> {
        file::encode_flat(self, extra)
    }
}

fn flat_params<'a>(ix: &FlatIndex<f32>, opts: &SearchOptions<'a>) -> SearchParams<'a> {
    SearchParams {
        threads: opts.threads.max(1),
        interrupt: opts.interrupt,
        bf16: ix.bf16(),
    }
}

impl Index for Hnsw {
    fn kind(&self) -> &'static str {
        "hnsw"
    }
    forward_to_inherent!();
    fn get(&self, id: i64) -> Option<Vec<f32>> {
        Hnsw::get(self, id).map(<[f32]>::to_vec)
    }
    fn add(&mut self, data: &[f32], ids: &[i64], threads: usize) -> Result<()> {
        Hnsw::add(self, data, ids, threads.max(1), None)
    }
    fn remove(&mut self, ids: &[i64]) -> usize {
        Hnsw::remove(self, ids, 1)
    }
    fn search(
        &self,
        queries: &[f32],
        k: usize,
        allowed: Option<&Allowed>,
        opts: &SearchOptions<'_>,
    ) -> Result<Hits> {
        let o = hnsw::SearchOptions {
            ef_search: opts.ef_search.unwrap_or(DEFAULT_EF_SEARCH),
            threads: opts.threads.max(1),
            interrupt: opts.interrupt,
        };
        let res = Hnsw::search(self, queries, k, &o, allowed)?;
        Ok(Hits {
            k,
            distances: res.distances,
            ids: res.ids,
            distance_computations: res.stats.distance_computations,
        })
    }
    fn encode(&self, extra: &Map<String, Value>) -> Result<Vec<u8>> {
        file::encode_hnsw(self, extra)
    }
}

impl Index for Ivf {
    fn kind(&self) -> &'static str {
        "ivf"
    }
    forward_to_inherent!();
    fn get(&self, id: i64) -> Option<Vec<f32>> {
        Ivf::get(self, id)
    }
    /// Trains on the first batch when untrained (it needs at least `nlist` rows).
    fn add(&mut self, data: &[f32], ids: &[i64], threads: usize) -> Result<()> {
        if ids.is_empty() && data.is_empty() {
            return Ok(());
        }
        if !self.is_trained() {
            // Validate the batch before the (long) training, so bad input costs nothing
            // (`Ivf::add` checks the same once trained).
            if data.len() != ids.len().saturating_mul(self.dim()) {
                return Err(Error::Shape {
                    name: "ids",
                    expected: data.len() / self.dim(),
                    got: ids.len(),
                });
            }
            self.id_map().check_new(ids)?;
            self.train(data, threads.max(1))?;
        }
        Ivf::add(self, data, ids, threads.max(1))
    }
    fn remove(&mut self, ids: &[i64]) -> usize {
        Ivf::remove(self, ids)
    }
    fn search(
        &self,
        queries: &[f32],
        k: usize,
        allowed: Option<&Allowed>,
        opts: &SearchOptions<'_>,
    ) -> Result<Hits> {
        let nprobe = opts.nprobe.unwrap_or(DEFAULT_NPROBE);
        let res = self.search_with(
            queries,
            k,
            nprobe,
            opts.threads.max(1),
            allowed,
            opts.interrupt,
        )?;
        Ok(Hits {
            k,
            distances: res.distances,
            ids: res.ids,
            distance_computations: res.distance_computations,
        })
    }
    fn encode(&self, extra: &Map<String, Value>) -> Result<Vec<u8>> {
        file::encode_ivf(self, extra)
    }
}
