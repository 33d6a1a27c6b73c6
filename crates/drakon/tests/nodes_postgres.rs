//! Several drakon nodes on one PostgreSQL: a write on any node reaches subscribers on every node, a client whose
//! node dies resumes on another with nothing lost, and a PostgreSQL bounce fails writes clearly, publishes nothing
//! that did not commit, and then everything continues. Real processes throughout: a throwaway PostgreSQL and
//! several `drakon serve` processes on loopback.

mod common;

use std::time::Duration;

use common::{BIN, QUIET, TODO, http};
use drakon_testkit::postgres::TestPg;
use drakon_testkit::redis::TestRedis;
use drakon_testkit::{Client, PATIENCE, TestServer};
use serde_json::{Value, json};
use tokio::time::Instant;

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

/// The ids of the created items among `publications`, checking that their offsets follow each other from `after`.
fn created_ids(publications: &[Value], after: &mut u64) -> Vec<Value> {
    publications
        .iter()
        .map(|p| {
            let offset = p["offset"].as_u64().unwrap();
            assert_eq!(offset, *after + 1, "offsets must follow each other: {p}");
            *after = offset;
            assert_eq!(p["action"], "created", "{p}");
            p["data"]["id"].clone()
        })
        .collect()
}

#[tokio::test]
async fn a_postgres_bounce_fails_writes_clearly_and_then_everything_continues() {
    postgres_bounce(None).await;
}

/// The same with Redis as the bus: the relay loses its lock with its connection and one node takes it again.
#[tokio::test]
async fn a_postgres_bounce_behind_redis_loses_nothing_either() {
    let redis = TestRedis::start();
    postgres_bounce(Some(&redis)).await;
}

async fn postgres_bounce(redis: Option<&TestRedis>) {
    let mut pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let mut env = vec![("DRAKON_DATABASE_URL", url.clone())];
    if let Some(redis) = redis {
        env.push(("DRAKON_REDIS_URL", redis.url()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b) = (TestServer::spawn_with(BIN, TODO, &env).await, TestServer::spawn_with(BIN, TODO, &env).await);

    let mut writer = a.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let mut watcher = b.client().await;
    let snapshot = watcher
        .ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "snapshot": true}))
        .await;
    let start = snapshot["offset"].as_u64().unwrap();
    let mut offset = start;
    let mut created =
        vec![writer.ok("todo-item", "create", json!({"text": "before", "todo_list": list["id"]})).await["id"].clone()];
    let first = watcher.next_publication(PATIENCE).await.expect("the write before the bounce arrives");
    assert_eq!(created_ids(&[first], &mut offset), created);

    pg.stop_server();
    // Every write fails with `unavailable` (not `internal`), and says why in words a user can act on.
    for text in ["during 1", "during 2", "during 3"] {
        let error =
            writer.err("todo-item", "create", json!({"text": text, "todo_list": list["id"]}), "unavailable").await;
        assert!(error["message"].as_str().unwrap().contains("database is unreachable"), "{error}");
    }
    // Reads too, and both nodes say they are not ready.
    writer.err("todo-item", "get_list", json!({"list_id": list["id"]}), "unavailable").await;
    for node in [&a, &b] {
        let ready = http(&node.addr, "GET", "/readyz", &[], b"").await;
        assert_eq!(ready.status, 503, "{}", ready.body);
    }
    // Nothing that failed was published.
    assert_eq!(watcher.drain_publications(QUIET).await, Vec::<Value>::new());

    pg.start_again();
    // The pool opens fresh connections on demand: writes succeed again within a few attempts.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = writer.call("todo-item", "create", json!({"text": "after", "todo_list": list["id"]})).await;
        if reply["context"]["state"] == "success" {
            created.push(reply["data"]["id"].clone());
            break;
        }
        assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
        assert!(Instant::now() < deadline, "writes did not recover after PostgreSQL came back: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for text in ["after 2", "after 3"] {
        created
            .push(writer.ok("todo-item", "create", json!({"text": text, "todo_list": list["id"]})).await["id"].clone());
    }
    // The watcher on the other node, connected all along, receives exactly the committed writes, in order, gap-free.
    let mut received = Vec::new();
    while received.len() < created.len() - 1 {
        received.push(watcher.next_publication(PATIENCE).await.expect("writes after the bounce arrive on node B"));
    }
    received.extend(watcher.drain_publications(QUIET).await);
    assert_eq!(created_ids(&received, &mut offset), created[1..]);
    // A client resuming from before the bounce replays the same, and the table holds exactly these rows.
    let mut late = Client::connect(&b.ws_url()).await;
    let resumed =
        late.ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "since": start})).await;
    let replayed: Vec<_> = resumed["events"].as_array().unwrap().iter().map(|e| e["data"]["id"].clone()).collect();
    assert_eq!(replayed, created, "{resumed}");
    let rows = pg.client("todo").await.query("SELECT id FROM todo_item ORDER BY id", &[]).await.unwrap();
    let ids: Vec<Value> = rows.iter().map(|r| json!(r.get::<_, i64>(0))).collect();
    assert_eq!(ids, created);
}
