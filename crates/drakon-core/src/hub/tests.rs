//! Hub fan-out: the event each subscriber gets, and the cost of a change following the matching channels only.

use std::sync::Arc;

use drakon_protocol::{Action, Args};
use serde_json::{Value as Json, json};

use crate::event::TestEncoding;
use crate::outbox::Outbox;

use super::*;
use crate::filter::Filter;
use crate::schema::{Field, Model, OnDelete, Schema};
use crate::value::Value;

fn schema() -> Schema {
    Schema::new().model(Model::new("todo_list").field(Field::text("name"))).model(
        Model::new("todo_item")
            .field(Field::text("text"))
            .field(Field::bool("done"))
            .field(Field::text("secret"))
            .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
    )
}

struct Fixture {
    hub: Hub,
    schema: Schema,
    route: Arc<RouteView>,
}

impl Fixture {
    fn new() -> Fixture {
        let schema = schema();
        let model = Arc::new(schema.get_model("todo_item").unwrap().clone());
        // `secret` (index 3) is not published.
        let route = Arc::new(RouteView { name: "todo-item".into(), model, publish: vec![1, 2, 4] });
        Fixture { hub: Hub::new(), schema, route }
    }

    fn connect(&self, capacity: usize) -> (ConnId, Arc<Outbox>) {
        let outbox = Outbox::new(capacity, &TestEncoding);
        (self.hub.register(outbox.clone()), outbox)
    }

    fn subscribe(&self, conn: ConnId, filter: Json) -> String {
        let args: Args = filter.as_object().unwrap().clone();
        let filter = Filter::parse(&self.schema, &self.route.model, &args).unwrap();
        let name = drakon_protocol::model_channel_name("todo-item", &args);
        self.hub.subscribe_model(conn, &self.route, &name, &name, &filter);
        name
    }

    fn deliver(&self, old: Option<Row>, new: Option<Row>) -> Delivery {
        let action = match (&old, &new) {
            (None, _) => Action::Created,
            (_, None) => Action::Deleted,
            _ => Action::Updated,
        };
        let id = new.as_ref().or(old.as_ref()).unwrap()[0].as_i64().unwrap();
        let change = Change {
            model: Arc::from("todo_item"),
            id,
            action,
            old,
            new,
            offset: 7,
            old_refs: Vec::new(),
            new_refs: Vec::new(),
        };
        self.hub.deliver_change(&change, &self.route.model, &Remote::new(), &Remote::new())
    }
}

fn item(id: i64, text: &str, done: bool, secret: &str, list: i64) -> Row {
    vec![Value::Int(id), Value::Text(text.into()), Value::Bool(done), Value::Text(secret.into()), Value::Int(list)]
}

fn frames(outbox: &Outbox) -> Vec<Json> {
    outbox.try_drain().iter().map(|b| serde_json::from_slice(b).unwrap()).collect()
}

#[test]
fn events_follow_membership_and_publish_only_changed_public_fields() {
    let f = Fixture::new();
    let (conn, rx) = f.connect(16);
    let channel = f.subscribe(conn, json!({"todo_list": 1, "done": false}));
    let cases: Vec<(Option<Row>, Option<Row>, Option<Json>)> = vec![
        (
            None,
            Some(item(1, "a", false, "s", 1)),
            Some(
                json!({"action": "created", "data": {"id": 1, "_type": "todo_item", "text": "a", "done": false, "todo_list": 1}}),
            ),
        ),
        (
            Some(item(1, "a", false, "s", 1)),
            Some(item(1, "b", false, "s", 1)),
            Some(json!({"action": "updated", "data": {"id": 1, "_type": "todo_item", "text": "b"}})),
        ),
        // Only an unpublished field changed: nothing to tell.
        (Some(item(1, "b", false, "s", 1)), Some(item(1, "b", false, "t", 1)), None),
        (
            Some(item(1, "b", false, "t", 1)),
            Some(item(1, "b", true, "t", 1)),
            Some(json!({"action": "deleted", "data": {"id": 1, "_type": "todo_item"}})),
        ),
        (Some(item(1, "b", true, "t", 1)), Some(item(1, "b", true, "u", 2)), None),
        (
            Some(item(1, "b", true, "u", 2)),
            Some(item(1, "c", false, "u", 1)),
            Some(
                json!({"action": "created", "data": {"id": 1, "_type": "todo_item", "text": "c", "done": false, "todo_list": 1}}),
            ),
        ),
        (
            Some(item(1, "c", false, "u", 1)),
            None,
            Some(json!({"action": "deleted", "data": {"id": 1, "_type": "todo_item"}})),
        ),
    ];
    for (i, (old, new, want)) in cases.into_iter().enumerate() {
        f.deliver(old, new);
        let got = frames(&rx);
        match want {
            None => assert!(got.is_empty(), "case {i}: expected nothing, got {got:?}"),
            Some(mut want) => {
                want["channel"] = json!(channel);
                want["offset"] = json!(7);
                assert_eq!(got, vec![want], "case {i}");
            }
        }
    }
}

#[test]
fn a_change_costs_the_matching_channels_not_all_of_them() {
    let f = Fixture::new();
    let (conn, rx) = f.connect(16);
    for list in 1..=10_000 {
        f.subscribe(conn, json!({"todo_list__id": list}));
    }
    let scan = f.subscribe(conn, json!({"text__contains": "zzz"}));
    assert_eq!(f.hub.stats().model_channels, 10_001);

    let created = f.deliver(None, Some(item(1, "a", false, "", 42)));
    assert_eq!(created, Delivery { candidates: 2, queued: 1 }, "the list-42 channel and the one unindexed channel");
    let moved = f.deliver(Some(item(1, "a", false, "", 42)), Some(item(1, "a", false, "", 43)));
    assert_eq!(moved, Delivery { candidates: 3, queued: 2 }, "left list 42, entered list 43");
    let nobody = f.deliver(None, Some(item(2, "a", false, "", 20_000)));
    assert_eq!(nobody, Delivery { candidates: 1, queued: 0 });
    assert_eq!(frames(&rx).len(), 3);

    // Unsubscribing removes the channel from the index too.
    f.hub.unsubscribe_model(conn, "todo_item", &scan);
    assert_eq!(f.deliver(None, Some(item(3, "zzz", false, "", 20_000))), Delivery { candidates: 0, queued: 0 });
}

#[test]
fn channels_of_alternatives_are_indexed_under_each_alternative() {
    let f = Fixture::new();
    let (conn, rx) = f.connect(2_048);
    let parse = |filter: Json| Filter::parse(&f.schema, &f.route.model, filter.as_object().unwrap()).unwrap();
    // "list N, or anything done", as a rule joined with `any` gives, for 1,000 lists.
    for list in 1..=1_000 {
        let filter = Filter::either(vec![parse(json!({"todo_list__id": list})), parse(json!({"done": true}))]);
        f.hub.subscribe_model(conn, &f.route, &format!("todo-item|@rule:{list}"), "todo-item|", &filter);
    }
    // An alternative without an indexable condition leaves the channel to be checked on every change.
    let unindexed = Filter::either(vec![parse(json!({"todo_list__id": 1})), parse(json!({"text__contains": "z"}))]);
    f.hub.subscribe_model(conn, &f.route, "todo-item|@rule:scan", "todo-item|", &unindexed);

    let in_list_7 = f.deliver(None, Some(item(1, "a", false, "", 7)));
    assert_eq!(in_list_7, Delivery { candidates: 2, queued: 1 }, "list 7's channel, and the unindexed one");
    let done = f.deliver(Some(item(1, "a", false, "", 7)), Some(item(1, "a", true, "", 7)));
    assert_eq!(done, Delivery { candidates: 1_001, queued: 1_000 }, "every channel takes done rows");
    assert_eq!(frames(&rx).len(), 1_001);
    f.hub.unsubscribe_model(conn, "todo_item", "todo-item|@rule:7");
    assert_eq!(f.deliver(None, Some(item(2, "a", false, "", 7))), Delivery { candidates: 1, queued: 0 });
}

#[test]
fn subscribers_of_one_channel_share_one_encoded_frame() {
    let f = Fixture::new();
    let (a, rx_a) = f.connect(4);
    let (b, rx_b) = f.connect(4);
    f.subscribe(a, json!({"todo_list": 1}));
    f.subscribe(b, json!({"todo_list": 1}));
    assert_eq!(f.hub.stats().model_channels, 1);
    f.deliver(None, Some(item(1, "a", false, "", 1)));
    let (fa, fb) = (rx_a.try_drain().remove(0), rx_b.try_drain().remove(0));
    assert_eq!(fa.as_ptr(), fb.as_ptr(), "one encoding, shared");
}

#[test]
fn users_channels_of_one_visible_name_share_the_event_of_a_change_they_see_alike() {
    let f = Fixture::new();
    let parse = |filter: Json| Filter::parse(&f.schema, &f.route.model, filter.as_object().unwrap()).unwrap();
    // Three users on list 1 under "own rows (text = user) or done ones": a channel each, one visible name.
    let mut outboxes = Vec::new();
    for user in ["ann", "bob", "cyd"] {
        let (conn, rx) = f.connect(4);
        let rule = Filter::either(vec![parse(json!({"text": user})), parse(json!({"done": true}))]);
        let filter = parse(json!({"todo_list": 1})).and(rule);
        f.hub.subscribe_model(
            conn,
            &f.route,
            &format!("todo-item|todo_list:1|@rule:{user}"),
            "todo-item|todo_list:1",
            &filter,
        );
        outboxes.push(rx);
    }
    assert_eq!(f.hub.stats().model_channels, 3);
    // A done row: all three see it created, from one event and one encoding.
    f.deliver(None, Some(item(1, "x", true, "", 1)));
    let got: Vec<_> = outboxes.iter().map(|rx| rx.try_drain().remove(0)).collect();
    assert!(got.iter().all(|b| b.as_ptr() == got[0].as_ptr()), "one encoding for all three");
    let event: Json = serde_json::from_slice(&got[0]).unwrap();
    assert_eq!(event["channel"], "todo-item|todo_list:1", "the visible name, without anyone's rule");
    // Ann's own row going undone: she keeps it (updated), the others lose it (deleted): two events.
    f.deliver(Some(item(1, "ann", true, "", 1)), Some(item(1, "ann", false, "", 1)));
    let actions: Vec<Json> = outboxes.iter().map(|rx| frames(rx).remove(0)["action"].clone()).collect();
    assert_eq!(actions, [json!("updated"), json!("deleted"), json!("deleted")]);
}

#[test]
fn recipients_follow_every_change_of_membership_between_deliveries() {
    let f = Fixture::new();
    let (a, rx_a) = f.connect(16);
    let (b, rx_b) = f.connect(16);
    let channel = f.subscribe(a, json!({"todo_list": 1}));
    f.hub.subscribe_plain(a, "room");
    assert_eq!(f.deliver(None, Some(item(1, "a", false, "", 1))).queued, 1);
    assert_eq!(f.hub.deliver_plain(&Arc::from("room"), &Arc::new(json!("hi"))), 1);
    // Joining after a delivery: the next one reaches the newcomer too.
    f.subscribe(b, json!({"todo_list": 1}));
    f.hub.subscribe_plain(b, "room");
    assert_eq!(f.deliver(None, Some(item(2, "a", false, "", 1))).queued, 2);
    assert_eq!(f.hub.deliver_plain(&Arc::from("room"), &Arc::new(json!("hi"))), 2);
    // Leaving: the next one does not reach the leaver.
    f.hub.unsubscribe_model(a, "todo_item", &channel);
    f.hub.unsubscribe_plain(a, "room");
    assert_eq!(f.deliver(None, Some(item(3, "a", false, "", 1))).queued, 1);
    assert_eq!(f.hub.deliver_plain(&Arc::from("room"), &Arc::new(json!("hi"))), 1);
    assert_eq!((frames(&rx_a).len(), frames(&rx_b).len()), (4, 4));
    // A connection that is gone is skipped while its session has not unsubscribed yet.
    f.hub.unregister(b);
    assert_eq!(f.deliver(None, Some(item(4, "a", false, "", 1))).queued, 0);
    assert_eq!(f.hub.deliver_plain(&Arc::from("room"), &Arc::new(json!("hi"))), 0);
    assert!(frames(&rx_b).is_empty());
}

#[test]
fn a_full_queue_gets_the_connection_dropped_and_told_to_close() {
    let f = Fixture::new();
    let (slow, rx_slow) = f.connect(1);
    let (fast, rx_fast) = f.connect(16);
    f.subscribe(slow, json!({"todo_list": 1}));
    f.subscribe(fast, json!({"todo_list": 1}));
    for id in 1..=3 {
        f.deliver(None, Some(item(id, "a", false, "", 1)));
    }
    assert!(!f.hub.is_registered(slow));
    assert!(f.hub.is_registered(fast));
    assert_eq!(frames(&rx_fast).len(), 3, "the slow subscriber did not hold the fast one back");
    // Until its session unsubscribes, the dropped connection is skipped, not counted.
    assert_eq!(f.deliver(None, Some(item(4, "a", false, "", 1))), Delivery { candidates: 1, queued: 1 });
    // Its queue is closed: the connection's task finds that before the frame still queued, and closes with 4008.
    assert!(rx_slow.is_closed());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert_eq!(
        rx_slow.poll_batch(&mut cx, &mut Vec::new(), &mut Vec::new()),
        std::task::Poll::Ready(crate::outbox::Batch::Closed)
    );
}

#[test]
fn subscribers_of_a_model_that_lost_changes_are_closed_with_a_reason() {
    let f = Fixture::new();
    let (items_a, rx_a) = f.connect(4);
    let (items_b, rx_b) = f.connect(4);
    let (chat, rx_chat) = f.connect(4);
    f.subscribe(items_a, json!({"todo_list": 1}));
    f.subscribe(items_b, json!({"todo_list": 2}));
    f.hub.subscribe_plain(chat, "room");
    let reason = "missed changes: reconnect and subscribe again";
    assert_eq!(f.hub.close_subscribers_of("todo_item", reason), 2);
    assert!(rx_a.is_closed() && rx_b.is_closed());
    assert_eq!((rx_a.close_reason(), rx_b.close_reason()), (Some(reason), Some(reason)));
    assert!(!rx_chat.is_closed(), "only the model's subscribers");
    assert!(!f.hub.is_registered(items_a) && f.hub.is_registered(chat));
    assert_eq!(f.hub.close_subscribers_of("no_such_model", reason), 0);
}
