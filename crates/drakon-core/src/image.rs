//! Row images as JSON: how a change travels outside the process and comes back typed.
//!
//! An image is an object of column values by field name, plus, when the change recorded the rows its references
//! pointed at, `__refs`: `{ref_field: referenced image | null}`. PostgreSQL's log triggers write exactly this
//! (`to_jsonb` of the row), and the Redis bus carries changes between nodes in the same form, so a node reads a
//! change the same way whether it came from the log or from another node. Values are typed by the reading node's
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
pub fn to_image(schema: &Schema, model: &Model, row: &Row, refs: &RefImages) -> Json {
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
    Json::Object(obj)
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

/// One transaction's changes as JSON: `[{"model", "offset", "id", "action", "old", "new"}, …]`.
pub fn encode_changes(schema: &Schema, changes: &[Change]) -> Json {
    let encoded = changes
        .iter()
        .filter_map(|c| {
            let model = schema.get_model(&c.model)?;
            let side = |row: &Option<Row>, refs: &RefImages| match row {
                Some(row) => to_image(schema, model, row, refs),
                None => Json::Null,
            };
            Some(serde_json::json!({
                "model": &*c.model,
                "offset": c.offset,
                "id": c.id,
                "action": c.action.as_str(),
                "old": side(&c.old, &c.old_refs),
                "new": side(&c.new, &c.new_refs),
            }))
        })
        .collect();
    Json::Array(encoded)
}

/// Reads [`encode_changes`]'s output back; `None` if it is malformed. Changes of models this schema does not
/// declare are left out: nobody here can subscribe to them.
pub fn decode_changes(schema: &Schema, json: Json) -> Option<Vec<Change>> {
    let Json::Array(items) = json else { return None };
    let mut changes = Vec::with_capacity(items.len());
    for item in items {
        let Json::Object(mut obj) = item else { return None };
        let model_name = obj.get("model")?.as_str()?.to_owned();
        let offset = obj.get("offset")?.as_u64()?;
        let id = obj.get("id")?.as_i64()?;
        let action = obj.get("action")?.as_str()?.to_owned();
        let Some(model) = schema.get_model(&model_name) else { continue };
        let old = obj.remove("old").filter(|j| !j.is_null());
        let new = obj.remove("new").filter(|j| !j.is_null());
        changes.push(change_from_images(schema, model, offset, id, &action, old, new));
    }
    Some(changes)
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
    fn changes_survive_the_round_trip_with_their_types_and_references() {
        let schema = schema();
        let list_row = vec![Value::Int(1), Value::Text("Groceries".into())];
        let old = vec![
            Value::Int(7),
            Value::Text("milk".into()),
            Value::Bool(false),
            Value::Null,
            Value::Json(serde_json::json!({"a": [1, 2]})),
            Value::Float(1.5),
            Value::Int(1),
        ];
        let mut new = old.clone();
        new[2] = Value::Bool(true);
        new[3] = Value::DateTime("2026-11-27T08:00:00.000000Z".into());
        new[6] = Value::Null;
        let changes = vec![
            Change {
                model: Arc::from("item"),
                id: 7,
                action: Action::Updated,
                old: Some(old),
                new: Some(new),
                offset: 42,
                old_refs: vec![("list".into(), Some(list_row))],
                new_refs: vec![("list".into(), None)],
            },
            Change {
                model: Arc::from("list"),
                id: 1,
                action: Action::Deleted,
                old: Some(vec![Value::Int(1), Value::Text("Groceries".into())]),
                new: None,
                offset: 3,
                old_refs: Vec::new(),
                new_refs: Vec::new(),
            },
        ];
        let json = encode_changes(&schema, &changes);
        let text = json.to_string();
        let back = decode_changes(&schema, serde_json::from_str(&text).unwrap()).expect("decodes");
        assert_eq!(back, changes);
    }

    #[test]
    fn malformed_payloads_are_refused_and_unknown_models_skipped() {
        let schema = schema();
        assert!(decode_changes(&schema, serde_json::json!({"not": "a list"})).is_none());
        assert!(decode_changes(&schema, serde_json::json!([{"model": "item"}])).is_none());
        let unknown =
            serde_json::json!([{"model": "gone", "offset": 1, "id": 1, "action": "created", "old": null, "new": {}}]);
        assert_eq!(decode_changes(&schema, unknown), Some(Vec::new()));
    }
}
