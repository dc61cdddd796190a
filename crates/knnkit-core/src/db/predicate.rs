//! The `where` filter: a Mongo-style JSON object parsed once into a typed tree ([`Where`]),
//! then evaluated against records' metadata.
//!
//! Grammar (every error names the operator or field and what was expected):
//!
//! ```text
//! where  := {"$and": [where, ...]} | {"$or": [where, ...]} | {"$not": where}
//!         | {field: scalar, ...}                       (equality; several entries: all hold)
//!         | {field: {op: operand, ...}, ...}            (several operators: all hold)
//! op     := $eq $ne $gt $gte $lt $lte  (a scalar; ranges take numbers or strings)
//!         | $in $nin                   (a list of scalars)
//!         | $exists                    (true or false)
//!         | $contains                  (a scalar: the field is a list holding it)
//!         | $not                       (an operator object: {"$not": {"$gt": 3}})
//! ```
//!
//! Semantics: numbers compare by value across int and float, a bool equals only a bool, ranges
//! compare two numbers or two strings (anything else does not match); a missing field matches
//! no comparison; `$ne`, `$nin` and `$not` are the plain negations of `$eq`, `$in` and their
//! operand, so they also match records without the field (as in MongoDB). A list field matches
//! `$contains` (and `$exists`) only; comparing a list to a scalar does not match.
//!
//! [`Where::matches`] evaluates a filter on one record's [`Metadata`]: it is the definition.
//! The store evaluates the same tree on its columnar mirror with set operations (see
//! `mirror.rs`), tested against this definition.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::meta::{check_key, json_type, MetaValue, Metadata, Scalar};
use crate::error::{Error, Result};

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Where {
    And(Vec<Where>),
    Or(Vec<Where>),
    Not(Box<Where>),
    Field(String, FieldOp),
}

/// A test of one metadata field.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldOp {
    Eq(Scalar),
    Cmp(Ordering, bool, Scalar), // (the side of the operand the value must be on, or equal)
    In(Vec<Scalar>),
    Exists(bool),
    Contains(Scalar),
}

/// Operators a field object may use.
pub const FIELD_OPS: [&str; 11] = [
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$contains",
    "$not",
];
/// Operators that combine filters.
pub const LOGICAL_OPS: [&str; 3] = ["$and", "$or", "$not"];

fn err(expected: impl Into<String>, got: impl ToString) -> Error {
    Error::param("where", expected, got)
}

impl Where {
    /// Parses a filter (see the module comment).
    pub fn parse(v: &Value) -> Result<Where> {
        let Value::Object(map) = v else {
            return Err(err("a dict", json_type(v)));
        };
        if map.is_empty() {
            return Err(err("a dict with at least one entry", "{}"));
        }
        let mut parts = Vec::with_capacity(map.len());
        for (key, val) in map {
            parts.push(if key.starts_with('$') {
                logical(key, val)?
            } else {
                check_key(key).map_err(|_| err("non-empty field names", format!("{key:?}")))?;
                field(key, val)?
            });
        }
        Ok(all(parts))
    }

    /// True when a record with this metadata (`None`: none) passes.
    pub fn matches(&self, meta: Option<&Metadata>) -> bool {
        match self {
            Where::And(ws) => ws.iter().all(|w| w.matches(meta)),
            Where::Or(ws) => ws.iter().any(|w| w.matches(meta)),
            Where::Not(w) => !w.matches(meta),
            Where::Field(name, op) => op.matches(meta.and_then(|m| m.get(name))),
        }
    }
}

fn all(mut parts: Vec<Where>) -> Where {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        Where::And(parts)
    }
}

fn logical(op: &str, val: &Value) -> Result<Where> {
    match op {
        "$and" | "$or" => {
            let items = match val {
                Value::Array(items) if !items.is_empty() => items,
                _ => {
                    return Err(err(
                        format!("a non-empty list of filters after {op}"),
                        describe(val),
                    ))
                }
            };
            let ws = items.iter().map(Where::parse).collect::<Result<Vec<_>>>()?;
            Ok(if op == "$and" {
                Where::And(ws)
            } else {
                Where::Or(ws)
            })
        }
        "$not" => Ok(Where::Not(Box::new(Where::parse(val)?))),
        _ => Err(err(
            format!(
                "a field name or one of {} at the top level",
                LOGICAL_OPS.join(" ")
            ),
            format!("{op:?}"),
        )),
    }
}

fn field(name: &str, val: &Value) -> Result<Where> {
    let Value::Object(ops) = val else {
        return Ok(Where::Field(
            name.into(),
            FieldOp::Eq(scalar(name, "$eq", val)?),
        ));
    };
    field_ops(name, ops)
}

fn field_ops(name: &str, ops: &Map<String, Value>) -> Result<Where> {
    if ops.is_empty() {
        return Err(err(
            format!("an operator for field {name:?}"),
            "an empty dict",
        ));
    }
    let mut parts = Vec::with_capacity(ops.len());
    for (op, arg) in ops {
        let f = |o: FieldOp| Where::Field(name.into(), o);
        let not = |w: Where| Where::Not(Box::new(w));
        parts.push(match op.as_str() {
            "$eq" => f(FieldOp::Eq(scalar(name, op, arg)?)),
            "$ne" => not(f(FieldOp::Eq(scalar(name, op, arg)?))),
            "$gt" => f(FieldOp::Cmp(
                Ordering::Greater,
                false,
                ranged(name, op, arg)?,
            )),
            "$gte" => f(FieldOp::Cmp(
                Ordering::Greater,
                true,
                ranged(name, op, arg)?,
            )),
            "$lt" => f(FieldOp::Cmp(Ordering::Less, false, ranged(name, op, arg)?)),
            "$lte" => f(FieldOp::Cmp(Ordering::Less, true, ranged(name, op, arg)?)),
            "$in" => f(FieldOp::In(scalars(name, op, arg)?)),
            "$nin" => not(f(FieldOp::In(scalars(name, op, arg)?))),
            "$exists" => match arg {
                Value::Bool(b) => f(FieldOp::Exists(*b)),
                _ => {
                    return Err(err(
                        format!("true or false after $exists (field {name:?})"),
                        describe(arg),
                    ))
                }
            },
            "$contains" => f(FieldOp::Contains(scalar(name, op, arg)?)),
            "$not" => match arg {
                Value::Object(inner) => not(field_ops(name, inner)?),
                _ => {
                    return Err(err(
                        format!("an operator dict after $not (field {name:?})"),
                        describe(arg),
                    ))
                }
            },
            _ => {
                return Err(err(
                    format!("one of {} (field {name:?})", FIELD_OPS.join(" ")),
                    format!("unknown operator {op:?}"),
                ))
            }
        });
    }
    Ok(all(parts))
}

/// A short description of a value for errors: its type and, for scalars, the value.
fn describe(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) | Value::Null => json_type(v).to_string(),
        _ => format!("{} {v}", json_type(v)),
    }
}

fn scalar(name: &str, op: &str, v: &Value) -> Result<Scalar> {
    match Scalar::from_json(v) {
        Some(Ok(s)) => Ok(s),
        _ => Err(err(
            format!("a str, int, float or bool after {op} (field {name:?})"),
            describe(v),
        )),
    }
}

fn ranged(name: &str, op: &str, v: &Value) -> Result<Scalar> {
    match Scalar::from_json(v) {
        Some(Ok(s)) if !matches!(s, Scalar::Bool(_)) => Ok(s),
        _ => Err(err(
            format!("a number or a str after {op} (field {name:?})"),
            describe(v),
        )),
    }
}

fn scalars(name: &str, op: &str, v: &Value) -> Result<Vec<Scalar>> {
    let Value::Array(items) = v else {
        return Err(err(
            format!("a list of str, int, float or bool after {op} (field {name:?})"),
            describe(v),
        ));
    };
    items.iter().map(|i| scalar(name, op, i)).collect()
}

impl FieldOp {
    fn matches(&self, value: Option<&MetaValue>) -> bool {
        match (self, value) {
            (FieldOp::Exists(want), v) => v.is_some() == *want,
            (FieldOp::Contains(x), Some(MetaValue::List(items))) => {
                items.iter().any(|i| i.equals(x))
            }
            (_, Some(MetaValue::One(s))) => match self {
                FieldOp::Eq(x) => s.equals(x),
                FieldOp::In(xs) => xs.iter().any(|x| s.equals(x)),
                FieldOp::Cmp(side, or_equal, x) => {
                    matches!(s.compare(x), Some(o) if o == *side || (*or_equal && o.is_eq()))
                }
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> Metadata {
        Metadata::from_json(&v).unwrap()
    }

    fn check(w: Value, m: Value) -> bool {
        Where::parse(&w).unwrap().matches(Some(&meta(m)))
    }

    #[test]
    fn comparisons() {
        let m = json!({"year": 2021, "score": 0.5, "name": "b", "ok": true, "tags": ["ml", 3]});
        assert!(check(json!({"year": 2021}), m.clone()));
        assert!(check(json!({"year": 2021.0}), m.clone()));
        assert!(check(
            json!({"year": {"$gte": 2021, "$lt": 2022}}),
            m.clone()
        ));
        assert!(!check(json!({"year": {"$gt": 2021}}), m.clone()));
        assert!(check(json!({"score": {"$lte": 0.5}}), m.clone()));
        assert!(check(json!({"name": {"$gt": "a"}}), m.clone()));
        assert!(!check(json!({"name": {"$gt": 1}}), m.clone()));
        assert!(check(json!({"ok": true}), m.clone()));
        assert!(!check(json!({"ok": 1}), m.clone()));
        assert!(check(json!({"name": {"$in": ["a", "b"]}}), m.clone()));
        assert!(!check(json!({"name": {"$nin": ["a", "b"]}}), m.clone()));
        assert!(check(json!({"tags": {"$contains": "ml"}}), m.clone()));
        assert!(check(json!({"tags": {"$contains": 3.0}}), m.clone()));
        assert!(!check(json!({"tags": {"$contains": "x"}}), m.clone()));
        assert!(!check(json!({"tags": "ml"}), m.clone()));
        assert!(!check(json!({"name": {"$contains": "b"}}), m.clone()));
    }

    #[test]
    fn missing_fields_and_negations() {
        let m = json!({"a": 1});
        assert!(!check(json!({"b": 1}), m.clone()));
        assert!(!check(json!({"b": {"$gt": 0}}), m.clone()));
        assert!(check(json!({"b": {"$ne": 1}}), m.clone()));
        assert!(check(json!({"b": {"$nin": [1]}}), m.clone()));
        assert!(check(json!({"b": {"$exists": false}}), m.clone()));
        assert!(check(json!({"a": {"$exists": true}}), m.clone()));
        assert!(check(json!({"a": {"$not": {"$gt": 1}}}), m.clone()));
        assert!(check(json!({"$not": {"a": 2}}), m.clone()));
        assert!(check(json!({"$or": [{"a": 2}, {"a": 1}]}), m.clone()));
        assert!(!check(json!({"$and": [{"a": 1}, {"b": 1}]}), m.clone()));
        assert!(!check(json!({"a": 1, "b": 1}), m.clone()));
        let w = Where::parse(&json!({"a": {"$ne": 1}})).unwrap();
        assert!(w.matches(None));
        assert!(!Where::parse(&json!({"a": 1})).unwrap().matches(None));
    }

    #[test]
    fn errors_name_what_was_expected() {
        let cases = [
            (json!([]), "a dict"),
            (json!({}), "at least one entry"),
            (json!({"a": {"$regex": "x"}}), "unknown operator \"$regex\""),
            (json!({"$xor": []}), "at the top level"),
            (json!({"$and": []}), "non-empty list"),
            (json!({"$or": {"a": 1}}), "non-empty list"),
            (json!({"a": {"$gt": true}}), "a number or a str after $gt"),
            (json!({"a": {"$gt": [1]}}), "a number or a str after $gt"),
            (json!({"a": {"$in": 1}}), "a list of"),
            (json!({"a": {"$in": [null]}}), "after $in"),
            (json!({"a": {"$exists": 1}}), "true or false"),
            (json!({"a": {"$not": 1}}), "an operator dict"),
            (json!({"a": null}), "after $eq"),
            (json!({"a": {}}), "an operator for field"),
            (json!({"": 1}), "non-empty field names"),
        ];
        for (w, want) in cases {
            let e = Where::parse(&w).unwrap_err().to_string();
            assert!(e.contains(want), "{w}: {e}");
        }
    }
}
