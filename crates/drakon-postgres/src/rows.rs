//! Converting between drakon values and PostgreSQL values, and reading whole rows.
//!
//! Column types: `id`, `int` and `ref` are `bigint`, `float` is `double precision`, `bool` is `boolean`, `text` and
//! `datetime` are `text COLLATE "C"` (a datetime keeps drakon's normalized string, so it orders as text exactly as
//! in SQLite and in the matcher), `json` is `jsonb`.

use std::error::Error;

use bytes::BytesMut;
use drakon_core::{FieldType, Model, Value};
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// The column type of a field.
pub fn column_type(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::Id | FieldType::Int | FieldType::Ref { .. } => "bigint",
        FieldType::Float => "double precision",
        FieldType::Bool => "boolean",
        FieldType::Text | FieldType::DateTime => "text COLLATE \"C\"",
        FieldType::Json => "jsonb",
    }
}

/// A value bound to a statement parameter, encoded for whatever type the server gave the parameter: an int binds
/// to an `integer` column as well as a `bigint` one, and null binds to anything.
#[derive(Debug, Clone, Copy)]
pub struct Param<'a>(pub &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let mismatch = || format!("cannot store {:?} in a column of type {ty}", self.0).into();
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Float(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::Text(s) | Value::DateTime(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Json(j) if matches!(*ty, Type::JSON | Type::JSONB) => j.to_sql(ty, out),
            Value::Json(j) if <&str as ToSql>::accepts(ty) => j.to_string().as_str().to_sql(ty, out),
            _ => Err(mismatch()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Parameters for a list of values.
pub fn params(values: &[Value]) -> Vec<Param<'_>> {
    values.iter().map(Param).collect()
}

/// `params` as tokio-postgres takes them.
pub fn refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// Reads a row selected with `drakon_core::filter::sql::columns` (from column `first` on).
pub fn read_row(model: &Model, row: &Row, first: usize) -> Result<Vec<Value>, tokio_postgres::Error> {
    model.fields.iter().enumerate().map(|(i, f)| read_value(&f.ty, row, first + i)).collect()
}

fn read_value(ty: &FieldType, row: &Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    Ok(match ty {
        FieldType::Id | FieldType::Int | FieldType::Ref { .. } => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        FieldType::Float => row.try_get::<_, Option<f64>>(i)?.map(Value::Float),
        FieldType::Bool => row.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
        FieldType::Text => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
        FieldType::DateTime => row.try_get::<_, Option<String>>(i)?.map(Value::DateTime),
        FieldType::Json => row.try_get::<_, Option<serde_json::Value>>(i)?.map(Value::Json),
    }
    .unwrap_or(Value::Null))
}
