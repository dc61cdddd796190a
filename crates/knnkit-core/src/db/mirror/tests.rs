//! [`ColumnMirror`] against the oracle [`RowMirror`]: random records (mixed types, lists,
//! missing fields, ints and floats that are equal), random inserts, removes and updates, random
//! filter trees.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;

const FIELDS: [&str; 4] = ["a", "b", "c", "l"];

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        prop_oneof![
            -2i64..4,
            Just(i64::MIN),
            Just(i64::MAX),
            Just(1i64 << 53),
            Just((1i64 << 53) + 1),
        ]
        .prop_map(Scalar::Int),
        prop::sample::select(vec![
            -0.0,
            0.0,
            0.5,
            1.0,
            2.0,
            3.0,
            -1.5,
            2.5,
            1e300,
            -1e300,
            9_007_199_254_740_992.0,
            9_223_372_036_854_775_808.0,
            -9_223_372_036_854_775_808.0,
            1e19,
        ])
        .prop_map(Scalar::Float),
        prop::sample::select(vec!["", "a", "b", "ab", "B"]).prop_map(|s| Scalar::Str(s.into())),
    ]
}

fn value() -> impl Strategy<Value = MetaValue> {
    prop_oneof![
        3 => scalar().prop_map(MetaValue::One),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(MetaValue::List),
    ]
}

fn metadata() -> impl Strategy<Value = Option<Metadata>> {
    let field = prop::sample::select(FIELDS.to_vec()).prop_map(String::from);
    prop_oneof![
        1 => Just(None),
        9 => prop::collection::btree_map(field, value(), 0..4)
            .prop_map(|m: BTreeMap<String, MetaValue>| Some(Metadata(m))),
    ]
}

fn field_op() -> impl Strategy<Value = FieldOp> {
    let side = prop::sample::select(vec![Ordering::Greater, Ordering::Less]);
    prop_oneof![
        scalar().prop_map(FieldOp::Eq),
        (side, any::<bool>(), scalar()).prop_map(|(s, e, x)| FieldOp::Cmp(s, e, x)),
        prop::collection::vec(scalar(), 0..3).prop_map(FieldOp::In),
        any::<bool>().prop_map(FieldOp::Exists),
        scalar().prop_map(FieldOp::Contains),
    ]
}

fn where_tree() -> impl Strategy<Value = Where> {
    let name = prop::sample::select(vec!["a", "b", "c", "l", "missing"]).prop_map(String::from);
    let leaf = (name, field_op()).prop_map(|(n, op)| Where::Field(n, op));
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Where::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Where::Or),
            inner.prop_map(|w| Where::Not(Box::new(w))),
        ]
    })
}

#[derive(Clone, Debug)]
enum Op {
    /// A new key above all others (after a gap).
    Add(u8, Option<Metadata>),
    /// Any small key: out of order, or an update when it exists.
    Put(u8, Option<Metadata>),
    /// New metadata for an existing key.
    Update(usize, Option<Metadata>),
    Remove(usize),
    /// A batch through `extend`: new keys (`None`) and existing ones.
    Batch(Vec<(Option<usize>, Option<Metadata>)>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, metadata()).prop_map(|(g, m)| Op::Add(g, m)),
        1 => (any::<u8>(), metadata()).prop_map(|(k, m)| Op::Put(k, m)),
        2 => (any::<usize>(), metadata()).prop_map(|(i, m)| Op::Update(i, m)),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => prop::collection::vec((prop::option::of(any::<usize>()), metadata()), 0..40)
            .prop_map(Op::Batch),
    ]
}

/// Applies `ops` to both mirrors.
fn run(ops: &[Op]) -> (ColumnMirror, RowMirror) {
    let (mut col, mut row) = (ColumnMirror::new(), RowMirror::new());
    let mut next = 300i64;
    let mut keys: Vec<i64> = Vec::new();
    for op in ops {
        let (key, meta) = match op {
            Op::Add(gap, m) => {
                next += 1 + i64::from(*gap);
                (Some(next), m.clone())
            }
            Op::Put(k, m) => (Some(i64::from(*k)), m.clone()),
            Op::Update(i, m) if !keys.is_empty() => (Some(keys[i % keys.len()]), m.clone()),
            Op::Batch(batch) => {
                let mut records = Vec::new();
                for (pick, m) in batch {
                    let k = match pick {
                        Some(i) if !keys.is_empty() => keys[i % keys.len()],
                        _ => {
                            next += 1;
                            keys.push(next);
                            next
                        }
                    };
                    records.push((k, format!("r{k}"), m.clone()));
                }
                for (k, id, m) in records.clone() {
                    row.insert(k, id, m);
                }
                col.extend(records);
                (None, None)
            }
            Op::Remove(i) if !keys.is_empty() => {
                let k = keys.swap_remove(i % keys.len());
                col.remove(k);
                row.remove(k);
                (None, None)
            }
            _ => (None, None),
        };
        if let Some(k) = key {
            if !keys.contains(&k) {
                keys.push(k);
            }
            col.insert(k, format!("r{k}"), meta.clone());
            row.insert(k, format!("r{k}"), meta);
        }
    }
    (col, row)
}

fn same(col: &ColumnMirror, row: &RowMirror, filters: &[Where]) {
    col.check();
    assert_eq!(col.len(), row.len());
    let all = row.matching(&Where::And(vec![]));
    assert_eq!(col.matching(&Where::And(vec![])), all);
    for &k in &all {
        assert_eq!(col.id(k), row.id(k));
        assert_eq!(col.metadata(k), row.metadata(k));
        assert!(col.contains(k));
    }
    for w in filters {
        let want = row.matching(w);
        let got = col.select(w);
        assert_eq!(got.len(), want.len(), "{w:?}");
        assert_eq!(got.keys(), want, "{w:?}");
        let end = got.key_bound().unwrap();
        let mask = got.key_mask(end);
        let from_mask: Vec<i64> = (0..end as i64).filter(|&k| mask[k as usize]).collect();
        assert_eq!(from_mask, want, "{w:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn columns_match_the_row_oracle(
        ops in prop::collection::vec(op(), 0..250),
        filters in prop::collection::vec(where_tree(), 1..10),
    ) {
        let (col, row) = run(&ops);
        same(&col, &row, &filters);
    }
}

fn parse(v: serde_json::Value) -> Where {
    Where::parse(&v).unwrap()
}

fn meta(v: serde_json::Value) -> Option<Metadata> {
    Some(Metadata::from_json(&v).unwrap())
}

#[test]
fn ints_and_floats_share_postings_as_matches_decides() {
    let mut col = ColumnMirror::new();
    let rows = [
        json!({"x": 1}),
        json!({"x": 1.0}),
        json!({"x": -0.0}),
        json!({"x": 0}),
        json!({"x": 9_007_199_254_740_993i64}),
        json!({"x": 9_007_199_254_740_992.0}),
        json!({"x": 9_223_372_036_854_775_807i64}),
        json!({"x": 9_223_372_036_854_775_808.0}),
        json!({"x": 1.5}),
        json!({"x": "1"}),
        json!({"x": true}),
        json!({"x": [1, 1.0, 2]}),
        json!({}),
    ];
    let mut row = RowMirror::new();
    for (k, m) in rows.iter().enumerate() {
        col.insert(k as i64, format!("r{k}"), meta(m.clone()));
        row.insert(k as i64, format!("r{k}"), meta(m.clone()));
    }
    let cases = [
        (json!({"x": 1}), vec![0, 1]),
        (json!({"x": 0.0}), vec![2, 3]),
        (json!({"x": 9_007_199_254_740_992i64}), vec![5]),
        (
            json!({"x": {"$gt": 9_007_199_254_740_992.0}}),
            vec![4, 6, 7],
        ),
        (
            json!({"x": {"$gte": 9_223_372_036_854_775_807i64}}),
            vec![6, 7],
        ),
        (
            json!({"x": {"$lt": 9_223_372_036_854_775_808.0}}),
            vec![0, 1, 2, 3, 4, 5, 6, 8],
        ),
        (json!({"x": {"$gt": 1, "$lt": 2}}), vec![8]),
        (json!({"x": {"$lte": 1.0}}), vec![0, 1, 2, 3]),
        (json!({"x": {"$gte": "1"}}), vec![9]),
        (
            json!({"x": {"$ne": 1}}),
            vec![2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        ),
        (
            json!({"x": {"$nin": [1, true]}}),
            vec![2, 3, 4, 5, 6, 7, 8, 9, 11, 12],
        ),
        (json!({"x": {"$contains": 1.0}}), vec![11]),
        (json!({"x": {"$exists": false}}), vec![12]),
        (json!({"x": {"$in": [1.5, "1", false]}}), vec![8, 9]),
    ];
    for (w, want) in cases {
        let w = parse(w);
        assert_eq!(col.matching(&w), want, "{w:?}");
        assert_eq!(row.matching(&w), want, "{w:?}");
    }
    col.check();
}

#[test]
fn updates_removals_and_compaction_keep_every_structure_in_step() {
    let (mut col, mut row) = (ColumnMirror::new(), RowMirror::new());
    let n = 20_000i64;
    let put = |col: &mut ColumnMirror, row: &mut RowMirror, k: i64, m: Option<Metadata>| {
        col.insert(k, format!("r{k}"), m.clone());
        row.insert(k, format!("r{k}"), m);
    };
    for k in 0..n {
        let m = meta(
            json!({"b": k % 1000, "even": k % 2 == 0, "s": format!("v{}", k % 7),
                            "f": k as f64 / 3.0, "t": [k % 3]}),
        );
        put(&mut col, &mut row, k, m);
    }
    let filters = [
        parse(json!({"b": {"$lt": 10}})),
        parse(json!({"even": true})),
        parse(json!({"$or": [{"s": "v3"}, {"t": {"$contains": 1}}]})),
        parse(json!({"f": {"$gte": 100.5, "$lt": 2000}})),
        parse(json!({"$not": {"b": {"$in": [1, 2, 3]}}})),
    ];
    same(&col, &RowMirror::new_from(&row), &filters);
    // Metadata updates keep the row.
    for k in (0..n).step_by(3) {
        put(&mut col, &mut row, k, meta(json!({"b": 5, "even": false})));
    }
    assert_eq!(col.rows(), n as usize);
    same(&col, &row, &filters);
    // Removing most records compacts: rows follow the live records.
    for k in 0..n {
        if k % 10 != 0 {
            col.remove(k);
            row.remove(k);
        }
    }
    assert!(col.rows() < n as usize / 4, "{} rows", col.rows());
    same(&col, &row, &filters);
    // Out-of-order keys are listed in order; a compaction puts the rows back in key order.
    for k in (n..n + 100).rev() {
        put(&mut col, &mut row, k, meta(json!({"b": 1})));
    }
    assert!(!col.sorted);
    same(&col, &row, &filters);
    for k in (0..n / 2).step_by(10) {
        col.remove(k);
        row.remove(k);
    }
    assert!(col.sorted);
    same(&col, &row, &filters);
    // Fields that no record has any more are dropped.
    for k in 0..n + 100 {
        col.remove(k);
        row.remove(k);
    }
    assert_eq!((col.len(), col.fields()), (0, 0));
    same(&col, &row, &filters);
}

impl RowMirror {
    /// A copy (tests).
    fn new_from(other: &RowMirror) -> RowMirror {
        let mut out = RowMirror::new();
        for (&k, r) in &other.rows {
            out.insert(k, r.id.clone(), r.meta.clone());
        }
        out
    }
}
