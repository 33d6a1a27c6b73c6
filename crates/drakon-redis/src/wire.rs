//! What crosses Redis: every bus message as versioned JSON, `{"v": 1, "msg": …}`, encoded and decoded by serde.
//!
//! In version 1, `msg` is an object with one key, the kind of message:
//!
//! - `{"changes": [{"model", "offset", "id", "action", "old", "new"}, …]}`: one transaction's changes, in offset
//!   order; `old` and `new` are row images (see [`drakon_core::image`]) or null.
//! - `{"heads": [[model, offset], …]}`: how far the relay has published each model's change log.
//! - `{"publish": {"channel", "data"}}`: a plain pub/sub message.
//! - `{"presence": …}`: what a node says about presence, as [`drakon_core::presence::PresenceMessage`] serializes
//!   (`{"delta": …}`, `{"head": …}`, `{"sync": …}`, `{"want": …}`).
//!
//! Row images are typed by the receiving node's schema, field by field, so nodes whose configs differ by a field
//! still understand each other; changes of a model the receiver does not declare are left out (nobody there can
//! subscribe to them). A message of a version this node does not know is refused ([`DecodeError::UnknownVersion`]),
//! never guessed at.

use std::borrow::Cow;
use std::sync::Arc;

use drakon_core::Schema;
use drakon_core::image::{image, to_image};
use drakon_core::presence::PresenceMessage;
use drakon_core::store::{BusMessage, Change, RefImages, Row};
use drakon_protocol::Action;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// The version this node writes, and the only one it reads.
pub const VERSION: u64 = 1;

/// Every message on the wire: its version, then the message in that version's form.
#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    v: u64,
    msg: MessageV1<'a>,
}

/// Just the version of a message, to tell one of another version (perhaps of another shape) from garbage.
#[derive(Deserialize)]
struct Version {
    v: u64,
}

/// A message of version 1; borrowed from a [`BusMessage`] when encoding.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MessageV1<'a> {
    Changes(Vec<ChangeV1>),
    Heads(Vec<(Cow<'a, str>, u64)>),
    Publish { channel: Cow<'a, str>, data: Cow<'a, Json> },
    Presence(Cow<'a, PresenceMessage>),
}

/// A committed change, its rows as images.
#[derive(Serialize, Deserialize)]
struct ChangeV1 {
    model: String,
    offset: u64,
    id: i64,
    #[serde(deserialize_with = "action")]
    action: Action,
    old: Option<Map<String, Json>>,
    new: Option<Map<String, Json>>,
}

/// `"created"`, `"updated"` or `"deleted"` (`Action` serializes itself so but does not deserialize).
fn action<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Action, D::Error> {
    const ACTIONS: &[&str] = &["created", "updated", "deleted"];
    match Cow::<str>::deserialize(deserializer)?.as_ref() {
        "created" => Ok(Action::Created),
        "updated" => Ok(Action::Updated),
        "deleted" => Ok(Action::Deleted),
        other => Err(D::Error::unknown_variant(other, ACTIONS)),
    }
}

/// Why a payload from Redis is not a bus message this node reads.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bus messages of version {0} are unknown to this node (it reads version {VERSION})")]
    UnknownVersion(u64),
    #[error("malformed bus message: {0}")]
    Malformed(serde_json::Error),
}

/// `message` as the payload of a Redis message.
pub fn encode(schema: &Schema, message: &BusMessage) -> String {
    let msg = match message {
        BusMessage::Changes(changes) => MessageV1::Changes(
            changes
                .iter()
                .filter_map(|c| {
                    let model = schema.get_model(&c.model)?;
                    let side = |row: &Option<Row>, refs: &RefImages| {
                        row.as_ref().map(|row| to_image(schema, model, row, refs))
                    };
                    Some(ChangeV1 {
                        model: c.model.to_string(),
                        offset: c.offset,
                        id: c.id,
                        action: c.action,
                        old: side(&c.old, &c.old_refs),
                        new: side(&c.new, &c.new_refs),
                    })
                })
                .collect(),
        ),
        BusMessage::Heads(heads) => MessageV1::Heads(heads.iter().map(|(m, o)| (Cow::Borrowed(&**m), *o)).collect()),
        BusMessage::Channel { name, data } => {
            MessageV1::Publish { channel: Cow::Borrowed(&**name), data: Cow::Borrowed(&**data) }
        }
        BusMessage::Presence(message) => MessageV1::Presence(Cow::Borrowed(&**message)),
    };
    // Strings, numbers and JSON values under string keys: nothing here that JSON cannot hold.
    serde_json::to_string(&Envelope { v: VERSION, msg }).expect("a bus message serializes to JSON")
}

/// A payload from Redis as a bus message, its rows typed by `schema`.
pub fn decode(schema: &Schema, payload: &[u8]) -> Result<BusMessage, DecodeError> {
    match serde_json::from_slice::<Envelope<'_>>(payload) {
        Ok(Envelope { v: VERSION, msg }) => Ok(msg.into_bus(schema)),
        Ok(Envelope { v, .. }) => Err(DecodeError::UnknownVersion(v)),
        // Another version may have another shape: tell it from garbage by the version alone.
        Err(e) => match serde_json::from_slice::<Version>(payload) {
            Ok(Version { v }) if v != VERSION => Err(DecodeError::UnknownVersion(v)),
            _ => Err(DecodeError::Malformed(e)),
        },
    }
}

impl MessageV1<'_> {
    fn into_bus(self, schema: &Schema) -> BusMessage {
        match self {
            MessageV1::Changes(changes) => BusMessage::Changes(Arc::new(
                changes
                    .into_iter()
                    .filter_map(|c| {
                        let model = schema.get_model(&c.model)?;
                        let (old, old_refs) = image(schema, model, c.old.map(Json::Object));
                        let (new, new_refs) = image(schema, model, c.new.map(Json::Object));
                        Some(Change {
                            model: Arc::from(model.name.as_str()),
                            id: c.id,
                            action: c.action,
                            old,
                            new,
                            offset: c.offset,
                            old_refs,
                            new_refs,
                        })
                    })
                    .collect(),
            )),
            MessageV1::Heads(heads) => {
                BusMessage::Heads(Arc::new(heads.into_iter().map(|(m, o)| (Arc::from(m), o)).collect()))
            }
            MessageV1::Publish { channel, data } => {
                BusMessage::Channel { name: Arc::from(channel), data: Arc::new(data.into_owned()) }
            }
            MessageV1::Presence(message) => BusMessage::Presence(Arc::new(message.into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use drakon_core::Value;
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        drakon_core::config::parse(
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

    fn changes(message: BusMessage) -> Vec<Change> {
        match message {
            BusMessage::Changes(changes) => changes.to_vec(),
            other => panic!("not changes: {other:?}"),
        }
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
            Value::Json(json!({"a": [1, 2]})),
            Value::Float(1.5),
            Value::Int(1),
        ];
        let mut new = old.clone();
        new[2] = Value::Bool(true);
        new[3] = Value::DateTime("2026-11-27T08:00:00.000000Z".into());
        new[6] = Value::Null;
        let sent = vec![
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
        let payload = encode(&schema, &BusMessage::Changes(Arc::new(sent.clone())));
        let back = changes(decode(&schema, payload.as_bytes()).expect("decodes"));
        assert_eq!(back, sent);
    }

    #[test]
    fn a_change_is_read_from_literal_json_by_the_receivers_schema() {
        let schema = schema();
        let payload = json!({"v": 1, "msg": {"changes": [
            {"model": "list", "offset": 5, "id": 2, "action": "created", "old": null,
             "new": {"id": 2, "name": "Chores", "colour": "red"}},
            {"model": "gone", "offset": 1, "id": 1, "action": "created", "old": null, "new": {}},
        ]}});
        let back = changes(decode(&schema, payload.to_string().as_bytes()).expect("decodes"));
        assert_eq!(
            back,
            [Change {
                model: Arc::from("list"),
                id: 2,
                action: Action::Created,
                old: None,
                new: Some(vec![Value::Int(2), Value::Text("Chores".into())]),
                offset: 5,
                old_refs: Vec::new(),
                new_refs: Vec::new(),
            }],
            "a field the schema lacks is ignored, a model it lacks is left out"
        );
    }

    #[test]
    fn every_kind_of_message_has_one_literal_form() {
        let schema = schema();
        let cases = [
            (BusMessage::Changes(Arc::new(Vec::new())), json!({"v": 1, "msg": {"changes": []}})),
            (
                BusMessage::Channel { name: Arc::from("chatroom"), data: Arc::new(json!({"a": 1})) },
                json!({"v": 1, "msg": {"publish": {"channel": "chatroom", "data": {"a": 1}}}}),
            ),
            (
                BusMessage::Heads(Arc::new(vec![(Arc::from("todo_item"), 42), (Arc::from("todo_list"), 0)])),
                json!({"v": 1, "msg": {"heads": [["todo_item", 42], ["todo_list", 0]]}}),
            ),
            (
                BusMessage::Presence(Arc::new(PresenceMessage::Head { node: "n1".into(), seq: 4 })),
                json!({"v": 1, "msg": {"presence": {"head": {"node": "n1", "seq": 4}}}}),
            ),
            (
                BusMessage::Changes(Arc::new(vec![Change {
                    model: Arc::from("list"),
                    id: 1,
                    action: Action::Deleted,
                    old: Some(vec![Value::Int(1), Value::Text("Groceries".into())]),
                    new: None,
                    offset: 3,
                    old_refs: Vec::new(),
                    new_refs: Vec::new(),
                }])),
                json!({"v": 1, "msg": {"changes": [{"model": "list", "offset": 3, "id": 1, "action": "deleted",
                    "old": {"id": 1, "name": "Groceries"}, "new": null}]}}),
            ),
        ];
        for (message, literal) in cases {
            let payload = encode(&schema, &message);
            assert_eq!(serde_json::from_str::<Json>(&payload).unwrap(), literal);
            let back = decode(&schema, literal.to_string().as_bytes()).expect("decodes");
            assert_eq!(encode(&schema, &back), payload, "{literal}");
        }
    }

    #[test]
    fn an_unknown_version_is_refused_whatever_its_shape() {
        let schema = schema();
        for payload in [
            json!({"v": 2, "msg": {"publish": {"channel": "chatroom", "data": 1}}}),
            json!({"v": 2, "msg": {"presence": {"node": "a", "members": []}}}),
            json!({"v": 2, "something": "else"}),
        ] {
            let refused = decode(&schema, payload.to_string().as_bytes());
            assert!(matches!(refused, Err(DecodeError::UnknownVersion(2))), "{payload}: {refused:?}");
        }
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let schema = schema();
        for payload in [
            "not json",
            r#"{"channel": "chatroom", "data": 1}"#,
            r#"{"v": 1, "msg": {"heads": [["m"]]}}"#,
            r#"{"v": 1, "msg": {"changes": [{"model": "item"}]}}"#,
            r#"{"v": 1, "msg": {"changes": [{"model": "list", "offset": 1, "id": 1, "action": "moved",
                "old": null, "new": null}]}}"#,
            r#"{"v": 1, "msg": {"presence": {}}}"#,
        ] {
            let refused = decode(&schema, payload.as_bytes());
            assert!(matches!(refused, Err(DecodeError::Malformed(_))), "{payload}: {refused:?}");
        }
    }
}
