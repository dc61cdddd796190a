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
