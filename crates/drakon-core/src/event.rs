//! What the hub hands to sessions: typed events, one per channel and change, shared by every recipient.
//!
//! The hub knows no wire format. It matches a change, builds one [`Event`] per channel it concerns (the channel, what
//! happened to the row as that channel's filter sees it, the published fields, the offset) and pushes the same
//! `Arc<Event>` to every subscriber. Each session's protocol turns an event into the bytes of one frame through an
//! [`Encoding`]; the first recipient that speaks a protocol encodes it and the event keeps the bytes, so every other
//! recipient of that protocol shares them ("encode once, share the bytes", whatever mix of protocols is connected).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
pub use drakon_protocol::Action;
use serde_json::{Map, Value as Json};

use crate::limits::EVENT_ENCODINGS;

/// One event of one channel, as every subscriber of the channel receives it.
#[derive(Debug)]
pub struct Event {
    /// The server channel: `<route>|k:v` for a model subscription, a free name for plain pub/sub.
    pub channel: Arc<str>,
    pub body: EventBody,
    /// The frame each protocol made of this event, by [`Encoding::slot`].
    encoded: [OnceLock<Bytes>; EVENT_ENCODINGS],
}

/// What an event says.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A committed change of a row, as seen through the channel's filter: `created` when the row entered it,
    /// `deleted` (with only `id` and `_type`) when it left, `updated` with the published fields that changed.
    Row { action: Action, id: i64, data: Map<String, Json>, offset: u64 },
    /// A plain pub/sub message (`POST /api/publish`); `data` may be any JSON.
    Message { data: Arc<Json> },
    /// A change of a presence room's members (see [`crate::presence`]).
    Presence { action: PresenceAction, data: Arc<Json> },
}

/// What a presence event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceAction {
    /// A user's first connection joined; `data` is the member (`id`, `info`, `state`).
    MemberJoined,
    /// A member's info or state changed; `data` is the member as now shown.
    MemberUpdated,
    /// A user's last connection left; `data` is `{"id"}`.
    MemberLeft,
    /// A large room's changes of the last batch window: `count`, and `joined`, `updated` and `left`, or
    /// `truncated` when there were too many to list.
    Batch,
}

impl PresenceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceAction::MemberJoined => "member_joined",
            PresenceAction::MemberUpdated => "member_updated",
            PresenceAction::MemberLeft => "member_left",
            PresenceAction::Batch => "presence_batch",
        }
    }
}

/// How one protocol turns an event into the bytes of a frame's payload.
pub trait Encoding: Send + Sync + std::fmt::Debug {
    /// Where events cache this protocol's bytes: a number below [`EVENT_ENCODINGS`], distinct for every protocol
    /// of a node. Out of range, events are encoded for each recipient (correct, but not shared).
    fn slot(&self) -> usize;

    /// The frame payload for `event`, from nothing but the event.
    fn encode(&self, event: &Event) -> Bytes;
}

impl Event {
    pub fn new(channel: Arc<str>, body: EventBody) -> Event {
        Event { channel, body, encoded: Default::default() }
    }

    /// A row event.
    pub fn row(channel: Arc<str>, action: Action, id: i64, data: Map<String, Json>, offset: u64) -> Event {
        Event::new(channel, EventBody::Row { action, id, data, offset })
    }

    /// A plain pub/sub message.
    pub fn message(channel: Arc<str>, data: Arc<Json>) -> Event {
        Event::new(channel, EventBody::Message { data })
    }

    pub fn presence(channel: Arc<str>, action: PresenceAction, data: Arc<Json>) -> Event {
        Event::new(channel, EventBody::Presence { action, data })
    }

    /// The change-log offset of a row event.
    pub fn offset(&self) -> Option<u64> {
        match &self.body {
            EventBody::Row { offset, .. } => Some(*offset),
            EventBody::Message { .. } | EventBody::Presence { .. } => None,
        }
    }

    /// This event's bytes in `encoding`: encoded by the first caller, shared by every later one.
    pub fn bytes(&self, encoding: &dyn Encoding) -> Bytes {
        match self.encoded.get(encoding.slot()) {
            Some(cell) => cell.get_or_init(|| encoding.encode(self)).clone(),
            None => encoding.encode(self),
        }
    }

    /// An `updated` event for the same row carrying both updates, `self`'s fields overwritten by `later`'s, at
    /// `later`'s offset; `None` unless both are `updated` events of one row on one channel.
    pub fn merge_update(&self, later: &Event) -> Option<Event> {
        let (
            EventBody::Row { action: Action::Updated, id, data, .. },
            EventBody::Row { action: Action::Updated, id: later_id, data: later_data, offset },
        ) = (&self.body, &later.body)
        else {
            return None;
        };
        if id != later_id || self.channel != later.channel {
            return None;
        }
        let mut merged = data.clone();
        for (k, v) in later_data {
            merged.insert(k.clone(), v.clone());
        }
        Some(Event::row(self.channel.clone(), Action::Updated, *id, merged, *offset))
    }

    /// The row this event is about, as (channel, id): what conflation keys on.
    pub fn row_key(&self) -> Option<(&str, i64)> {
        match &self.body {
            EventBody::Row { id, .. } => Some((&self.channel, *id)),
            EventBody::Message { .. } | EventBody::Presence { .. } => None,
        }
    }
}

/// An encoding for the engine's own tests: the native protocol's shape, built as a JSON tree (the real encoders
/// live with the protocols, in the server crate).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TestEncoding;

#[cfg(test)]
impl Encoding for TestEncoding {
    fn slot(&self) -> usize {
        0
    }

    fn encode(&self, event: &Event) -> Bytes {
        let json = match &event.body {
            EventBody::Row { action, data, offset, .. } => serde_json::json!({
                "channel": &*event.channel, "action": action.as_str(), "data": data, "offset": offset,
            }),
            EventBody::Message { data } => serde_json::json!({"channel": &*event.channel, "data": &**data}),
            EventBody::Presence { action, data } => {
                serde_json::json!({"channel": &*event.channel, "action": action.as_str(), "data": &**data})
            }
        };
        Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    /// Counts how often it encodes.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize, usize);

    impl Encoding for Counting {
        fn slot(&self) -> usize {
            self.1
        }

        fn encode(&self, event: &Event) -> Bytes {
            self.0.fetch_add(1, Ordering::SeqCst);
            Bytes::from(event.channel.to_string())
        }
    }

    fn update(id: i64, data: Json, offset: u64) -> Event {
        Event::row(Arc::from("c"), Action::Updated, id, data.as_object().unwrap().clone(), offset)
    }

    #[test]
    fn each_encoding_encodes_an_event_once_and_shares_the_bytes() {
        let event = Event::message(Arc::from("room"), Arc::new(json!("hi")));
        let (a, b) = (Counting(AtomicUsize::new(0), 0), Counting(AtomicUsize::new(0), 1));
        for _ in 0..3 {
            assert_eq!(event.bytes(&a), "room");
            assert_eq!(event.bytes(&b), "room");
        }
        assert_eq!((a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)), (1, 1));
        // A slot past the cache still encodes, for every call.
        let outside = Counting(AtomicUsize::new(0), EVENT_ENCODINGS);
        event.bytes(&outside);
        event.bytes(&outside);
        assert_eq!(outside.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn updates_of_one_row_merge_with_later_fields_winning_at_the_later_offset() {
        let merged = update(1, json!({"id": 1, "text": "a", "done": false}), 3)
            .merge_update(&update(1, json!({"id": 1, "done": true}), 5))
            .unwrap();
        assert_eq!(
            merged.body,
            EventBody::Row {
                action: Action::Updated,
                id: 1,
                data: json!({"id": 1, "text": "a", "done": true}).as_object().unwrap().clone(),
                offset: 5
            }
        );
        assert!(update(1, json!({}), 1).merge_update(&update(2, json!({}), 2)).is_none(), "another row");
        let deleted = Event::row(Arc::from("c"), Action::Deleted, 1, Map::new(), 2);
        assert!(update(1, json!({}), 1).merge_update(&deleted).is_none(), "not an update");
        assert!(deleted.merge_update(&update(1, json!({}), 3)).is_none(), "not an update");
    }
}
