use drakon_testkit::{PATIENCE, TestServer};
use serde_json::json;

const TODO: &str = include_str!("../../../examples/todo/drakon.toml");

#[tokio::test]
async fn smoke() {
    let server = TestServer::spawn(env!("CARGO_BIN_EXE_drakon"), TODO).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let list = a.ok("todo-list", "create", json!({"name": "List one"})).await;
    println!("{list}");
    let remotes = b.subscribe("todo-item", "todos", json!({"list_id": list["id"]})).await;
    println!("{remotes:?}");
    let item = a.ok("todo-item", "create", json!({"text": "milk", "todo_list": list["id"]})).await;
    println!("{item}");
    let p = b.next_publication(PATIENCE).await;
    println!("{p:?}");
    let upd = a
        .ok("todo-item", "update", json!({"id": item["id"], "done": true, "text": "milk", "_type": "todo_item"}))
        .await;
    println!("{upd}");
    println!("{:?}", b.next_publication(PATIENCE).await);
    println!("{}", a.call("todo-item", "get_list", json!({"list_id": 1, "_page": 1})).await);
    println!("{}", a.call("todo-item", "get_list", json!({"nope": 1})).await);
    println!("{}", a.call("todo-list", "delete", json!({"id": 1})).await);
    println!("{:?}", b.next_publication(PATIENCE).await);
    let (status, _) = server.terminate().await;
    println!("{status:?}");
}
