//! `FlatIndex`: the exact index — stored vectors with their ids, searched by this module's
//! engine ([`knn`], [`range_search`]).
//!
//! Layout: the vectors as one row-major `n × dim` array in slot order (in memory, or mapped from
//! an index file until the first change), the rows' squared norms for the dot-based metrics, a
//! bf16 copy of float32 rows when `bf16` is on (few-query searches stream it), and an [`IdMap`].
//! Invariants, kept by every method and checked by [`FlatIndex::from_parts`]: all four agree
//! on `n`; ids are non-negative and unique; every stored value is finite and every row's squared
//! norm is finite (so every distance is); the norms and the bf16 copy are those of the rows.
//!
//! `add` validates everything before it changes anything, so a failed add leaves the index as
//! it was; `remove` closes up the slots in order (ties keep resolving to the earlier-added row).
//! Cost: add O(rows · dim); remove O(n · dim); search O(nq · n · dim), work capped at `n` for
//! any `k`.

use std::any::TypeId;

use crate::error::{Error, Result};
use crate::filter::Allowed;
use crate::flat::{knn, range_search, tile, Base, Neighbors, Radius, RangeResult, SearchParams};
use crate::float::Float;
use crate::ids::IdMap;
use crate::metric::Metric;
use crate::store::Store;
use crate::validate::checked_norms;

/// Fewer queries than this stream the bf16 copy (the memory-bound path).
const BF16_COPY_MAX_QUERIES: usize = 16;

/// Exact index over `T` vectors with int64 ids.
#[derive(Clone, Debug)]
pub struct FlatIndex<T: Float + bytemuck::Pod> {
    dim: usize,
    metric: Metric,
    bf16: bool,
    data: Store<T>,
    norms: Vec<T>,
    copy16: Vec<u16>,
    ids: IdMap,
    next_id: i64,
}

fn is_f32<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>()
}

/// Appends the bf16 copy of `rows` to `out` when `T` is f32.
fn extend_bf16<T: Float>(out: &mut Vec<u16>, rows: &[T]) {
    if !is_f32::<T>() {
        return;
    }
    // SAFETY: T is f32 (checked through TypeId above), so the slice is a slice of f32.
    let rows = unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<f32>(), rows.len()) };
    tile::extend_bf16(out, rows);
}

/// Appends `values` to `v` in memory advised for huge pages (the search streams these arrays).
fn append<V: Copy>(v: &mut Vec<V>, values: &[V], n: usize) -> Result<()> {
    crate::mem::try_reserve_huge(v, values.len())
        .map_err(|_| Error::param("vectors", "rows that fit in memory", n))?;
    v.extend_from_slice(values);
    Ok(())
}

/// Share of a flat index's rows a filter must allow for a search of few queries to scan every
/// row and keep the allowed ones ([`FlatIndex::search`]) instead of copying them first.
pub const WIDE_FILTER_SHARE: f64 = 0.25;
/// Queries per call up to which [`search_wide_filter`] is tried.
const WIDE_FILTER_MAX_QUERIES: usize = 16;

impl<T: Float + bytemuck::Pod> FlatIndex<T> {
    /// An empty index. `bf16` (float32 and a dot-based metric only) keeps a bf16 copy of the
    /// rows for few-query searches and allows bf16 first passes for batches.
    pub fn new(dim: usize, metric: Metric, bf16: bool) -> Result<Self> {
        if dim == 0 {
            return Err(Error::param("dim", "a positive integer", dim));
        }
        if bf16 && !(is_f32::<T>() && metric.is_dot_based()) {
            return Err(Error::param(
                "bf16",
                "float32 vectors and a dot-product metric",
                format!("{} and {}", T::NAME, metric.name()),
            ));
        }
        Ok(FlatIndex {
            dim,
            metric,
            bf16,
            data: Store::default(),
            norms: Vec::new(),
            copy16: Vec::new(),
            ids: IdMap::new(),
            next_id: 0,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn metric(&self) -> Metric {
        self.metric
    }
    pub fn bf16(&self) -> bool {
        self.bf16
    }
    /// Number of stored vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// The ids of the stored vectors, in slot order.
    pub fn ids(&self) -> &[i64] {
        self.ids.ids()
    }
    /// Where default ids continue.
    pub fn next_id(&self) -> i64 {
        self.next_id
    }
    /// The stored vectors, row-major in slot order.
    pub fn vectors(&self) -> &[T] {
        &self.data
    }
    /// `Corrupt` when the vectors are mapped from a file that was truncated under them (what
    /// was read from it since is not valid).
    pub fn check_mapping(&self) -> Result<()> {
        self.data.check()
    }

    /// True while the vectors are read from a mapped file.
    pub fn is_mapped(&self) -> bool {
        self.data.is_mapped()
    }

    /// Adds the rows of `data`; `ids` default to consecutive numbers after the largest so far.
    /// Nothing changes unless everything is valid.
    pub fn add(&mut self, data: &[T], ids: Option<&[i64]>) -> Result<()> {
        let norms = checked_norms(data, self.dim, "vectors")?;
        let n = data.len() / self.dim;
        let new = match ids {
            Some(ids) => {
                if ids.len() != n {
                    return Err(Error::Shape {
                        name: "ids",
                        expected: n,
                        got: ids.len(),
                    });
                }
                self.ids.check_new(ids)?;
                ids.to_vec()
            }
            None => self.ids.assign(n, self.next_id)?,
        };
        if n == 0 {
            return Ok(());
        }
        append(self.data.to_mut(), data, n)?;
        if self.metric.is_dot_based() {
            append(&mut self.norms, &norms, n)?;
        }
        if self.bf16 {
            crate::mem::try_reserve_huge(&mut self.copy16, data.len())
                .map_err(|_| Error::param("vectors", "rows that fit in memory", n))?;
            extend_bf16(&mut self.copy16, data);
        }
        self.ids.push(&new);
        let top = new.iter().max().map_or(0, |&m| m.saturating_add(1));
        self.next_id = self.next_id.max(top);
        Ok(())
    }

    /// Removes the vectors with these ids (absent ones skipped); returns how many were present.
    pub fn remove(&mut self, ids: &[i64]) -> usize {
        let slots = self.ids.slots_of(ids);
        if slots.is_empty() {
            return 0;
        }
        let mut keep = vec![true; self.len()];
        for &s in &slots {
            keep[s] = false;
        }
        let d = self.dim;
        let rows = std::mem::take(&mut self.data).into_vec();
        let mut data = Vec::new();
        crate::mem::reserve_huge(&mut data, rows.len() - slots.len() * d);
        for (row, &k) in rows.chunks_exact(d).zip(&keep) {
            if k {
                data.extend_from_slice(row);
            }
        }
        self.data = Store::Owned(data);
        retain(&mut self.norms, &keep, 1);
        retain(&mut self.copy16, &keep, d);
        self.ids.retain(&keep);
        slots.len()
    }

    /// The stored vector of `id`.
    pub fn get(&self, id: i64) -> Option<&[T]> {
        let s = self.ids.slot(id)?;
        Some(&self.data[s * self.dim..(s + 1) * self.dim])
    }

    /// The slots a filter allows (see [`IdMap::allowed_from_ids`] / `allowed_from_mask`).
    pub fn id_map(&self) -> &IdMap {
        &self.ids
    }

    /// The base to search: every row, or a copy of the allowed ones with their slots.
    fn base<'a>(
        &'a self,
        allowed: Option<&Allowed>,
        nq: usize,
        buf: &'a mut (Vec<T>, Vec<T>, Vec<usize>),
    ) -> Base<'a, T> {
        let d = self.dim;
        let Some(allowed) = allowed else {
            let mut base = Base::new(&self.data, d);
            if !self.norms.is_empty() {
                base = base.with_norms(&self.norms);
            }
            if self.bf16 && nq < BF16_COPY_MAX_QUERIES {
                base = base.with_bf16(&self.copy16);
            }
            return base;
        };
        let (rows, norms, slots) = buf;
        slots.extend((0..self.len()).filter(|&s| allowed.contains(s as u32)));
        // A fresh buffer per search: advised for huge pages, it faults in far fewer pages.
        crate::mem::reserve_huge(rows, slots.len() * d);
        for &s in slots.iter() {
            rows.extend_from_slice(&self.data[s * d..(s + 1) * d]);
            if !self.norms.is_empty() {
                norms.push(self.norms[s]);
            }
        }
        let base = Base::new(rows, d);
        if self.norms.is_empty() {
            base
        } else {
            base.with_norms(norms)
        }
    }

    /// The `k` nearest stored vectors of each query (row-major), as ids; places past the number
    /// of candidates hold id −1 and the metric's missing distance. The work is capped at the
    /// number of candidates whatever `k`; the `nq × k` result is allocated only if it fits.
    /// A filter that allows at least [`WIDE_FILTER_SHARE`] of the rows is searched without
    /// copying them when the call has few queries (see [`Self::search_wide_filter`]).
    pub fn search(
        &self,
        queries: &[T],
        k: usize,
        allowed: Option<&Allowed>,
        params: &SearchParams,
    ) -> Result<Neighbors<T>> {
        if let Some(a) = allowed {
            if let Some(res) = self.search_wide_filter(queries, k, a, params)? {
                return Ok(res);
            }
        }
        self.search_copying(queries, k, allowed, params)
    }

    /// [`Self::search`] with the allowed rows copied first (every row when `allowed` is `None`).
    pub(crate) fn search_copying(
        &self,
        queries: &[T],
        k: usize,
        allowed: Option<&Allowed>,
        params: &SearchParams,
    ) -> Result<Neighbors<T>> {
        let d = self.dim;
        if !queries.len().is_multiple_of(d) {
            return Err(Error::DimensionMismatch {
                expected: d,
                got: queries.len() % d,
            });
        }
        let nq = queries.len() / d;
        crate::validate::result_size(nq, k)?;
        let mut buf = Default::default();
        let base = self.base(allowed, nq, &mut buf);
        let n = base.n();
        let missing = self.metric.missing::<T>();
        if n == 0 || nq == 0 {
            return Ok(Neighbors {
                k,
                distances: vec![missing; nq * k],
                indices: vec![-1; nq * k],
            });
        }
        let kk = k.min(n);
        let res = knn(&base, queries, kk, self.metric, params)?;
        self.data.check()?;
        let slot_id = |pos: i64| -> i64 {
            if pos < 0 {
                -1
            } else if buf.2.is_empty() {
                self.ids.id(pos as usize)
            } else {
                self.ids.id(buf.2[pos as usize])
            }
        };
        if kk == k {
            let indices = res.indices.iter().map(|&p| slot_id(p)).collect();
            return Ok(Neighbors {
                k,
                distances: res.distances,
                indices,
            });
        }
        let mut distances = Vec::with_capacity(nq * k);
        let mut indices = Vec::with_capacity(nq * k);
        for q in 0..nq {
            let row = q * kk..(q + 1) * kk;
            distances.extend_from_slice(&res.distances[row.clone()]);
            indices.extend(res.indices[row].iter().map(|&p| slot_id(p)));
            distances.resize((q + 1) * k, missing);
            indices.resize((q + 1) * k, -1);
        }
        Ok(Neighbors {
            k,
            distances,
            indices,
        })
    }

    /// A flat search under a filter that allows most rows, without copying them: the nearest
    /// `w` of all rows, where about twice `k` of them are expected to be allowed, then the first
    /// `k` allowed of each row (widened fourfold while a query finds fewer). Exact: an allowed
    /// row outside the nearest `w` comes after each of them in the search's order, so the first
    /// `min(k, allowed)` allowed ones among the `w` are the filtered answer, ties included.
    /// `None` when the filter allows too few rows or the call has many queries (the copy is
    /// cheaper then, or amortised).
    fn search_wide_filter(
        &self,
        queries: &[T],
        k: usize,
        allowed: &Allowed,
        params: &SearchParams,
    ) -> Result<Option<Neighbors<T>>> {
        let ix = self;
        let (n, count) = (ix.len(), allowed.count());
        let nq = queries.len() / ix.dim().max(1);
        if n == 0
            || k == 0
            || nq > WIDE_FILTER_MAX_QUERIES
            || (count as f64) < WIDE_FILTER_SHARE * n as f64
        {
            return Ok(None);
        }
        let kk = k.min(count);
        let missing = ix.metric.missing::<T>();
        let mut wide = (2 * kk).saturating_mul(n).div_ceil(count) + 16;
        loop {
            wide = wide.min(n);
            let res = ix.search_copying(queries, wide, None, params)?;
            let mut hits = Neighbors {
                k,
                distances: Vec::with_capacity(nq * k),
                indices: Vec::with_capacity(nq * k),
            };
            let mut short = false;
            for q in 0..nq {
                let row = q * wide..(q + 1) * wide;
                let before = hits.indices.len();
                for (&id, &d) in res.indices[row.clone()].iter().zip(&res.distances[row]) {
                    if hits.indices.len() - before == kk {
                        break;
                    }
                    let slot = ix.ids.slot(id);
                    if slot.is_some_and(|s| allowed.contains(s as u32)) {
                        hits.indices.push(id);
                        hits.distances.push(d);
                    }
                }
                short |= hits.indices.len() - before < kk;
                hits.indices.resize((q + 1) * k, -1);
                hits.distances.resize((q + 1) * k, missing);
            }
            if !short || wide == n {
                return Ok(Some(hits));
            }
            wide = wide.saturating_mul(4);
        }
    }

    /// Every stored vector within `radius` of each query (similarity ≥ radius for inner
    /// product), closest first, as ids.
    pub fn range_search(
        &self,
        queries: &[T],
        radius: Radius<T>,
        allowed: Option<&Allowed>,
        params: &SearchParams,
    ) -> Result<RangeResult<T>> {
        let nq = queries.len() / self.dim;
        let mut buf = Default::default();
        let base = self.base(allowed, nq, &mut buf);
        let mut res = range_search(&base, queries, radius, self.metric, true, params)?;
        self.data.check()?;
        for p in &mut res.indices {
            let slot = if buf.2.is_empty() {
                *p as usize
            } else {
                buf.2[*p as usize]
            };
            *p = self.ids.id(slot);
        }
        Ok(res)
    }

    /// Bytes held in process memory (mapped vectors count 0: the page cache holds them).
    pub fn memory_usage(&self) -> usize {
        self.data.heap_bytes()
            + self.norms.capacity() * std::mem::size_of::<T>()
            + self.copy16.capacity() * 2
            + self.ids.memory_usage()
    }

    /// An index from saved parts, checking every invariant (`Corrupt` otherwise); the norms and
    /// the bf16 copy are recomputed.
    pub fn from_parts(
        dim: usize,
        metric: Metric,
        bf16: bool,
        vectors: Store<T>,
        ids: Vec<i64>,
        next_id: i64,
    ) -> Result<Self> {
        let corrupt = |e: Error| Error::Corrupt(format!("flat index: {e}"));
        let mut ix = Self::new(dim, metric, bf16).map_err(corrupt)?;
        if vectors.len() != ids.len().saturating_mul(dim) {
            return Err(Error::Corrupt(format!(
                "flat index: {} vector values for {} ids of dimension {dim}",
                vectors.len(),
                ids.len()
            )));
        }
        let norms = checked_norms(&vectors, dim, "vectors").map_err(corrupt)?;
        ix.ids = IdMap::from_ids(ids)?;
        if next_id < 0 {
            return Err(Error::Corrupt(format!("flat index: next_id {next_id}")));
        }
        ix.next_id = next_id.max(ix.ids.next_after_max());
        if metric.is_dot_based() {
            append(&mut ix.norms, &norms, ix.ids.len()).map_err(corrupt)?;
        }
        if bf16 {
            crate::mem::try_reserve_huge(&mut ix.copy16, vectors.len())
                .map_err(|_| Error::Corrupt("flat index: too large for memory".into()))?;
            extend_bf16(&mut ix.copy16, &vectors);
        }
        ix.data = vectors.into_huge();
        Ok(ix)
    }
}

/// Keeps the `width`-value groups of `v` whose `keep` flag is set (an empty `v` stays empty).
fn retain<V: Copy>(v: &mut Vec<V>, keep: &[bool], width: usize) {
    if v.is_empty() {
        return;
    }
    let mut out = Vec::with_capacity(v.len());
    for (g, &k) in v.chunks_exact(width).zip(keep) {
        if k {
            out.extend_from_slice(g);
        }
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::knn;

    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        (0..n * d).map(|_| rng.next_f64() as f32 - 0.5).collect()
    }

    /// The oracle: the engine over the live rows, mapped to ids.
    fn oracle(ix: &FlatIndex<f32>, q: &[f32], k: usize) -> Vec<i64> {
        let res = knn(
            &Base::new(ix.vectors(), ix.dim()),
            q,
            k,
            ix.metric(),
            &SearchParams::default(),
        )
        .unwrap();
        res.indices.iter().map(|&p| ix.ids()[p as usize]).collect()
    }

    #[test]
    fn remove_keeps_the_bf16_copy_in_step() {
        let d = 16;
        let x = rows(200, d, 1);
        let mut ix = FlatIndex::<f32>::new(d, Metric::Euclidean, true).unwrap();
        ix.add(&x, None).unwrap();
        let gone: Vec<i64> = (0..100).collect();
        assert_eq!(ix.remove(&gone), 100);
        let q = &x[150 * d..155 * d];
        let got = ix.search(q, 3, None, &SearchParams::default()).unwrap();
        assert_eq!(got.indices, oracle(&ix, q, 3));
        assert_eq!(got.indices[0], 150);
    }

    #[test]
    fn failed_add_changes_nothing_and_k_is_capped() {
        let d = 4;
        let mut ix = FlatIndex::<f32>::new(d, Metric::Cosine, true).unwrap();
        ix.add(&rows(10, d, 2), None).unwrap();
        let before = (ix.vectors().to_vec(), ix.ids().to_vec());
        assert!(ix.add(&[1e30, 1e30, 0.0, 0.0], None).is_err());
        assert!(ix.add(&[f32::NAN, 0.0, 0.0, 0.0], None).is_err());
        assert!(ix.add(&rows(2, d, 3), Some(&[3, 11])).is_err());
        assert_eq!((ix.vectors().to_vec(), ix.ids().to_vec()), before);
        let res = ix
            .search(&rows(1, d, 4), 25, None, &SearchParams::default())
            .unwrap();
        assert_eq!(res.indices.iter().filter(|&&i| i >= 0).count(), 10);
        assert!(ix
            .search(
                &rows(2, d, 4),
                usize::MAX / 4,
                None,
                &SearchParams::default()
            )
            .is_err());
    }

    #[test]
    fn filters_and_parts() {
        let d = 3;
        let x = rows(50, d, 5);
        let mut ix = FlatIndex::<f32>::new(d, Metric::Manhattan, false).unwrap();
        let ids: Vec<i64> = (0..50).map(|i| i * 2).collect();
        ix.add(&x, Some(&ids)).unwrap();
        let allowed = ix.id_map().allowed_from_ids(&[4, 8, 1000]);
        let res = ix
            .search(&x[..d], 5, Some(&allowed), &SearchParams::default())
            .unwrap();
        assert_eq!(&res.indices[2..], &[-1, -1, -1]);
        assert!(res.indices[..2].iter().all(|i| [4, 8].contains(i)));
        let back = FlatIndex::<f32>::from_parts(
            d,
            Metric::Manhattan,
            false,
            Store::Owned(ix.vectors().to_vec()),
            ix.ids().to_vec(),
            0,
        )
        .unwrap();
        assert_eq!(back.next_id(), 99);
        let bad_ids = vec![-3; 50];
        assert!(FlatIndex::<f32>::from_parts(
            d,
            Metric::Manhattan,
            false,
            Store::Owned(x),
            bad_ids,
            0
        )
        .is_err());
    }
}
