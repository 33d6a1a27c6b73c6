//! Several drakon nodes with the Redis bus: a plain pub/sub message published on any node reaches its subscribers
//! on every node, the sender included, exactly once; and publishing recovers after Redis restarts. Real processes
//! throughout: a throwaway PostgreSQL, a throwaway Redis and two `drakon serve` processes on loopback.

mod common;

use std::time::Duration;

use common::{BIN, QUIET, http, publish, todo_with_server};
use drakon_testkit::postgres::TestPg;
use drakon_testkit::redis::TestRedis;
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
