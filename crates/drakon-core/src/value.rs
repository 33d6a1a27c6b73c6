//! Typed field values: what a row holds, what filters compare, and how both cross JSON.
//!
//! Values are typed by the field they belong to, never by the JSON they came from: `false` for a bool field is a
//! bool, `"false"` is a type error (SwampDragon compared string casts and inverted `done:False`).

use std::cmp::Ordering;

use serde_json::Value as Json;
use time::{
    OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::well_known::Rfc3339, macros::format_description,
};

use crate::schema::FieldType;

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// UTC, normalized to `YYYY-MM-DDTHH:MM:SS.ffffffZ` so that text order is time order in SQL and in memory alike.
    DateTime(String),
    Json(Json),
}

/// A JSON value that does not fit a field's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

impl Value {
    /// Reads a JSON value as a value of `ty`. `null` gives [`Value::Null`]; whether null is allowed is the caller's
    /// business (optional fields, `isnull` filters).
    pub fn from_json(ty: &FieldType, json: &Json) -> Result<Value, TypeError> {
        if json.is_null() {
            return Ok(Value::Null);
        }
        let wrong = || TypeError(format!("expected {}, got {}", ty.describe(), describe_json(json)));
        Ok(match ty {
            FieldType::Id | FieldType::Ref { .. } | FieldType::Int => Value::Int(json.as_i64().ok_or_else(wrong)?),
            FieldType::Float => Value::Float(json.as_f64().ok_or_else(wrong)?),
            FieldType::Bool => Value::Bool(json.as_bool().ok_or_else(wrong)?),
            FieldType::Text => Value::Text(json.as_str().ok_or_else(wrong)?.to_owned()),
            FieldType::DateTime => Value::DateTime(normalize_datetime(json.as_str().ok_or_else(wrong)?)?),
            FieldType::Json => Value::Json(json.clone()),
        })
    }

    /// The JSON form clients see.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Bool(b) => Json::Bool(*b),
            Value::Text(s) | Value::DateTime(s) => Json::String(s.clone()),
            Value::Json(j) => j.clone(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Orders two values of the same field type the way SQL does; `None` when either is null or they are not
    /// comparable.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Int(a), Value::Float(b)) => (*a as f64).partial_cmp(b),
            (Value::Float(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Text(a), Value::Text(b)) | (Value::DateTime(a), Value::DateTime(b)) => {
                Some(a.as_bytes().cmp(b.as_bytes()))
            }
            _ => None,
        }
    }

    /// SQL-style equality: null equals nothing.
    pub fn sql_eq(&self, other: &Value) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }

    /// A key for hash indexes over equality filters: equal values give equal keys.
    pub fn index_key(&self) -> Option<IndexKey> {
        Some(match self {
            Value::Int(i) => IndexKey::Int(*i),
            // Floats that hold an integer share the int key, so `1` and `1.0` meet in the same bucket.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => IndexKey::Int(*f as i64),
            Value::Float(f) => IndexKey::Float(f.to_bits()),
            Value::Bool(b) => IndexKey::Int(i64::from(*b)),
            Value::Text(s) | Value::DateTime(s) => IndexKey::Text(s.clone()),
            Value::Null | Value::Json(_) => return None,
        })
    }
}

/// Hashable form of an equality-comparable value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexKey {
    Int(i64),
    Float(u64),
    Text(String),
}

fn describe_json(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Normalizes an RFC 3339 timestamp (or `YYYY-MM-DD HH:MM:SS[.f]`, read as UTC) to drakon's stored form.
pub fn normalize_datetime(text: &str) -> Result<String, TypeError> {
    let bad = || TypeError(format!("expected an RFC 3339 datetime such as 2026-11-27T10:00:00Z, got {text:?}"));
    let parsed = OffsetDateTime::parse(text, &Rfc3339).or_else(|_| {
        let naive = format_description!(
            version = 2,
            "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        PrimitiveDateTime::parse(text, naive).map(PrimitiveDateTime::assume_utc)
    });
    let dt = parsed.map_err(|_| bad())?.to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&dt.year()) {
        return Err(bad());
    }
    Ok(format_datetime(dt))
}

/// Formats a UTC timestamp in drakon's stored form.
pub fn format_datetime(dt: OffsetDateTime) -> String {
    let dt = dt.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.microsecond()
    )
}

/// The current time in drakon's stored form.
pub fn now_datetime() -> String {
    format_datetime(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_read_by_field_type() {
        let cases: &[(FieldType, Json, Result<Value, &str>)] = &[
            (FieldType::Bool, json!(false), Ok(Value::Bool(false))),
            (FieldType::Bool, json!("False"), Err("expected a bool, got a string")),
            (FieldType::Int, json!(3), Ok(Value::Int(3))),
            (FieldType::Int, json!(3.5), Err("expected an integer, got a number")),
            (FieldType::Float, json!(3), Ok(Value::Float(3.0))),
            (FieldType::Text, json!("a b"), Ok(Value::Text("a b".into()))),
            (FieldType::Text, json!(1), Err("expected text, got an integer")),
            (FieldType::Int, json!(null), Ok(Value::Null)),
            (
                FieldType::DateTime,
                json!("2026-11-27T10:00:00+01:00"),
                Ok(Value::DateTime("2026-11-27T09:00:00.000000Z".into())),
            ),
            (
                FieldType::DateTime,
                json!("2026-11-27 10:00:00.5"),
                Ok(Value::DateTime("2026-11-27T10:00:00.500000Z".into())),
            ),
            (FieldType::Json, json!({"a": [1]}), Ok(Value::Json(json!({"a": [1]})))),
        ];
        for (ty, input, want) in cases {
            let got = Value::from_json(ty, input).map_err(|e| e.0);
            match want {
                Ok(v) => assert_eq!(got.as_ref(), Ok(v), "{ty:?} {input}"),
                Err(msg) => assert_eq!(got.unwrap_err(), *msg, "{ty:?} {input}"),
            }
        }
    }

    #[test]
    fn bad_datetimes_are_rejected() {
        for text in ["yesterday", "2026-13-01T00:00:00Z", "2026-11-27"] {
            assert!(normalize_datetime(text).is_err(), "{text}");
        }
    }

    #[test]
    fn datetime_text_order_is_time_order() {
        let a = normalize_datetime("2026-11-27T10:00:00+02:00").unwrap();
        let b = normalize_datetime("2026-11-27T09:30:00Z").unwrap();
        assert!(a < b);
    }
}
