use super::*;
use crate::rng::SplitMix64;

/// recall@10 every code kind must reach on the clustered test data at nprobe = 8 of 32 lists.
const MIN_RECALL: f64 = 0.9;

fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut c = SplitMix64::new(99);
    let centers: Vec<f32> = (0..20 * d)
        .map(|_| 8.0 * c.next_f64() as f32 - 4.0)
        .collect();
    let mut r = SplitMix64::new(seed);
    (0..n)
        .flat_map(|_| {
            let k = r.below(20);
            (0..d)
                .map(|j| centers[k * d + j] + r.next_f64() as f32 - 0.5)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn exact(x: &[f32], q: &[f32], d: usize, k: usize, metric: Metric) -> Vec<i64> {
    let params = SearchParams {
        threads: 1,
        interrupt: None,
        bf16: false,
    };
    flat::knn(&Base::new(x, d), q, k, metric, &params)
        .unwrap()
        .indices
}

fn built(metric: Metric, codes: CodeKind, refine: bool) -> (Ivf, Vec<f32>) {
    let (n, d) = (4000, 16);
    let x = data(n, d, 1);
    let mut ix = Ivf::new(
        d,
        metric,
        IvfParams {
            nlist: 32,
            codes,
            refine,
            seed: 3,
        },
    )
    .unwrap();
    ix.train(&x, 2).unwrap();
    let ids: Vec<i64> = (0..n as i64).collect();
    ix.add(&x, &ids, 2).unwrap();
    (ix, x)
}

fn recall(found: &[i64], truth: &[i64], k: usize) -> f64 {
    let hits: usize = found
        .chunks(k)
        .zip(truth.chunks(k))
        .map(|(f, t)| f.iter().filter(|x| t.contains(x)).count())
        .sum();
    hits as f64 / truth.len() as f64
}

#[test]
fn recall_for_every_code_kind_and_metric() {
    let q = data(100, 16, 7);
    for metric in [Metric::Euclidean, Metric::InnerProduct, Metric::Cosine] {
        for (codes, refine) in [
            (CodeKind::Flat, false),
            (CodeKind::Sq8, true),
            (CodeKind::Pq { m: 8, nbits: 8 }, true),
        ] {
            let (ix, x) = built(metric, codes, refine);
            let res = ix.search(&q, 10, 8, 2, None).unwrap();
            let r = recall(&res.ids, &exact(&x, &q, 16, 10, metric), 10);
            assert!(
                r >= MIN_RECALL,
                "{metric:?} {codes:?}: recall@10 {r:.3} < {MIN_RECALL}"
            );
        }
    }
}

#[test]
fn all_lists_equal_exact_for_flat() {
    let (ix, x) = built(Metric::SqEuclidean, CodeKind::Flat, false);
    let q = data(20, 16, 5);
    let res = ix.search(&q, 5, 32, 1, None).unwrap();
    assert_eq!(res.ids, exact(&x, &q, 16, 5, Metric::SqEuclidean));
}

#[test]
fn remove_and_round_trip() {
    for codes in [
        CodeKind::Flat,
        CodeKind::Sq8,
        CodeKind::Pq { m: 4, nbits: 6 },
    ] {
        let (mut ix, x) = built(Metric::Cosine, codes, true);
        let gone: Vec<i64> = (0..4000).step_by(3).collect();
        assert_eq!(ix.remove(&gone), gone.len());
        assert_eq!(ix.len(), 4000 - gone.len());
        assert_eq!(ix.list_sizes().iter().sum::<usize>(), ix.len());
        let q = data(30, 16, 9);
        let res = ix.search(&q, 10, 32, 1, None).unwrap();
        assert!(res.ids.iter().all(|id| id % 3 != 0));
        assert_eq!(ix.get(1).unwrap(), x[16..32].to_vec());
        let back = Ivf::from_parts(ix.to_parts()).unwrap();
        assert_eq!(
            back.search(&q, 10, 8, 1, None).unwrap().ids,
            ix.search(&q, 10, 8, 1, None).unwrap().ids
        );
        let mut bad = ix.to_parts();
        bad.list_slots[0] = 999_999;
        assert!(matches!(Ivf::from_parts(bad), Err(Error::Corrupt(_))));
        let mut bad = ix.to_parts();
        bad.list_offsets[3] = bad.list_offsets[4] + 1;
        assert!(Ivf::from_parts(bad).is_err());
    }
}

#[test]
fn filters_return_k() {
    let (ix, _) = built(Metric::Euclidean, CodeKind::Sq8, true);
    let q = data(10, 16, 2);
    for every in [1000usize, 50, 3] {
        let ids: Vec<i64> = (0..4000).filter(|i| i % every as i64 == 1).collect();
        let allowed = ix.id_map().allowed_from_ids(&ids);
        let res = ix.search(&q, 10, 2, 1, Some(&allowed)).unwrap();
        for row in res.ids.chunks(10) {
            assert_eq!(row.iter().filter(|&&x| x >= 0).count(), 10.min(ids.len()));
            assert!(row.iter().all(|x| *x < 0 || ids.contains(x)));
        }
    }
}

#[test]
fn untrained_and_bad_input() {
    let mut ix = Ivf::new(
        4,
        Metric::Euclidean,
        IvfParams {
            nlist: 8,
            codes: CodeKind::Flat,
            refine: false,
            seed: 0,
        },
    )
    .unwrap();
    assert!(ix.add(&[0.0; 4], &[0], 1).is_err());
    assert!(ix.train(&[0.0; 16], 1).is_err(), "fewer rows than lists");
    assert!(Ivf::new(
        6,
        Metric::Euclidean,
        IvfParams {
            nlist: 8,
            codes: CodeKind::Pq { m: 4, nbits: 8 },
            refine: true,
            seed: 0
        }
    )
    .is_err());
}

#[test]
fn given_centroids_equal_to_kmeans_give_the_same_index() {
    let (n, d) = (3000, 16);
    let x = data(n, d, 4);
    let ids: Vec<i64> = (0..n as i64).collect();
    let q = data(40, d, 6);
    for metric in [Metric::Euclidean, Metric::InnerProduct, Metric::Cosine] {
        for codes in [
            CodeKind::Flat,
            CodeKind::Sq8,
            CodeKind::Pq { m: 4, nbits: 6 },
        ] {
            let params = IvfParams {
                nlist: 24,
                codes,
                refine: true,
                seed: 11,
            };
            let mut a = Ivf::new(d, metric, params).unwrap();
            a.train(&x, 2).unwrap();
            a.add(&x, &ids, 2).unwrap();
            let centroids = a.to_parts().centroids;
            let mut b = Ivf::new(d, metric, params).unwrap();
            b.train_with_centroids(&x, &centroids, 1).unwrap();
            b.add(&x, &ids, 2).unwrap();
            let (pa, pb) = (a.to_parts(), b.to_parts());
            assert_eq!(pa.centroids, pb.centroids, "{metric:?} {codes:?}");
            assert_eq!(pa.list_offsets, pb.list_offsets, "{metric:?} {codes:?}");
            assert_eq!(pa.list_codes, pb.list_codes, "{metric:?} {codes:?}");
            assert_eq!(pa.pq_centroids, pb.pq_centroids, "{metric:?} {codes:?}");
            assert_eq!(pa.sq_lo, pb.sq_lo, "{metric:?} {codes:?}");
            let (ra, rb) = (
                a.search(&q, 10, 4, 1, None).unwrap(),
                b.search(&q, 10, 4, 1, None).unwrap(),
            );
            assert_eq!(ra.ids, rb.ids, "{metric:?} {codes:?}");
            assert_eq!(ra.distances, rb.distances, "{metric:?} {codes:?}");
        }
    }
}

#[test]
fn given_centroids_are_checked_and_normalised_for_cosine() {
    let d = 4;
    let x = data(64, d, 2);
    let params = IvfParams {
        nlist: 4,
        codes: CodeKind::Flat,
        refine: false,
        seed: 0,
    };
    let mut ix = Ivf::new(d, Metric::Euclidean, params).unwrap();
    let err = ix.train_with_centroids(&x, &[0.0; 12], 1).unwrap_err();
    assert!(err.to_string().contains("centroids"), "{err}");
    let mut bad = vec![0.0f32; 16];
    bad[5] = f32::NAN;
    let err = ix.train_with_centroids(&x, &bad, 1).unwrap_err();
    assert!(err.to_string().contains("finite"), "{err}");
    assert!(!ix.is_trained(), "errors leave the index untrained");

    let mut cos = Ivf::new(d, Metric::Cosine, params).unwrap();
    let c: Vec<f32> = (0..16).map(|i| (i % 5) as f32 + 1.0).collect();
    cos.train_with_centroids(&x, &c, 1).unwrap();
    for row in cos.to_parts().centroids.chunks_exact(d) {
        let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "{row:?}");
    }
    assert!(
        cos.train_with_centroids(&x, &c, 1).is_err(),
        "already trained"
    );
}

#[test]
fn bulk_adds_leave_no_growth_slack_and_small_adds_stay_amortised() {
    for codes in [CodeKind::Flat, CodeKind::Sq8] {
        let (mut ix, x) = built(Metric::Cosine, codes, true);
        for l in &ix.lists {
            assert_eq!(l.slots.capacity(), l.slots.len());
            assert_eq!(l.vecs.capacity(), l.vecs.len());
            assert_eq!(l.codes.capacity(), l.codes.len());
        }
        assert_eq!(ix.vectors.capacity(), ix.vectors.len());
        // one-at-a-time adds: amortised growth, not a reallocation per add
        let before = ix.ids.capacity();
        for i in 0..64 {
            ix.add(&x[i * 16..(i + 1) * 16], &[10_000 + i as i64], 1)
                .unwrap();
        }
        assert!(ix.ids.capacity() >= before + 64);
        assert!(ix.ids.capacity() <= 2 * (before + 64));
    }
}

#[test]
fn limits_are_checked_before_allocating() {
    let p = |nlist| IvfParams {
        nlist,
        codes: CodeKind::Flat,
        refine: true,
        seed: 0,
    };
    assert!(Ivf::new(8, Metric::Euclidean, p(1 << 40)).is_err());
    assert!(Ivf::new(8, Metric::Euclidean, p(10_000_000)).is_err());
    assert!(Ivf::new(1 << 40, Metric::Euclidean, p(4)).is_err());
    let mut parts = built(Metric::Euclidean, CodeKind::Flat, true).0.to_parts();
    parts.nlist = 1 << 53;
    assert!(matches!(
        Ivf::from_parts(parts.clone()),
        Err(Error::Corrupt(_))
    ));
    parts.nlist = usize::MAX;
    assert!(matches!(Ivf::from_parts(parts), Err(Error::Corrupt(_))));
}

#[test]
fn unsearchable_stored_values_are_corrupt() {
    for codes in [
        CodeKind::Flat,
        CodeKind::Sq8,
        CodeKind::Pq { m: 4, nbits: 4 },
    ] {
        let (ix, _) = built(Metric::Euclidean, codes, true);
        for bad in [f32::NAN, f32::INFINITY, 3e38] {
            let mut parts = ix.to_parts();
            parts.centroids[5] = bad;
            assert!(matches!(Ivf::from_parts(parts), Err(Error::Corrupt(_))));
            if !ix.to_parts().pq_centroids.is_empty() {
                let mut parts = ix.to_parts();
                parts.pq_centroids[3] = bad;
                assert!(matches!(Ivf::from_parts(parts), Err(Error::Corrupt(_))));
            }
        }
    }
}

#[test]
fn search_work_is_capped_and_the_result_padded() {
    let (ix, x) = built(Metric::Euclidean, CodeKind::Sq8, true);
    let n = ix.len();
    let res = ix.search(&x[..16], n + 500, 4, 1, None).unwrap();
    assert_eq!(res.ids.len(), n + 500);
    assert_eq!(res.ids.iter().filter(|&&i| i >= 0).count(), n);
    assert!(ix.search(&x[..16], 1 << 40, 4, 1, None).is_err());
}
