//! The custom verb runs through the same write path: each deletion reaches subscribers.

use std::time::Duration;

use drakon_testkit::{PATIENCE, TestServer};
use serde_json::json;

const TODO: &str = include_str!("../../todo/drakon.toml");

#[tokio::test]
async fn clear_done_deletes_done_items_and_publishes_each() {
    let server = TestServer::spawn(env!("CARGO_BIN_EXE_clear-done"), TODO).await;
    let mut writer = server.client().await;
    let mut watcher = server.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "groceries"})).await;
    let other = writer.ok("todo-list", "create", json!({"name": "other"})).await;
    let mut done_ids = Vec::new();
    for (text, done) in [("milk", true), ("eggs", false), ("bread", true)] {
        let item = writer.ok("todo-item", "create", json!({"text": text, "done": done, "todo_list": list["id"]})).await;
        if done {
            done_ids.push(item["id"].clone());
        }
    }
    let untouched =
        writer.ok("todo-item", "create", json!({"text": "x", "done": true, "todo_list": other["id"]})).await;
    // The snapshot's offset tells which events it already reflects: the creates above may still be in flight.
    let snapshot = watcher
        .ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "snapshot": true}))
        .await;
    assert_eq!(snapshot["rows"].as_array().unwrap().len(), 3);
    let seen = snapshot["offset"].as_u64().unwrap();

    let reply = writer.ok("todo-list", "clear_done", json!({"id": list["id"]})).await;
    assert_eq!(reply, json!({"deleted": 2}));

    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let p = watcher.next_publication(PATIENCE).await.expect("a deleted event per done item");
        if p["offset"].as_u64().unwrap() <= seen {
            continue;
        }
        assert_eq!(p["action"], "deleted", "{p}");
        deleted.push(p["data"]["id"].clone());
    }
    assert_eq!(deleted, done_ids);
    assert!(watcher.next_publication(Duration::from_millis(300)).await.is_none());

    let left = writer.ok("todo-item", "get_list", json!({"list_id": list["id"]})).await;
    assert_eq!(left.as_array().unwrap().len(), 1, "only the open item remains: {left}");
    writer.ok("todo-item", "get_single", json!({"id": untouched["id"]})).await;
    writer.err("todo-list", "clear_done", json!({"id": 999}), "not_found").await;
    writer.err("todo-list", "clear_done", json!({}), "invalid_args").await;
}
