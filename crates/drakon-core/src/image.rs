//! Row images as JSON: how a row travels outside the process and comes back typed.
//!
//! An image is an object of column values by field name, plus, when the change recorded the rows its references
//! pointed at, `__refs`: `{ref_field: referenced image | null}`. PostgreSQL's log triggers write exactly this
//! (`to_jsonb` of the row), and the Redis bus's messages carry rows between nodes in the same form, so a node reads
//! a change the same way whether it came from the log or from another node. Values are typed by the reading node's
//! schema, by field name: a field the image lacks reads as null, one it has that the schema does not is ignored.

use std::sync::Arc;

use drakon_protocol::Action;
use serde_json::{Map, Value as Json};

use crate::schema::{FieldType, Model, Schema};
use crate::store::{Change, RefImages, Row};
use crate::value::Value;

/// The key under which an image carries the referenced rows.
pub const REFS_KEY: &str = "__refs";

/// Reads a value from an image by the field's type. Images of writes made outside drakon hold whatever the column
/// held; what does not fit becomes null rather than failing the whole change. A bool may be a number (SQLite's
/// `json_object` writes its 0 and 1).
pub fn value_from_image(ty: &FieldType, v: Option<&Json>) -> Value {
    let Some(v) = v else { return Value::Null };
    match (ty, v) {
        (_, Json::Null) => Value::Null,
        (FieldType::Id | FieldType::Int | FieldType::Ref { .. }, Json::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map_or(Value::Null, Value::Int)
        }
        (FieldType::Float, Json::Number(n)) => n.as_f64().map_or(Value::Null, Value::Float),
        (FieldType::Bool, Json::Bool(b)) => Value::Bool(*b),
        (FieldType::Bool, Json::Number(n)) => Value::Bool(n.as_f64().is_some_and(|f| f != 0.0)),
        (FieldType::Text, Json::String(s)) => Value::Text(s.clone()),
        (FieldType::Text, other) => Value::Text(other.to_string()),
        (FieldType::DateTime, Json::String(s)) => Value::DateTime(s.clone()),
        (FieldType::Json, other) => Value::Json(other.clone()),
        _ => Value::Null,
    }
}

fn row_from_object(model: &Model, obj: &Map<String, Json>) -> Row {
    model.fields.iter().map(|f| value_from_image(&f.ty, obj.get(&f.name))).collect()
}

/// An image as a row of `model`, with the referenced rows recorded under `__refs`.
pub fn image(schema: &Schema, model: &Model, json: Option<Json>) -> (Option<Row>, RefImages) {
    let Some(Json::Object(obj)) = json else { return (None, Vec::new()) };
    let row = row_from_object(model, &obj);
    let mut refs = Vec::new();
    for (field, referenced) in obj.get(REFS_KEY).and_then(|r| r.as_object()).into_iter().flatten() {
        let Some((target, _)) = model.get_field(field).and_then(|f| f.ref_target()) else { continue };
        let Some(target) = schema.get_model(target) else { continue };
        refs.push((field.clone(), referenced.as_object().map(|r| row_from_object(target, r))));
    }
    (Some(row), refs)
}

fn object_of(model: &Model, row: &Row) -> Map<String, Json> {
    model.fields.iter().zip(row).map(|(f, v)| (f.name.clone(), v.to_json())).collect()
}

/// A row of `model` and its recorded references as an image ([`image`] reads it back).
pub fn to_image(schema: &Schema, model: &Model, row: &Row, refs: &RefImages) -> Map<String, Json> {
    let mut obj = object_of(model, row);
    if !refs.is_empty() {
        let mut recorded = Map::new();
        for (field, referenced) in refs {
            let target = model.get_field(field).and_then(|f| f.ref_target()).and_then(|(t, _)| schema.get_model(t));
            let image = match (target, referenced) {
                (Some(target), Some(r)) => Json::Object(object_of(target, r)),
                _ => Json::Null,
            };
            recorded.insert(field.clone(), image);
        }
        obj.insert(REFS_KEY.to_owned(), Json::Object(recorded));
    }
    obj
}

/// `"created"`, `"updated"` or `"deleted"`; anything else reads as a delete, the action that shows nothing.
pub fn parse_action(action: &str) -> Action {
    match action {
        "created" => Action::Created,
        "updated" => Action::Updated,
        _ => Action::Deleted,
    }
}

/// A change from its logged parts.
pub fn change_from_images(
    schema: &Schema,
    model: &Model,
    offset: u64,
    id: i64,
    action: &str,
    old: Option<Json>,
    new: Option<Json>,
) -> Change {
    let (old, old_refs) = image(schema, model, old);
    let (new, new_refs) = image(schema, model, new);
    Change {
        model: Arc::from(model.name.as_str()),
        id,
        action: parse_action(action),
        old,
        new,
        offset,
        old_refs,
        new_refs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        crate::config::parse(
            r#"
            [models.list.fields]
            name = { type = "text" }
            [models.item.fields]
            text = { type = "text" }
            done = { type = "bool" }
            due = { type = "datetime", optional = true }
            extra = { type = "json", optional = true }
            weight = { type = "float", optional = true }
            list = { type = "ref", to = "list", on_delete = "cascade", optional = true }
            "#,
            std::path::Path::new("drakon.toml"),
        )
        .expect("valid config")
        .schema
    }

    #[test]
    fn images_survive_the_round_trip_with_their_types_and_references() {
        let schema = schema();
        let item = schema.get_model("item").unwrap();
        let list_row = vec![Value::Int(1), Value::Text("Groceries".into())];
        let row = vec![
            Value::Int(7),
            Value::Text("milk".into()),
            Value::Bool(true),
            Value::DateTime("2026-11-27T08:00:00.000000Z".into()),
            Value::Json(serde_json::json!({"a": [1, 2]})),
            Value::Float(1.5),
            Value::Int(1),
        ];
        for refs in [Vec::new(), vec![("list".to_owned(), Some(list_row.clone()))], vec![("list".to_owned(), None)]] {
            let text = Json::Object(to_image(&schema, item, &row, &refs)).to_string();
            let back = image(&schema, item, Some(serde_json::from_str(&text).unwrap()));
            assert_eq!(back, (Some(row.clone()), refs), "{text}");
        }
    }

    #[test]
    fn images_read_by_the_schema_tolerate_missing_and_unknown_fields() {
        let schema = schema();
        let list = schema.get_model("list").unwrap();
        let (row, refs) = image(&schema, list, Some(serde_json::json!({"id": 3, "colour": "red"})));
        assert_eq!(row, Some(vec![Value::Int(3), Value::Null]), "missing reads as null, unknown is ignored");
        assert!(refs.is_empty());
        assert_eq!(image(&schema, list, None), (None, Vec::new()));
    }
}
