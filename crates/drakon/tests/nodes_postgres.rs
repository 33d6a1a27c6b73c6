//! Several drakon nodes on one PostgreSQL: a write on any node reaches subscribers on every node, and a client whose
//! node dies resumes on another with nothing lost. Real processes throughout: a throwaway PostgreSQL and three
//! `drakon serve` processes on loopback.

mod common;

use common::{BIN, TODO};
use drakon_testkit::postgres::TestPg;
use drakon_testkit::{Client, PATIENCE, TestServer};
use serde_json::json;

async fn node(url: &str) -> TestServer {
    TestServer::spawn_with(BIN, TODO, &[("DRAKON_DATABASE_URL", url)]).await
}

#[tokio::test]
async fn a_write_on_one_node_reaches_subscribers_on_the_others() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let (a, b, c) = (node(&url).await, node(&url).await, node(&url).await);

    let mut writer = a.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let mut watchers = Vec::new();
    for server in [&b, &c] {
        let mut client = server.client().await;
        let snapshot = client
            .ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "snapshot": true}))
            .await;
        watchers.push((client, snapshot["offset"].as_u64().unwrap()));
    }
    let item = writer.ok("todo-item", "create", json!({"text": "milk", "todo_list": list["id"]})).await;
    for (client, offset) in &mut watchers {
        let p = loop {
            let p = client.next_publication(PATIENCE).await.expect("the write on node A reaches this node");
            if p["offset"].as_u64().unwrap() > *offset {
                break p;
            }
        };
        assert_eq!((&p["action"], &p["data"]["id"]), (&json!("created"), &item["id"]), "{p}");
    }
}

#[tokio::test]
async fn a_client_of_a_killed_node_resumes_on_another_with_nothing_lost() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let (a, b) = (node(&url).await, node(&url).await);

    let mut writer = b.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let mut client = a.client().await;
    let snapshot =
        client.ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "snapshot": true})).await;
    let offset = snapshot["offset"].as_u64().unwrap();

    drop(client);
    drop(a); // kill_on_drop: node A is gone
    let mut created = Vec::new();
    for text in ["milk", "eggs", "bread"] {
        created
            .push(writer.ok("todo-item", "create", json!({"text": text, "todo_list": list["id"]})).await["id"].clone());
    }

    let mut client = Client::connect(&b.ws_url()).await;
    let resumed =
        client.ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "since": offset})).await;
    let replayed: Vec<_> = resumed["events"].as_array().unwrap().iter().map(|e| e["data"]["id"].clone()).collect();
    assert_eq!(replayed, created, "{resumed}");
}
