//! Encoding of server → subscriber messages: model events and plain pub/sub messages (docs/protocol.md, Publications).
//!
//! A publication is encoded once and the resulting [`Bytes`] shared by every connection that receives it, so these
//! encoders take only what is common to all receivers. Model events carry the change's `offset` (docs/protocol.md, The delivery guarantee), which
//! SwampDragon lacked, so a reconnecting client can say where to resume.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::reply::encode;

/// What happened to a row, as seen through one subscription's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The row was created, or started matching the filter.
    Created,
    /// The row changed and still matches the filter.
    Updated,
    /// The row was deleted, or stopped matching the filter.
    Deleted,
}

impl Action {
    /// The string sent in `action`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

#[derive(Serialize)]
struct Publication<'a, D: Serialize + ?Sized> {
    channel: &'a str,
    action: Action,
    data: &'a D,
    offset: u64,
}

#[derive(Serialize)]
struct PresenceEvent<'a> {
    channel: &'a str,
    action: &'a str,
    data: &'a Value,
}

#[derive(Serialize)]
struct ChannelMessage<'a> {
    channel: &'a str,
    data: &'a Value,
}

/// Encodes a model event `{"channel","action","data","offset"}` for the subscribers of a server channel.
///
/// ```
/// use drakon_protocol::{encode_publication, Action};
///
/// let bytes = encode_publication("todo-item|todo_list__id:1", Action::Deleted, &serde_json::json!({"id": 1}), 7);
/// assert_eq!(&bytes[..], br#"{"channel":"todo-item|todo_list__id:1","action":"deleted","data":{"id":1},"offset":7}"#);
/// ```
pub fn encode_publication<D: Serialize + ?Sized>(channel: &str, action: Action, data: &D, offset: u64) -> Bytes {
    encode(&Publication { channel, action, data, offset })
}

/// A model event as a JSON object, for replies that carry events (a resuming subscriber's replay); the same keys and
/// order as [`encode_publication`].
pub fn publication_value<D: Serialize + ?Sized>(channel: &str, action: Action, data: &D, offset: u64) -> Value {
    serde_json::to_value(Publication { channel, action, data, offset }).unwrap_or(Value::Null)
}

/// Encodes a presence event `{"channel","action","data"}` (`member_joined`, `member_updated`, `member_left`,
/// `presence_batch`) for the watchers of a room.
///
/// ```
/// use drakon_protocol::encode_presence_event;
///
/// let bytes = encode_presence_event("presence:todo-item:7", "member_left", &serde_json::json!({"id": "bob"}));
/// assert_eq!(&bytes[..], br#"{"channel":"presence:todo-item:7","action":"member_left","data":{"id":"bob"}}"#);
/// ```
pub fn encode_presence_event(channel: &str, action: &str, data: &Value) -> Bytes {
    encode(&PresenceEvent { channel, action, data })
}

/// Encodes a plain pub/sub message `{"channel","data"}`, like SwampDragon's `publish_data`; `data` may be any JSON.
pub fn encode_channel_message(channel: &str, data: &Value) -> Bytes {
    encode(&ChannelMessage { channel, data })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn golden_publications() {
        // Reference §6.2 captures, in drakon's key order and with an offset.
        let table = [
            (
                "todo-item|todo_list__id:1",
                Action::Created,
                json!({"_type": "todoitem", "text": "new via router", "todo_list": 1, "done": false, "id": 5}),
                5,
                r#"{"channel":"todo-item|todo_list__id:1","action":"created","data":{"_type":"todoitem","text":"new via router","todo_list":1,"done":false,"id":5},"offset":5}"#,
            ),
            (
                "todo-item|todo_list__id:1",
                Action::Updated,
                json!({"_type": "todoitem", "done": true, "id": 1}),
                6,
                r#"{"channel":"todo-item|todo_list__id:1","action":"updated","data":{"_type":"todoitem","done":true,"id":1},"offset":6}"#,
            ),
            (
                "plain|number__gt:5",
                Action::Deleted,
                json!({"id": 1}),
                u64::MAX,
                r#"{"channel":"plain|number__gt:5","action":"deleted","data":{"id":1},"offset":18446744073709551615}"#,
            ),
            (
                "todo-item|text:\"a \\\"q\\\"\"",
                Action::Updated,
                json!({"text": "a \"q\""}),
                0,
                r#"{"channel":"todo-item|text:\"a \\\"q\\\"\"","action":"updated","data":{"text":"a \"q\""},"offset":0}"#,
            ),
        ];
        for (channel, action, data, offset, expected) in table {
            let bytes = encode_publication(channel, action, &data, offset);
            assert_eq!(text(&bytes), expected);
            let decoded: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(decoded["channel"], channel);
            assert_eq!(decoded["action"], action.as_str());
        }
    }

    #[test]
    fn golden_channel_messages() {
        let table = [
            (json!({"msg": "hi", "from": "celery"}), r#"{"channel":"chatroom","data":{"msg":"hi","from":"celery"}}"#),
            (json!("plain string"), r#"{"channel":"chatroom","data":"plain string"}"#),
            (Value::Null, r#"{"channel":"chatroom","data":null}"#),
        ];
        for (data, expected) in table {
            assert_eq!(text(&encode_channel_message("chatroom", &data)), expected);
        }
    }

    #[test]
    fn action_strings_match_serde() {
        for action in [Action::Created, Action::Updated, Action::Deleted] {
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
    }
}
