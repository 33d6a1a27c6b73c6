//! Converting between drakon values and SQLite values, and reading whole rows.

use drakon_core::{FieldType, Model, Value};
use rusqlite::types::{Value as Sql, ValueRef};

/// The SQLite value stored for `v`: bools as 0/1, datetimes as their normalized text, JSON as its text.
pub fn to_sql(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Int(i) => Sql::Integer(*i),
        Value::Float(f) => Sql::Real(*f),
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Text(s) | Value::DateTime(s) => Sql::Text(s.clone()),
        Value::Json(j) => Sql::Text(j.to_string()),
    }
}

/// Reads a stored value as a value of `ty`.
pub fn value_from_sql(ty: &FieldType, v: ValueRef<'_>) -> Result<Value, String> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "stored text is not UTF-8".to_owned());
    Ok(match (ty, v) {
        (_, ValueRef::Null) => Value::Null,
        (FieldType::Id | FieldType::Int | FieldType::Ref { .. }, ValueRef::Integer(i)) => Value::Int(i),
        (FieldType::Float, ValueRef::Real(f)) => Value::Float(f),
        (FieldType::Float, ValueRef::Integer(i)) => Value::Float(i as f64),
        (FieldType::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (FieldType::Text, ValueRef::Text(b)) => Value::Text(text(b)?),
        (FieldType::DateTime, ValueRef::Text(b)) => Value::DateTime(text(b)?),
        (FieldType::Json, ValueRef::Text(b)) => {
            let s = text(b)?;
            Value::Json(serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)))
        }
        (ty, other) => return Err(format!("stored {:?} does not fit a {} field", other.data_type(), ty.name())),
    })
}

/// Reads a row selected with `drakon_core::filter::sql::columns`.
pub fn read_row(model: &Model, r: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<Value>> {
    model
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            value_from_sql(&f.ty, r.get_ref(i)?).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Null,
                    format!("{}.{}: {e}", model.name, f.name).into(),
                )
            })
        })
        .collect()
}
