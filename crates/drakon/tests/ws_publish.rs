//! Publish semantics over a real socket (docs/protocol.md, Publications): which subscription receives `created`, `updated` or `deleted`
//! when a row enters, changes within or leaves its filter, what the data holds, and that nothing else is sent. The
//! table also pins the SwampDragon rows of reference §10.6 that drakon fixes (`done: false`, strings with spaces,
//! related-field lookups, `deleted` sent to subscriptions the row never matched).
//!
//! How "nothing arrived" is asserted without sleeping: every subscriber also subscribes to the `todo-list` route with
//! no filter, and after each step the writer creates a *barrier* list. The store hands committed changes to the bus
//! in commit order, a single fan-out task carries them to the hub in that order, and each connection's queue and
//! socket are FIFO. So once a client has read the barrier's `created`, every publication of the step before it has
//! reached that client too, and whatever it has not received by then was never sent. A short drain would only show
//! that nothing came *yet*; the barrier shows that nothing is coming.

use std::collections::BTreeSet;

use drakon_testkit::{Client, PATIENCE, TestServer};
use serde_json::{Map, Value, json};

const CONFIG: &str = r#"
[models.todo_list.fields]
name = { type = "text" }
rank = { type = "int", optional = true }

[models.todo_item.fields]
text = { type = "text" }
done = { type = "bool", default = false }
number = { type = "int", default = 0 }
# Not published: it may decide membership, but it must never appear in a frame.
secret = { type = "text", default = "" }
todo_list = { type = "ref", to = "todo_list", on_delete = "cascade" }

[routes.todo-list]
model = "todo_list"
publish_fields = ["name", "rank"]
update_fields = ["name", "rank"]

[routes.todo-item]
model = "todo_item"
publish_fields = ["text", "done", "number", "todo_list"]
update_fields = ["text", "done", "number", "todo_list", "secret"]
"#;

const ITEM_PUBLISH: [&str; 4] = ["text", "done", "number", "todo_list"];

async fn spawn() -> TestServer {
    TestServer::spawn(env!("CARGO_BIN_EXE_drakon"), CONFIG).await
}

/// What one subscription should receive for one step.
#[derive(Debug, Clone, Copy)]
enum Want {
    Nothing,
    /// `created` with every publish field.
    Created,
    /// `updated` with `id`, `_type` and exactly these fields.
    Updated(&'static [&'static str]),
    /// `deleted` with exactly `id` and `_type`.
    Deleted,
}

use Want::{Created as C, Deleted as D, Nothing as N, Updated as U};

const NUMBER_DONE: &[&str] = &["number", "done"];
const TEXT: &[&str] = &["text"];
const LIST: &[&str] = &["todo_list"];

/// The writes on `todo-item`, in order, as (label, verb, args); `id` is the item's (unused by the create).
fn steps(id: &Value) -> [(&'static str, &'static str, Value); 7] {
    [
        ("create", "create", json!({"text": "foo bar", "number": 0, "done": false, "todo_list": 1})),
        ("number=7 done=true", "update", json!({"id": id, "number": 7, "done": true})),
        ("text=zzz", "update", json!({"id": id, "text": "zzz"})),
        ("move to list 2", "update", json!({"id": id, "todo_list": 2})),
        ("secret=x only", "update", json!({"id": id, "secret": "x"})),
        (
            "identical values",
            "update",
            json!({"id": id, "_type": "todo_item", "text": "zzz", "done": true, "number": 7, "todo_list": 2,
                   "secret": "x"}),
        ),
        ("delete", "delete", json!({"id": id})),
    ]
}

/// Per subscription filter, what each step of [`steps`] sends it. The item goes
/// `{text "foo bar", number 0, done false, list 1, secret ""}` → number 7, done true → text "zzz" → list 2 →
/// secret "x" → the same values again → deleted.
const TABLE: &[(&str, [Want; 7])] = &[
    // Columns: create, number/done, text, move, secret, same values, delete.
    (r#"{"todo_list__id": 1}"#, [C, U(NUMBER_DONE), U(TEXT), D, N, N, N]),
    (r#"{"todo_list__id__in": [1, 2]}"#, [C, U(NUMBER_DONE), U(TEXT), U(LIST), N, N, D]),
    (r#"{"number__gt": 5}"#, [N, C, U(TEXT), U(LIST), N, N, D]),
    (r#"{"number__gte": 0, "number__lt": 10}"#, [C, U(NUMBER_DONE), U(TEXT), U(LIST), N, N, D]),
    // §10.6: SwampDragon sent nothing on create here and `updated` once done became true.
    (r#"{"done": false}"#, [C, D, N, N, N, N, N]),
    (r#"{"done": true}"#, [N, C, U(TEXT), U(LIST), N, N, D]),
    // §10.6: strings with spaces never matched on Py3.
    (r#"{"text": "foo bar"}"#, [C, U(NUMBER_DONE), D, N, N, N, N]),
    (r#"{"text__in": ["foo bar", "x"]}"#, [C, U(NUMBER_DONE), D, N, N, N, N]),
    (r#"{"text__icontains": "FOO"}"#, [C, U(NUMBER_DONE), D, N, N, N, N]),
    (r#"{"text__startswith": "foo"}"#, [C, U(NUMBER_DONE), D, N, N, N, N]),
    // §10.6: related-field lookups never matched on Py3.
    (r#"{"todo_list__name": "List one"}"#, [C, U(NUMBER_DONE), U(TEXT), D, N, N, N]),
    (r#"{"todo_list__id": 1, "done": true}"#, [N, C, U(TEXT), D, N, N, N]),
    // A filter on the unpublished `secret` is refused (it would let a client learn the value by counting rows);
    // ws_errors.rs holds that. Changing only `secret` sends nothing to anyone, as the `secret` column shows.
    (r#"{}"#, [C, U(NUMBER_DONE), U(TEXT), U(LIST), N, N, D]),
];

/// One client with one item subscription and the list subscription that carries barriers.
#[derive(Debug)]
struct Subscriber {
    label: String,
    client: Client,
    /// The server name of the item subscription, from the subscribe reply.
    channel: String,
    barrier_channel: String,
    last_offset: u64,
}

impl Subscriber {
    async fn new(server: &TestServer, route: &str, filter: Value, barrier_route: &str) -> Subscriber {
        let mut client = server.client().await;
        let label = format!("{route} {filter}");
        let channel = one(client.subscribe(route, "watched", filter).await);
        let barrier_channel = one(client.subscribe(barrier_route, "barrier", json!({})).await);
        Subscriber { label, client, channel, barrier_channel, last_offset: 0 }
    }

    /// Every publication before the barrier row `barrier_id`'s `created`, in arrival order (see the module doc).
    async fn until_barrier(&mut self, barrier_id: &Value) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let p = self
                .client
                .next_publication(PATIENCE)
                .await
                .unwrap_or_else(|| panic!("{}: no barrier {barrier_id}; got before it: {got:?}", self.label));
            if p["channel"] == self.barrier_channel.as_str()
                && p["action"] == "created"
                && p["data"]["id"] == *barrier_id
            {
                return got;
            }
            got.push(p);
        }
    }
}

/// Waits until every subscriber has seen a barrier, dropping what arrived before it. A write's reply to the writer
/// may reach it before the fan-out has delivered that write, so a subscription made right after the setup writes
/// can still receive their publications; they belong to the setup, not to what the tests measure.
async fn settle(writer: &mut Client, subs: &mut [Subscriber], route: &str) {
    let barrier_id = barrier(writer, route, 0).await;
    for sub in subs {
        for p in sub.until_barrier(&barrier_id).await {
            if let Some(offset) = p["offset"].as_u64().filter(|_| p["channel"] == sub.channel.as_str()) {
                sub.last_offset = sub.last_offset.max(offset);
            }
        }
    }
}

fn one(mut channels: Vec<String>) -> String {
    assert_eq!(channels.len(), 1, "one server channel per subscription: {channels:?}");
    channels.pop().expect("one channel")
}

/// Creates a row on `route` that every subscriber's barrier subscription sees; returns its id.
async fn barrier(writer: &mut Client, route: &str, n: usize) -> Value {
    let args = match route {
        "todo-list" => json!({"name": format!("barrier {n}")}),
        _ => json!({"text": format!("barrier {n}"), "todo_list": 2}),
    };
    writer.ok(route, "create", args).await["id"].clone()
}

/// The publish fields of an item image plus `id` and `_type`.
fn item_data(id: &Value, fields: &Map<String, Value>, keys: &[&str]) -> Value {
    let mut data = Map::new();
    data.insert("id".into(), id.clone());
    data.insert("_type".into(), json!("todo_item"));
    for key in keys {
        data.insert((*key).into(), fields[*key].clone());
    }
    Value::Object(data)
}

/// Checks the frame shape shared by every publication and returns its offset.
fn check_frame(p: &Value, channel: &str, problems: &mut Vec<String>, who: &str) -> Option<u64> {
    let keys: BTreeSet<&str> = p.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    if keys != BTreeSet::from(["channel", "action", "data", "offset"]) {
        problems.push(format!("{who}: frame keys {keys:?}, want channel, action, data, offset: {p}"));
    }
    if p["channel"] != channel {
        problems.push(format!("{who}: channel {}, want the subscribe reply's {channel:?}", p["channel"]));
    }
    // The channel name may say `secret`: it echoes the subscriber's own filter. The data may not.
    if p["data"].get("secret").is_some() {
        problems.push(format!("{who}: an unpublished field left the server: {p}"));
    }
    let offset = p["offset"].as_u64();
    if offset.is_none() {
        problems.push(format!("{who}: offset is not an unsigned integer: {p}"));
    }
    offset
}

#[tokio::test]
async fn ws_publish_table() {
    let server = spawn().await;
    let mut writer = server.client().await;
    for (want_id, name) in [(1, "List one"), (2, "List two")] {
        let list = writer.ok("todo-list", "create", json!({"name": name})).await;
        assert_eq!(list["id"], want_id, "the table's filters name list ids 1 and 2: {list}");
    }
    let mut subs = Vec::new();
    for (filter, _) in TABLE {
        let filter: Value = serde_json::from_str(filter).expect("table filter is JSON");
        subs.push(Subscriber::new(&server, "todo-item", filter, "todo-list").await);
    }
    let distinct: BTreeSet<&str> = subs.iter().map(|s| s.channel.as_str()).collect();
    assert_eq!(distinct.len(), subs.len(), "each filter has its own server channel");
    settle(&mut writer, &mut subs, "todo-list").await;

    let mut problems = Vec::new();
    let mut id = Value::Null;
    // The published image of the item after the previous step.
    let mut image = Map::new();
    let mut last_step_offset = 0;
    for step in 0..7 {
        let (label, verb, args) = steps(&id)[step].clone();
        let reply = writer.ok("todo-item", verb, args.clone()).await;
        assert!(reply.get("secret").is_none(), "{label}: the reply carries an unpublished field: {reply}");
        if step == 0 {
            id = reply["id"].clone();
        }
        // The expected image follows from the writes alone, not from what the server reports.
        let before = image.clone();
        if verb == "delete" {
            image.clear();
        } else {
            for key in ITEM_PUBLISH {
                if let Some(value) = args.get(key) {
                    image.insert(key.to_owned(), value.clone());
                }
            }
        }

        let barrier_id = barrier(&mut writer, "todo-list", step + 1).await;
        let mut step_offsets = BTreeSet::new();
        for (sub, (_, wants)) in subs.iter_mut().zip(TABLE) {
            let got = sub.until_barrier(&barrier_id).await;
            let who = format!("step `{label}`, {}", sub.label);
            let want = match wants[step] {
                Want::Nothing => None,
                Want::Created => Some(("created", item_data(&id, &image, &ITEM_PUBLISH))),
                Want::Updated(keys) => Some(("updated", item_data(&id, &image, keys))),
                Want::Deleted => Some(("deleted", item_data(&id, &before, &[]))),
            };
            match (&want, got.as_slice()) {
                (None, []) => {}
                (Some((action, data)), [p]) => {
                    if let Some(offset) = check_frame(p, &sub.channel, &mut problems, &who) {
                        if offset <= sub.last_offset {
                            problems.push(format!("{who}: offset {offset} after {}", sub.last_offset));
                        }
                        sub.last_offset = offset;
                        step_offsets.insert(offset);
                    }
                    if p["action"] != *action || p["data"] != *data {
                        problems.push(format!("{who}: got {} {}, want {action} {data}", p["action"], p["data"]));
                    }
                }
                _ => problems.push(format!("{who}: got {}, want {want:?}", Value::from(got.clone()))),
            }
        }
        // One change, one offset, whoever receives it; and the item model's offsets grow step by step.
        if step_offsets.len() > 1 {
            problems.push(format!("step `{label}`: one change published under offsets {step_offsets:?}"));
        }
        if let Some(&offset) = step_offsets.first() {
            if offset <= last_step_offset {
                problems.push(format!("step `{label}`: offset {offset} does not follow {last_step_offset}"));
            }
            last_step_offset = offset;
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test]
async fn ws_publish_list_delete_cascades_to_item_subscribers() {
    let server = spawn().await;
    let mut writer = server.client().await;
    let list_one = writer.ok("todo-list", "create", json!({"name": "List one"})).await["id"].clone();
    let list_two = writer.ok("todo-list", "create", json!({"name": "List two"})).await["id"].clone();
    let mut doomed = BTreeSet::new();
    let mut doomed_open = BTreeSet::new();
    for (text, done, list) in [("a", false, &list_one), ("b", true, &list_one), ("c", false, &list_two)] {
        let item = writer.ok("todo-item", "create", json!({"text": text, "done": done, "todo_list": list})).await;
        let id = item["id"].as_i64().expect("item id");
        if list == &list_one {
            doomed.insert(id);
            if !done {
                doomed_open.insert(id);
            }
        }
    }
    let cases = [
        (json!({"todo_list__id": list_one}), doomed.clone()),
        (json!({"todo_list__id__in": [list_one, list_two]}), doomed.clone()),
        (json!({}), doomed.clone()),
        (json!({"done": false}), doomed_open),
        (json!({"todo_list__name": "List one"}), doomed.clone()),
        (json!({"todo_list__id": list_two}), BTreeSet::new()),
    ];
    let mut subs = Vec::new();
    for (filter, _) in &cases {
        subs.push(Subscriber::new(&server, "todo-item", filter.clone(), "todo-list").await);
    }
    settle(&mut writer, &mut subs, "todo-list").await;

    writer.ok("todo-list", "delete", json!({"id": list_one})).await;
    let barrier_id = barrier(&mut writer, "todo-list", 1).await;

    let mut problems = Vec::new();
    for (sub, (_, want)) in subs.iter_mut().zip(&cases) {
        let got = sub.until_barrier(&barrier_id).await;
        let mut deleted = BTreeSet::new();
        for p in got.iter().filter(|p| p["channel"] != sub.barrier_channel.as_str()) {
            let who = format!("cascade, {}", sub.label);
            if let Some(offset) = check_frame(p, &sub.channel, &mut problems, &who) {
                if offset <= sub.last_offset {
                    problems.push(format!("{who}: offset {offset} after {}", sub.last_offset));
                }
                sub.last_offset = offset;
            }
            let id = p["data"]["id"].as_i64().unwrap_or(-1);
            if p["action"] != "deleted" || p["data"] != json!({"id": id, "_type": "todo_item"}) {
                problems.push(format!("{who}: got {p}, want deleted {{id, _type}}"));
            }
            deleted.insert(id);
        }
        if deleted != *want {
            problems.push(format!("cascade, {}: deleted ids {deleted:?}, want {want:?}", sub.label));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test]
async fn ws_publish_same_filter_gets_the_same_frame() {
    let server = spawn().await;
    let mut writer = server.client().await;
    writer.ok("todo-list", "create", json!({"name": "List one"})).await;
    let mut first = server.client().await;
    let mut second = server.client().await;
    let mut other = server.client().await;
    let channel = one(first.subscribe("todo-item", "mine", json!({"todo_list__id": 1})).await);
    // A different local name on the same filter is the same server channel.
    assert_eq!(one(second.subscribe("todo-item", "theirs", json!({"todo_list__id": 1})).await), channel);
    let other_channel = one(other.subscribe("todo-item", "all", json!({})).await);
    assert_ne!(other_channel, channel);

    let item = writer.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1})).await;
    writer.ok("todo-item", "update", json!({"id": item["id"], "done": true})).await;
    for action in ["created", "updated"] {
        let a = first.next_publication(PATIENCE).await.expect("first subscriber's publication");
        let b = second.next_publication(PATIENCE).await.expect("second subscriber's publication");
        let c = other.next_publication(PATIENCE).await.expect("unfiltered subscriber's publication");
        assert_eq!(a["action"], action, "{a}");
        assert_eq!(a["channel"], channel.as_str(), "{a}");
        // serde_json keeps key order here (preserve_order), so this compares the frames as sent, key order included;
        // the test kit parses every frame, so the raw bytes themselves are not at hand.
        assert_eq!(a.to_string(), b.to_string(), "subscribers of one channel get one encoding");
        assert_eq!(c["channel"], other_channel.as_str(), "{c}");
        assert_eq!((&c["action"], &c["data"], &c["offset"]), (&a["action"], &a["data"], &a["offset"]));
    }
}

#[tokio::test]
async fn ws_publish_list_renames_reach_list_subscribers() {
    let server = spawn().await;
    let mut writer = server.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "List one"})).await;
    writer.ok("todo-list", "create", json!({"name": "List two"})).await;
    let id = list["id"].clone();
    let renamed = json!({"id": id, "_type": "todo_list", "name": "Renamed"});
    let cases = [
        (json!({}), Some(("updated", renamed.clone()))),
        (json!({"id": id}), Some(("updated", renamed.clone()))),
        (json!({"name": "List one"}), Some(("deleted", json!({"id": id, "_type": "todo_list"})))),
        (
            json!({"name": "Renamed"}),
            Some((
                "created",
                json!({"id": id, "_type": "todo_list", "name": "Renamed",
                                                             "rank": null}),
            )),
        ),
        (json!({"name": "List two"}), None),
    ];
    let mut subs = Vec::new();
    for (filter, _) in &cases {
        subs.push(Subscriber::new(&server, "todo-list", filter.clone(), "todo-item").await);
    }
    settle(&mut writer, &mut subs, "todo-item").await;

    writer.ok("todo-list", "update", json!({"id": id, "name": "Renamed"})).await;
    let barrier_id = barrier(&mut writer, "todo-item", 1).await;

    let mut problems = Vec::new();
    for (sub, (_, want)) in subs.iter_mut().zip(&cases) {
        let got = sub.until_barrier(&barrier_id).await;
        let who = format!("rename, {}", sub.label);
        match (want, got.as_slice()) {
            (None, []) => {}
            (Some((action, data)), [p]) => {
                check_frame(p, &sub.channel, &mut problems, &who);
                if p["action"] != *action || p["data"] != *data {
                    problems.push(format!("{who}: got {} {}, want {action} {data}", p["action"], p["data"]));
                }
            }
            _ => problems.push(format!("{who}: got {}, want {want:?}", Value::from(got.clone()))),
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
