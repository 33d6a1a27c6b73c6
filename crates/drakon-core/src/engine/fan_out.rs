//! The fan-out: bus messages to the hub, in order. It drops duplicates and repairs gaps by offset (so a lossy or
//! duplicating bus costs latency, never events), and resolves the values that filters through references need, as
//! they were when each change committed.

use std::collections::HashMap;
use std::sync::Arc;

use drakon_protocol::Args;
use serde_json::json;
use tokio::sync::mpsc;

use super::Inner;
use crate::filter::{Filter, Lookup};
use crate::hub::Remote;
use crate::limits;
use crate::schema::Model;
use crate::store::{BusMessage, Change, LogRead, Row, StoreError};
use crate::value::Value;

/// Carries bus messages to the hub, in order, resolving lookups through references where channels need them.
///
/// Offsets make the bus's delivery checkable: per model, a change at or below the last delivered offset is a
/// duplicate and is dropped, and one past the next expected offset means the bus lost something, which is fetched
/// from the store's change log and delivered first. So a lossy or duplicating bus costs latency, never events.
pub(super) async fn fan_out(
    inner: Arc<Inner>,
    mut bus: mpsc::Receiver<BusMessage>,
    ready: tokio::sync::watch::Sender<bool>,
) {
    // Where each model stands before anyone subscribes: changes up to here concern no client of this node, and a
    // change past here that the bus loses is noticed by the next one, or by the next `Heads`.
    let mut cursor = Cursor::default();
    for model in inner.models.values() {
        match inner.store.log_head(model).await {
            Ok(head) => cursor.start(Arc::from(model.name.as_str()), head),
            Err(e) => tracing::warn!(error = %e, model = %model.name, "could not read the change log's head"),
        }
    }
    let _ = ready.send(true);
    while let Some(msg) = bus.recv().await {
        match msg {
            BusMessage::Changes(changes) => {
                let images = BatchImages::of(&changes);
                for (i, change) in changes.iter().enumerate() {
                    // Behind this change: the rest of its transaction, or more on the bus.
                    inner.hub.set_backlogged(i + 1 < changes.len() || !bus.is_empty());
                    let Some(model) = inner.models.get(&*change.model) else { continue };
                    match cursor.change(&change.model, change.offset) {
                        Step::Duplicate => continue,
                        Step::After { last } => repair_gap(&inner, model, last, change.offset).await,
                        Step::Next => {}
                    }
                    deliver(&inner, model, change, &images).await;
                }
            }
            BusMessage::Heads(heads) => {
                for (name, head) in heads.iter() {
                    let Some(model) = inner.models.get(&**name) else { continue };
                    if let Some(last) = cursor.head(name, *head) {
                        repair_gap(&inner, model, last, head + 1).await;
                    }
                }
            }
            BusMessage::Channel { name, data } => {
                inner.hub.set_backlogged(!bus.is_empty());
                inner.hub.deliver_plain(&name, &data);
            }
            BusMessage::Presence(message) => inner.presence.receive(&message),
        }
    }
}

/// Per model, the offset of the last change the fan-out delivered: what tells a duplicate from the next change and
/// from one that comes after a gap.
#[derive(Debug, Default)]
struct Cursor {
    delivered: HashMap<Arc<str>, u64>,
}

/// What to do with a change, by its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// At or below the last delivered offset: drop it.
    Duplicate,
    /// The next one (or the first of a model whose head was never read): deliver it.
    Next,
    /// Past the next expected offset: the bus lost the changes after `last`; read them from the log, then deliver.
    After { last: u64 },
}

impl Cursor {
    /// `model`'s log stood at `head` before anything was delivered.
    fn start(&mut self, model: Arc<str>, head: u64) {
        self.delivered.insert(model, head);
    }

    /// The step for `model`'s change at `offset`; anything but a duplicate counts as delivered.
    fn change(&mut self, model: &Arc<str>, offset: u64) -> Step {
        let step = match self.delivered.get(model).copied() {
            Some(last) if offset <= last => return Step::Duplicate,
            Some(last) if offset > last + 1 => Step::After { last },
            _ => Step::Next,
        };
        self.delivered.insert(model.clone(), offset);
        step
    }

    /// The relay says `model`'s log reached `head`: returns the last delivered offset when changes up to `head` are
    /// missing (to be read from the log), and counts them as delivered.
    fn head(&mut self, model: &Arc<str>, head: u64) -> Option<u64> {
        let last = self.delivered.get(model).copied();
        if last.is_some_and(|last| head <= last) {
            return None;
        }
        self.delivered.insert(model.clone(), head);
        last
    }
}

async fn deliver(inner: &Inner, model: &Model, change: &Change, images: &BatchImages) {
    let lookups = inner.hub.remote_lookups(&model.name);
    let remote_old = resolve(inner, model, change, true, &lookups, &images.before).await;
    let remote_new = resolve(inner, model, change, false, &lookups, &images.after).await;
    inner.hub.deliver_change(change, model, &remote_old, &remote_new);
}

/// Delivers the changes of `model` after `last` and before `next` from the change log.
async fn repair_gap(inner: &Inner, model: &Model, last: u64, next: u64) {
    tracing::warn!(model = %model.name, last, next, "the bus skipped changes; reading them from the change log");
    match inner.store.log_since(model, last, limits::MAX_REPLAY_CHANGES).await {
        Ok(LogRead::Changes { changes, .. }) => {
            let missing: Vec<Change> = changes.into_iter().filter(|c| c.offset < next).collect();
            let images = BatchImages::of(&missing);
            for change in &missing {
                deliver(inner, model, change, &images).await;
            }
        }
        Ok(LogRead::Gone { .. }) => {
            // Their subscribers cannot be repaired live: closed with the resumable code, they resume with `since`
            // and, the log not reaching back, get a fresh snapshot (`reload`).
            let closed = inner.hub.close_subscribers_of(
                &model.name,
                "missed changes the log no longer holds: reconnect and subscribe again",
            );
            tracing::error!(
                model = %model.name, last, next, closed,
                "the change log no longer holds the skipped changes; their subscribers were closed to reload"
            );
        }
        Err(e) => tracing::error!(error = %e, model = %model.name, "could not read the skipped changes"),
    }
}

type RowKey = (Arc<str>, i64);

/// The rows a batch touched, as they were before it and as they are after it (`None`: absent then). A row's old
/// image is matched against the related rows as they were too: when a list and its items go in one cascade, the
/// items' old `todo_list__name` is the list's name before the delete, not the null of a row already gone.
pub(super) struct BatchImages {
    pub(super) before: HashMap<RowKey, Option<Row>>,
    pub(super) after: HashMap<RowKey, Option<Row>>,
}

impl BatchImages {
    pub(super) fn of(changes: &[Change]) -> BatchImages {
        let mut before = HashMap::new();
        let mut after = HashMap::new();
        for c in changes {
            let key = (c.model.clone(), c.id);
            before.entry(key.clone()).or_insert_with(|| c.old.clone());
            after.insert(key, c.new.clone());
        }
        BatchImages { before, after }
    }
}

/// The values of `lookups` for the old (`old = true`) or new image of `change`. The first hop of each lookup uses
/// the referenced row the store recorded with the change, as it was at commit; without one, and for further hops,
/// rows come from `images` (the batch's own rows) first and the store second.
pub(super) async fn resolve(
    inner: &Inner,
    model: &Model,
    change: &Change,
    old: bool,
    lookups: &[Lookup],
    images: &HashMap<RowKey, Option<Row>>,
) -> Remote {
    let mut out = Remote::new();
    let Some(row) = (if old { change.old.as_ref() } else { change.new.as_ref() }) else { return out };
    for lookup in lookups {
        let recorded = lookup.hops.first().and_then(|hop| change.referenced(old, &hop.field));
        match resolve_one(inner, model, row, lookup, recorded, images).await {
            Ok(value) => {
                out.insert(lookup.clone(), value);
            }
            Err(e) => {
                tracing::error!(error = %e, model = %model.name, lookup = %lookup.path(), "could not resolve a related value; subscriptions on it miss this event");
            }
        }
    }
    out
}

async fn resolve_one(
    inner: &Inner,
    model: &Model,
    row: &Row,
    lookup: &Lookup,
    recorded: Option<Option<&Row>>,
    images: &HashMap<RowKey, Option<Row>>,
) -> Result<Value, StoreError> {
    let mut current_row = row.clone();
    let mut current_model = model;
    for (depth, hop) in lookup.hops.iter().enumerate() {
        let Some(id) = current_model.field_index(&hop.field).and_then(|i| current_row[i].as_i64()) else {
            return Ok(Value::Null);
        };
        let Some(target) = inner.models.get(&hop.to_model) else { return Ok(Value::Null) };
        let found = match (depth, recorded, images.get(&(Arc::from(hop.to_model.as_str()), id))) {
            (0, Some(at_commit), _) => at_commit.cloned(),
            (_, _, Some(image)) => image.clone(),
            _ => {
                let by_id = Filter::parse(&inner.schema, target, &Args::from_iter([("id".to_owned(), json!(id))]))
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                inner.store.list(target, &by_id, &[], 1, 0).await?.rows.into_iter().next()
            }
        };

        let Some(found) = found else { return Ok(Value::Null) };
        current_row = found;
        current_model = target;
    }
    Ok(current_model.field_index(&lookup.field).map_or(Value::Null, |i| current_row[i].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_drops_duplicates_and_finds_gaps_by_offset() {
        let (items, lists): (Arc<str>, Arc<str>) = (Arc::from("todo_item"), Arc::from("todo_list"));
        let mut cursor = Cursor::default();
        cursor.start(items.clone(), 4);
        // (offset, step) in the order the bus hands them over.
        let table = [
            (3, Step::Duplicate),
            (4, Step::Duplicate),
            (5, Step::Next),
            (5, Step::Duplicate),
            (8, Step::After { last: 5 }),
            (6, Step::Duplicate),
            (9, Step::Next),
        ];
        for (offset, step) in table {
            assert_eq!(cursor.change(&items, offset), step, "offset {offset}");
        }
        // A model whose head could not be read takes whatever comes first.
        assert_eq!(cursor.change(&lists, 7), Step::Next);
        assert_eq!(cursor.change(&lists, 8), Step::Next);
    }

    #[test]
    fn a_head_past_what_was_delivered_asks_for_a_repair_once() {
        let items: Arc<str> = Arc::from("todo_item");
        let mut cursor = Cursor::default();
        cursor.start(items.clone(), 2);
        assert_eq!(cursor.head(&items, 2), None, "nothing missing");
        assert_eq!(cursor.head(&items, 5), Some(2), "3 to 5 were lost");
        assert_eq!(cursor.head(&items, 5), None, "and are delivered now");
        assert_eq!(cursor.change(&items, 5), Step::Duplicate);
        assert_eq!(cursor.change(&items, 6), Step::Next);
        assert_eq!(cursor.head(&Arc::from("new_model"), 9), None, "a model never seen starts at its head");
        assert_eq!(cursor.change(&Arc::from("new_model"), 9), Step::Duplicate);
    }

    #[test]
    fn batch_images_keep_a_rows_first_old_image_and_last_new_one() {
        let change = |id: i64, old: Option<i64>, new: Option<i64>, offset| Change {
            model: Arc::from("todo_list"),
            id,
            action: drakon_protocol::Action::Updated,
            old: old.map(|v| vec![Value::Int(id), Value::Int(v)]),
            new: new.map(|v| vec![Value::Int(id), Value::Int(v)]),
            offset,
            old_refs: Vec::new(),
            new_refs: Vec::new(),
        };
        let images = BatchImages::of(&[change(1, Some(10), Some(11), 1), change(1, Some(11), None, 2)]);
        let key = (Arc::from("todo_list"), 1);
        assert_eq!(images.before[&key], Some(vec![Value::Int(1), Value::Int(10)]), "as it was before the batch");
        assert_eq!(images.after[&key], None, "gone after it");
    }
}
