//! Tree invariants and brute-force oracles.
//!
//! Data come from a small integer grid (so duplicates and distance ties are common); radii are
//! drawn halfway between grid distances so that no point lies exactly on a query's sphere.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;
use crate::flat::{Radius, SearchParams};
use crate::topk::sort_candidates;

const KINDS: [Kind; 2] = [Kind::KdTree, Kind::BallTree];
const METRICS: [TreeMetric; 4] = [
    TreeMetric::Euclidean,
    TreeMetric::Manhattan,
    TreeMetric::Chebyshev,
    TreeMetric::Minkowski(3.0),
];

fn params(threads: usize) -> SearchParams<'static> {
    SearchParams {
        threads,
        interrupt: None,
        bf16: false,
    }
}

/// Reduced distance and distance, computed the tree's way.
fn rdist<T: Float>(metric: TreeMetric, a: &[T], b: &[T]) -> (T, T) {
    with_ops!(metric, T, |m| (m.rdist(a, b), m.dist(a, b)))
}

/// Grid data: n rows of d values in 0..levels, as f64.
fn grid(n: usize, d: usize, levels: u8, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n * d)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % levels as u64) as f64
        })
        .collect()
}

fn check_invariants<T: Float>(x: &[T], d: usize, tree: &Tree<T>) {
    let n = x.len() / d;
    let t = tree.view();
    // Every point exactly once.
    let mut seen = vec![false; n];
    for &i in &tree.idx_array {
        assert!(!seen[i as usize], "row {i} twice");
        seen[i as usize] = true;
    }
    assert!(seen.iter().all(|&s| s));
    // Data in tree order.
    let mut buf = Vec::new();
    for (p, &i) in tree.idx_array.iter().enumerate() {
        t.gather(p, &mut buf);
        assert_eq!(&buf[..], &x[i as usize * d..(i as usize + 1) * d]);
    }
    // Shape, ranges and leaf sizes.
    let (_, n_nodes) = tree_shape(n, tree.leaf_size);
    assert_eq!(tree.nodes.len(), n_nodes);
    assert_eq!((tree.nodes[0].idx_start, tree.nodes[0].idx_end), (0, n));
    for (i, nd) in tree.nodes.iter().enumerate() {
        if nd.is_leaf {
            assert!(2 * i + 1 >= n_nodes, "leaf {i} above the last level");
            assert!(
                nd.len() <= 2 * tree.leaf_size || n_nodes == 1,
                "leaf {i} has {}",
                nd.len()
            );
            if n >= tree.leaf_size {
                assert!(
                    nd.len() >= tree.leaf_size.min(n),
                    "leaf {i} has {}",
                    nd.len()
                );
            }
        } else {
            let (a, b) = (tree.nodes[2 * i + 1], tree.nodes[2 * i + 2]);
            assert_eq!(a.idx_start, nd.idx_start);
            assert_eq!(a.idx_end, b.idx_start);
            assert_eq!(b.idx_end, nd.idx_end);
            assert_eq!(a.len(), nd.len() / 2);
        }
        // The bound contains every point of the node.
        for p in nd.range() {
            t.gather(p, &mut buf);
            let row = &buf[..];
            match tree.kind {
                Kind::KdTree => {
                    let (lo, hi) = (t.bound(0, i), t.bound(1, i));
                    for j in 0..d {
                        assert!(lo[j] <= row[j] && row[j] <= hi[j], "node {i} box");
                    }
                }
                Kind::BallTree => {
                    let (_, dist) = rdist(tree.metric, t.bound(0, i), row);
                    let r = nd.radius;
                    assert!(
                        dist.to_f64() <= r * (1.0 + 1e-6) + 1e-9,
                        "node {i}: {dist:?} > radius {r}"
                    );
                }
            }
        }
    }
}

fn oracle_knn<T: Float>(
    x: &[T],
    d: usize,
    q: &[T],
    k: usize,
    metric: TreeMetric,
) -> Vec<(T, usize)> {
    let mut all: Vec<(T, usize)> = x
        .chunks_exact(d)
        .enumerate()
        .map(|(i, row)| (rdist(metric, q, row).0, i))
        .collect();
    sort_candidates(&mut all);
    all.truncate(k);
    with_ops!(metric, T, |m| all
        .into_iter()
        .map(|(r, i)| (Ops::<T>::rdist_to_dist(&m, r), i))
        .collect())
}

fn check_queries<T: Float>(x: &[T], d: usize, tree: &Tree<T>, queries: &[T], k: usize, r: f64) {
    let t = tree.view();
    let nq = queries.len() / d;
    for (bf, dual) in [(false, false), (true, false), (false, true)] {
        let opts = KnnOptions {
            breadth_first: bf,
            dualtree: dual,
        };
        let (res, _) = t.knn(queries, k, opts, &params(2)).unwrap();
        for qi in 0..nq {
            let q = &queries[qi * d..(qi + 1) * d];
            let want = oracle_knn(x, d, q, k, tree.metric);
            let got: Vec<(T, usize)> = (0..k)
                .map(|j| (res.distances[qi * k + j], res.indices[qi * k + j] as usize))
                .collect();
            // Distances equal; indices equal below the k-th distance (a tie at the k-th
            // distance may resolve to any of the tied points when a bound rounds up).
            let kth = want[k - 1].0;
            let gd: Vec<T> = got.iter().map(|g| g.0).collect();
            let wd: Vec<T> = want.iter().map(|w| w.0).collect();
            assert_eq!(gd, wd, "knn distances, query {qi}, bf {bf}, dual {dual}");
            for (g, w) in got.iter().zip(&want) {
                if w.0 < kth {
                    assert_eq!(g.1, w.1, "knn query {qi}, bf {bf}, dual {dual}");
                } else {
                    let row = &x[g.1 * d..(g.1 + 1) * d];
                    assert_eq!(rdist(tree.metric, q, row).1, kth, "tied neighbour {qi}");
                }
            }
            let mut ids: Vec<usize> = got.iter().map(|g| g.1).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), k, "distinct neighbours, query {qi}");
        }
    }
    // Radius: all three result forms, against the oracle.
    let rt = T::from_f64(r);
    for (count_only, return_distance, sort_results) in [
        (true, false, false),
        (false, false, false),
        (false, true, true),
    ] {
        let opts = RadiusOptions {
            count_only,
            return_distance,
            sort_results,
        };
        let (res, _) = t
            .radius(queries, Radius::All(rt), opts, &params(2))
            .unwrap();
        for qi in 0..nq {
            let q = &queries[qi * d..(qi + 1) * d];
            let mut want: Vec<(T, usize)> = x
                .chunks_exact(d)
                .enumerate()
                .map(|(i, row)| (rdist(tree.metric, q, row).1, i))
                .filter(|&(dist, _)| dist <= rt)
                .collect();
            let (a, b) = (res.lims[qi] as usize, res.lims[qi + 1] as usize);
            assert_eq!(b - a, want.len(), "radius count, query {qi}");
            if count_only {
                continue;
            }
            let mut got: Vec<usize> = res.indices[a..b].iter().map(|&i| i as usize).collect();
            if return_distance {
                sort_candidates(&mut want);
                let gd: Vec<(T, usize)> = res.distances[a..b].iter().copied().zip(got).collect();
                assert_eq!(gd, want, "sorted radius, query {qi}");
            } else {
                got.sort_unstable();
                let mut wi: Vec<usize> = want.iter().map(|w| w.1).collect();
                wi.sort_unstable();
                assert_eq!(got, wi, "radius, query {qi}");
            }
        }
    }
    // Two-point correlation, single and dual.
    let radii = [r - 0.3, r, r + 1.0];
    let want: Vec<i64> = radii
        .iter()
        .map(|&rr| {
            let mut c = 0;
            for q in queries.chunks_exact(d) {
                for row in x.chunks_exact(d) {
                    if rdist(tree.metric, q, row).1.to_f64() <= rr {
                        c += 1;
                    }
                }
            }
            c
        })
        .collect();
    for dual in [false, true] {
        let (got, _) = t
            .two_point_correlation(queries, &radii, dual, &params(2))
            .unwrap();
        assert_eq!(got, want, "two-point, dual {dual}");
    }
}

fn check_kde<T: Float>(x: &[T], d: usize, tree: &Tree<T>, queries: &[T], h: f64) {
    let t = tree.view();
    let (atol, rtol) = (1e-10, 1e-6);
    for kernel in KernelKind::NAMES
        .iter()
        .map(|k| KernelKind::parse(k).unwrap())
    {
        let norm = kernel.log_norm(h, d);
        for bf in [false, true] {
            let (got, _) = t
                .kernel_density(queries, h, kernel, atol, rtol, bf, &params(2))
                .unwrap();
            for (qi, q) in queries.chunks_exact(d).enumerate() {
                let exact: f64 = x
                    .chunks_exact(d)
                    .map(|row| {
                        let dist = rdist(tree.metric, q, row).1.to_f64();
                        (kernel.log_kernel(dist, h) + norm).exp()
                    })
                    .sum();
                let est = got[qi].exp();
                let tol = 2.0 * (atol + rtol * exact) + 1e-12 * exact.max(1.0);
                assert!(
                    (est - exact).abs() <= tol,
                    "{kernel:?} bf {bf} query {qi}: {est} vs {exact}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn trees_hold_their_invariants_and_match_brute_force(
        n in 1usize..160,
        d in 1usize..5,
        levels in 2u8..9,
        leaf_size in 1usize..12,
        k in 1usize..8,
        seed in any::<u64>(),
        r_half in 0usize..6,
        kind_i in 0usize..2,
        metric_i in 0usize..4,
    ) {
        let x = grid(n, d, levels, seed);
        let queries = grid(7, d, levels + 1, seed ^ 0x9e37);
        let (kind, metric) = (KINDS[kind_i], METRICS[metric_i]);
        let tree = Tree::build(&x, d, kind, metric, leaf_size, None, 2).unwrap();
        check_invariants(&x, d, &tree);
        check_queries(&x, d, &tree, &queries, k.min(n), r_half as f64 + 0.5);
        // float32 gives the same structure and the same answers on grid data.
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let q32: Vec<f32> = queries.iter().map(|&v| v as f32).collect();
        let tree32 = Tree::build(&x32, d, kind, metric, leaf_size, None, 1).unwrap();
        check_invariants(&x32, d, &tree32);
        prop_assert_eq!(&tree32.idx_array, &tree.idx_array);
        check_queries(&x32, d, &tree32, &q32, k.min(n), r_half as f64 + 0.5);
    }

    #[test]
    fn kernel_density_is_within_tolerance(
        n in 1usize..120,
        d in 1usize..4,
        leaf_size in 1usize..10,
        seed in any::<u64>(),
        kind_i in 0usize..2,
        metric_i in 0usize..4,
        h in 0.5f64..4.0,
    ) {
        let x = grid(n, d, 6, seed);
        let queries = grid(5, d, 7, seed ^ 0x51);
        let tree = Tree::build(&x, d, KINDS[kind_i], METRICS[metric_i], leaf_size, None, 1).unwrap();
        check_kde(&x, d, &tree, &queries, h);
    }
}

#[test]
fn single_point_and_all_duplicates() {
    for kind in KINDS {
        let tree =
            Tree::build(&[1.0f64, 2.0], 2, kind, TreeMetric::Euclidean, 40, None, 1).unwrap();
        assert_eq!(tree.nodes.len(), 1);
        let (res, _) = tree
            .view()
            .knn(&[1.0, 2.0, 4.0, 6.0], 1, KnnOptions::default(), &params(1))
            .unwrap();
        assert_eq!(res.indices, vec![0, 0]);
        assert_eq!(res.distances, vec![0.0, 5.0]);
        // 100 copies of one point: ties go to the lowest rows.
        let x = vec![3.0f64; 300];
        let tree = Tree::build(&x, 3, kind, TreeMetric::Manhattan, 4, None, 1).unwrap();
        check_invariants(&x, 3, &tree);
        let (res, _) = tree
            .view()
            .knn(&[3.0, 3.0, 3.0], 5, KnnOptions::default(), &params(1))
            .unwrap();
        assert_eq!(res.indices, vec![0, 1, 2, 3, 4]);
    }
}

#[test]
fn weighted_kde_and_weighted_centroids() {
    let x = grid(50, 2, 5, 7);
    let w: Vec<f64> = (0..50).map(|i| 0.5 + (i % 3) as f64).collect();
    for kind in KINDS {
        let tree = Tree::build(&x, 2, kind, TreeMetric::Euclidean, 3, Some(&w), 1).unwrap();
        check_invariants(&x, 2, &tree);
        let q = [1.5, 2.5];
        let kernel = KernelKind::Gaussian;
        let (got, _) = tree
            .view()
            .kernel_density(&q, 0.8, kernel, 0.0, 1e-10, false, &params(1))
            .unwrap();
        let norm = kernel.log_norm(0.8, 2);
        let exact: f64 = x
            .chunks_exact(2)
            .zip(&w)
            .map(|(row, &wi)| {
                let dist = rdist(TreeMetric::Euclidean, &q, row).1;
                wi * (kernel.log_kernel(dist, 0.8) + norm).exp()
            })
            .sum();
        assert!((got[0].exp() - exact).abs() <= 1e-8 * exact, "{kind:?}");
    }
}

#[test]
fn malformed_arrays_are_errors_not_panics() {
    let x = grid(100, 2, 10, 3);
    let tree = Tree::build(&x, 2, Kind::KdTree, TreeMetric::Euclidean, 10, None, 1).unwrap();
    let view = |nodes: Vec<Node>, bounds: &[f64]| -> Result<()> {
        TreeView::new(
            Kind::KdTree,
            TreeMetric::Euclidean,
            2,
            10,
            &tree.blocks,
            &tree.idx_array,
            Cow::Owned(nodes),
            bounds,
            None,
        )
        .map(|_| ())
    };
    assert!(view(tree.nodes.clone(), &tree.bounds).is_ok());
    let mut bad = tree.nodes.clone();
    bad[3].idx_end = 1000;
    assert!(view(bad, &tree.bounds).is_err());
    let mut bad = tree.nodes.clone();
    let last = bad.len() - 1;
    bad[last].is_leaf = false;
    assert!(view(bad, &tree.bounds).is_err());
    assert!(view(tree.nodes[..2].to_vec(), &tree.bounds).is_err());
    assert!(view(tree.nodes.clone(), &tree.bounds[1..]).is_err());
    // Rows out of order (idx_array garbage) give wrong answers, never a crash.
    let idx = vec![-5i64; 100];
    let v = TreeView::new(
        Kind::KdTree,
        TreeMetric::Euclidean,
        2,
        10,
        &tree.blocks,
        &idx,
        Cow::Borrowed(&tree.nodes[..]),
        &tree.bounds,
        None,
    )
    .unwrap();
    assert!(v
        .knn(&[0.0, 0.0], 3, KnnOptions::default(), &params(1))
        .is_ok());
    // Bad parameters.
    let t = tree.view();
    assert!(t
        .knn(&[0.0, 0.0], 101, KnnOptions::default(), &params(1))
        .is_err());
    assert!(t
        .knn(&[0.0, 0.0, 1.0], 1, KnnOptions::default(), &params(1))
        .is_err());
    let rs = [1.0, 2.0];
    let opts = RadiusOptions::default();
    assert!(t
        .radius(&[0.0, 0.0], Radius::PerQuery(&rs), opts, &params(1))
        .is_err());
    let g = KernelKind::Gaussian;
    assert!(t
        .kernel_density(&[0.0, 0.0], 0.0, g, 0.0, 0.0, true, &params(1))
        .is_err());
    assert!(KernelKind::parse("box").is_err());
    assert!(t
        .two_point_correlation(&[0.0, 0.0], &[2.0, 1.0], false, &params(1))
        .is_err());
    assert!(Tree::build(
        &[f64::NAN, 0.0],
        2,
        Kind::KdTree,
        TreeMetric::Euclidean,
        1,
        None,
        1
    )
    .is_err());
    assert!(Tree::build(
        &[0.0f64, 0.0],
        2,
        Kind::KdTree,
        TreeMetric::Euclidean,
        0,
        None,
        1
    )
    .is_err());
    assert!(TreeMetric::parse("cosine", 2.0).is_err());
    assert_eq!(
        TreeMetric::parse("minkowski", 1.0).unwrap(),
        TreeMetric::Manhattan
    );
    assert_eq!(
        TreeMetric::parse("p", 3.0).unwrap(),
        TreeMetric::Minkowski(3.0)
    );
}

#[test]
fn interrupt_stops_a_query() {
    let x = grid(20_000, 3, 50, 11);
    let tree = Tree::build(&x, 3, Kind::KdTree, TreeMetric::Euclidean, 10, None, 2).unwrap();
    let stop = || true;
    let p = SearchParams {
        threads: 2,
        interrupt: Some(&stop),
        bf16: false,
    };
    let q = grid(50_000, 3, 50, 12);
    let g = KernelKind::Gaussian;
    let r = tree.view().kernel_density(&q, 1.0, g, 0.0, 0.0, false, &p);
    assert_eq!(r.unwrap_err(), Error::Interrupted);
}

#[test]
fn many_queries_in_z_order_match_brute_force() {
    // Enough queries for the Z-order visit and the parallel chunks; k above and below the
    // sorted-array limit of the k-best set.
    let x = grid(400, 3, 7, 11);
    let queries = grid(300, 3, 8, 12);
    for kind in KINDS {
        for metric in METRICS {
            let tree = Tree::build(&x, 3, kind, metric, 5, None, 2).unwrap();
            check_queries(&x, 3, &tree, &queries, 4, 2.5);
            check_queries(&x, 3, &tree, &queries, 40, 2.5);
        }
    }
}
