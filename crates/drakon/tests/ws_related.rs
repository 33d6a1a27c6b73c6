//! Filters through references stay true: when a referenced row changes, the rows that refer to it enter or leave
//! filters that look through the reference, live and on resume.

mod common;

use common::{QUIET, TODO, spawn};
use drakon_testkit::{Client, PATIENCE};
use serde_json::{Value, json};

/// Subscribes with a snapshot and returns (ids in the snapshot, its offset).
async fn watch(client: &mut Client, filter: Value) -> (Vec<i64>, u64) {
    let mut args = filter;
    args["channel"] = json!("watched");
    args["snapshot"] = json!(true);
    let data = client.ok("todo-item", "subscribe", args).await;
    let ids = data["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    (ids, data["offset"].as_u64().unwrap())
}

/// Publications after `offset` until `count` have arrived, as (action, id).
async fn events(client: &mut Client, offset: u64, count: usize) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    while out.len() < count {
        let p = client.next_publication(PATIENCE).await.unwrap_or_else(|| panic!("only {out:?} arrived"));
        if p["offset"].as_u64().unwrap() > offset {
            out.push((p["action"].as_str().unwrap().to_owned(), p["data"]["id"].as_i64().unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn renaming_a_list_moves_its_items_between_name_filters() {
    let server = spawn(TODO).await;
    let mut writer = server.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let other = writer.ok("todo-list", "create", json!({"name": "Hardware"})).await;
    let mut items = Vec::new();
    for text in ["milk", "eggs"] {
        items.push(
            writer.ok("todo-item", "create", json!({"text": text, "todo_list": list["id"]})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    writer.ok("todo-item", "create", json!({"text": "nails", "todo_list": other["id"]})).await;

    let mut old_name = server.client().await;
    let mut new_name = server.client().await;
    let mut by_id = server.client().await;
    let (ids, old_offset) = watch(&mut old_name, json!({"todo_list__name": "Groceries"})).await;
    assert_eq!(ids, items);
    let (ids, new_offset) = watch(&mut new_name, json!({"todo_list__name": "Food"})).await;
    assert!(ids.is_empty());
    let (_, id_offset) = watch(&mut by_id, json!({"list_id": list["id"]})).await;

    writer.ok("todo-list", "update", json!({"id": list["id"], "name": "Food"})).await;
    let left = events(&mut old_name, old_offset, 2).await;
    assert_eq!(left, items.iter().map(|id| ("deleted".to_owned(), *id)).collect::<Vec<_>>());
    let entered = events(&mut new_name, new_offset, 2).await;
    assert_eq!(entered, items.iter().map(|id| ("created".to_owned(), *id)).collect::<Vec<_>>());

    // A filter that does not look through the reference hears nothing of the rename: the next thing it sees is a
    // real change of one of its rows.
    writer.ok("todo-item", "update", json!({"id": items[0], "done": true})).await;
    assert_eq!(events(&mut by_id, id_offset, 1).await, vec![("updated".to_owned(), items[0])]);
    assert!(by_id.next_publication(QUIET).await.is_none());
}

#[tokio::test]
async fn a_rename_while_away_is_replayed_on_resume() {
    let server = spawn(TODO).await;
    let mut writer = server.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let item = writer.ok("todo-item", "create", json!({"text": "milk", "todo_list": list["id"]})).await;

    let mut away = server.client().await;
    let (ids, offset) = watch(&mut away, json!({"todo_list__name": "Groceries"})).await;
    assert_eq!(ids, vec![item["id"].as_i64().unwrap()]);
    drop(away);

    writer.ok("todo-list", "update", json!({"id": list["id"], "name": "Food"})).await;
    let mut back = server.client().await;
    let data = back
        .ok("todo-item", "subscribe", json!({"channel": "watched", "todo_list__name": "Groceries", "since": offset}))
        .await;
    let replayed: Vec<(&str, &Value)> =
        data["events"].as_array().unwrap().iter().map(|e| (e["action"].as_str().unwrap(), &e["data"]["id"])).collect();
    assert_eq!(replayed, vec![("deleted", &item["id"])], "{data}");
    assert!(data["offset"].as_u64().unwrap() > offset);
}
