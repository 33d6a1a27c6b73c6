//! Every built-in verb against a real server over a real WebSocket: replies, errors and what subscribers see.

mod common;

use common::{QUIET, publish, spawn};
use drakon_testkit::{Client, PATIENCE, TestServer};
use serde_json::{Value, json};

/// The todo app plus what the todo example lacks: a unique field, a published field clients may update but not
/// create, a field no route publishes, a paged route, a route narrowed by a fixed filter and a verb list, and
/// references that restrict or set null on delete.
const APP: &str = r#"
[server]
api_key = "test-key"

[models.todo_list.fields]
name = { type = "text", unique = true }
description = { type = "text", default = "" }

[models.todo_item.fields]
text = { type = "text" }
done = { type = "bool", default = false }
rank = { type = "int", default = 0 }
note = { type = "text", default = "internal" }
todo_list = { type = "ref", to = "todo_list", on_delete = "cascade" }

[models.person.fields]
name = { type = "text" }

[models.team.fields]
name = { type = "text" }

[models.task.fields]
title = { type = "text" }
assignee = { type = "ref", to = "person", optional = true, on_delete = "set_null" }
team = { type = "ref", to = "team", optional = true, on_delete = "restrict" }

[routes.todo-list]
model = "todo_list"
publish_fields = ["name", "description"]
update_fields = ["name", "description"]

[routes.todo-item]
model = "todo_item"
publish_fields = ["text", "done", "rank", "todo_list"]
update_fields = ["done", "text", "rank"]
create_fields = ["text", "done", "todo_list"]
params = { list_id = "todo_list__id" }

[routes.paged-items]
model = "todo_item"
publish_fields = ["text", "rank"]
page_size = 2

[routes.open-items]
model = "todo_item"
publish_fields = ["text", "done"]
filters = { done = false }
verbs = ["get_list", "get_single", "subscribe", "unsubscribe"]

[routes.person]
model = "person"
update_fields = ["name"]

[routes.team]
model = "team"
update_fields = ["name"]

[routes.task]
model = "task"
update_fields = ["title", "assignee", "team"]

[models.marker.fields]
n = { type = "int", default = 0 }

[routes.marker]
model = "marker"

[routes.chat]
kind = "channel"
channels = ["chatroom", "room.*"]
"#;

async fn app() -> (TestServer, Client) {
    let server = spawn(APP).await;
    let client = server.client().await;
    (server, client)
}

/// Waits until every change committed so far has been fanned out, and drops what that delivered to `watcher`.
///
/// A write's reply can reach its client before the change reaches the hub, so a subscription made just after a
/// write may still receive that write's event (docs/protocol.md: such events carry offsets the client already has). The
/// fan-out keeps commit order, so once an event for a later marker write arrives, nothing older is still in flight.
async fn settle(writer: &mut Client, watcher: &mut Client) {
    watcher.subscribe("marker", "settle", json!({})).await;
    let marker = writer.ok("marker", "create", json!({})).await;
    loop {
        let p = watcher.next_publication(PATIENCE).await.expect("the marker event");
        if p["channel"] == "marker|" && p["data"]["id"] == marker["id"] {
            break;
        }
    }
    watcher.ok("marker", "unsubscribe", json!({"channel": "settle"})).await;
}

/// Two lists and four items, created in this order: items get ids 1 to 4.
/// | id | text   | done  | rank | list |
/// | 1  | milk   | false | 3    | A    |
/// | 2  | eggs   | true  | 1    | A    |
/// | 3  | bread  | false | 2    | B    |
/// | 4  | butter | true  | 5    | B    |
async fn groceries(c: &mut Client) -> (i64, i64) {
    let a = c.ok("todo-list", "create", json!({"name": "A"})).await["id"].as_i64().unwrap();
    let b = c.ok("todo-list", "create", json!({"name": "B"})).await["id"].as_i64().unwrap();
    for (text, done, rank, list) in
        [("milk", false, 3, a), ("eggs", true, 1, a), ("bread", false, 2, b), ("butter", true, 5, b)]
    {
        let item = c.ok("todo-item", "create", json!({"text": text, "done": done, "todo_list": list})).await;
        c.ok("todo-item", "update", json!({"id": item["id"], "rank": rank})).await;
    }
    (a, b)
}

fn texts(rows: &Value) -> Vec<&str> {
    rows.as_array().expect("a list").iter().map(|r| r["text"].as_str().expect("text")).collect()
}

fn keys(row: &Value) -> Vec<&str> {
    row.as_object().expect("an object").keys().map(String::as_str).collect()
}

#[tokio::test]
async fn get_list_filters_by_typed_lookups() {
    let (_server, mut c) = app().await;
    let (a, b) = groceries(&mut c).await;
    let cases = [
        (json!({}), vec!["milk", "eggs", "bread", "butter"]),
        (json!({"done": true}), vec!["eggs", "butter"]),
        (json!({"done": false}), vec!["milk", "bread"]),
        (json!({"done__ne": true}), vec!["milk", "bread"]),
        (json!({"list_id": a}), vec!["milk", "eggs"]),
        (json!({"todo_list__id": b}), vec!["bread", "butter"]),
        (json!({"todo_list": a}), vec!["milk", "eggs"]),
        (json!({"todo_list__name": "B"}), vec!["bread", "butter"]),
        (json!({"todo_list__name__in": ["A", "Z"]}), vec!["milk", "eggs"]),
        (json!({"rank__gte": 3}), vec!["milk", "butter"]),
        (json!({"rank__lt": 2}), vec!["eggs"]),
        (json!({"text__startswith": "b"}), vec!["bread", "butter"]),
        (json!({"text__contains": "utt"}), vec!["butter"]),
        (json!({"text__icontains": "MIL"}), vec!["milk"]),
        (json!({"id__in": [1, 3]}), vec!["milk", "bread"]),
        (json!({"text": "milk"}), vec!["milk"]),
        (json!({"text": "nothing"}), vec![]),
        (json!({"done": false, "rank__lt": 3}), vec!["bread"]),
        (json!({"list_id": a, "done": true}), vec!["eggs"]),
    ];
    for (filter, want) in cases {
        let rows = c.ok("todo-item", "get_list", filter.clone()).await;
        assert_eq!(texts(&rows), want, "get_list {filter}");
    }
    // Rows carry id, _type and publish_fields only: `note` is not published by this route.
    let rows = c.ok("todo-item", "get_list", json!({"id": 1})).await;
    assert_eq!(
        rows,
        json!([{"id": 1, "_type": "todo_item", "text": "milk", "done": false, "rank": 3, "todo_list": a}])
    );
    let rows = c.ok("paged-items", "get_list", json!({"id": 1})).await;
    assert_eq!(rows, json!([{"id": 1, "_type": "todo_item", "text": "milk", "rank": 3}]));
}

#[tokio::test]
async fn get_list_orders_ascending_descending_and_by_several_fields() {
    let (_server, mut c) = app().await;
    groceries(&mut c).await;
    let rows = c.ok("todo-item", "get_list", json!({})).await;
    assert_eq!(texts(&rows), ["milk", "eggs", "bread", "butter"], "by id unless told otherwise");
    let cases = [
        (json!("rank"), vec!["eggs", "bread", "milk", "butter"]),
        (json!("-rank"), vec!["butter", "milk", "bread", "eggs"]),
        (json!("text"), vec!["bread", "butter", "eggs", "milk"]),
        (json!("-id"), vec!["butter", "bread", "eggs", "milk"]),
        (json!(["done", "-rank"]), vec!["milk", "bread", "butter", "eggs"]),
        (json!(["-done", "text"]), vec!["butter", "eggs", "bread", "milk"]),
        (json!(["todo_list", "-id"]), vec!["eggs", "milk", "butter", "bread"]),
    ];
    for (order, want) in cases {
        let rows = c.ok("todo-item", "get_list", json!({"_order": order})).await;
        assert_eq!(texts(&rows), want, "_order {order}");
    }
    let rows = c.ok("todo-item", "get_list", json!({"_order": "-rank", "done": false})).await;
    assert_eq!(texts(&rows), ["milk", "bread"], "order applies after the filter");
    for bad in [json!("colour"), json!("-colour"), json!(5), json!(["rank", 1]), json!("note")] {
        c.err("todo-item", "get_list", json!({"_order": bad}), "invalid_args").await;
    }
}

#[tokio::test]
async fn get_list_pages_report_their_position() {
    let (_server, mut c) = app().await;
    groceries(&mut c).await;
    c.ok("todo-item", "create", json!({"text": "jam", "todo_list": 1})).await;

    // Without `_page`: the first page, and no `page` echoed in the context.
    let reply = c.call("paged-items", "get_list", json!({})).await;
    assert_eq!(reply["context"]["state"], "success", "{reply}");
    assert_eq!(texts(&reply["data"]), ["milk", "eggs"]);
    assert_eq!(
        reply["context"]["client_context"]["page"],
        json!({"page": 1, "page_count": 3, "page_size": 2, "total": 5, "has_next": true, "has_previous": false})
    );
    assert!(reply["context"].get("page").is_none(), "page echoed without _page: {reply}");

    let cases = [
        (json!(1), 1, vec!["milk", "eggs"], true, false),
        (json!(2), 2, vec!["bread", "butter"], true, true),
        (json!(3), 3, vec!["jam"], false, true),
        (json!("2"), 2, vec!["bread", "butter"], true, true),
    ];
    for (page, number, want, has_next, has_previous) in cases {
        let reply = c.call("paged-items", "get_list", json!({"_page": page})).await;
        assert_eq!(reply["context"]["state"], "success", "_page {page}: {reply}");
        assert_eq!(texts(&reply["data"]), want, "_page {page}");
        assert_eq!(
            reply["context"]["client_context"]["page"],
            json!({
                "page": number, "page_count": 3, "page_size": 2, "total": 5,
                "has_next": has_next, "has_previous": has_previous,
            }),
            "_page {page}"
        );
        assert_eq!(reply["context"]["page"], number, "_page {page} is echoed: {reply}");
    }

    // Pages count the filtered rows, in the requested order.
    let reply = c.call("paged-items", "get_list", json!({"_page": 2, "_order": "-rank", "rank__gte": 1})).await;
    assert_eq!(texts(&reply["data"]), ["bread", "eggs"], "{reply}");
    assert_eq!(reply["context"]["client_context"]["page"]["total"], 4, "{reply}");
    assert_eq!(reply["context"]["client_context"]["page"]["page_count"], 2, "{reply}");

    // An empty result is one empty page; past the last page is an error.
    let reply = c.call("paged-items", "get_list", json!({"text": "none"})).await;
    assert_eq!(reply["data"], json!([]));
    assert_eq!(
        reply["context"]["client_context"]["page"],
        json!({"page": 1, "page_count": 1, "page_size": 2, "total": 0, "has_next": false, "has_previous": false})
    );
    c.err("paged-items", "get_list", json!({"_page": 4}), "page_out_of_range").await;
    c.err("paged-items", "get_list", json!({"_page": 2, "text": "none"}), "page_out_of_range").await;
    // So is a page whose first row's position overflows the database's integers: the client's mistake, never an
    // `internal` error.
    for page in [json!(92_233_720_368_547_760_u64), json!(1_u64 << 63), json!(u64::MAX), json!("92233720368547760")] {
        c.err("paged-items", "get_list", json!({"_page": page}), "page_out_of_range").await;
    }
    // `_order` has a bound of its own, below what the database refuses (SQLite: 2,000 terms).
    let long: Vec<&str> = std::iter::repeat_n("-rank", 2001).collect();
    c.err("paged-items", "get_list", json!({"_order": long}), "limit_exceeded").await;
    c.err("paged-items", "subscribe", json!({"channel": "c", "snapshot": true, "_order": long}), "limit_exceeded")
        .await;
}

#[tokio::test]
async fn get_single_finds_only_rows_the_route_shows() {
    let (_server, mut c) = app().await;
    let (a, _) = groceries(&mut c).await;
    let row = c.ok("todo-item", "get_single", json!({"id": 2})).await;
    assert_eq!(row, json!({"id": 2, "_type": "todo_item", "text": "eggs", "done": true, "rank": 1, "todo_list": a}));
    // A client may send back the object's `_type` and extra filters that the row matches.
    let same = c.ok("todo-item", "get_single", json!({"id": 2, "_type": "todo_item", "list_id": a})).await;
    assert_eq!(same, row);

    let missing = c.err("todo-item", "get_single", json!({"id": 99}), "not_found").await;
    assert!(missing["message"].as_str().unwrap().contains("99"), "{missing}");
    // The row exists but fails the extra filter.
    c.err("todo-item", "get_single", json!({"id": 2, "done": false}), "not_found").await;
    // open-items only shows items that are not done: eggs is done, milk is not.
    c.err("open-items", "get_single", json!({"id": 2}), "not_found").await;
    let open = c.ok("open-items", "get_single", json!({"id": 1})).await;
    assert_eq!(open, json!({"id": 1, "_type": "todo_item", "text": "milk", "done": false}));
    let listed = c.ok("open-items", "get_list", json!({})).await;
    assert_eq!(texts(&listed), ["milk", "bread"]);
}

#[tokio::test]
async fn create_replies_with_the_full_serialization_and_applies_defaults() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    watcher.subscribe("todo-item", "items", json!({})).await;

    let list = c.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    assert_eq!(list, json!({"id": 1, "_type": "todo_list", "name": "Groceries", "description": ""}));
    // Clients may send back `_type` and a null `id`, as a fresh object in a UI has them.
    let item =
        c.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1, "_type": "todo_item", "id": null})).await;
    assert_eq!(item, json!({"id": 1, "_type": "todo_item", "text": "milk", "done": false, "rank": 0, "todo_list": 1}));
    assert_eq!(keys(&item), ["id", "_type", "text", "done", "rank", "todo_list"]);
    assert_eq!(c.ok("todo-item", "get_single", json!({"id": 1})).await, item);

    let created = watcher.next_publication(PATIENCE).await.expect("a created event");
    assert_eq!(created, json!({"channel": "todo-item|", "action": "created", "data": item, "offset": 1}));
}

#[tokio::test]
async fn create_rejects_bad_writes_with_field_errors() {
    let (_server, mut c) = app().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    let required = json!(["this field is required"]);
    let cases = [
        ("unknown field", json!({"text": "x", "todo_list": 1, "colour": "red"}), "unknown_field", vec!["colour"]),
        (
            "published but not in create_fields",
            json!({"text": "x", "todo_list": 1, "rank": 2}),
            "read_only_field",
            vec!["rank"],
        ),
        ("an id", json!({"text": "x", "todo_list": 1, "id": 7}), "read_only_field", vec!["id"]),
        ("missing text", json!({"todo_list": 1}), "validation_failed", vec!["text"]),
        ("nothing", json!({}), "validation_failed", vec!["text", "todo_list"]),
        ("ref to a missing row", json!({"text": "x", "todo_list": 99}), "validation_failed", vec!["todo_list"]),
        ("wrong type", json!({"text": 5, "todo_list": 1}), "wrong_type", vec!["text"]),
        ("bool as a string", json!({"text": "x", "done": "false", "todo_list": 1}), "wrong_type", vec!["done"]),
        ("null for a required field", json!({"text": null, "todo_list": 1}), "validation_failed", vec!["text"]),
    ];
    for (name, args, code, fields) in cases {
        let error = c.err("todo-item", "create", args.clone(), code).await;
        let got: Vec<&str> =
            error["fields"].as_object().map(|f| f.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(got, fields, "{name}: {error}");
        for field in &fields {
            let messages = error["fields"][field].as_array().unwrap_or_else(|| panic!("{name}: {error}"));
            assert!(!messages.is_empty() && messages.iter().all(Value::is_string), "{name}: {error}");
        }
    }
    let error = c.err("todo-item", "create", json!({"todo_list": 1}), "validation_failed").await;
    assert_eq!(error["fields"]["text"], required);

    // A unique violation is a conflict that names the field.
    let error = c.err("todo-list", "create", json!({"name": "A"}), "conflict").await;
    assert_eq!(error["fields"], json!({"name": ["must be unique"]}), "{error}");

    // None of the rejected writes left a row behind.
    assert_eq!(c.ok("todo-item", "get_list", json!({})).await, json!([]));
    assert_eq!(c.ok("todo-list", "get_list", json!({})).await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn update_writes_update_fields_and_replies_with_what_changed() {
    let (_server, mut c) = app().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    c.ok("todo-list", "create", json!({"name": "B"})).await;
    let item = c.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1})).await;

    let reply = c.ok("todo-item", "update", json!({"id": 1, "done": true})).await;
    assert_eq!(reply, json!({"id": 1, "_type": "todo_item", "done": true}));

    // The whole object sent back, with id, _type and an unchanged read-only `todo_list`, changes what differs.
    let mut whole = item.clone();
    whole["done"] = json!(true);
    whole["text"] = json!("oat milk");
    whole["rank"] = json!(4);
    let reply = c.ok("todo-item", "update", whole).await;
    assert_eq!(reply, json!({"id": 1, "_type": "todo_item", "text": "oat milk", "rank": 4}));

    // Nothing changed: the reply names the row only.
    let reply = c.ok("todo-item", "update", json!({"id": 1, "text": "oat milk", "todo_list": 1})).await;
    assert_eq!(reply, json!({"id": 1, "_type": "todo_item"}));

    let cases = [
        ("changing a read-only field", json!({"id": 1, "todo_list": 2}), "read_only_field", Some("todo_list")),
        ("an unknown field", json!({"id": 1, "colour": "red"}), "unknown_field", Some("colour")),
        ("a field the route does not publish", json!({"id": 1, "note": "x"}), "unknown_field", Some("note")),
        ("a wrong type", json!({"id": 1, "done": "false"}), "wrong_type", Some("done")),
        ("null for a required field", json!({"id": 1, "text": null}), "validation_failed", Some("text")),
        ("a missing row", json!({"id": 99, "done": false}), "not_found", None),
        ("no id", json!({"done": false}), "invalid_args", Some("id")),
        ("an id that is not an integer", json!({"id": "1", "done": false}), "wrong_type", Some("id")),
    ];
    for (name, args, code, field) in cases {
        let error = c.err("todo-item", "update", args, code).await;
        if let Some(field) = field {
            assert!(error["fields"][field].is_array(), "{name}: {error}");
        }
    }
    // A rejected update writes nothing, not even its valid parts.
    c.err("todo-item", "update", json!({"id": 1, "done": false, "todo_list": 2}), "read_only_field").await;
    let row = c.ok("todo-item", "get_single", json!({"id": 1})).await;
    assert_eq!(
        row,
        json!({"id": 1, "_type": "todo_item", "text": "oat milk", "done": true, "rank": 4, "todo_list": 1})
    );
}

#[tokio::test]
async fn an_update_that_changes_nothing_published_publishes_nothing() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    watcher.subscribe("todo-item", "items", json!({"list_id": 1})).await;
    watcher.subscribe("open-items", "open", json!({})).await;
    c.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1})).await;
    let mut first = watcher.drain_publications(QUIET).await;
    first.sort_by_key(|p| p["channel"].as_str().unwrap().to_owned());
    assert_eq!(first.len(), 2, "one created per channel: {first:?}");
    assert_eq!(first[0]["channel"], "open-items|");
    assert_eq!(first[1]["channel"], "todo-item|todo_list__id:1");

    // Same values: no write at all.
    c.ok("todo-item", "update", json!({"id": 1, "text": "milk", "done": false})).await;
    // `rank` is published by todo-item but not by open-items: only todo-item's subscribers hear of it.
    c.ok("todo-item", "update", json!({"id": 1, "rank": 7})).await;
    let next = watcher.next_publication(PATIENCE).await.expect("the rank update");
    assert_eq!(
        next,
        json!({"channel": "todo-item|todo_list__id:1", "action": "updated",
               "data": {"id": 1, "_type": "todo_item", "rank": 7}, "offset": 2}),
        "the no-op update published something"
    );
    // A later change that both routes publish is the next thing each channel sees.
    c.ok("todo-item", "update", json!({"id": 1, "text": "oat milk"})).await;
    let mut last = watcher.drain_publications(QUIET).await;
    last.sort_by_key(|p| p["channel"].as_str().unwrap().to_owned());
    let channels: Vec<&str> = last.iter().map(|p| p["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["open-items|", "todo-item|todo_list__id:1"], "{last:?}");
    for p in &last {
        assert_eq!(p["data"], json!({"id": 1, "_type": "todo_item", "text": "oat milk"}), "{p}");
    }
}

#[tokio::test]
async fn delete_replies_with_the_row_and_cascades_to_subscribers() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    let (a, b) = groceries(&mut c).await;
    let items = watcher.subscribe("todo-item", "items", json!({"list_id": a})).await;
    let other = watcher.subscribe("todo-item", "other", json!({"list_id": b})).await;
    let lists = watcher.subscribe("todo-list", "lists", json!({})).await;
    settle(&mut c, &mut watcher).await;

    let reply = c.ok("todo-list", "delete", json!({"id": a})).await;
    assert_eq!(reply, json!({"id": a, "_type": "todo_list", "name": "A", "description": ""}));

    let mut seen = Vec::new();
    for _ in 0..3 {
        let p = watcher.next_publication(PATIENCE).await.expect("a deleted event per row");
        assert_eq!(p["action"], "deleted", "{p}");
        seen.push((p["channel"].as_str().unwrap().to_owned(), p["data"].clone()));
    }
    seen.sort_by_key(|(channel, data)| (channel.clone(), data["id"].as_i64()));
    assert_eq!(
        seen,
        [
            (items[0].clone(), json!({"id": 1, "_type": "todo_item"})),
            (items[0].clone(), json!({"id": 2, "_type": "todo_item"})),
            (lists[0].clone(), json!({"id": a, "_type": "todo_list"})),
        ]
    );
    assert_eq!(texts(&c.ok("todo-item", "get_list", json!({})).await), ["bread", "butter"]);

    // A single item: the reply is its full serialization; list B's channel is the only one to hear.
    let reply = c.ok("todo-item", "delete", json!({"id": 3, "_type": "todo_item"})).await;
    assert_eq!(
        reply,
        json!({"id": 3, "_type": "todo_item", "text": "bread", "done": false, "rank": 2, "todo_list": b})
    );
    let p = watcher.next_publication(PATIENCE).await.expect("deleted on list B");
    assert_eq!(p["channel"], other[0].as_str());
    assert_eq!(p["data"], json!({"id": 3, "_type": "todo_item"}));
    assert!(watcher.drain_publications(QUIET).await.is_empty());

    c.err("todo-item", "delete", json!({"id": 3}), "not_found").await;
    c.err("todo-item", "delete", json!({}), "invalid_args").await;
    // open-items hides done items, and does not allow delete at all.
    c.err("open-items", "delete", json!({"id": 4}), "verb_not_allowed").await;
}

#[tokio::test]
async fn delete_restricted_by_a_reference_is_a_conflict() {
    let (_server, mut c) = app().await;
    let team = c.ok("team", "create", json!({"name": "core"})).await;
    let task = c.ok("task", "create", json!({"title": "ship", "team": team["id"]})).await;
    let error = c.err("team", "delete", json!({"id": team["id"]}), "conflict").await;
    assert!(error["message"].as_str().unwrap().contains("task"), "the message names the referrer: {error}");
    assert_eq!(c.ok("team", "get_single", json!({"id": team["id"]})).await, team, "the team survived");

    c.ok("task", "update", json!({"id": task["id"], "team": null})).await;
    c.ok("team", "delete", json!({"id": team["id"]})).await;
    c.err("team", "get_single", json!({"id": team["id"]}), "not_found").await;
}

#[tokio::test]
async fn delete_with_set_null_publishes_the_referrers_update() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    let ann = c.ok("person", "create", json!({"name": "ann"})).await;
    let task = c.ok("task", "create", json!({"title": "ship", "assignee": ann["id"]})).await;
    assert_eq!(task, json!({"id": 1, "_type": "task", "title": "ship", "assignee": ann["id"], "team": null}));
    let all = watcher.subscribe("task", "tasks", json!({})).await;
    let anns = watcher.subscribe("task", "anns", json!({"assignee": ann["id"]})).await;
    settle(&mut c, &mut watcher).await;

    c.ok("person", "delete", json!({"id": ann["id"]})).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let p = watcher.next_publication(PATIENCE).await.expect("an event per channel");
        seen.push((p["channel"].as_str().unwrap().to_owned(), p["action"].clone(), p["data"].clone()));
    }
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want = vec![
        (all[0].clone(), json!("updated"), json!({"id": 1, "_type": "task", "assignee": null})),
        (anns[0].clone(), json!("deleted"), json!({"id": 1, "_type": "task"})),
    ];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(seen, want);
    let row = c.ok("task", "get_single", json!({"id": 1})).await;
    assert_eq!(row["assignee"], Value::Null);
}

#[tokio::test]
async fn subscribe_replies_with_channel_data_and_names_channels_by_normalized_filter() {
    let (_server, mut c) = app().await;
    let reply = c.call("todo-item", "subscribe", json!({"channel": "todos", "list_id": 1})).await;
    assert_eq!(reply["data"], json!([]));
    assert_eq!(reply["context"]["state"], "success");
    assert_eq!(
        reply["channel_data"],
        json!({"local_channel": "todos", "remote_channels": ["todo-item|todo_list__id:1"], "action": "subscribe"})
    );
    // A route param and the lookup it stands for name the same channel; keys are sorted, values are JSON.
    let cases = [
        (json!({"todo_list__id": 1}), "todo-item|todo_list__id:1"),
        (json!({}), "todo-item|"),
        (json!({"done": false, "list_id": 1}), "todo-item|done:false|todo_list__id:1"),
        (json!({"list_id": 1, "done": false}), "todo-item|done:false|todo_list__id:1"),
        (json!({"text": "a b"}), "todo-item|text:\"a b\""),
        (json!({"id__in": [1, 2]}), "todo-item|id__in:[1,2]"),
        // One filter, one name: however the client spells it.
        (json!({"todo_list": 1}), "todo-item|todo_list__id:1"),
        (json!({"done__eq": false, "todo_list__id__eq": 1}), "todo-item|done:false|todo_list__id:1"),
        (json!({"todo_list__isnull": false}), "todo-item|todo_list__id__isnull:false"),
    ];
    for (i, (filter, remote)) in cases.into_iter().enumerate() {
        let remotes = c.subscribe("todo-item", &format!("local{i}"), filter.clone()).await;
        assert_eq!(remotes, [remote], "subscribe {filter}");
    }
    let reply = c.call("todo-item", "unsubscribe", json!({"channel": "todos", "todo_list__id": 1})).await;
    assert_eq!(reply["data"], "unsubscribed");
    assert_eq!(
        reply["channel_data"],
        json!({"local_channel": "todos", "remote_channels": ["todo-item|todo_list__id:1"], "action": "unsubscribe"})
    );
}

#[tokio::test]
async fn subscriptions_follow_rows_into_and_out_of_their_filter() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    let open = watcher.subscribe("todo-item", "open", json!({"done": false})).await;
    c.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1})).await;
    c.ok("todo-item", "update", json!({"id": 1, "done": true})).await;
    c.ok("todo-item", "update", json!({"id": 1, "text": "oat milk"})).await;
    c.ok("todo-item", "update", json!({"id": 1, "done": false})).await;
    let want = [
        ("created", json!({"id": 1, "_type": "todo_item", "text": "milk", "done": false, "rank": 0, "todo_list": 1})),
        ("deleted", json!({"id": 1, "_type": "todo_item"})),
        (
            "created",
            json!({"id": 1, "_type": "todo_item", "text": "oat milk", "done": false, "rank": 0, "todo_list": 1}),
        ),
    ];
    for (action, data) in want {
        let p = watcher.next_publication(PATIENCE).await.unwrap_or_else(|| panic!("no {action}"));
        assert_eq!((p["channel"].as_str().unwrap(), p["action"].as_str().unwrap()), (open[0].as_str(), action), "{p}");
        assert_eq!(p["data"], data);
    }
    assert!(watcher.drain_publications(QUIET).await.is_empty(), "the change outside the filter was published");
}

#[tokio::test]
async fn one_connection_holds_many_subscriptions() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    c.ok("todo-list", "create", json!({"name": "B"})).await;
    let a = watcher.subscribe("todo-item", "a", json!({"list_id": 1})).await;
    let b = watcher.subscribe("todo-item", "b", json!({"list_id": 2})).await;
    let lists = watcher.subscribe("todo-list", "lists", json!({})).await;
    settle(&mut c, &mut watcher).await;
    c.ok("todo-item", "create", json!({"text": "in a", "todo_list": 1})).await;
    c.ok("todo-item", "create", json!({"text": "in b", "todo_list": 2})).await;
    c.ok("todo-list", "update", json!({"id": 2, "description": "second"})).await;
    let want =
        [(&a[0], "created", json!("in a")), (&b[0], "created", json!("in b")), (&lists[0], "updated", json!(null))];
    for (channel, action, text) in want {
        let p = watcher.next_publication(PATIENCE).await.unwrap_or_else(|| panic!("nothing on {channel}"));
        assert_eq!((&p["channel"], &p["action"]), (&json!(channel), &json!(action)), "{p}");
        assert_eq!(p["data"]["text"], text, "{p}");
    }
}

#[tokio::test]
async fn two_local_channels_share_a_remote_until_both_unsubscribe() {
    let (server, mut c) = app().await;
    let mut watcher = server.client().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    let x = watcher.subscribe("todo-item", "x", json!({"list_id": 1})).await;
    let y = watcher.subscribe("todo-item", "y", json!({"todo_list__id": 1})).await;
    assert_eq!(x, y, "both locals name one server channel");
    watcher.subscribe("todo-list", "marker", json!({})).await;
    settle(&mut c, &mut watcher).await;

    // One event per server channel: the client maps it to both local channels.
    c.ok("todo-item", "create", json!({"text": "one", "todo_list": 1})).await;
    let p = watcher.next_publication(PATIENCE).await.expect("created");
    assert_eq!((&p["channel"], &p["data"]["text"]), (&json!(x[0]), &json!("one")));

    // Dropping one local keeps the channel live for the other.
    let reply = watcher.call("todo-item", "unsubscribe", json!({"channel": "x", "list_id": 1})).await;
    assert_eq!(reply["channel_data"]["remote_channels"], json!(x), "{reply}");
    c.ok("todo-item", "create", json!({"text": "two", "todo_list": 1})).await;
    let p = watcher.next_publication(PATIENCE).await.expect("still subscribed through y");
    assert_eq!((&p["channel"], &p["data"]["text"]), (&json!(x[0]), &json!("two")));
    watcher.err("todo-item", "unsubscribe", json!({"channel": "x", "list_id": 1}), "not_subscribed").await;

    // Dropping the last local ends the deliveries: the marker is the next event.
    watcher.ok("todo-item", "unsubscribe", json!({"channel": "y", "list_id": 1})).await;
    c.ok("todo-item", "create", json!({"text": "three", "todo_list": 1})).await;
    c.ok("todo-list", "create", json!({"name": "marker"})).await;
    let p = watcher.next_publication(PATIENCE).await.expect("the marker");
    assert_eq!(p["channel"], "todo-list|", "an item event arrived after unsubscribing: {p}");
    assert!(watcher.drain_publications(QUIET).await.is_empty());
}

#[tokio::test]
async fn unsubscribe_and_subscribe_need_a_subscribed_local_channel() {
    let (_server, mut c) = app().await;
    c.err("todo-item", "unsubscribe", json!({"channel": "never"}), "not_subscribed").await;
    c.subscribe("todo-item", "items", json!({"list_id": 1})).await;
    // Same local, other filter: not what was subscribed.
    c.err("todo-item", "unsubscribe", json!({"channel": "items", "list_id": 2}), "not_subscribed").await;
    c.err("todo-item", "unsubscribe", json!({"channel": "other", "list_id": 1}), "not_subscribed").await;
    for verb in ["subscribe", "unsubscribe"] {
        for args in [json!({"list_id": 1}), json!({"channel": ""}), json!({"channel": 5})] {
            let error = c.err("todo-item", verb, args, "invalid_args").await;
            assert!(error["fields"]["channel"].is_array(), "{verb}: {error}");
        }
        c.err("chat", verb, json!({"name": "chatroom"}), "invalid_args").await;
    }
    c.ok("todo-item", "unsubscribe", json!({"channel": "items", "list_id": 1})).await;
    c.err("todo-item", "unsubscribe", json!({"channel": "items", "list_id": 1}), "not_subscribed").await;
}

/// Clients unsubscribe with the arguments they subscribed with (the SwampDragon JS client keeps them), so whatever
/// `subscribe` accepts besides the filter (`snapshot`, `_order`) must not make `unsubscribe` fail.
#[tokio::test]
async fn unsubscribe_accepts_the_arguments_subscribe_took() {
    let (_server, mut c) = app().await;
    let cases = [
        json!({"list_id": 1, "snapshot": true}),
        json!({"list_id": 1, "snapshot": false}),
        json!({"list_id": 1, "snapshot": true, "_order": "-text"}),
    ];
    for (i, args) in cases.into_iter().enumerate() {
        let mut args = args;
        args["channel"] = json!(format!("s{i}"));
        let subscribed = c.call("todo-item", "subscribe", args.clone()).await;
        assert_eq!(subscribed["context"]["state"], "success", "subscribe {args}: {subscribed}");
        let unsubscribed = c.call("todo-item", "unsubscribe", args.clone()).await;
        assert_eq!(unsubscribed["context"]["state"], "success", "unsubscribe {args}: {unsubscribed}");
        assert_eq!(unsubscribed["channel_data"]["remote_channels"], subscribed["channel_data"]["remote_channels"]);
    }
}

#[tokio::test]
async fn routes_refuse_unknown_and_disallowed_verbs() {
    let (_server, mut c) = app().await;
    let cases = [
        ("open-items", "create", json!({"text": "x", "todo_list": 1}), "verb_not_allowed"),
        ("open-items", "update", json!({"id": 1, "done": true}), "verb_not_allowed"),
        ("open-items", "delete", json!({"id": 1}), "verb_not_allowed"),
        ("todo-item", "destroy", json!({"id": 1}), "unknown_verb"),
        ("todo-item", "GET_LIST", json!({}), "unknown_verb"),
        ("chat", "get_list", json!({}), "unknown_verb"),
        ("chat", "create", json!({}), "unknown_verb"),
        ("nope", "get_list", json!({}), "unknown_route"),
        ("todo_item", "get_list", json!({}), "unknown_route"),
        // Admin routes exist for admin sessions only; to a plain client they are unknown.
        ("admin:todo_item", "get_list", json!({}), "unknown_route"),
        ("admin:todo_item", "create", json!({"text": "x", "note": "y", "todo_list": 1}), "unknown_route"),
    ];
    for (route, verb, args, code) in cases {
        let reply = c.call(route, verb, args).await;
        assert_eq!(reply["context"]["state"], "error", "{route} {verb}: {reply}");
        assert_eq!(reply["data"]["code"], code, "{route} {verb}: {reply}");
        assert_eq!(reply["context"]["verb"], verb, "{route} {verb}: {reply}");
    }
    // The allowed verbs still work on the narrowed route.
    c.ok("open-items", "get_list", json!({})).await;
    c.subscribe("open-items", "open", json!({})).await;
}

#[tokio::test]
async fn plain_channels_carry_published_messages_to_their_subscribers() {
    let (server, mut c) = app().await;
    let mut other = server.client().await;
    let reply = c.call("chat", "subscribe", json!({"channel": "chat", "name": "chatroom"})).await;
    assert_eq!(reply["data"], "subscribed");
    assert_eq!(
        reply["channel_data"],
        json!({"local_channel": "chat", "remote_channels": ["chatroom"], "action": "subscribe"})
    );
    assert_eq!(c.subscribe("chat", "room", json!({"name": "room.x"})).await, ["room.x"]);
    other.subscribe("chat", "room", json!({"name": "room.y"})).await;
    for name in ["other", "room.", "room", "chatroom2", "xroom.x"] {
        c.err("chat", "subscribe", json!({"channel": "nope", "name": name}), "permission_denied").await;
    }
    c.err("chat", "subscribe", json!({"channel": "nope"}), "invalid_args").await;
    c.err("chat", "subscribe", json!({"channel": "nope", "name": "chatroom", "extra": 1}), "invalid_args").await;

    for (channel, data) in [("chatroom", json!({"msg": "hi", "from": "celery"})), ("room.x", json!("plain"))] {
        let response = publish(&server, Some("test-key"), &json!({"channel": channel, "data": data})).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let p = c.next_publication(PATIENCE).await.unwrap_or_else(|| panic!("nothing on {channel}"));
        assert_eq!(p, json!({"channel": channel, "data": data}));
    }
    // room.y reaches only its subscriber.
    publish(&server, Some("test-key"), &json!({"channel": "room.y", "data": 1})).await;
    assert_eq!(other.next_publication(PATIENCE).await, Some(json!({"channel": "room.y", "data": 1})));

    // After unsubscribing from chatroom, room.x still arrives and chatroom does not.
    c.ok("chat", "unsubscribe", json!({"channel": "chat", "name": "chatroom"})).await;
    publish(&server, Some("test-key"), &json!({"channel": "chatroom", "data": "gone"})).await;
    publish(&server, Some("test-key"), &json!({"channel": "room.x", "data": "marker"})).await;
    assert_eq!(c.next_publication(PATIENCE).await, Some(json!({"channel": "room.x", "data": "marker"})));
    assert!(c.drain_publications(QUIET).await.is_empty());
    assert!(other.drain_publications(QUIET).await.is_empty());
}
