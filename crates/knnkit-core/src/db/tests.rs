use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::rng::SplitMix64;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("knnkit-db-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn spec(dim: usize, index: &str, metric: &str) -> Spec {
    Spec {
        dim: Some(dim),
        metric: Some(metric.into()),
        index: Some(index.into()),
        params: None,
    }
}

fn vectors(rng: &mut SplitMix64, n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim)
        .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
        .collect()
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("r{i}")).collect()
}

fn meta(v: serde_json::Value) -> Option<Metadata> {
    Some(Metadata::from_json(&v).unwrap())
}

fn all() -> Include {
    Include {
        metadata: true,
        documents: true,
        vectors: true,
    }
}

/// Brute-force k nearest (euclidean) of `q` among `(id, vector)` rows.
fn oracle(rows: &[(String, Vec<f32>)], q: &[f32], k: usize) -> Vec<String> {
    let mut d: Vec<(f32, &String)> = rows
        .iter()
        .map(|(id, v)| {
            let s: f32 = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (s, id)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    d.into_iter().take(k).map(|(_, id)| id.clone()).collect()
}

/// Every record of a collection, as SQLite holds it.
fn rows_of(c: &Collection) -> Vec<(String, Vec<f32>)> {
    let r = c.get(None, None, None, 0, all()).unwrap();
    let dim = c.info().dim;
    r.ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, r.vectors[i * dim..(i + 1) * dim].to_vec()))
        .collect()
}

/// The collection answers like a brute-force search over what SQLite holds.
fn check_against_oracle(c: &Collection, rng: &mut SplitMix64) {
    let rows = rows_of(c);
    let (len, _) = c.index_state().unwrap();
    assert_eq!(len, rows.len(), "index and SQLite disagree on the count");
    let dim = c.info().dim;
    for _ in 0..5 {
        let q = vectors(rng, 1, dim);
        let got = c.query(&q, 7, None, Include::default()).unwrap();
        assert_eq!(got[0].ids, oracle(&rows, &q, 7));
    }
}

#[test]
fn schema_is_created_in_wal_mode_and_reopens() {
    let dir = tmp("schema");
    let db = Db::open(&dir, Options::default()).unwrap();
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for t in ["collections", "deletions", "meta", "records"] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    conn.execute(
        "UPDATE meta SET value = 99 WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(db);
    let e = Db::open(&dir, Options::default()).err().unwrap();
    assert!(e.to_string().contains("schema version 99"), "{e}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_file_that_is_not_a_store_is_a_clear_error() {
    let dir = tmp("foreign");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(DB_FILE), vec![7u8; 4096]).unwrap();
    let e = Db::open(&dir, Options::default()).err().unwrap();
    assert!(matches!(e, Error::Database(_)), "{e}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn collections_are_created_listed_checked_and_deleted() {
    let dir = tmp("collections");
    let db = Db::open(&dir, Options::default()).unwrap();
    let a = db
        .create_collection("a", &spec(4, "flat", "euclidean"))
        .unwrap();
    assert_eq!(a.info().metric, "euclidean");
    let b = db
        .get_or_create_collection(
            "b",
            &Spec {
                dim: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        (b.info().index.as_str(), b.info().metric.as_str()),
        ("hnsw", "cosine")
    );
    assert_eq!(b.info().params["m"], json!(16));
    let names: Vec<String> = db
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    // Existing: same object, and a mismatch is an error naming it.
    let again = db.get_or_create_collection("a", &Spec::default()).unwrap();
    assert!(Arc::ptr_eq(&a, &again));
    for (s, what) in [
        (spec(5, "flat", "euclidean"), "dim"),
        (spec(4, "flat", "cosine"), "metric"),
        (spec(4, "hnsw", "euclidean"), "index"),
    ] {
        let e = db
            .get_or_create_collection("a", &s)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(what), "{e}");
        let e = db.get_collection("a", &s).err().unwrap().to_string();
        assert!(e.contains(what), "{e}");
    }
    assert!(db
        .create_collection("a", &spec(4, "flat", "euclidean"))
        .is_err());
    assert!(db.get_collection("nope", &Spec::default()).is_err());
    for bad in ["", ".x", "a/b", "-x", &"x".repeat(129)] {
        assert!(
            db.create_collection(bad, &spec(4, "flat", "euclidean"))
                .is_err(),
            "{bad}"
        );
    }
    assert!(db
        .create_collection("c", &spec(4, "ivf", "euclidean"))
        .is_err());
    assert!(db
        .create_collection("c", &spec(4, "annoy", "euclidean"))
        .is_err());
    assert!(db
        .create_collection("c", &spec(0, "flat", "euclidean"))
        .is_err());
    let mut bad_params = spec(4, "hnsw", "euclidean");
    bad_params.params = Some(json!({"mm": 3}).as_object().unwrap().clone());
    assert!(db
        .create_collection("c", &bad_params)
        .err()
        .unwrap()
        .to_string()
        .contains("mm"));
    bad_params.params = Some(json!({"m": 1}).as_object().unwrap().clone());
    assert!(db.create_collection("c", &bad_params).is_err());
    assert!(
        db.list_collections().unwrap().len() == 2,
        "failed creations left nothing"
    );

    a.add(&Write {
        ids: ids(0..2),
        vectors: Some(vec![0.0; 8]),
        ..Default::default()
    })
    .unwrap();
    a.snapshot().unwrap();
    db.delete_collection("a").unwrap();
    assert!(
        a.count(None).is_err(),
        "a deleted collection's handle refuses calls"
    );
    assert!(db.delete_collection("a").is_err());
    // Same name again: a new, empty collection (the old snapshot is gone and would not fit).
    let a2 = db
        .create_collection("a", &spec(4, "flat", "euclidean"))
        .unwrap();
    assert_eq!(a2.count(None).unwrap(), 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_embedder_name_is_recorded_and_checked_apart_from_index_parameters() {
    let dir = tmp("embedder");
    let with = |dim: usize, index: &str, p: serde_json::Value| Spec {
        dim: Some(dim),
        index: Some(index.into()),
        params: Some(p.as_object().unwrap().clone()),
        ..Default::default()
    };
    {
        let db = Db::open(&dir, Options::default()).unwrap();
        let c = db
            .create_collection("c", &with(4, "hnsw", json!({"embedder": "e1", "m": 8})))
            .unwrap();
        assert_eq!(c.info().params["embedder"], json!("e1"));
        assert_eq!(c.info().params["m"], json!(8));
        db.create_collection("f", &with(4, "flat", json!({"embedder": "e1"})))
            .unwrap();
        db.create_collection("plain", &spec(4, "flat", "cosine"))
            .unwrap();
        for bad in [json!({"embedder": 3}), json!({"embedder": ""})] {
            let e = db
                .create_collection("bad", &with(4, "flat", bad))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("embedder"), "{e}");
        }
    }
    let db = Db::open(&dir, Options::default()).unwrap();
    // Reopened: the name is still there; naming only the embedder checks no index parameter.
    let c = db
        .get_collection("c", &with(4, "hnsw", json!({"embedder": "e1"})))
        .unwrap();
    assert_eq!(c.info().params["embedder"], json!("e1"));
    db.get_collection("c", &with(4, "hnsw", json!({"m": 8})))
        .unwrap();
    db.get_collection("c", &with(4, "hnsw", json!({"m": 8, "embedder": "e1"})))
        .unwrap();
    for (p, what) in [
        (json!({"embedder": "e2"}), "embedder"),
        (json!({"m": 16, "embedder": "e1"}), "params"),
        (json!({"m": 16}), "params"),
    ] {
        let e = db
            .get_or_create_collection("c", &with(4, "hnsw", p))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(what), "{e}");
    }
    // A collection made without an embedder may be opened with one; nothing is recorded.
    let plain = db
        .get_collection("plain", &with(4, "flat", json!({"embedder": "e1"})))
        .unwrap();
    assert!(!plain.info().params.contains_key("embedder"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn writes_are_all_or_nothing() {
    let dir = tmp("atomic");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(3, "flat", "euclidean"))
        .unwrap();
    let mut rng = SplitMix64::new(1);
    c.add(&Write {
        ids: ids(0..10),
        vectors: Some(vectors(&mut rng, 10, 3)),
        metadata: Some((0..10).map(|i| meta(json!({"i": i}))).collect()),
        documents: Some((0..10).map(|i| Some(format!("doc {i}"))).collect()),
    })
    .unwrap();
    let before = c.get(None, None, None, 0, all()).unwrap();
    let good = vectors(&mut rng, 3, 3);
    let bad_writes = [
        // an existing id among new ones
        Write {
            ids: vec!["new1".into(), "r3".into(), "new2".into()],
            vectors: Some(good.clone()),
            ..Default::default()
        },
        // a repeated id
        Write {
            ids: vec!["x".into(), "y".into(), "x".into()],
            vectors: Some(good.clone()),
            ..Default::default()
        },
        // a NaN
        Write {
            ids: ids(20..23),
            vectors: Some({
                let mut v = good.clone();
                v[4] = f32::NAN;
                v
            }),
            ..Default::default()
        },
        // wrong dimension, wrong counts
        Write {
            ids: ids(20..23),
            vectors: Some(vec![0.0; 8]),
            ..Default::default()
        },
        Write {
            ids: ids(20..23),
            vectors: Some(vec![0.0; 6]),
            ..Default::default()
        },
        Write {
            ids: ids(20..23),
            vectors: Some(good.clone()),
            metadata: Some(vec![None]),
            ..Default::default()
        },
        Write {
            ids: vec![String::new()],
            vectors: Some(vec![0.0; 3]),
            ..Default::default()
        },
        Write {
            ids: ids(20..23),
            ..Default::default()
        },
    ];
    for w in &bad_writes {
        assert!(c.add(w).is_err(), "{w:?}");
        if !w.ids.contains(&"r3".to_string()) {
            assert!(c.upsert(w).is_err(), "{w:?}");
        }
    }
    // update of an unknown id among known ones
    let e = c
        .update(&Write {
            ids: vec!["r1".into(), "ghost".into()],
            metadata: Some(vec![meta(json!({"z": 1})), None]),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("ghost"), "{e}");
    assert_eq!(c.get(None, None, None, 0, all()).unwrap(), before);
    assert_eq!(c.index_state().unwrap().0, 10);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn upsert_update_and_delete_change_what_they_name() {
    let dir = tmp("update");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(2, "flat", "euclidean"))
        .unwrap();
    c.add(&Write {
        ids: ids(0..3),
        vectors: Some(vec![0.0, 0.0, 1.0, 0.0, 2.0, 0.0]),
        metadata: Some(vec![meta(json!({"a": 0})), meta(json!({"a": 1})), None]),
        documents: Some(vec![Some("zero".into()), None, Some("two".into())]),
    })
    .unwrap();
    // update: only the metadata of r0; the vector of r1; clear r2's document
    c.update(&Write {
        ids: vec!["r0".into()],
        metadata: Some(vec![meta(json!({"a": 10}))]),
        ..Default::default()
    })
    .unwrap();
    c.update(&Write {
        ids: vec!["r1".into()],
        vectors: Some(vec![5.0, 5.0]),
        ..Default::default()
    })
    .unwrap();
    c.update(&Write {
        ids: vec!["r2".into()],
        documents: Some(vec![None]),
        ..Default::default()
    })
    .unwrap();
    let r = c.get(None, None, None, 0, all()).unwrap();
    assert_eq!(r.ids, ["r0", "r1", "r2"]);
    assert_eq!(
        r.metadata,
        [meta(json!({"a": 10})), meta(json!({"a": 1})), None]
    );
    assert_eq!(r.documents, [Some("zero".into()), None, None]);
    assert_eq!(r.vectors, [0.0, 0.0, 5.0, 5.0, 2.0, 0.0]);
    let hit = c.query(&[5.0, 5.1], 1, None, all()).unwrap();
    assert_eq!(hit[0].ids, ["r1"]);
    assert_eq!(hit[0].metadata, [meta(json!({"a": 1}))]);
    // upsert: r0 gets a new vector and keeps its metadata; r9 is new
    c.upsert(&Write {
        ids: vec!["r0".into(), "r9".into()],
        vectors: Some(vec![-3.0, 0.0, 9.0, 9.0]),
        ..Default::default()
    })
    .unwrap();
    let r = c
        .get(
            Some(&["r9".into(), "r0".into(), "ghost".into()]),
            None,
            None,
            0,
            all(),
        )
        .unwrap();
    assert_eq!(r.ids, ["r9", "r0"]);
    assert_eq!(r.metadata, [None, meta(json!({"a": 10}))]);
    assert_eq!(r.vectors, [9.0, 9.0, -3.0, 0.0]);
    assert_eq!(c.index_state().unwrap().0, 4);
    // delete by ids (unknown skipped), by where, by both
    assert_eq!(
        c.delete(Some(&["r9".into(), "ghost".into()]), None)
            .unwrap(),
        1
    );
    let w = Where::parse(&json!({"a": {"$gte": 5}})).unwrap();
    assert_eq!(c.count(Some(&w)).unwrap(), 1);
    assert_eq!(c.delete(Some(&["r1".into()]), Some(&w)).unwrap(), 0);
    assert_eq!(c.delete(None, Some(&w)).unwrap(), 1);
    assert!(c.delete(None, None).is_err());
    assert_eq!(c.count(None).unwrap(), 2);
    assert_eq!(c.index_state().unwrap().0, 2);
    let hit = c.query(&[-3.0, 0.0], 5, None, Include::default()).unwrap();
    assert_eq!(hit[0].ids, ["r2", "r1"]);
    // limit and offset: insertion order without ids, the caller's order with them
    let r = c.get(None, None, Some(1), 1, Include::default()).unwrap();
    assert_eq!(r.ids, ["r2"]);
    let r = c
        .get(
            Some(&["r2".into(), "r1".into()]),
            None,
            Some(1),
            0,
            Include::default(),
        )
        .unwrap();
    assert_eq!(r.ids, ["r2"]);
    let _ = fs::remove_dir_all(&dir);
}

/// Random writes on a collection, checked against an oracle after each step.
fn churn(c: &Collection, rng: &mut SplitMix64, rounds: usize, next: &mut usize) {
    let dim = c.info().dim;
    for _ in 0..rounds {
        let n = 1 + rng.below(20);
        match rng.below(4) {
            0..=2 if *next == 0 || rng.below(3) < 2 => {
                c.add(&Write {
                    ids: ids(*next..*next + n),
                    vectors: Some(vectors(rng, n, dim)),
                    metadata: Some(
                        (0..n)
                            .map(|i| meta(json!({"g": (*next + i) % 7})))
                            .collect(),
                    ),
                    ..Default::default()
                })
                .unwrap();
                *next += n;
            }
            0..=2 => {
                // existing or deleted ids: upsert updates or re-adds them
                let mut some: Vec<String> =
                    (0..n).map(|_| format!("r{}", rng.below(*next))).collect();
                some.sort();
                some.dedup();
                let k = some.len();
                c.upsert(&Write {
                    ids: some,
                    vectors: Some(vectors(rng, k, dim)),
                    ..Default::default()
                })
                .unwrap();
            }
            _ => {
                let some: Vec<String> = (0..n)
                    .map(|_| format!("r{}", rng.below(*next + 1)))
                    .collect();
                c.delete(Some(&some), None).unwrap();
            }
        }
    }
}

#[test]
fn reopen_replays_from_the_snapshot() {
    for kind in ["flat", "hnsw"] {
        let dir = tmp(&format!("replay-{kind}"));
        let mut rng = SplitMix64::new(7);
        let mut next = 0;
        let opts = Options {
            snapshot_every: 0,
            ..Default::default()
        };
        {
            let db = Db::open(&dir, opts.clone()).unwrap();
            let c = db
                .create_collection("c", &spec(4, kind, "euclidean"))
                .unwrap();
            churn(&c, &mut rng, 30, &mut next);
            c.snapshot().unwrap();
            churn(&c, &mut rng, 30, &mut next);
            check_against_oracle(&c, &mut rng);
        }
        let db = Db::open(&dir, opts.clone()).unwrap();
        let c = db.get_collection("c", &Spec::default()).unwrap();
        assert!(
            c.index_state().unwrap().1,
            "{kind}: loaded from the snapshot"
        );
        check_against_oracle(&c, &mut rng);
        // The snapshot pruned the deletion log up to what it covers.
        let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
        let pruned: i64 = conn
            .query_row("SELECT pruned_seq FROM collections", [], |r| r.get(0))
            .unwrap();
        assert!(pruned > 0);
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn damaged_snapshots_are_rebuilt_with_the_same_answers() {
    let dir = tmp("damaged");
    let mut rng = SplitMix64::new(3);
    let mut next = 0;
    let opts = Options {
        snapshot_every: 0,
        ..Default::default()
    };
    let q = vectors(&mut rng, 4, 4);
    let expected = {
        let db = Db::open(&dir, opts.clone()).unwrap();
        let c = db
            .create_collection("c", &spec(4, "hnsw", "euclidean"))
            .unwrap();
        churn(&c, &mut rng, 40, &mut next);
        c.snapshot().unwrap();
        c.query(&q, 5, None, Include::default()).unwrap()
    };
    let path = dir.join("c.hnsw.knn");
    let good = fs::read(&path).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("bit flipped", {
            let mut b = good.clone();
            let at = b.len() - 100;
            b[at] ^= 0x10;
            b
        }),
        ("header flipped", {
            let mut b = good.clone();
            b[30] ^= 0x01;
            b
        }),
        ("not an index", b"hello".to_vec()),
    ];
    for (what, bytes) in damages {
        fs::write(&path, &bytes).unwrap();
        let db = Db::open(&dir, opts.clone()).unwrap();
        let c = db.get_collection("c", &Spec::default()).unwrap();
        let (len, from_snapshot) = c.index_state().unwrap();
        assert!(!from_snapshot, "{what}: rebuilt");
        assert_eq!(len, c.count(None).unwrap(), "{what}");
        assert_eq!(
            c.query(&q, 5, None, Include::default()).unwrap(),
            expected,
            "{what}"
        );
    }
    // A snapshot of another collection (same name, earlier id) is not used.
    fs::write(&path, &good).unwrap();
    {
        let db = Db::open(&dir, opts.clone()).unwrap();
        db.delete_collection("c").unwrap();
        let c = db
            .create_collection("c", &spec(4, "hnsw", "euclidean"))
            .unwrap();
        fs::write(&path, &good).unwrap();
        drop(c);
    }
    let db = Db::open(&dir, opts).unwrap();
    let c = db.get_collection("c", &Spec::default()).unwrap();
    assert_eq!(c.index_state().unwrap(), (0, false));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn another_connection_sees_each_commit_and_a_second_writer_times_out() {
    let dir = tmp("two");
    let opts = Options {
        timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let a = Db::open(&dir, opts.clone()).unwrap();
    let b = Db::open(&dir, opts).unwrap();
    let ca = a
        .create_collection("c", &spec(2, "flat", "euclidean"))
        .unwrap();
    let cb = b.get_collection("c", &Spec::default()).unwrap();
    let mut rng = SplitMix64::new(5);
    let mut next = 0;
    for _ in 0..10 {
        churn(&ca, &mut rng, 3, &mut next);
        assert_eq!(rows_of(&cb), rows_of(&ca));
        check_against_oracle(&cb, &mut rng);
    }
    // b falls behind a snapshot that prunes the log: it reloads and agrees.
    let _ = cb.count(None).unwrap();
    churn(&ca, &mut rng, 10, &mut next);
    ca.snapshot().unwrap();
    check_against_oracle(&cb, &mut rng);
    assert_eq!(cb.count(None).unwrap(), ca.count(None).unwrap());

    // A raw connection holds the write lock: writers give up after the timeout.
    let mut raw = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let tx = raw
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let e = cb
        .add(&Write {
            ids: vec!["late".into()],
            vectors: Some(vec![1.0, 1.0]),
            ..Default::default()
        })
        .unwrap_err();
    assert!(matches!(e, Error::Busy(_)), "{e}");
    // Readers are not blocked by the writer.
    assert!(cb.count(None).is_ok());
    drop(tx);
    assert!(cb
        .get(Some(&["late".into()]), None, None, 0, Include::default())
        .unwrap()
        .ids
        .is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn filtered_queries_return_min_k_matches_exactly() {
    let dir = tmp("filters");
    let db = Db::open(&dir, Options::default()).unwrap();
    let mut rng = SplitMix64::new(11);
    let n = 3000;
    let dim = 8;
    for kind in ["flat", "hnsw"] {
        let c = db
            .create_collection(kind, &spec(dim, kind, "euclidean"))
            .unwrap();
        let data = vectors(&mut rng, n, dim);
        c.add(&Write {
            ids: ids(0..n),
            vectors: Some(data.clone()),
            metadata: Some(
                (0..n)
                    .map(|i| meta(json!({"m": i % 100, "tags": [format!("t{}", i % 3)]})))
                    .collect(),
            ),
            ..Default::default()
        })
        .unwrap();
        let rows: Vec<(String, Vec<f32>)> = (0..n)
            .map(|i| (format!("r{i}"), data[i * dim..(i + 1) * dim].to_vec()))
            .collect();
        for (filter, keep) in [
            (
                json!({"m": {"$lt": 1}}),
                Box::new(|i: usize| i % 100 < 1) as Box<dyn Fn(usize) -> bool>,
            ),
            (json!({"m": {"$lt": 90}}), Box::new(|i: usize| i % 100 < 90)),
            (
                json!({"$and": [{"m": {"$gte": 50}}, {"tags": {"$contains": "t1"}}]}),
                Box::new(|i: usize| i % 100 >= 50 && i % 3 == 1),
            ),
            (json!({"m": 1000}), Box::new(|_| false)),
        ] {
            let w = Where::parse(&filter).unwrap();
            let subset: Vec<(String, Vec<f32>)> = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, r)| r.clone())
                .collect();
            assert_eq!(c.count(Some(&w)).unwrap(), subset.len());
            for k in [1, 10, 100] {
                let q = vectors(&mut rng, 3, dim);
                let got = c.query(&q, k, Some(&w), Include::default()).unwrap();
                for (qi, h) in got.iter().enumerate() {
                    let want = oracle(&subset, &q[qi * dim..(qi + 1) * dim], k);
                    assert_eq!(h.ids.len(), want.len(), "{kind} {filter} k={k}");
                    if kind == "flat" {
                        assert_eq!(h.ids, want, "{kind} {filter} k={k}");
                    }
                    let allowed: std::collections::HashSet<&String> =
                        subset.iter().map(|r| &r.0).collect();
                    assert!(h.ids.iter().all(|i| allowed.contains(i)));
                }
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_backup_is_a_store_of_its_own_history() {
    let dir = tmp("backup");
    let copy = tmp("backup-copy");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(2, "hnsw", "euclidean"))
        .unwrap();
    let mut rng = SplitMix64::new(9);
    let mut next = 0;
    churn(&c, &mut rng, 20, &mut next);
    let snap = c.snapshot().unwrap();
    db.backup(&copy).unwrap();
    assert!(
        db.backup(&copy).is_err(),
        "a backup never overwrites a store"
    );
    // The original's snapshot placed next to the copy does not serve it (another epoch).
    fs::copy(&snap, copy.join("c.hnsw.knn")).unwrap();
    let b = Db::open(&copy, Options::default()).unwrap();
    let cb = b.get_collection("c", &Spec::default()).unwrap();
    assert_eq!(cb.index_state().unwrap(), (c.count(None).unwrap(), false));
    assert_eq!(rows_of(&cb), rows_of(&c));
    // The original still loads from its own snapshot.
    drop((c, db));
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db.get_collection("c", &Spec::default()).unwrap();
    assert!(c.index_state().unwrap().1);
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&copy);
}

#[test]
fn snapshots_due_are_written_in_the_background_and_serve_the_next_open() {
    for kind in ["flat", "hnsw"] {
        let dir = tmp(&format!("background-{kind}"));
        let mut rng = SplitMix64::new(11);
        let mut next = 0;
        let opts = Options {
            snapshot_every: 40,
            ..Default::default()
        };
        {
            let db = Db::open(&dir, opts.clone()).unwrap();
            let c = db
                .create_collection("c", &spec(4, kind, "euclidean"))
                .unwrap();
            // Queries and writes go on while snapshots are written.
            churn(&c, &mut rng, 60, &mut next);
            c.wait_for_snapshot();
            assert!(dir.join(format!("c.{kind}.knn")).exists(), "{kind}");
            churn(&c, &mut rng, 10, &mut next);
            check_against_oracle(&c, &mut rng);
        }
        let db = Db::open(&dir, opts).unwrap();
        let c = db.get_collection("c", &Spec::default()).unwrap();
        assert!(c.index_state().unwrap().1, "{kind}: loaded from a snapshot");
        check_against_oracle(&c, &mut rng);
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn closing_writes_a_snapshot_when_a_rebuild_would_cost_more() {
    // Below `snapshot_every`: no snapshot while writing. At close, an HNSW collection with
    // at least CLOSE_SNAPSHOT_MIN changed rows writes one; a flat one, or fewer rows, do not.
    for (kind, n, expected) in [
        ("hnsw", CLOSE_SNAPSHOT_MIN, true),
        ("hnsw", CLOSE_SNAPSHOT_MIN - 1, false),
        ("flat", CLOSE_SNAPSHOT_MIN, false),
    ] {
        let dir = tmp(&format!("close-{kind}-{n}"));
        let mut rng = SplitMix64::new(3);
        let file = dir.join(format!("c.{kind}.knn"));
        {
            let db = Db::open(&dir, Options::default()).unwrap();
            let c = db
                .create_collection("c", &spec(4, kind, "euclidean"))
                .unwrap();
            c.add(&Write {
                ids: ids(0..n),
                vectors: Some(vectors(&mut rng, n, 4)),
                ..Default::default()
            })
            .unwrap();
            c.wait_for_snapshot();
            assert!(!file.exists(), "{kind} {n}: no snapshot due while writing");
        }
        assert_eq!(file.exists(), expected, "{kind} {n}: snapshot at close");
        let db = Db::open(&dir, Options::default()).unwrap();
        let c = db.get_collection("c", &Spec::default()).unwrap();
        assert_eq!(c.index_state().unwrap(), (n, expected), "{kind} {n}");
        check_against_oracle(&c, &mut rng);
        drop((c, db));
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn deleting_records_gives_disk_space_back() {
    let dir = tmp("reclaim");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(256, "flat", "euclidean"))
        .unwrap();
    let mut rng = SplitMix64::new(5);
    let n = 4000; // 4 MB of vectors
    c.add(&Write {
        ids: ids(0..n),
        vectors: Some(vectors(&mut rng, n, 256)),
        ..Default::default()
    })
    .unwrap();
    let pages = |conn: &rusqlite::Connection| -> (i64, i64) {
        let p = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let f = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap();
        (p, f)
    };
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let (full, _) = pages(&conn);
    c.delete(Some(&ids(100..n)), None).unwrap();
    let (after, free) = pages(&conn);
    assert!(
        after * 5 < full && free < 256,
        "{full} pages before, {after} after ({free} free)"
    );
    // The main file shrinks at the next checkpoint, and the log is truncated to its limit.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let size = fs::metadata(dir.join(DB_FILE)).unwrap().len();
    assert!(size < 1 << 20, "{size} bytes after the checkpoint");
    assert_eq!(c.count(None).unwrap(), 100);
    drop(conn);
    let _ = fs::remove_dir_all(&dir);
}

fn docs_write(docs: &[(&str, Option<&str>)], dim: usize) -> Write {
    Write {
        ids: docs.iter().map(|(i, _)| (*i).to_string()).collect(),
        vectors: Some(
            (0..docs.len() * dim)
                .map(|j| (j / dim) as f32 + 0.1 * (j % dim) as f32)
                .collect(),
        ),
        metadata: None,
        documents: Some(docs.iter().map(|(_, d)| d.map(str::to_string)).collect()),
    }
}

fn text_query<'a>(texts: &'a [String], k: usize, filters: Filters<'a>) -> Query<'a> {
    Query {
        mode: QueryMode::Text,
        texts: Some(texts),
        k,
        filters,
        ..Default::default()
    }
}

fn texts(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn bm25_ranks_a_hand_checked_example() {
    let dir = tmp("bm25");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(2, "flat", "euclidean"))
        .unwrap();
    c.add(&docs_write(
        &[
            ("d0", Some("Apple banana")),
            ("d1", Some("apple APPLE cherry")),
            ("d2", Some("cherry date")),
            ("d3", Some("elder fig grape")),
            ("d4", Some("kiwi")),
            ("none", None),
        ],
        2,
    ))
    .unwrap();
    // N = 5 documents, 11 tokens (avgdl 2.2); "apple" and "cherry" are in 2 each:
    // idf = ln(3.5 / 2.5); score = idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / 2.2)).
    let q = texts(&["apple cherry", "APPLE", "\"", "AND", "foo*(", "", "zebra"]);
    let r = c.search(&text_query(&q, 10, Filters::default())).unwrap();
    assert_eq!(r[0].ids, ["d1", "d0", "d2"]); // d0 and d2 tie: the older record first
    let want = [0.419_723_1 + 0.292_900_3, 0.349_469_0, 0.349_469_0];
    for (got, want) in r[0].scores.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert!(r[0].distances.is_empty());
    assert_eq!(r[1].ids, ["d1", "d0"]);
    for hostile in &r[2..] {
        assert!(hostile.ids.is_empty(), "{hostile:?}");
    }
    // k cuts; `where` and `where_document` filter the ranked stream
    let r = c
        .search(&text_query(&q[..1], 1, Filters::default()))
        .unwrap();
    assert_eq!(r[0].ids, ["d1"]);
    let not_d1 = DocFilter::parse(&json!({"$not_contains": "APPLE"})).unwrap();
    let r = c
        .search(&text_query(
            &q[..1],
            10,
            Filters {
                meta: None,
                document: Some(&not_d1),
            },
        ))
        .unwrap();
    assert_eq!(r[0].ids, ["d0", "d2"]);
    assert_eq!(c.check_text_index().unwrap(), 5);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_text_index_follows_every_write() {
    let dir = tmp("fts-writes");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(2, "hnsw", "euclidean"))
        .unwrap();
    let find = |word: &str| -> Vec<String> {
        let q = texts(&[word]);
        let mut ids = c.search(&text_query(&q, 100, Filters::default())).unwrap()[0]
            .ids
            .clone();
        ids.sort();
        ids
    };
    c.add(&docs_write(
        &[("a", Some("red fox")), ("b", Some("blue fox")), ("c", None)],
        2,
    ))
    .unwrap();
    assert_eq!(find("fox"), ["a", "b"]);
    // a new vector moves the row to the new key; the document stays
    c.update(&Write {
        ids: vec!["a".into()],
        vectors: Some(vec![9.0, 9.0]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(find("red"), ["a"]);
    // a new document replaces the old one; a cleared one leaves the index
    c.update(&Write {
        ids: vec!["a".into(), "b".into()],
        documents: Some(vec![Some("green owl".into()), None]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(find("fox"), Vec::<String>::new());
    assert_eq!(find("owl"), ["a"]);
    // upsert: a document for c and a new vector and document for a, a new record d
    c.upsert(&Write {
        ids: vec!["c".into(), "a".into(), "d".into()],
        vectors: Some(vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]),
        metadata: None,
        documents: Some(vec![Some("owl".into()), Some("grey owl".into()), None]),
    })
    .unwrap();
    assert_eq!(find("owl"), ["a", "c"]);
    assert_eq!(c.check_text_index().unwrap(), 2);
    // a failed write changes nothing
    assert!(c
        .add(&docs_write(&[("e", Some("owl")), ("a", Some("owl"))], 2))
        .is_err());
    assert_eq!(find("owl"), ["a", "c"]);
    assert_eq!(c.delete(Some(&["a".into()]), None).unwrap(), 1);
    assert_eq!(find("owl"), ["c"]);
    assert_eq!(c.check_text_index().unwrap(), 1);
    // a reopened store reads the same index; a deleted collection drops its table
    drop((c, db));
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db.get_collection("c", &Spec::default()).unwrap();
    let q = texts(&["owl"]);
    assert_eq!(
        c.search(&text_query(&q, 5, Filters::default())).unwrap()[0].ids,
        ["c"]
    );
    let table = text::table(c.info().id);
    // the check sees totals that disagree with the rows
    {
        let raw = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
        raw.execute(&format!("UPDATE {table}_docsize SET sz = X'09'"), [])
            .unwrap();
    }
    let e = c.check_text_index().unwrap_err().to_string();
    assert!(
        e.contains("totals of 1 rows and 1 tokens, but 1 rows of 9 tokens"),
        "{e}"
    );
    db.delete_collection("c").unwrap();
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE ?1",
            [format!("{table}%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn where_document_filters_every_read_and_delete() {
    let dir = tmp("where-doc");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(2, "flat", "euclidean"))
        .unwrap();
    c.add(&Write {
        metadata: Some(vec![
            meta(json!({"g": 1})),
            meta(json!({"g": 2})),
            meta(json!({"g": 1})),
            None,
        ]),
        ..docs_write(
            &[
                ("a", Some("the quick brown fox")),
                ("b", Some("Quick brownies")),
                ("c", Some("slow brown dog")),
                ("d", None),
            ],
            2,
        )
    })
    .unwrap();
    let f = |v: serde_json::Value| DocFilter::parse(&v).unwrap();
    let ids_of = |d: &DocFilter, w: Option<&Where>| {
        let filters = Filters {
            meta: w,
            document: Some(d),
        };
        c.get_matching(None, filters, None, 0, Include::default())
            .unwrap()
            .ids
    };
    assert_eq!(
        ids_of(&f(json!({"$contains": "brown"})), None),
        ["a", "b", "c"]
    );
    assert_eq!(
        ids_of(&f(json!({"$contains": " brown "})), None),
        ["a", "c"]
    );
    assert_eq!(ids_of(&f(json!({"$contains": "quick"})), None), ["a"]);
    assert_eq!(
        ids_of(&f(json!({"$not_contains": "quick"})), None),
        ["b", "c", "d"]
    );
    assert_eq!(
        ids_of(
            &f(json!({"$or": [{"$contains": "fox"}, {"$contains": "dog"}]})),
            None
        ),
        ["a", "c"]
    );
    assert_eq!(
        ids_of(
            &f(json!({"$and": [{"$contains": "brown"}, {"$not_contains": "fox"}]})),
            None
        ),
        ["b", "c"]
    );
    let g1 = Where::parse(&json!({"g": 1})).unwrap();
    assert_eq!(
        ids_of(&f(json!({"$contains": "brown"})), Some(&g1)),
        ["a", "c"]
    );
    let brown = f(json!({"$contains": "brown"}));
    let both = Filters {
        meta: Some(&g1),
        document: Some(&brown),
    };
    assert_eq!(c.count_matching(both).unwrap(), 2);
    let q = [0.0f32, 0.0];
    let r = c
        .search(&Query {
            vectors: Some(&q),
            k: 10,
            filters: both,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r[0].ids, ["a", "c"]);
    for (bad, want) in [
        (json!({"$contains": 1}), "a str after $contains"),
        (json!({"$regex": "x"}), "unknown operator \"$regex\""),
        (json!({"$and": []}), "non-empty list"),
        (json!("x"), "a dict"),
        (json!({}), "at least one operator"),
    ] {
        let e = DocFilter::parse(&bad).unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
    assert_eq!(c.delete_matching(None, both).unwrap(), 2);
    assert_eq!(c.count(None).unwrap(), 2);
    assert_eq!(c.check_text_index().unwrap(), 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn hybrid_fuses_both_rankings_and_returns_k() {
    let dir = tmp("hybrid");
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db
        .create_collection("c", &spec(2, "hnsw", "euclidean"))
        .unwrap();
    let n = 300;
    let docs: Vec<Option<String>> = (0..n)
        .map(|i| match i {
            7 => Some("alpha beta gamma".into()),
            11 => Some("alpha alpha alpha".into()),
            _ if i % 3 == 0 => None,
            _ => Some(format!("filler word{i}")),
        })
        .collect();
    c.add(&Write {
        ids: ids(0..n),
        vectors: Some((0..n).flat_map(|i| [i as f32, 0.0]).collect()),
        metadata: None,
        documents: Some(docs),
    })
    .unwrap();
    // r7 is first in both lists (nearest, and the only document with "gamma"); r11 is
    // second by text and far by vector
    let v = [7.2f32, 0.0];
    let t = texts(&["alpha gamma"]);
    let q = Query {
        mode: QueryMode::Hybrid,
        vectors: Some(&v),
        texts: Some(&t),
        k: 10,
        ..Default::default()
    };
    let r = c.search(&q).unwrap();
    assert_eq!(r[0].ids.len(), 10);
    assert_eq!(r[0].ids[0], "r7");
    assert!(r[0].ids.contains(&"r11".to_string()));
    assert!(r[0].scores.windows(2).all(|w| w[0] >= w[1]));
    assert!(
        (r[0].scores[0] - 2.0 / 61.0).abs() < 1e-12,
        "{:?}",
        r[0].scores
    );
    // the fused list of a filter returns min(k, matches)
    let all_meta = Where::parse(&json!({"$not": {"x": 1}})).unwrap();
    let gamma = DocFilter::parse(&json!({"$contains": "gamma"})).unwrap();
    let r = c
        .search(&Query {
            filters: Filters {
                meta: Some(&all_meta),
                document: Some(&gamma),
            },
            ..q
        })
        .unwrap();
    assert_eq!(r[0].ids, ["r7"]);
    // bad requests name what is missing
    for bad in [
        Query { texts: None, ..q },
        Query { vectors: None, ..q },
        Query {
            mode: QueryMode::Text,
            texts: None,
            ..q
        },
    ] {
        let e = c.search(&bad).unwrap_err().to_string();
        assert!(e.contains("for a query in"), "{e}");
    }
    let two = texts(&["a", "b"]);
    let e = c
        .search(&Query {
            texts: Some(&two),
            ..q
        })
        .unwrap_err();
    assert!(matches!(e, Error::Shape { name: "texts", .. }), "{e}");
    let _ = fs::remove_dir_all(&dir);
}

/// A store as schema version 1 wrote it (the tables of `schema::SCHEMA`, no FTS tables).
fn write_v1_store(dir: &std::path::Path) {
    fs::create_dir_all(dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
    conn.execute_batch(schema::SCHEMA).unwrap();
    conn.execute_batch(
        "INSERT INTO meta (key, value) VALUES ('schema_version', 1), ('epoch', 12345);
         UPDATE meta SET value = 4 WHERE key = 'seq';
         INSERT INTO collections (name, dim, metric, kind, params, created, next_key)
         VALUES ('docs', 2, 'euclidean', 'flat', '{}', '2025-01-01T00:00:00.000Z', 4),
                ('other', 2, 'euclidean', 'hnsw',
                 '{\"codes\":\"flat\",\"ef_construction\":200,\"ef_search\":64,\"m\":16,\"seed\":0}',
                 '2025-01-01T00:00:00.000Z', 1);",
    )
    .unwrap();
    let blob =
        |x: f32, y: f32| -> Vec<u8> { [x, y].iter().flat_map(|v| v.to_le_bytes()).collect() };
    let rows: [(i64, &str, i64, Option<&str>); 5] = [
        (1, "a", 0, Some("the owl and the pussycat")),
        (1, "b", 1, None),
        (1, "c", 3, Some("an owl")),
        (1, "d", 2, Some("went to sea")),
        (2, "z", 0, Some("owl owl owl")),
    ];
    for (coll, id, key, doc) in rows {
        conn.execute(
            "INSERT INTO records (collection, id, key, seq, vector, metadata, document)
             VALUES (?1, ?2, ?3, 1, ?4, NULL, ?5)",
            rusqlite::params![coll, id, key, blob(key as f32, 0.0), doc],
        )
        .unwrap();
    }
}

#[test]
fn a_version_1_store_is_migrated_when_opened() {
    let dir = tmp("migrate");
    write_v1_store(&dir);
    let db = Db::open(&dir, Options::default()).unwrap();
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let version: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let c = db.get_collection("docs", &Spec::default()).unwrap();
    assert_eq!(c.check_text_index().unwrap(), 3);
    let q = texts(&["owl"]);
    let r = c.search(&text_query(&q, 10, Filters::default())).unwrap();
    assert_eq!(r[0].ids, ["c", "a"]); // the shorter document first
                                      // the other collection's documents have a table of their own (its own statistics)
    let o = db.get_collection("other", &Spec::default()).unwrap();
    assert_eq!(
        o.search(&text_query(&q, 10, Filters::default())).unwrap()[0].ids,
        ["z"]
    );
    assert_eq!(
        c.query(&[2.9, 0.0], 1, None, Include::default()).unwrap()[0].ids,
        ["c"]
    );
    // writes keep the migrated index in step; a second open does not migrate again
    c.upsert(&docs_write(&[("b", Some("owl"))], 2)).unwrap();
    assert_eq!(c.check_text_index().unwrap(), 4);
    drop((c, o, db));
    let db = Db::open(&dir, Options::default()).unwrap();
    let c = db.get_collection("docs", &Spec::default()).unwrap();
    assert_eq!(c.check_text_index().unwrap(), 4);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn fts_queries_quote_every_term() {
    assert_eq!(text::fts_query("  ").unwrap(), None);
    assert_eq!(text::fts_query("\"*(^)-:").unwrap(), None);
    assert_eq!(
        text::fts_query("foo*( AND \"bar\" NEAR/2 Café and BAR").unwrap(),
        Some("\"foo\" OR \"AND\" OR \"bar\" OR \"NEAR\" OR \"2\" OR \"Café\"".into())
    );
    let many: Vec<String> = (0..=text::MAX_QUERY_TERMS)
        .map(|i| format!("w{i}"))
        .collect();
    let e = text::fts_query(&many.join(" ")).unwrap_err().to_string();
    assert!(e.contains("at most 128 distinct words"), "{e}");
    assert!(text::fts_query(&"word ".repeat(100_000)).unwrap().is_some());
}

#[test]
fn reciprocal_rank_fusion_adds_inverse_ranks() {
    let fused = text::fuse(&[&[1, 2, 3], &[3, 4]], 3);
    let keys: Vec<i64> = fused.iter().map(|f| f.0).collect();
    assert_eq!(keys, [3, 1, 2]);
    assert!((fused[0].1 - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-15);
    // a tie goes to the better single rank, then the smaller key
    let fused = text::fuse(&[&[5, 6], &[6, 5]], 2);
    assert_eq!(fused.iter().map(|f| f.0).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(text::fusion_depth(10), 80);
}
