//! Several drakon nodes with the Redis bus: row changes and plain pub/sub messages cross nodes through Redis, each
//! delivered exactly once, in order; a Redis restart in the middle of a write stream loses no change; the node
//! relaying the change log hands over when it dies; and the same holds on a Redis Cluster with sharded pub/sub.
//! Real processes throughout: a throwaway PostgreSQL, a throwaway Redis (or Redis Cluster) and several
//! `drakon serve` processes on loopback.

mod common;

use std::time::Duration;

use common::{BIN, QUIET, TODO, http, publish, todo_with_server};
use drakon_testkit::postgres::TestPg;
use drakon_testkit::redis::{TestRedis, TestRedisCluster};
use drakon_testkit::{Client, PATIENCE, TestServer};
use serde_json::{Value, json};

const KEY: &str = "s3cret-key";

async fn node(pg_url: &str, redis: &TestRedis) -> TestServer {
    let config = todo_with_server(&format!("api_key = \"{KEY}\""));
    TestServer::spawn_with(BIN, &config, &[("DRAKON_DATABASE_URL", pg_url), ("DRAKON_REDIS_URL", &redis.url())]).await
}

async fn chat_listener(server: &TestServer) -> Client {
    let mut client = server.client().await;
    client.subscribe("chat", "chat", json!({"name": "chatroom"})).await;
    client
}

/// Waits for the chatroom message carrying `data`, skipping others, then checks that no copy follows.
async fn receives_once(client: &mut Client, data: &Value, who: &str) {
    loop {
        let p = client.next_publication(PATIENCE).await.unwrap_or_else(|| panic!("{who} never received {data}"));
        assert_eq!(p["channel"], "chatroom", "{who}: {p}");
        if &p["data"] == data {
            break;
        }
    }
    let rest = client.drain_publications(QUIET).await;
    assert!(rest.iter().all(|p| &p["data"] != data), "{who} received {data} more than once: {rest:?}");
}

#[tokio::test]
async fn a_message_published_on_one_node_reaches_every_node_once() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let redis = TestRedis::start();
    let (a, b) = (node(&url, &redis).await, node(&url, &redis).await);
    let mut on_a = chat_listener(&a).await;
    let mut on_b = chat_listener(&b).await;

    let data = json!({"msg": "hi from A"});
    let response = publish(&a, Some(KEY), &json!({"channel": "chatroom", "data": data})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    receives_once(&mut on_b, &data, "the subscriber on node B").await;
    receives_once(&mut on_a, &data, "the subscriber on node A").await;

    // And the other way round.
    let data = json!("hi from B");
    let response = publish(&b, Some(KEY), &json!({"channel": "chatroom", "data": data})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    receives_once(&mut on_a, &data, "the subscriber on node A").await;
    receives_once(&mut on_b, &data, "the subscriber on node B").await;
}

#[tokio::test]
async fn publishing_recovers_after_redis_restarts() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let mut redis = TestRedis::start();
    let (a, b) = (node(&url, &redis).await, node(&url, &redis).await);
    let mut on_a = chat_listener(&a).await;
    let mut on_b = chat_listener(&b).await;

    // While Redis is down the message cannot cross nodes, and the publisher is told so.
    redis.kill();
    let response = publish(&a, Some(KEY), &json!({"channel": "chatroom", "data": "lost"})).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(response.body.contains("unavailable"), "{}", response.body);
    // Readiness says so too, once the subscriber has noticed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ready = http(&a.addr, "GET", "/readyz", &[], b"").await;
        if ready.status == 503 {
            assert!(ready.body.contains("bus unavailable"), "{}", ready.body);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz still says ready with Redis down: {}", ready.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    redis.restart();
    // Publish until both nodes hear a message again: each node's subscriber reconnects with backoff.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut heard_a, mut heard_b) = (false, false);
    for n in 0.. {
        assert!(tokio::time::Instant::now() < deadline, "publishing did not recover after the Redis restart");
        let response = publish(&a, Some(KEY), &json!({"channel": "chatroom", "data": n})).await;
        assert!(response.status == 200 || response.status == 503, "{}: {}", response.status, response.body);
        heard_a |= !on_a.drain_publications(Duration::from_millis(250)).await.is_empty();
        heard_b |= !on_b.drain_publications(Duration::from_millis(250)).await.is_empty();
        if heard_a && heard_b {
            break;
        }
    }
    let data = json!({"msg": "after the restart"});
    let response = publish(&a, Some(KEY), &json!({"channel": "chatroom", "data": data})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    receives_once(&mut on_b, &data, "the subscriber on node B").await;
    receives_once(&mut on_a, &data, "the subscriber on node A").await;
}

/// A subscriber to the items of one list, and the offset it has seen up to.
struct Watcher {
    client: Client,
    offset: u64,
    ids: Vec<Value>,
}

impl Watcher {
    async fn subscribe(server: &TestServer, list: &Value) -> Watcher {
        let mut client = server.client().await;
        let snapshot = client
            .ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "snapshot": true}))
            .await;
        Watcher { client, offset: snapshot["offset"].as_u64().unwrap(), ids: Vec::new() }
    }

    /// Receives until `count` items were created, checking that offsets follow each other without a gap or a copy.
    async fn receive(&mut self, count: usize, who: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.ids.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let p = self.client.next_publication(left).await.unwrap_or_else(|| {
                panic!("{who} received {} of {count} items; the last offset was {}", self.ids.len(), self.offset)
            });
            let offset = p["offset"].as_u64().unwrap();
            assert_eq!(offset, self.offset + 1, "{who}: offsets must follow each other: {p}");
            assert_eq!(p["action"], "created", "{who}: {p}");
            self.offset = offset;
            self.ids.push(p["data"]["id"].clone());
        }
        let extra = self.client.drain_publications(QUIET).await;
        assert!(extra.is_empty(), "{who} received more than was written: {extra:?}");
    }
}

async fn create_items(writer: &mut Client, list: &Value, texts: std::ops::Range<usize>, ids: &mut Vec<Value>) {
    for n in texts {
        ids.push(
            writer.ok("todo-item", "create", json!({"text": format!("item {n}"), "todo_list": list["id"]})).await["id"]
                .clone(),
        );
    }
}

#[tokio::test]
async fn row_changes_cross_nodes_through_redis_and_a_redis_restart_loses_none() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let mut redis = TestRedis::start();
    let (a, b, c) = (node(&url, &redis).await, node(&url, &redis).await, node(&url, &redis).await);
    let mut writer = a.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let mut on_a = Watcher::subscribe(&a, &list).await;
    let mut on_b = Watcher::subscribe(&b, &list).await;
    let mut on_c = Watcher::subscribe(&c, &list).await;

    let mut created = Vec::new();
    create_items(&mut writer, &list, 0..10, &mut created).await;
    // Redis dies in the middle of the stream: writes still commit (PostgreSQL holds them), and the relay's
    // messages meanwhile are lost...
    redis.kill();
    create_items(&mut writer, &list, 10..20, &mut created).await;
    redis.restart();
    create_items(&mut writer, &list, 20..30, &mut created).await;
    // ...yet every node delivers every change exactly once, in order: the heads and offsets that come after the
    // restart reveal the gap, and the nodes read it from the change log.
    for (watcher, who) in [(&mut on_a, "node A"), (&mut on_b, "node B"), (&mut on_c, "node C")] {
        watcher.receive(created.len(), who).await;
        assert_eq!(watcher.ids, created, "{who}");
    }
}

#[tokio::test]
async fn when_the_relaying_node_dies_another_takes_over() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let redis = TestRedis::start();
    // The first node starts alone, so it wins the relay lock.
    let first = node(&url, &redis).await;
    let mut writer = first.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let (b, c) = (node(&url, &redis).await, node(&url, &redis).await);
    let mut on_c = Watcher::subscribe(&c, &list).await;
    let mut created = Vec::new();
    create_items(&mut writer, &list, 0..5, &mut created).await;
    on_c.receive(created.len(), "node C").await;

    drop(writer);
    drop(first); // kill_on_drop: the relay is gone, and its lock with its connection
    let mut writer = b.client().await;
    create_items(&mut writer, &list, 5..10, &mut created).await;
    on_c.receive(created.len(), "node C").await;
    assert_eq!(on_c.ids, created);
}

#[tokio::test]
async fn a_redis_cluster_with_sharded_pub_sub_carries_changes_and_messages() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let mut cluster = TestRedisCluster::start(3);
    let config = todo_with_server(&format!("api_key = \"{KEY}\"\nredis_sharded = true"));
    let env = [("DRAKON_DATABASE_URL", url.as_str()), ("DRAKON_REDIS_URL", &cluster.urls())];
    let (a, b) = (TestServer::spawn_with(BIN, &config, &env).await, TestServer::spawn_with(BIN, &config, &env).await);

    let mut writer = a.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let mut on_b = Watcher::subscribe(&b, &list).await;
    let mut created = Vec::new();
    create_items(&mut writer, &list, 0..5, &mut created).await;
    on_b.receive(created.len(), "node B").await;

    let mut chat_a = chat_listener(&a).await;
    let mut chat_b = chat_listener(&b).await;
    let data = json!({"msg": "sharded"});
    let response = publish(&a, Some(KEY), &json!({"channel": "chatroom", "data": data})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    receives_once(&mut chat_b, &data, "the subscriber on node B").await;
    receives_once(&mut chat_a, &data, "the subscriber on node A").await;

    // The shard that owns the bus's slot crashes and comes back: nothing written meanwhile is lost.
    cluster.restart_node(cluster.port_of("{drakon}:changes"));
    create_items(&mut writer, &list, 5..10, &mut created).await;
    on_b.receive(created.len(), "node B").await;
    assert_eq!(on_b.ids, created);
}

#[tokio::test]
async fn the_bus_runs_over_tls_to_redis() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let redis = TestRedis::start_with_tls();
    let ca = redis.ca_file();
    let config = todo_with_server(&format!("redis_ca_file = \"{}\"", ca.display()));
    let env = [("DRAKON_DATABASE_URL", url.as_str()), ("DRAKON_REDIS_URL", &redis.tls_url())];
    let (a, b) = (TestServer::spawn_with(BIN, &config, &env).await, TestServer::spawn_with(BIN, &config, &env).await);
    let mut writer = a.client().await;
    let list = writer.ok("todo-list", "create", json!({"name": "Groceries"})).await;
    let mut on_b = Watcher::subscribe(&b, &list).await;
    let mut created = Vec::new();
    create_items(&mut writer, &list, 0..3, &mut created).await;
    on_b.receive(created.len(), "node B").await;
    assert_eq!(on_b.ids, created);
}

#[tokio::test]
async fn a_redis_certificate_no_trusted_ca_signed_is_refused_at_start() {
    let pg = TestPg::start();
    let url = pg.create_database("todo").await;
    let redis = TestRedis::start_with_tls();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("drakon.toml"), TODO).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path().join("drakon.toml"))
        .args(["--bind", "127.0.0.1:0"])
        .env("DRAKON_DATABASE_URL", &url)
        .env("DRAKON_REDIS_URL", redis.tls_url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a node must not start on an untrusted Redis: {stderr}");
    assert!(stderr.contains("Redis") && stderr.to_lowercase().contains("certificate"), "{stderr}");
}
