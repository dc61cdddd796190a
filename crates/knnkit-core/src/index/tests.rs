//! Every kind through the one trait: a random sequence of add / remove / search / get / save /
//! open against an exact oracle (a plain list of live rows), for every kind.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;
use crate::flat::index::{FlatIndex, WIDE_FILTER_SHARE};
use crate::flat::SearchParams;
use crate::hnsw::{Codes, Hnsw, HnswParams};
use crate::io::IndexFile;
use crate::ivf::{CodeKind, Ivf, IvfParams};
use crate::rng::SplitMix64;

const DIM: usize = 6;

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("knnkit-index-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kinds() -> Vec<(&'static str, Box<dyn Index>)> {
    let m = Metric::Euclidean;
    let hnsw = |codes| {
        let p = HnswParams {
            m: 8,
            ef_construction: 64,
            seed: 1,
            codes,
        };
        Box::new(Hnsw::new(DIM, m, p).unwrap()) as Box<dyn Index>
    };
    let ivf = |codes| {
        let p = IvfParams {
            nlist: 4,
            codes,
            refine: true,
            seed: 1,
        };
        Box::new(Ivf::new(DIM, m, p).unwrap()) as Box<dyn Index>
    };
    vec![
        (
            "flat",
            Box::new(FlatIndex::<f32>::new(DIM, m, true).unwrap()),
        ),
        ("hnsw-flat", hnsw(Codes::Flat)),
        ("hnsw-sq8", hnsw(Codes::Sq8)),
        ("ivf-flat", ivf(CodeKind::Flat)),
        ("ivf-sq8", ivf(CodeKind::Sq8)),
    ]
}

fn rows(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n * DIM).map(|_| rng.next_f64() as f32).collect()
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The oracle's `k` nearest ids (ties by id) among `allowed` (all when `None`).
fn truth(live: &BTreeMap<i64, Vec<f32>>, q: &[f32], k: usize, allowed: Option<&[i64]>) -> Vec<i64> {
    let mut all: Vec<(f32, i64)> = live
        .iter()
        .filter(|(id, _)| allowed.is_none_or(|a| a.contains(id)))
        .map(|(&id, v)| (sq_dist(q, v), id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

fn reopen(ix: &dyn Index, mmap_dir: Option<&std::path::Path>) -> Box<dyn Index> {
    let mut extra = Map::new();
    extra.insert("covers_seq".into(), Value::from(7));
    match mmap_dir {
        Some(dir) => {
            let path = dir.join(format!("{}.knn", ix.kind()));
            ix.write(&path, &extra).unwrap();
            let file = IndexFile::open(&path, true).unwrap();
            assert_eq!(file.header()["covers_seq"], 7);
            from_file(&file).unwrap()
        }
        None => {
            let file = IndexFile::from_bytes("mem", ix.encode(&extra).unwrap()).unwrap();
            from_file(&file).unwrap()
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(usize),
    Remove(Vec<u8>),
    Search(usize, bool),
    Reopen(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..40).prop_map(Op::Add),
        2 => proptest::collection::vec(any::<u8>(), 1..12).prop_map(Op::Remove),
        3 => (1usize..12, any::<bool>()).prop_map(|(k, f)| Op::Search(k, f)),
        1 => any::<bool>().prop_map(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_kind_follows_the_oracle(ops in proptest::collection::vec(op(), 1..25), seed in any::<u64>()) {
        let dir = TempDir::new();
        for (name, mut ix) in kinds() {
            let exact = name == "flat" || name.ends_with("flat") && name.starts_with("ivf");
            let mut rng = SplitMix64::new(seed);
            let mut live: BTreeMap<i64, Vec<f32>> = BTreeMap::new();
            let mut next: i64 = 0;
            let (mut found, mut wanted) = (0usize, 0usize);
            // IVF trains on its first add; an index emptied by removes stays trained.
            let mut trained = false;
            for op in &ops {
                match op {
                    Op::Add(n) => {
                        let data = rows(&mut rng, *n);
                        let ids: Vec<i64> = (next..next + *n as i64).collect();
                        if name.starts_with("ivf") && !trained && *n < 4 {
                            // Too few rows to train the 4 lists: refused, nothing changes.
                            prop_assert!(ix.add(&data, &ids, 1).is_err());
                            prop_assert_eq!(ix.len(), 0);
                            continue;
                        }
                        ix.add(&data, &ids, 2).unwrap();
                        trained = true;
                        for (i, &id) in ids.iter().enumerate() {
                            live.insert(id, data[i * DIM..(i + 1) * DIM].to_vec());
                        }
                        next += *n as i64;
                        // An id already live is refused and nothing changes.
                        if let Some(&id) = live.keys().next() {
                            prop_assert!(ix.add(&data[..DIM], &[id], 1).is_err());
                        }
                    }
                    Op::Remove(picks) => {
                        let ids: Vec<i64> = picks.iter().map(|&p| i64::from(p) % (next + 2)).collect();
                        let mut expect = 0;
                        let mut uniq = ids.clone();
                        uniq.sort_unstable();
                        uniq.dedup();
                        for id in &uniq {
                            if live.remove(id).is_some() {
                                expect += 1;
                            }
                        }
                        prop_assert_eq!(ix.remove(&ids), expect, "{}", name);
                    }
                    Op::Search(k, filtered) => {
                        let q = rows(&mut rng, 3);
                        let allowed_ids: Vec<i64> = live.keys().copied().filter(|id| id % 3 != 0).collect();
                        let allowed = filtered.then(|| ix.allowed(Filter::Ids(&allowed_ids)));
                        let opts = SearchOptions { ef_search: Some(64), nprobe: Some(4), ..Default::default() };
                        let res = ix.search(&q, *k, allowed.as_ref(), &opts).unwrap();
                        prop_assert_eq!(res.ids.len(), 3 * k);
                        for r in 0..3 {
                            let want = truth(&live, &q[r * DIM..(r + 1) * DIM], *k,
                                             filtered.then_some(&allowed_ids[..]));
                            let got = &res.ids[r * k..(r + 1) * k];
                            // Never a removed, unknown or filtered-out id; padding only past the end.
                            for (j, &id) in got.iter().enumerate() {
                                if j < want.len() {
                                    prop_assert!(id >= 0 && live.contains_key(&id), "{} returned {}", name, id);
                                    prop_assert!(!filtered || id % 3 != 0);
                                } else {
                                    prop_assert_eq!(id, -1);
                                }
                            }
                            if exact {
                                prop_assert_eq!(&got[..want.len()], &want[..], "{}", name);
                            }
                            found += got.iter().filter(|id| want.contains(id)).count();
                            wanted += want.len();
                        }
                    }
                    Op::Reopen(mapped) => {
                        ix = reopen(&*ix, mapped.then_some(dir.path()));
                    }
                }
                prop_assert_eq!(ix.len(), live.len(), "{}", name);
                let mut ids = ix.ids();
                ids.sort_unstable();
                prop_assert_eq!(ids, live.keys().copied().collect::<Vec<_>>());
                if let Some((&id, v)) = live.iter().next() {
                    prop_assert!(ix.contains(id));
                    if !name.ends_with("sq8") {
                        prop_assert_eq!(ix.get(id), Some(v.clone()));
                    }
                }
                prop_assert!(!ix.contains(next + 5));
            }
            // Recall of the approximate kinds on small data.
            prop_assert!(wanted == 0 || found as f64 >= 0.9 * wanted as f64,
                         "{}: recall {}/{}", name, found, wanted);
        }
    }
}

#[test]
fn range_by_knn_matches_the_exact_range_search() {
    let mut rng = SplitMix64::new(3);
    let data = rows(&mut rng, 300);
    let ids: Vec<i64> = (0..300).collect();
    let mut flat = FlatIndex::<f32>::new(DIM, Metric::Euclidean, false).unwrap();
    Index::add(&mut flat, &data, &ids, 1).unwrap();
    let q = rows(&mut rng, 5);
    let opts = SearchOptions::default();
    for r in [0.0f32, 0.3, 0.6, 5.0] {
        let exact = Index::range_search(&flat, &q, Radius::All(r), None, &opts).unwrap();
        let by_knn = range_by_knn(&flat, &q, Radius::All(r), None, &opts).unwrap();
        assert_eq!(exact.lims, by_knn.lims, "radius {r}");
        // Same sets (order of equal distances may differ).
        for w in exact.lims.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            let mut x = exact.indices[a..b].to_vec();
            let mut y = by_knn.indices[a..b].to_vec();
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y);
        }
    }
    let allowed = flat.allowed(Filter::Mask(&[true; 10]));
    let res = range_by_knn(&flat, &q, Radius::All(5.0), Some(&allowed), &opts).unwrap();
    assert!(res.indices.iter().all(|&id| id < 10));
    assert_eq!(res.indices.len(), 50);
    assert!(range_by_knn(&flat, &q, Radius::All(f32::NAN), None, &opts).is_err());
    assert!(range_by_knn(&flat, &q, Radius::PerQuery(&[1.0]), None, &opts).is_err());
}

#[test]
fn files_name_their_kind_and_reject_what_they_cannot_hold() {
    let mut f64_flat = FlatIndex::<f64>::new(3, Metric::Cosine, false).unwrap();
    f64_flat.add(&[1.0, 2.0, 3.0], None).unwrap();
    let bytes = file::encode_flat(&f64_flat, &Map::new()).unwrap();
    let file = IndexFile::from_bytes("f64", bytes).unwrap();
    assert_eq!(file::kind_of(&file).unwrap(), "flat");
    let err = from_file(&file).err().unwrap().to_string();
    assert!(err.contains("float32") && err.contains("float64"), "{err}");
    let back = file::read_flat::<f64>(&file).unwrap();
    assert_eq!(back.get(0), Some(&[1.0, 2.0, 3.0][..]));
    assert_eq!(back.metric(), Metric::Cosine);
}

#[test]
fn pinned_files_still_open() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/format_v1");
    for name in ["flat_l2", "hnsw_flat_ip", "hnsw_sq8", "ivf_pq", "ivf_sq8"] {
        for mmap in [false, true] {
            let ix = open(&dir.join(format!("{name}.knn")), mmap).unwrap();
            assert_eq!(ix.dim(), 8, "{name}");
            assert!(ix.len() >= 118, "{name}");
            // Re-encoded, it opens to the same index.
            let again = reopen(&*ix, None);
            assert_eq!(again.ids(), ix.ids(), "{name}");
            let q: Vec<f32> = (0..16).map(|i| i as f32 * 0.1).collect();
            let o = SearchOptions::default();
            assert_eq!(
                again.search(&q, 5, None, &o).unwrap(),
                ix.search(&q, 5, None, &o).unwrap()
            );
        }
    }
    let f64_file = IndexFile::open(&dir.join("flat_cos_f64.knn"), false).unwrap();
    assert_eq!(file::read_flat::<f64>(&f64_file).unwrap().len(), 118);
}

#[test]
fn batches_whose_ids_do_not_match_their_rows_change_nothing() {
    let mut rng = SplitMix64::new(5);
    let data = rows(&mut rng, 10);
    for (name, mut ix) in kinds() {
        assert!(ix.add(&data, &[0, 1, 2], 1).is_err(), "{name}");
        assert!(ix.add(&data[..DIM + 1], &[0], 1).is_err(), "{name}");
        assert_eq!(ix.len(), 0, "{name}");
        ix.add(&data, &(0..10).collect::<Vec<_>>(), 1).unwrap();
        assert!(ix.add(&data, &[20], 1).is_err(), "{name}");
        assert_eq!(ix.len(), 10, "{name}");
    }
}

#[test]
fn wide_filters_on_flat_indexes_give_the_copied_rows_answer() {
    // Integer-valued rows: many equal distances, so the order of ties is checked too.
    let mut rng = SplitMix64::new(17);
    let n = 600;
    let data: Vec<f32> = (0..n * DIM)
        .map(|_| (rng.next_u64() % 4) as f32 - 1.0)
        .collect();
    let ids: Vec<i64> = (0..n as i64).map(|i| 3 * i + 1).collect();
    let q: Vec<f32> = (0..4 * DIM)
        .map(|_| (rng.next_u64() % 4) as f32 - 1.0)
        .collect();
    for metric in [Metric::Euclidean, Metric::Cosine, Metric::InnerProduct] {
        for bf16 in [false, true] {
            let mut flat = FlatIndex::<f32>::new(DIM, metric, bf16).unwrap();
            Index::add(&mut flat, &data, &ids, 1).unwrap();
            Index::remove(&mut flat, &[4, 31, 907]);
            for share in [0.3, 0.5, 0.9, 1.0] {
                let keep: Vec<i64> = Index::ids(&flat)
                    .into_iter()
                    .filter(|_| (rng.next_u64() % 1000) as f64 / 1000.0 < share)
                    .collect();
                let allowed = flat.allowed(Filter::Ids(&keep));
                assert!(allowed.count() as f64 >= WIDE_FILTER_SHARE * flat.len() as f64);
                for k in [1, 10, 57, n + 5] {
                    let opts = SearchOptions::default();
                    let wide = Index::search(&flat, &q, k, Some(&allowed), &opts).unwrap();
                    let copied = flat
                        .search_copying(&q, k, Some(&allowed), &SearchParams::default())
                        .unwrap();
                    let tag = format!("{metric:?} bf16={bf16} share={share} k={k}");
                    assert_eq!(wide.ids, copied.indices, "{tag}");
                    assert_eq!(wide.distances, copied.distances, "{tag}");
                }
            }
            // The nearest 200 rows of a query are not allowed: the first passes find none and
            // widen until they do.
            let one = &q[..DIM];
            let near = flat
                .search(one, 200, None, &SearchParams::default())
                .unwrap();
            let keep: Vec<i64> = Index::ids(&flat)
                .into_iter()
                .filter(|id| !near.indices.contains(id))
                .collect();
            let allowed = flat.allowed(Filter::Ids(&keep));
            let opts = SearchOptions::default();
            let wide = Index::search(&flat, one, 10, Some(&allowed), &opts).unwrap();
            let copied = flat
                .search_copying(one, 10, Some(&allowed), &SearchParams::default())
                .unwrap();
            assert_eq!(wide.ids, copied.indices, "{metric:?} bf16={bf16}");
            assert!(wide.ids.iter().all(|id| keep.contains(id)));
        }
    }
}
