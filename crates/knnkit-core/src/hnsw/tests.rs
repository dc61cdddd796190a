use super::search::SearchOptions;
use super::*;

/// Recall@10 the small test graphs must reach against the exact answer.
const MIN_RECALL: f64 = 0.95;

/// Fixed-seed LCG stream in [-0.5, 0.5) (no RNG crate needed).
fn stream(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }
}

/// Points around 16 fixed cluster centres (the same for base and queries); `seed` drives the
/// noise.
fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut c = stream(12345);
    let centers: Vec<f32> = (0..16 * d).map(|_| 4.0 * c()).collect();
    let mut next = stream(seed);
    (0..n)
        .flat_map(|i| {
            let c = (i * 7) % 16;
            (0..d)
                .map(|j| centers[c * d + j] + next())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn exact(h: &Hnsw, q: &[f32], k: usize) -> Vec<i64> {
    let mut qn = Vec::new();
    h.prepare_query(q, &mut qn);
    let mut all: Vec<(f32, i64)> = (0..h.slots() as u32)
        .filter(|&s| !h.ids.is_deleted(s as usize))
        .map(|s| (h.key_query(&qn, s), h.ids.id(s as usize)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|x| x.1).collect()
}

fn recall(h: &Hnsw, queries: &[f32], k: usize, ef: usize) -> f64 {
    let opts = SearchOptions {
        ef_search: ef,
        ..Default::default()
    };
    let res = h.search(queries, k, &opts, None).unwrap();
    let mut hit = 0;
    let nq = queries.len() / h.dim();
    for (i, q) in queries.chunks_exact(h.dim()).enumerate() {
        let truth = exact(h, q, k);
        hit += res.ids[i * k..(i + 1) * k]
            .iter()
            .filter(|id| truth.contains(id))
            .count();
    }
    hit as f64 / (nq * k) as f64
}

fn built(metric: Metric, sq8: bool, threads: usize) -> Hnsw {
    built_with(metric, if sq8 { Codes::Sq8 } else { Codes::Flat }, threads)
}

fn built_with(metric: Metric, codes: Codes, threads: usize) -> Hnsw {
    let (n, d) = (3000, 24);
    let mut h = Hnsw::new(
        d,
        metric,
        HnswParams {
            m: 12,
            ef_construction: 80,
            seed: 7,
            codes,
        },
    )
    .unwrap();
    let ids: Vec<i64> = (0..n as i64).collect();
    h.add(&data(n, d, 1), &ids, threads, None).unwrap();
    h
}

#[test]
fn recall_against_exact_for_every_metric_and_tier() {
    let q = data(100, 24, 99);
    for metric in [
        Metric::Euclidean,
        Metric::SqEuclidean,
        Metric::InnerProduct,
        Metric::Cosine,
    ] {
        for codes in [Codes::Flat, Codes::Sq8, Codes::Sq4] {
            let h = built_with(metric, codes, 2);
            let r = recall(&h, &q, 10, 64);
            assert!(
                r >= MIN_RECALL,
                "{metric:?} {codes:?}: recall@10 {r:.3} < {MIN_RECALL}"
            );
        }
    }
}

#[test]
fn build_is_deterministic_across_thread_counts() {
    let a = built(Metric::Euclidean, false, 1).to_parts();
    let b = built(Metric::Euclidean, false, 3).to_parts();
    assert_eq!(a.links0[..], b.links0[..]);
    assert_eq!(a.upper, b.upper);
    assert_eq!(a.entry, b.entry);
}

#[test]
fn returned_distances_are_exact() {
    let h = built(Metric::Euclidean, true, 2);
    let q = data(5, 24, 3);
    let res = h.search(&q, 5, &SearchOptions::default(), None).unwrap();
    for (i, qr) in q.chunks_exact(24).enumerate() {
        for j in 0..5 {
            let x = h.get(res.ids[i * 5 + j]).unwrap();
            let want = kernels_sq(qr, x).sqrt();
            assert!((res.distances[i * 5 + j] - want).abs() <= 1e-4 * want.max(1.0));
        }
    }
}

fn kernels_sq(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[test]
fn delete_half_then_re_add_keeps_recall() {
    let mut h = built(Metric::Euclidean, false, 2);
    let gone: Vec<i64> = (0..3000).filter(|i| i % 2 == 0).collect();
    assert_eq!(h.remove(&gone, 2), 1500);
    assert_eq!(h.len(), 1500);
    assert_eq!(h.n_deleted(), 0, "consolidation ran and compacted");
    assert_eq!(h.slots(), 1500);
    let q = data(100, 24, 5);
    let r = recall(&h, &q, 10, 64);
    assert!(
        r >= MIN_RECALL,
        "after deletes: recall@10 {r:.3} < {MIN_RECALL}"
    );
    let all = data(3000, 24, 1);
    let back: Vec<f32> = gone
        .iter()
        .flat_map(|&i| all[i as usize * 24..(i as usize + 1) * 24].to_vec())
        .collect();
    h.add(&back, &gone, 2, None).unwrap();
    assert_eq!(h.len(), 3000);
    let r = recall(&h, &q, 10, 64);
    assert!(
        r >= MIN_RECALL,
        "after re-adding: recall@10 {r:.3} < {MIN_RECALL}"
    );
}

#[test]
fn filters_return_k_and_only_allowed_ids() {
    let h = built(Metric::Cosine, true, 2);
    let q = data(20, 24, 11);
    for (every, k) in [(1000, 10), (100, 10), (10, 10), (2, 10), (1500, 10)] {
        let ids: Vec<i64> = (0..3000).filter(|i| i % every == 3).collect();
        let allowed = h.id_map().allowed_from_ids(&ids);
        let res = h
            .search(&q, k, &SearchOptions::default(), Some(&allowed))
            .unwrap();
        let want = k.min(ids.len());
        for i in 0..20 {
            let row = &res.ids[i * k..(i + 1) * k];
            assert_eq!(row.iter().filter(|&&x| x >= 0).count(), want);
            assert!(row.iter().all(|&x| x < 0 || ids.contains(&x)));
        }
    }
}

#[test]
fn parts_round_trip_and_corruption_is_reported() {
    let h = built(Metric::InnerProduct, true, 2);
    let parts = h.to_parts();
    let g = Hnsw::from_parts(parts.clone()).unwrap();
    let q = data(10, 24, 4);
    let opts = SearchOptions::default();
    assert_eq!(
        h.search(&q, 5, &opts, None).unwrap().ids,
        g.search(&q, 5, &opts, None).unwrap().ids
    );
    let mut bad = parts.clone();
    bad.links0.to_mut()[1] = 1_000_000;
    assert!(matches!(Hnsw::from_parts(bad), Err(Error::Corrupt(_))));
    let mut bad = parts.clone();
    bad.links0.to_mut()[0] = 999;
    assert!(Hnsw::from_parts(bad).is_err());
    let mut bad = parts.clone();
    bad.vectors.to_mut().pop();
    assert!(Hnsw::from_parts(bad).is_err());
    let mut bad = parts.clone();
    bad.upper_offsets[1] += 1;
    assert!(Hnsw::from_parts(bad).is_err());
    let mut bad = parts;
    bad.entry = 5000;
    assert!(Hnsw::from_parts(bad).is_err());
}

#[test]
fn bad_input_is_rejected_and_leaves_the_index_unchanged() {
    let mut h = built(Metric::Euclidean, false, 1);
    assert!(h.add(&[1.0; 24], &[5], 1, None).is_err(), "duplicate id");
    assert!(h.add(&[f32::NAN; 24], &[5000], 1, None).is_err());
    assert!(h.add(&[1.0; 23], &[5000], 1, None).is_err());
    assert_eq!(h.len(), 3000);
    assert!(h
        .search(&[0.0; 23], 1, &SearchOptions::default(), None)
        .is_err());
    assert!(h
        .search(&[0.0; 24], 0, &SearchOptions::default(), None)
        .is_err());
    assert!(Hnsw::new(4, Metric::Manhattan, HnswParams::default()).is_err());
}

#[test]
fn empty_and_tiny_indexes() {
    let mut h = Hnsw::new(2, Metric::Euclidean, HnswParams::default()).unwrap();
    let res = h
        .search(&[0.0, 0.0], 3, &SearchOptions::default(), None)
        .unwrap();
    assert_eq!(res.ids, vec![-1, -1, -1]);
    h.add(&[1.0, 0.0, 0.0, 1.0], &[10, 20], 1, None).unwrap();
    let res = h
        .search(&[0.9, 0.0], 3, &SearchOptions::default(), None)
        .unwrap();
    assert_eq!(res.ids, vec![10, 20, -1]);
    assert_eq!(h.remove(&[10, 20], 1), 2);
    assert!(h.is_empty());
    let res = h
        .search(&[0.9, 0.0], 1, &SearchOptions::default(), None)
        .unwrap();
    assert_eq!(res.ids, vec![-1]);
}

#[test]
fn reorder_keeps_ids_vectors_and_recall() {
    let mut h = built(Metric::Cosine, true, 2);
    let q = data(100, 24, 99);
    let before = recall(&h, &q, 10, 64);
    let v7 = h.get(7).unwrap().to_vec();
    h.remove(&[3, 4], 1);
    h.reorder();
    assert_eq!(h.len(), 2998);
    assert_eq!(h.n_deleted(), 0);
    assert_eq!(h.get(7).unwrap(), &v7[..]);
    assert!(h.get(3).is_none());
    let after = recall(&h, &q, 10, 64);
    assert!(after >= before - 0.02, "recall {before:.3} -> {after:.3}");
    // Neighbours of the first slots are close in memory after a breadth-first renumbering.
    let near = h.neighbors(0, 0).iter().filter(|&&s| s < 200).count();
    assert!(
        near * 2 >= h.neighbors(0, 0).len(),
        "{:?}",
        h.neighbors(0, 0)
    );
}

#[test]
fn rerank_goes_on_while_the_code_error_allows_a_better_candidate() {
    // 200 candidates whose code keys say nothing (all equal): the measured code error is then
    // the whole spread of exact keys, so the re-rank must go through every candidate and return
    // the exact best 10 of them, not just the best of the first 2k = 20.
    let h = built_with(Metric::Cosine, Codes::Sq4, 1);
    let q = data(1, 24, 3);
    let mut s = h.take_scratch();
    h.prepare_query(&q, &mut s.q);
    let slots: Vec<u32> = (0..3000).step_by(15).map(|i| i as u32).collect();
    s.v.out = slots.iter().map(|&id| Cand { key: -0.5, id }).collect();
    let done = h.rerank(&mut s.v, &s.q, 10, 0.0);
    assert_eq!(done, slots.len());
    s.v.out.truncate(done);
    s.v.out.sort_unstable();
    let mut want: Vec<Cand> = slots
        .iter()
        .map(|&id| Cand {
            key: h.key_query(&s.q, id),
            id,
        })
        .collect();
    want.sort_unstable();
    assert_eq!(s.v.out[..10], want[..10]);
    // sharp codes: only the minimum is re-scored
    s.v.out = want
        .iter()
        .map(|c| Cand {
            key: c.key,
            id: c.id,
        })
        .collect();
    assert_eq!(h.rerank(&mut s.v, &s.q, 10, 0.0), 2 * 10);
}

#[test]
fn sq4_codes_survive_parts_round_trip() {
    let h = built_with(Metric::Euclidean, Codes::Sq4, 2);
    let p = h.to_parts();
    assert_eq!(p.code_bits, 4);
    assert_eq!(p.codes.len(), 3000 * crate::quant::sq4::code_bytes(24));
    let back = Hnsw::from_parts(h.to_parts()).unwrap();
    let q = data(20, 24, 5);
    let opts = SearchOptions::default();
    let a = h.search(&q, 10, &opts, None).unwrap();
    let b = back.search(&q, 10, &opts, None).unwrap();
    assert_eq!(a.ids, b.ids);
    let mut bad = h.to_parts();
    bad.code_bits = 5;
    assert!(matches!(Hnsw::from_parts(bad), Err(Error::Corrupt(_))));
    let mut short = h.to_parts();
    short.codes = short.codes.to_vec()[..100].to_vec().into();
    assert!(Hnsw::from_parts(short).is_err());
}

fn small(codes: Codes) -> Hnsw {
    Hnsw::new(
        8,
        Metric::Euclidean,
        HnswParams {
            m: 8,
            ef_construction: 40,
            seed: 1,
            codes,
        },
    )
    .unwrap()
}

#[test]
fn interrupted_add_restores_the_graph() {
    for codes in [Codes::Flat, Codes::Sq8] {
        let mut h = small(codes);
        let x = data(500, 8, 3);
        h.add(&x, &(0..500).collect::<Vec<_>>(), 1, None).unwrap();
        let before = h.to_parts();
        let more = data(30_000, 8, 4);
        let ids: Vec<i64> = (1000..31_000).collect();
        // Polled every 50 ms: the first poll stops the add, batches are linked by then.
        let stop = || true;
        let r = h.add(&more, &ids, 1, Some(&stop));
        assert_eq!(r.unwrap_err(), Error::Interrupted);
        let after = h.to_parts();
        assert_eq!(after.ids, before.ids);
        assert_eq!(after.links0.to_vec(), before.links0.to_vec());
        assert_eq!(after.upper, before.upper);
        assert_eq!(after.entry, before.entry);
        assert_eq!(after.inserted, before.inserted);
        assert!(h.get(1000).is_none());
        h.add(&more[..800], &ids[..100], 1, None).unwrap();
        assert_eq!(h.len(), 600);
    }
}

#[test]
fn search_work_is_capped_and_the_result_padded() {
    let mut h = small(Codes::Sq8);
    let x = data(20, 8, 5);
    h.add(&x, &(0..20).collect::<Vec<_>>(), 1, None).unwrap();
    let res = h
        .search(&x[..8], 1000, &SearchOptions::default(), None)
        .unwrap();
    assert_eq!(res.ids.len(), 1000);
    assert_eq!(res.ids.iter().filter(|&&i| i >= 0).count(), 20);
    assert_eq!(res.ids[0], 0);
    assert!(h
        .search(&x[..8], 1 << 40, &SearchOptions::default(), None)
        .is_err());
}

#[test]
fn removed_ids_can_come_back_and_round_trip() {
    let mut h = small(Codes::Sq8);
    let x = data(100, 8, 6);
    h.add(&x, &(0..100).collect::<Vec<_>>(), 1, None).unwrap();
    h.remove(&[7], 1);
    let y: Vec<f32> = x[..8].iter().map(|v| v + 3.0).collect();
    h.add(&y, &[7], 1, None).unwrap();
    assert_eq!(h.get(7).unwrap(), &y[..]);
    let back = Hnsw::from_parts(h.to_parts()).unwrap();
    assert_eq!(back.get(7).unwrap(), &y[..]);
    assert_eq!(back.len(), 100);
    let mut twice = h.to_parts();
    twice.deleted.iter_mut().for_each(|f| *f = 0);
    assert!(matches!(Hnsw::from_parts(twice), Err(Error::Corrupt(_))));
}

#[test]
fn empty_index_with_codes_round_trips() {
    for codes in [Codes::Sq8, Codes::Sq4] {
        let h = small(codes);
        let mut back = Hnsw::from_parts(h.to_parts()).unwrap();
        let x = data(50, 8, 7);
        back.add(&x, &(0..50).collect::<Vec<_>>(), 1, None).unwrap();
        assert_eq!(back.len(), 50);
    }
}

#[test]
fn code_ranges_follow_later_batches() {
    let x = data(3000, 24, 8);
    let q = data(50, 24, 9);
    for first in [1, 2, 10] {
        let mut h = Hnsw::new(
            24,
            Metric::Euclidean,
            HnswParams {
                m: 12,
                ef_construction: 80,
                seed: 7,
                codes: Codes::Sq8,
            },
        )
        .unwrap();
        h.add(
            &x[..first * 24],
            &(0..first as i64).collect::<Vec<_>>(),
            1,
            None,
        )
        .unwrap();
        h.add(
            &x[first * 24..],
            &(first as i64..3000).collect::<Vec<_>>(),
            1,
            None,
        )
        .unwrap();
        let r = recall(&h, &q, 10, 64);
        assert!(
            r >= MIN_RECALL,
            "recall {r} < {MIN_RECALL} (first batch {first})"
        );
    }
}

#[test]
fn rows_added_one_at_a_time_are_never_clamped_by_the_codes() {
    // Points on a line, each outside the code ranges learnt so far: every point is its own
    // nearest neighbour (clamped codes once made (13, 0) answer id 9). SQ4's 16 levels cannot
    // tell neighbours on the line apart, so there the point need only be among the top 10.
    for (codes, k) in [(Codes::Sq8, 1), (Codes::Sq4, 10)] {
        let mut h = small(codes);
        let n = 200;
        for i in 0..n {
            let mut x = vec![0.0f32; 8];
            x[0] = i as f32;
            x[1 + i % 7] = 0.5;
            h.add(&x, &[i as i64], 1, None).unwrap();
        }
        for i in 0..n {
            let q = h.get(i as i64).unwrap().to_vec();
            let res = h.search(&q, k, &SearchOptions::default(), None).unwrap();
            assert!(
                res.ids.contains(&(i as i64)),
                "{codes:?}: point {i}: {:?}",
                res.ids
            );
            assert_eq!(res.distances[0], 0.0, "{codes:?}: point {i}");
        }
    }
}

#[test]
fn limits_are_checked_before_allocating() {
    let p = HnswParams::default();
    assert!(Hnsw::new(1 << 40, Metric::Euclidean, p).is_err());
    let mut big = p;
    big.ef_construction = usize::MAX;
    assert!(Hnsw::new(8, Metric::Euclidean, big).is_err());
    let mut h = small(Codes::Flat);
    let mut x = data(3, 8, 1);
    x[9] = 1e30;
    let e = h.add(&x, &[0, 1, 2], 1, None).unwrap_err();
    assert!(e.to_string().contains("row 1"), "{e}");
    assert_eq!(h.len(), 0);
}

/// Live slots that links (at any level) reach from the entry point.
fn reachable(h: &Hnsw) -> usize {
    let n = h.ids.len();
    let mut seen = vec![false; n];
    let mut stack = vec![h.entry];
    let mut live = 0;
    while let Some(u) = stack.pop() {
        if u == NONE || seen[u as usize] {
            continue;
        }
        seen[u as usize] = true;
        live += usize::from(!h.ids.is_deleted(u as usize));
        for level in 0..=h.levels[u as usize] as usize {
            stack.extend_from_slice(h.neighbors(u, level));
        }
    }
    live
}

#[test]
fn consolidation_leaves_every_live_vector_reachable() {
    // Deleting most of a graph in one call leaves survivors whose neighbours, and theirs, are
    // all gone: the repair alone would leave them (or the entry point) isolated.
    for seed in 0..40u64 {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let n = 400;
        let data: Vec<f32> = (0..n * 4).map(|_| rng.next_f64() as f32).collect();
        let ids: Vec<i64> = (0..n as i64).collect();
        let params = HnswParams {
            m: 8,
            ef_construction: 40,
            seed,
            codes: Codes::Flat,
        };
        let mut h = Hnsw::new(4, Metric::Euclidean, params).unwrap();
        h.add(&data, &ids, 1, None).unwrap();
        let gone: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|_| rng.next_f64() < 0.95)
            .collect();
        h.remove(&gone, 1);
        assert_eq!(h.n_deleted(), 0, "consolidated");
        assert_eq!(reachable(&h), h.len(), "seed {seed}");
        // Every survivor is its own nearest neighbour: the graph finds it.
        for id in h.live_ids() {
            let v = h.get(id).unwrap().to_vec();
            let r = h.search(&v, 1, &SearchOptions::default(), None).unwrap();
            assert_eq!(r.ids, [id], "seed {seed}");
            assert_eq!(r.stats.exact_fallbacks, 0, "seed {seed}");
        }
    }
}
