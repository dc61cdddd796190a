//! Exact search against two oracles.
//!
//! - The *naive* oracle: every pair computed with the scalar `*_naive` kernels in f64, sorted by
//!   (key, index). On integer-valued data every metric except cosine is computed exactly by both
//!   sides, so indices must match it exactly (ties included); on continuous data distances must
//!   match rank by rank within a tolerance.
//! - The *direct* oracle: every pair computed with the library's own exact key (`Metric::key`, the
//!   dispatched kernels, in the input type), sorted by (key, index). The search promises exactly
//!   this answer on every path (tiled, direct, split), so indices and distances must be identical.

use super::*;
use crate::metric::kernels::{
    chebyshev_naive, dot_naive, hamming, manhattan_naive, minkowski_reduced, sqeuclidean_naive,
};
use proptest::prelude::*;

const METRICS: [Metric; 9] = [
    Metric::SqEuclidean,
    Metric::Euclidean,
    Metric::InnerProduct,
    Metric::Cosine,
    Metric::Manhattan,
    Metric::Chebyshev,
    Metric::Minkowski(3.0),
    Metric::Minkowski(1.5),
    Metric::Hamming,
];

// ---------------------------------------------------------------------------------------------
// Data

/// SplitMix64: a tiny seeded generator, so a failing case is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// `len` integers in `-span..=span` (exact in f32 and f64, so many ties and duplicates).
    fn ints<T: Float>(&mut self, len: usize, span: usize) -> Vec<T> {
        (0..len)
            .map(|_| T::from_f64(self.below(2 * span + 1) as f64 - span as f64))
            .collect()
    }

    fn gauss<T: Float>(&mut self, len: usize) -> Vec<T> {
        (0..len).map(|_| T::from_f64(self.normal())).collect()
    }
}

fn params(threads: usize) -> SearchParams<'static> {
    SearchParams {
        threads,
        interrupt: None,
        bf16: true,
    }
}

fn to64<T: Float>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

fn row<T>(data: &[T], d: usize, i: usize) -> &[T] {
    &data[i * d..(i + 1) * d]
}

// ---------------------------------------------------------------------------------------------
// Oracles

/// The key of `metric` between two f64 vectors, from the scalar twins.
fn naive_key(metric: Metric, a: &[f64], b: &[f64]) -> f64 {
    match metric {
        Metric::SqEuclidean | Metric::Euclidean => sqeuclidean_naive(a, b),
        Metric::InnerProduct => -dot_naive(a, b),
        Metric::Cosine => {
            let (na, nb) = (dot_naive(a, a), dot_naive(b, b));
            if na == 0.0 || nb == 0.0 {
                1.0
            } else {
                (1.0 - dot_naive(a, b) / (na.sqrt() * nb.sqrt())).max(0.0)
            }
        }
        Metric::Manhattan => manhattan_naive(a, b),
        Metric::Chebyshev => chebyshev_naive(a, b),
        Metric::Minkowski(p) => minkowski_reduced(a, b, p),
        Metric::Hamming => hamming(a, b),
    }
}

/// Every (key, index) of one query, sorted best first (f64, scalar twins).
fn naive_ranked(metric: Metric, base: &[f64], q: &[f64], d: usize) -> Vec<(f64, usize)> {
    let n = base.len() / d;
    let mut all: Vec<(f64, usize)> = (0..n)
        .map(|j| (naive_key(metric, q, row(base, d, j)), j))
        .collect();
    sort_candidates(&mut all);
    all
}

/// Every (key, index) of one query, sorted best first, with the library's canonical key (what
/// every path ranks by, on every SIMD level).
fn direct_ranked<T: Float>(metric: Metric, base: &[T], q: &[T], d: usize) -> Vec<(f64, usize)> {
    let mut all: Vec<(f64, usize)> = (0..base.len() / d)
        .map(|j| (metric.canonical_key(q, row(base, d, j)), j))
        .collect();
    sort_candidates(&mut all);
    all
}

/// Tolerance scale of a distance between `a` and `b` (|values| the computation went through).
fn scale(metric: Metric, a: &[f64], b: &[f64], dist: f64) -> f64 {
    let mag = match metric {
        Metric::InnerProduct => a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum(),
        _ => dist.abs(),
    };
    mag.max(1.0)
}

fn tol<T: Float>() -> f64 {
    if T::NAME == "float32" {
        2e-4
    } else {
        1e-10
    }
}

fn same<T: Float>(a: T, b: T) -> bool {
    a == b || (a.to_f64().is_nan() && b.to_f64().is_nan())
}

/// Runs `knn` and checks it against both oracles. `exact_data`: values are small integers, so the
/// naive oracle's indices must be matched exactly (except for cosine, whose keys round).
fn check_knn<T: Float>(
    base: &[T],
    queries: &[T],
    d: usize,
    k: usize,
    metric: Metric,
    threads: usize,
    exact_data: bool,
) {
    let n = base.len() / d;
    let nq = queries.len() / d;
    let ctx = format!(
        "{} {} n={n} d={d} nq={nq} k={k} threads={threads}",
        T::NAME,
        metric.name()
    );
    let res = knn(&Base::new(base, d), queries, k, metric, &params(threads))
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(res.k, k, "{ctx}");
    assert_eq!(res.distances.len(), nq * k, "{ctx}");
    assert_eq!(res.indices.len(), nq * k, "{ctx}");

    // Cached norms give the same answer as norms computed on the fly.
    let norms = squared_norms(base, d);
    let with_norms = knn(
        &Base::new(base, d).with_norms(&norms),
        queries,
        k,
        metric,
        &params(threads),
    )
    .unwrap();
    assert_eq!(with_norms, res, "{ctx}: cached norms");
    // A bf16 copy (float32: few-query searches stream it, then re-score) changes nothing.
    if let Some(b32) = T::as_f32(base) {
        let copy = tile::to_bf16(b32);
        let streamed = knn(
            &Base::new(base, d).with_bf16(&copy),
            queries,
            k,
            metric,
            &params(threads),
        )
        .unwrap();
        assert_eq!(streamed, res, "{ctx}: bf16 copy");
    }

    let (base64, queries64) = (to64(base), to64(queries));
    for qi in 0..nq {
        let ds = &res.distances[qi * k..(qi + 1) * k];
        let is = &res.indices[qi * k..(qi + 1) * k];
        let found = n.min(k);

        // Padding.
        for r in found..k {
            assert_eq!(is[r], -1, "{ctx} q={qi}: padding index at rank {r}");
            assert_eq!(
                ds[r],
                metric.missing::<T>(),
                "{ctx} q={qi}: padding at rank {r}"
            );
        }

        // Direct oracle: identical indices and distances.
        let direct = direct_ranked(metric, base, row(queries, d, qi), d);
        for r in 0..found {
            let (key, j) = direct[r];
            assert_eq!(
                is[r],
                j as i64,
                "{ctx} q={qi} rank {r}: got {:?}, direct oracle {:?}",
                &is[..found],
                direct[..found].iter().map(|c| c.1).collect::<Vec<_>>()
            );
            let want = T::from_f64(metric.key_to_distance(key));
            assert!(
                same(ds[r], want),
                "{ctx} q={qi} rank {r}: distance {:?} != {:?}",
                ds[r],
                want
            );
        }

        // Naive f64 oracle.
        let q64 = row(&queries64, d, qi);
        let naive = naive_ranked(metric, &base64, q64, d);
        for r in 0..found {
            let (key, j) = naive[r];
            let want = metric.key_to_distance(key);
            let got = ds[r].to_f64();
            let b = row(&base64, d, is[r] as usize);
            let s = scale(metric, q64, b, want);
            assert!(
                (got - want).abs() <= tol::<T>() * s,
                "{ctx} q={qi} rank {r}: distance {got} vs naive {want}"
            );
            let own = metric.key_to_distance(naive_key(metric, q64, b));
            assert!(
                (got - own).abs() <= tol::<T>() * s,
                "{ctx} q={qi} rank {r}: distance {got} of row {} vs naive {own}",
                is[r]
            );
            if exact_data && exact_metric(metric) {
                assert_eq!(
                    is[r],
                    j as i64,
                    "{ctx} q={qi} rank {r}: got {:?}, naive oracle {:?}",
                    &is[..found],
                    naive[..found].iter().map(|c| c.1).collect::<Vec<_>>()
                );
            }
        }
    }
}

/// Metrics computed exactly on small integers (cosine divides; a fractional p rounds).
fn exact_metric(metric: Metric) -> bool {
    match metric {
        Metric::Cosine => false,
        Metric::Minkowski(p) => p.fract() == 0.0,
        _ => true,
    }
}

/// Runs `range_search` and checks it against both oracles.
fn check_range<T: Float>(
    base: &[T],
    queries: &[T],
    d: usize,
    radius: Radius<T>,
    metric: Metric,
    sort: bool,
    threads: usize,
) {
    let n = base.len() / d;
    let nq = queries.len() / d;
    let ctx = format!(
        "{} {} n={n} d={d} nq={nq} sort={sort} threads={threads} radius={radius:?}",
        T::NAME,
        metric.name()
    );
    let res = range_search(
        &Base::new(base, d),
        queries,
        radius,
        metric,
        sort,
        &params(threads),
    )
    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert_eq!(res.lims.len(), nq + 1, "{ctx}");
    assert_eq!(res.lims[0], 0, "{ctx}");
    assert_eq!(
        *res.lims.last().unwrap() as usize,
        res.indices.len(),
        "{ctx}"
    );
    assert_eq!(res.distances.len(), res.indices.len(), "{ctx}");

    if let Some(b32) = T::as_f32(base) {
        let copy = tile::to_bf16(b32);
        let b = Base::new(base, d).with_bf16(&copy);
        let streamed = range_search(&b, queries, radius, metric, sort, &params(threads)).unwrap();
        assert_eq!(streamed, res, "{ctx}: bf16 copy");
    }
    let sim = metric.is_similarity();
    let (base64, queries64) = (to64(base), to64(queries));
    for qi in 0..nq {
        let (lo, hi) = (res.lims[qi] as usize, res.lims[qi + 1] as usize);
        assert!(lo <= hi, "{ctx}: lims not monotone");
        let ds = &res.distances[lo..hi];
        let is = &res.indices[lo..hi];
        let r = radius.get(qi);

        // Direct oracle: exactly the rows whose directly computed distance is within the radius,
        // closest first (by distance, a similarity largest first, then index) or in index order.
        // (the radius test is made on canonical keys, as scikit-learn's trees make it)
        let rkey = metric.distance_to_key(r.to_f64());
        let mut direct: Vec<(f64, usize)> = direct_ranked(metric, base, row(queries, d, qi), d)
            .into_iter()
            .filter(|&(key, _)| key <= rkey)
            .map(|(key, j)| (metric.key_to_distance(key), j))
            .collect();
        if !sort {
            direct.sort_by_key(|c| c.1);
        } else if sim {
            direct.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        } else {
            direct.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        }
        let want: Vec<i64> = direct.iter().map(|c| c.1 as i64).collect();
        assert_eq!(is, &want[..], "{ctx} q={qi}: indices vs direct oracle");
        for (&got, &(dist, _)) in ds.iter().zip(&direct) {
            assert!(same(got, T::from_f64(dist)), "{ctx} q={qi}");
        }

        // Naive f64 oracle: every row clearly inside is found, every row found is (nearly) inside.
        let q64 = row(&queries64, d, qi);
        let r64 = r.to_f64();
        for j in 0..n {
            let b = row(&base64, d, j);
            let dist = metric.key_to_distance(naive_key(metric, q64, b));
            let t = tol::<T>() * scale(metric, q64, b, dist);
            let inside = if sim {
                dist - t >= r64
            } else {
                dist + t <= r64
            };
            let outside = if sim { dist + t < r64 } else { dist - t > r64 };
            let got = is.contains(&(j as i64));
            assert!(got || !inside, "{ctx} q={qi}: row {j} at {dist} missing");
            assert!(
                !(outside && got),
                "{ctx} q={qi}: row {j} at {dist} returned"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-nearest: properties over random shapes

fn random_case<T: Float>(
    seed: u64,
    n: usize,
    d: usize,
    nq: usize,
    k: usize,
    metric: Metric,
    threads: usize,
) {
    let mut rng = Rng(seed);
    // Integer data: exact on both sides, full of ties and duplicates.
    let base: Vec<T> = rng.ints(n * d, 1 + seed as usize % 3);
    let queries: Vec<T> = rng.ints(nq * d, 2);
    check_knn(&base, &queries, d, k, metric, threads, true);
    // Continuous data, with some queries equal to base rows.
    let base: Vec<T> = rng.gauss(n * d);
    let mut queries: Vec<T> = rng.gauss(nq * d);
    for qi in (0..nq).step_by(3) {
        let j = rng.below(n);
        queries[qi * d..(qi + 1) * d].copy_from_slice(row(&base, d, j));
    }
    check_knn(&base, &queries, d, k, metric, threads, false);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random shapes (n = 1, d = 1, k = n, k > n included), every metric, both types, both paths
    /// (nq below and above 16), 1 to 4 threads.
    #[test]
    fn knn_matches_oracles(
        seed in any::<u64>(),
        n in 1usize..60,
        d in 1usize..24,
        nq in 1usize..48,
        kx in 0usize..64,
        m in 0usize..METRICS.len(),
        threads in 1usize..5,
    ) {
        let k = kx % (n + 3) + 1;
        random_case::<f32>(seed, n, d, nq, k, METRICS[m], threads);
        random_case::<f64>(seed, n, d, nq, k, METRICS[m], threads);
    }

    /// Range search on random shapes: scalar and per-query radius, sorted or not.
    #[test]
    fn range_matches_oracles(
        seed in any::<u64>(),
        n in 1usize..60,
        d in 1usize..24,
        nq in 1usize..48,
        m in 0usize..METRICS.len(),
        threads in 1usize..5,
        sort in any::<bool>(),
    ) {
        range_case::<f32>(seed, n, d, nq, METRICS[m], threads, sort);
        range_case::<f64>(seed, n, d, nq, METRICS[m], threads, sort);
    }
}

fn range_case<T: Float>(
    seed: u64,
    n: usize,
    d: usize,
    nq: usize,
    metric: Metric,
    threads: usize,
    sort: bool,
) {
    let mut rng = Rng(seed);
    for integer in [true, false] {
        let (base, queries): (Vec<T>, Vec<T>) = if integer {
            (rng.ints(n * d, 2), rng.ints(nq * d, 2))
        } else {
            (rng.gauss(n * d), rng.gauss(nq * d))
        };
        // Per query: the exact distance of a random row, so the boundary is hit exactly (that row
        // and its ties must be returned).
        let radii: Vec<T> = (0..nq)
            .map(|qi| {
                let j = rng.below(n);
                let q = row(&queries, d, qi);
                let nb = squared_norms(row(&base, d, j), d)[0];
                let qn = squared_norms(q, d)[0];
                metric.key_to_distance(metric.key(q, row(&base, d, j), qn, nb))
            })
            .collect();
        check_range(
            &base,
            &queries,
            d,
            Radius::PerQuery(&radii),
            metric,
            sort,
            threads,
        );
        let all = radii[0];
        check_range(&base, &queries, d, Radius::All(all), metric, sort, threads);
        if !metric.is_similarity() {
            check_range(
                &base,
                &queries,
                d,
                Radius::All(T::ZERO),
                metric,
                sort,
                threads,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-nearest: targeted shapes

#[test]
fn tiled_and_direct_paths_at_the_boundary() {
    // nq = 15 (direct) and 16 (tiled), d = 3 (direct) and 4 (tiled), base crossing a tile.
    let mut rng = Rng(7);
    for (nq, d) in [(15, 4), (16, 4), (16, 3), (17, 5), (130, 9)] {
        let n = 600;
        let base: Vec<f32> = rng.gauss(n * d);
        let queries: Vec<f32> = rng.gauss(nq * d);
        for metric in [Metric::SqEuclidean, Metric::InnerProduct, Metric::Cosine] {
            for k in [1, 5] {
                check_knn(&base, &queries, d, k, metric, 2, false);
            }
        }
    }
}

#[test]
fn many_queries_few_base_rows() {
    let mut rng = Rng(11);
    let d = 5;
    for n in [1, 2, 3] {
        let base: Vec<f64> = rng.ints(n * d, 1);
        let queries: Vec<f64> = rng.ints(500 * d, 2);
        for metric in METRICS {
            for k in 1..=n + 2 {
                check_knn(&base, &queries, d, k, metric, 3, true);
            }
        }
    }
}

#[test]
fn few_queries_split_base() {
    // One to three queries against 5000 rows: the base is split among threads and the per-split
    // lists merged. Integer data puts ties in every split: lower indices must win.
    let mut rng = Rng(13);
    let (n, d) = (5000, 3);
    let base32: Vec<f32> = rng.ints(n * d, 2);
    let base64 = to64(&base32);
    let gauss: Vec<f32> = rng.gauss(n * 8);
    for nq in [1, 3] {
        let q32: Vec<f32> = rng.ints(nq * d, 2);
        let qg: Vec<f32> = rng.gauss(nq * 8);
        for threads in [1, 2, 4] {
            for metric in METRICS {
                for k in [1, 10, 100] {
                    check_knn(&base32, &q32, d, k, metric, threads, true);
                    check_knn(&base64, &to64(&q32), d, k, metric, threads, true);
                }
                check_knn(&gauss, &qg, 8, 7, metric, threads, false);
            }
        }
    }
}

#[test]
fn duplicates_come_back_lower_index_first() {
    // Every row appears three times, the copies far apart (different tiles and splits).
    let mut rng = Rng(17);
    let (m, d) = (700, 13);
    let unique: Vec<f32> = rng.gauss(m * d);
    let base: Vec<f32> = [&unique[..], &unique[..], &unique[..]].concat();
    let n = 3 * m;
    for nq in [4, 40] {
        let mut queries: Vec<f32> = Vec::with_capacity(nq * d);
        for qi in 0..nq {
            queries.extend(row(&unique, d, (qi * 37) % m).iter().map(|x| x + 1e-3));
        }
        for threads in [1, 3] {
            for metric in METRICS {
                check_knn(&base, &queries, d, 3, metric, threads, false);
                check_knn(&base, &queries, d, 4, metric, threads, false);
                // The query's row and its two copies are the three nearest, in index order.
                let res = knn(&Base::new(&base, d), &queries, 3, metric, &params(threads)).unwrap();
                if metric != Metric::InnerProduct && metric != Metric::Hamming {
                    for qi in 0..nq {
                        let j = ((qi * 37) % m) as i64;
                        assert_eq!(
                            &res.indices[qi * 3..qi * 3 + 3],
                            &[j, j + m as i64, j + 2 * m as i64],
                            "{} q={qi}",
                            metric.name()
                        );
                        let ds = &res.distances[qi * 3..qi * 3 + 3];
                        assert!(ds[0] == ds[1] && ds[1] == ds[2], "{ds:?}");
                    }
                }
            }
        }
    }
    assert_eq!(n, base.len() / d);
}

#[test]
fn self_query_is_exactly_zero_and_first() {
    // f32 rows with near-duplicates closer than the expanded form's rounding error: every point
    // queried against the base must come back at distance exactly 0, itself first.
    let mut rng = Rng(19);
    let (m, d) = (150, 32);
    let mut base: Vec<f32> = rng.gauss(m * d);
    let near: Vec<f32> = base
        .iter()
        .map(|&x| x + 1e-4 * rng.normal() as f32)
        .collect();
    base.extend(near);
    let n = 2 * m;
    for threads in [1, 2] {
        for metric in [Metric::Euclidean, Metric::SqEuclidean, Metric::Cosine] {
            for k in [1, 2] {
                let res = knn(&Base::new(&base, d), &base, k, metric, &params(threads)).unwrap();
                for i in 0..n {
                    assert_eq!(res.distances[i * k], 0.0, "{} row {i}", metric.name());
                    if metric == Metric::Cosine {
                        // A lower-index row may tie at exactly 0 (cosine clamps); itself must
                        // then come next.
                        let first = res.indices[i * k] as usize;
                        assert!(first <= i, "{} row {i}", metric.name());
                    } else {
                        assert_eq!(res.indices[i * k], i as i64, "{} row {i}", metric.name());
                    }
                }
                check_knn(&base, &base, d, k, metric, threads, false);
            }
        }
    }
}

#[test]
fn empty_base_and_no_queries() {
    let base: [f64; 0] = [];
    let res = knn(
        &Base::new(&base, 3),
        &[1.0, 2.0, 3.0],
        2,
        Metric::InnerProduct,
        &params(2),
    )
    .unwrap();
    assert_eq!(res.indices, vec![-1, -1]);
    assert_eq!(res.distances, vec![f64::NEG_INFINITY; 2]);
    let res = knn(
        &Base::new(&base, 3),
        &[1.0, 2.0, 3.0],
        1,
        Metric::Euclidean,
        &params(1),
    )
    .unwrap();
    assert_eq!(res.distances, vec![f64::INFINITY]);
    let res = knn(
        &Base::new(&[1.0f32, 2.0], 2),
        &[],
        4,
        Metric::Cosine,
        &params(2),
    )
    .unwrap();
    assert!(res.indices.is_empty() && res.distances.is_empty());
    let r = range_search(
        &Base::new(&base, 3),
        &[0.0; 6],
        Radius::All(1.0),
        Metric::Cosine,
        true,
        &params(2),
    )
    .unwrap();
    assert_eq!(r.lims, vec![0, 0, 0]);
}

#[test]
fn huge_k_is_an_error_not_an_abort() {
    let base = [0.0f32, 1.0, 2.0, 3.0];
    let queries = [0.5f32, 1.5];
    for k in [1usize << 50, usize::MAX] {
        let err = knn(
            &Base::new(&base, 2),
            &queries,
            k,
            Metric::Euclidean,
            &params(2),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "k", .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&k.to_string()), "{err}");
    }
    // k > n pads.
    let res = knn(
        &Base::new(&base, 2),
        &queries,
        5,
        Metric::Euclidean,
        &params(2),
    )
    .unwrap();
    assert_eq!(res.indices, vec![0, 1, -1, -1, -1]);
}

// ---------------------------------------------------------------------------------------------
// Range search: targeted

#[test]
fn range_inner_product_is_similarity_at_least_radius_most_similar_first() {
    let base = [1.0f64, 0.0, 0.0, 1.0, 2.0, 2.0, -1.0, 0.0, 0.5, 0.5];
    let q = [1.0f64, 1.0];
    // similarities: 1, 1, 4, -1, 1
    let r = range_search(
        &Base::new(&base, 2),
        &q,
        Radius::All(1.0),
        Metric::InnerProduct,
        true,
        &params(1),
    )
    .unwrap();
    assert_eq!(r.indices, vec![2, 0, 1, 4]);
    assert_eq!(r.distances, vec![4.0, 1.0, 1.0, 1.0]);
    let r = range_search(
        &Base::new(&base, 2),
        &q,
        Radius::All(1.0),
        Metric::InnerProduct,
        false,
        &params(1),
    )
    .unwrap();
    assert_eq!(r.indices, vec![0, 1, 2, 4]);
    // A negative threshold is valid for a similarity.
    let r = range_search(
        &Base::new(&base, 2),
        &q,
        Radius::All(-5.0),
        Metric::InnerProduct,
        true,
        &params(1),
    )
    .unwrap();
    assert_eq!(r.indices, vec![2, 0, 1, 4, 3]);
}

#[test]
fn range_radius_zero_finds_exact_copies_only() {
    let mut rng = Rng(23);
    let (m, d) = (300, 6);
    let unique: Vec<f32> = rng.gauss(m * d);
    let base: Vec<f32> = [&unique[..], &unique[..]].concat();
    let queries: Vec<f32> = unique[..20 * d].to_vec();
    for metric in [
        Metric::Euclidean,
        Metric::SqEuclidean,
        Metric::Manhattan,
        Metric::Chebyshev,
    ] {
        for threads in [1, 2] {
            let r = range_search(
                &Base::new(&base, d),
                &queries,
                Radius::All(0.0),
                metric,
                true,
                &params(threads),
            )
            .unwrap();
            for qi in 0..20 {
                let (lo, hi) = (r.lims[qi] as usize, r.lims[qi + 1] as usize);
                assert_eq!(
                    &r.indices[lo..hi],
                    &[qi as i64, (qi + m) as i64],
                    "{}",
                    metric.name()
                );
                assert_eq!(&r.distances[lo..hi], &[0.0, 0.0]);
            }
        }
    }
}

#[test]
fn range_tiled_and_split_paths() {
    let mut rng = Rng(29);
    let d = 16;
    let base: Vec<f32> = rng.gauss(3000 * d);
    for nq in [1, 2, 40] {
        let queries: Vec<f32> = rng.gauss(nq * d);
        for metric in METRICS {
            let radius = match metric {
                Metric::InnerProduct => 6.0,
                Metric::Cosine => 0.6,
                Metric::Hamming => 1.0,
                Metric::SqEuclidean => 20.0,
                Metric::Manhattan => 14.0,
                Metric::Chebyshev => 2.0,
                _ => 4.5,
            };
            for threads in [1, 4] {
                for sort in [true, false] {
                    check_range(
                        &base,
                        &queries,
                        d,
                        Radius::All(radius),
                        metric,
                        sort,
                        threads,
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn errors_name_what_was_expected_and_got() {
    let base = [0.0f32; 12];
    let b = Base::new(&base, 3);
    let p = params(1);

    let e = knn(&b, &[0.0; 3], 0, Metric::Euclidean, &p).unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { name: "k", .. }),
        "{e}"
    );
    assert_eq!(e.to_string(), "invalid k: expected k >= 1, got 0");

    let e = knn(&b, &[0.0; 4], 1, Metric::Euclidean, &p).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("queries") && msg.contains('3') && msg.contains('4'),
        "{msg}"
    );
    let e = range_search(&b, &[0.0; 5], Radius::All(1.0), Metric::Manhattan, true, &p).unwrap_err();
    assert!(e.to_string().contains("queries"), "{e}");

    let e = knn(
        &Base::new(&base[..11], 3),
        &[0.0; 3],
        1,
        Metric::Euclidean,
        &p,
    )
    .unwrap_err();
    assert_eq!(
        e,
        Error::Shape {
            name: "base",
            expected: 9,
            got: 11
        }
    );

    let e = knn(&Base::new(&base, 0), &[], 1, Metric::Euclidean, &p).unwrap_err();
    assert!(e.to_string().contains("at least 1 feature"), "{e}");

    let norms = [0.0f32; 3];
    for metric in [Metric::Euclidean, Metric::Cosine, Metric::InnerProduct] {
        let e = knn(&b.with_norms(&norms), &[0.0; 3], 1, metric, &p).unwrap_err();
        assert_eq!(
            e,
            Error::Shape {
                name: "base norms",
                expected: 4,
                got: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid shape for base norms: expected 4 values, got 3"
        );
    }

    let copy = [0u16; 11];
    let e = knn(&b.with_bf16(&copy), &[0.0; 3], 1, Metric::Euclidean, &p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid shape for bf16 copy: expected 12 values, got 11"
    );

    for r in [-0.5f32, f32::NAN] {
        let e =
            range_search(&b, &[0.0; 3], Radius::All(r), Metric::Euclidean, true, &p).unwrap_err();
        assert!(
            matches!(e, Error::InvalidParameter { name: "radius", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("non-negative"), "{e}");
    }
    let e = range_search(
        &b,
        &[0.0; 6],
        Radius::PerQuery(&[1.0, -1.0]),
        Metric::Manhattan,
        true,
        &p,
    )
    .unwrap_err();
    assert!(e.to_string().contains("-1"), "{e}");
    let e = range_search(
        &b,
        &[0.0; 6],
        Radius::PerQuery(&[1.0]),
        Metric::Euclidean,
        true,
        &p,
    )
    .unwrap_err();
    assert_eq!(
        e,
        Error::Shape {
            name: "radius",
            expected: 2,
            got: 1
        }
    );
    let e = range_search(
        &b,
        &[0.0; 3],
        Radius::All(f32::NAN),
        Metric::InnerProduct,
        true,
        &p,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::InvalidParameter { name: "radius", .. }),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Interrupts

/// A search far longer than the interrupt's polling interval (seconds of work if never stopped).
fn long_search() -> (Vec<f32>, Vec<f32>, usize) {
    let mut rng = Rng(31);
    let d = 16;
    (rng.gauss(100_000 * d), rng.gauss(20_000 * d), d)
}

#[test]
fn interrupt_stops_the_search_polled_on_the_calling_thread() {
    // Python only sees a pending Ctrl-C from the main thread: the hook must run on the thread
    // that called the search, not on a pool worker.
    let (base, queries, d) = long_search();
    let caller = std::thread::current().id();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let stop = || {
        assert_eq!(
            std::thread::current().id(),
            caller,
            "interrupt polled off the caller"
        );
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    };
    let b = Base::new(&base, d);
    for threads in [1, 3] {
        let p = SearchParams {
            threads,
            interrupt: Some(&stop),
            bf16: true,
        };
        for metric in [Metric::Manhattan, Metric::Euclidean] {
            let t0 = std::time::Instant::now();
            assert_eq!(
                knn(&b, &queries, 3, metric, &p).unwrap_err(),
                Error::Interrupted
            );
            let r = range_search(&b, &queries, Radius::All(1.0), metric, true, &p);
            assert_eq!(r.unwrap_err(), Error::Interrupted);
            // Not a timing assertion proper: the whole search would take many seconds.
            assert!(t0.elapsed().as_secs_f64() < 5.0, "{:?}", t0.elapsed());
        }
    }
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 8);
}

#[test]
fn interrupt_that_never_fires_changes_nothing() {
    let mut rng = Rng(37);
    let base: Vec<f64> = rng.gauss(2000 * 8);
    let queries: Vec<f64> = rng.gauss(50 * 8);
    let go_on = || false;
    let b = Base::new(&base, 8);
    for metric in METRICS {
        let p = SearchParams {
            threads: 2,
            interrupt: Some(&go_on),
            bf16: true,
        };
        assert_eq!(
            knn(&b, &queries, 3, metric, &p).unwrap(),
            knn(&b, &queries, 3, metric, &params(2)).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Shifted tiles (euclidean): the same results whether the tiles are computed on shifted data or
// not, on data far from the origin included.

/// Data around `offset`: uniform in [offset, offset + 1), or integer "pixels" offset + 0..=255.
fn offset_data<T: Float>(rng: &mut Rng, len: usize, offset: f64, pixels: bool) -> Vec<T> {
    (0..len)
        .map(|_| {
            let v = if pixels {
                rng.below(256) as f64
            } else {
                rng.uniform()
            };
            T::from_f64(offset + v)
        })
        .collect()
}

/// knn and range search with the shift forced off, on and automatic: identical results, equal to
/// the direct oracle (through `check_knn`).
fn check_shifts<T: Float>(base: &[T], queries: &[T], d: usize, k: usize, threads: usize) {
    let b = Base::new(base, d);
    let p = params(threads);
    for metric in [Metric::SqEuclidean, Metric::Euclidean] {
        let off = knn_with(&b, queries, k, metric, &p, Shift::Off).unwrap();
        for mode in [Shift::Auto, Shift::Always] {
            let got = knn_with(&b, queries, k, metric, &p, mode).unwrap();
            assert_eq!(got, off, "{} {}: knn with {mode:?}", T::NAME, metric.name());
        }
        check_knn(base, queries, d, k, metric, threads, false);
        // Radius: the k-th distance of the first query, so the boundary is hit exactly.
        let r = Radius::All(off.distances[k.min(base.len() / d) - 1]);
        let off = range_search_with(&b, queries, r, metric, true, &p, Shift::Off).unwrap();
        let on = range_search_with(&b, queries, r, metric, true, &p, Shift::Always).unwrap();
        assert_eq!(on, off, "{} {}: range search", T::NAME, metric.name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Tiled shapes (nq ≥ 16, d ≥ 4) on data near and far from the origin, continuous and
    /// integer-valued (ties and duplicates), both types.
    #[test]
    fn shifted_and_unshifted_tiles_agree(
        seed in any::<u64>(),
        n in 1usize..300,
        d in 4usize..40,
        nq in 16usize..48,
        kx in 0usize..12,
        off in 0usize..4,
        pixels in any::<bool>(),
        threads in 1usize..4,
    ) {
        let offset = [0.0, 1.0, 1000.0, 65536.0][off];
        let k = kx % n.min(12) + 1;
        let mut rng = Rng(seed);
        let base: Vec<f32> = offset_data(&mut rng, n * d, offset, pixels);
        let mut queries: Vec<f32> = offset_data(&mut rng, nq * d, offset, pixels);
        // Some queries are base rows (their own nearest, at exactly 0).
        for qi in (0..nq).step_by(5) {
            let j = rng.below(n);
            queries[qi * d..(qi + 1) * d].copy_from_slice(row(&base, d, j));
        }
        check_shifts(&base, &queries, d, k, threads);
        let (b64, q64): (Vec<f64>, Vec<f64>) = (to64(&base), to64(&queries));
        check_shifts(&b64, &q64, d, k, threads);
    }
}

#[test]
fn far_data_is_shifted_and_centred_data_is_not() {
    let mut rng = Rng(3);
    let d = 32;
    let far: Vec<f32> = offset_data(&mut rng, 500 * d, 1000.0, false);
    let (mu, ratio) = choose_shift(&far, &far[..40 * d], d).unwrap();
    assert!(ratio < 1e-6, "ratio {ratio}");
    assert!(mu.iter().all(|&m| (1000.0..1001.0).contains(&m)), "{mu:?}");
    let centred: Vec<f32> = rng.gauss(500 * d);
    let (_, ratio) = choose_shift(&centred, &centred[..40 * d], d).unwrap();
    assert!(ratio > SHIFT_GAIN, "ratio {ratio}");
    assert!(choose_shift::<f32>(&[], &[], d).is_none());
    assert!(choose_shift(&[0f32; 64], &[0f32; 64], d).is_none());
}

#[test]
fn mnist_shaped_pixels_with_duplicates() {
    // 8-bit pixels on a 784-feature row, many exact duplicates, queries drawn from the base.
    let mut rng = Rng(5);
    let (n, d, nq) = (400, 784, 40);
    let mut base: Vec<f32> = offset_data(&mut rng, n * d, 0.0, true);
    for j in (0..n).step_by(7) {
        let src = rng.below(n);
        let copy = row(&base, d, src).to_vec();
        base[j * d..(j + 1) * d].copy_from_slice(&copy);
    }
    let queries: Vec<f32> = (0..nq)
        .flat_map(|i| row(&base, d, (i * 13) % n).to_vec())
        .collect();
    check_shifts(&base, &queries, d, 5, 2);
}

#[test]
fn smallest_picks_the_m_smallest_in_index_order() {
    let v = [
        3.0f32,
        -1.0,
        f32::NAN,
        0.5,
        -1.0,
        7.0,
        f32::INFINITY,
        -0.0,
        0.0,
    ];
    assert_eq!(smallest(&v, 1), vec![1]);
    assert_eq!(smallest(&v, 3), vec![1, 4, 7]);
    assert_eq!(smallest(&v, 5), vec![1, 3, 4, 7, 8]);
    assert_eq!(smallest(&v, 8), vec![0, 1, 3, 4, 5, 6, 7, 8]);
}
