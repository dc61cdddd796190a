//! Record metadata: a flat object of scalars (str, int, float, bool) and lists of scalars.
//!
//! Metadata arrives as JSON ([`Metadata::from_json`]) and is checked once, before anything is
//! written: keys are non-empty and do not start with `$` (the filter language's operators),
//! numbers are finite, ints fit in int64, lists hold scalars only (no nesting, no null). What is
//! stored in SQLite is the JSON of the checked value ([`Metadata::to_json`]), so a stored record
//! always parses back.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// One metadata value that is not a list.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A metadata value: a scalar or a list of scalars.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    One(Scalar),
    List(Vec<Scalar>),
}

/// A record's metadata, keys in sorted order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata(pub BTreeMap<String, MetaValue>);

const EXPECTED: &str = "a str, int, float or bool, or a list of those";

impl Scalar {
    /// The scalar a JSON value holds, or `None` when it is not one.
    pub fn from_json(v: &Value) -> Option<Result<Scalar>> {
        Some(match v {
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            Value::String(s) => Ok(Scalar::Str(s.clone())),
            Value::Number(n) => number(n),
            _ => return None,
        })
    }

    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::from(*i),
            // Finite by construction; `from_f64` refuses only non-finite values.
            Scalar::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.clone()),
        }
    }

    /// The type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "bool",
            Scalar::Int(_) => "int",
            Scalar::Float(_) => "float",
            Scalar::Str(_) => "str",
        }
    }

    /// Equality as the filters see it: numbers compare by value across int and float (`1 ==
    /// 1.0`), a bool is never equal to a number, strings compare exactly.
    pub fn equals(&self, other: &Scalar) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }

    /// Order between two numbers or two strings (bools compare only for equality); `None`
    /// for values of different kinds.
    pub fn compare(&self, other: &Scalar) -> Option<Ordering> {
        use Scalar::*;
        match (self, other) {
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Int(a), Float(b)) => cmp_int_float(*a, *b),
            (Float(a), Int(b)) => cmp_int_float(*b, *a).map(Ordering::reverse),
            (Float(a), Float(b)) => a.partial_cmp(b),
            (Str(a), Str(b)) => Some(a.cmp(b)),
            (Bool(a), Bool(b)) if a == b => Some(Ordering::Equal),
            (Bool(_), Bool(_)) => None,
            _ => None,
        }
    }
}

/// `i` against `f` without rounding `i` first (int64 values beyond 2^53 are not all floats).
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // 2^63 as a float: every int64 is below it, and every float at or above it is above them.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let t = f.trunc();
    // `t` is within int64 range here, so the cast is exact.
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)),
        o => Some(o),
    }
}

fn number(n: &Number) -> Result<Scalar> {
    if let Some(i) = n.as_i64() {
        return Ok(Scalar::Int(i));
    }
    if n.is_u64() {
        return Err(Error::param(
            "metadata",
            "ints within int64 range",
            n.to_string(),
        ));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(Scalar::Float(f)),
        _ => Err(Error::param("metadata", "finite numbers", n.to_string())),
    }
}

impl MetaValue {
    fn from_json(key: &str, v: &Value) -> Result<MetaValue> {
        let bad = |what: String| Error::param("metadata", EXPECTED, format!("{key:?}: {what}"));
        if let Value::Array(items) = v {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match Scalar::from_json(item) {
                    Some(s) => out.push(s?),
                    None => return Err(bad(format!("item {i} is {}", json_type(item)))),
                }
            }
            return Ok(MetaValue::List(out));
        }
        match Scalar::from_json(v) {
            Some(s) => Ok(MetaValue::One(s?)),
            None => Err(bad(json_type(v).to_string())),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            MetaValue::One(s) => s.to_json(),
            MetaValue::List(items) => Value::Array(items.iter().map(Scalar::to_json).collect()),
        }
    }
}

/// The name of a JSON value's type, in Python's words (what the user passed).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a str",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

impl Metadata {
    /// Checks a JSON object (see the module comment).
    pub fn from_json(v: &Value) -> Result<Metadata> {
        let Value::Object(map) = v else {
            return Err(Error::param("metadata", "a dict of str keys", json_type(v)));
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            check_key(k)?;
            out.insert(k.clone(), MetaValue::from_json(k, v)?);
        }
        Ok(Metadata(out))
    }

    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        Value::Object(map)
    }

    /// Parses metadata stored by this module (`what` names the record in errors).
    pub fn parse_stored(text: &str, what: &str) -> Result<Metadata> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Error::Corrupt(format!("{what}: stored metadata is not JSON ({e})")))?;
        Metadata::from_json(&v)
            .map_err(|e| Error::Corrupt(format!("{what}: stored metadata is invalid ({e})")))
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.0.get(key)
    }
}

/// A metadata key or a field name in a filter: non-empty, not an operator.
pub fn check_key(k: &str) -> Result<()> {
    if k.is_empty() || k.starts_with('$') {
        return Err(Error::param(
            "metadata",
            "keys that are non-empty and do not start with '$'",
            format!("{k:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_scalars_and_lists_and_round_trips() {
        let v = json!({"a": 1, "b": 2.5, "c": "x", "d": true, "e": [1, "y", false, 0.5], "f": []});
        let m = Metadata::from_json(&v).unwrap();
        assert_eq!(m.to_json(), v);
        assert_eq!(Metadata::parse_stored(&v.to_string(), "r").unwrap(), m);
    }

    #[test]
    fn refuses_what_filters_cannot_read() {
        for bad in [
            json!([1]),
            json!({"a": null}),
            json!({"a": {"b": 1}}),
            json!({"a": [[1]]}),
            json!({"a": [null]}),
            json!({"": 1}),
            json!({"$gt": 1}),
            json!({"a": 18446744073709551615u64}),
        ] {
            let e = Metadata::from_json(&bad).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        use Scalar::*;
        assert!(Int(1).equals(&Float(1.0)));
        assert_eq!(Int(1).compare(&Float(1.5)), Some(Ordering::Less));
        assert_eq!(Float(2.5).compare(&Int(2)), Some(Ordering::Greater));
        assert_eq!(
            Int(i64::MAX).compare(&Float(9.223_372_036_854_776e18)),
            Some(Ordering::Less)
        );
        assert_eq!(Int(-3).compare(&Float(-3.5)), Some(Ordering::Greater));
        assert!(!Bool(true).equals(&Int(1)));
        assert_eq!(Str("a".into()).compare(&Int(1)), None);
        assert_eq!(Bool(true).compare(&Bool(false)), None);
    }
}
