//! `POST /api/publish` (server-side publishing to plain channels), its key, and the health endpoints.

mod common;

use common::{QUIET, TODO, http, publish, raw_http, spawn, todo_with_server};
use drakon_testkit::{PATIENCE, TestServer};
use serde_json::json;

const KEY: &str = "s3cret-key";

async fn with_key() -> TestServer {
    spawn(&todo_with_server(&format!("api_key = \"{KEY}\""))).await
}

/// Request headers, body, then the expected status and error code (`None` for success).
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8], u16, Option<&'a str>);

#[tokio::test]
async fn publish_checks_the_key_then_the_body() {
    let server = with_key().await;
    let bearer = format!("Bearer {KEY}");
    let good = br#"{"channel":"chatroom","data":{"msg":"hi"}}"#.as_slice();
    let big = format!(r#"{{"channel":"chatroom","data":"{}"}}"#, "x".repeat(300 * 1024));
    let cases: Vec<Case> = vec![
        (vec![], good, 401, Some("permission_denied")),
        (vec![("Authorization", "Basic czNjcmV0LWtleQ==")], good, 401, Some("permission_denied")),
        (vec![("Authorization", "Bearer wrong")], good, 403, Some("permission_denied")),
        (vec![("Authorization", "Bearer s3cret-kez")], good, 403, Some("permission_denied")),
        (vec![("Authorization", "Bearer s3cret-key2")], good, 403, Some("permission_denied")),
        (vec![("X-Drakon-Key", "wrong")], good, 403, Some("permission_denied")),
        // The key is checked before the body is read.
        (vec![("Authorization", "Bearer wrong")], b"not json", 403, Some("permission_denied")),
        (vec![("Authorization", &bearer)], b"not json", 400, Some("bad_json")),
        (vec![("Authorization", &bearer)], b"", 400, Some("bad_json")),
        (vec![("Authorization", &bearer)], b"[1]", 400, Some("bad_json")),
        (vec![("Authorization", &bearer)], br#"{"data":1}"#, 400, Some("bad_json")),
        (vec![("Authorization", &bearer)], br#"{"channel":5,"data":1}"#, 400, Some("bad_json")),
        (vec![("Authorization", &bearer)], br#"{"channel":"chatroom","data":1,"extra":2}"#, 400, Some("bad_json")),
        (vec![("Authorization", &bearer)], br#"{"channel":"","data":1}"#, 400, Some("invalid_args")),
        (vec![("Authorization", &bearer)], br#"{"channel":"a|b","data":1}"#, 400, Some("invalid_args")),
        (vec![("Authorization", &bearer)], big.as_bytes(), 413, Some("frame_too_large")),
        (vec![("Authorization", &bearer)], good, 200, None),
        (vec![("X-Drakon-Key", KEY)], good, 200, None),
        (vec![("Authorization", &bearer)], br#"{"channel":"nobody-listens"}"#, 200, None),
    ];
    for (headers, body, status, code) in cases {
        let what = format!("{headers:?} {}", String::from_utf8_lossy(&body[..body.len().min(60)]));
        let response = http(&server.addr, "POST", "/api/publish", &headers, body).await;
        assert_eq!(response.status, status, "{what}: {}", response.body);
        let reply = response.json();
        match code {
            Some(code) => {
                assert_eq!(reply["code"], code, "{what}: {reply}");
                assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {reply}");
            }
            None => assert_eq!(reply, json!({"ok": true}), "{what}"),
        }
    }
}

#[tokio::test]
async fn a_chunked_body_is_read_and_a_malformed_one_is_a_bad_request() {
    let server = with_key().await;
    let chunked = |chunks: &str| {
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: drakon\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{chunks}"
        )
    };
    let good = r#"{"channel":"chatroom","data":1}"#;
    let big = "x".repeat(300 * 1024);
    let cases = [
        (chunked(&format!("{:x}\r\n{good}\r\n0\r\n\r\n", good.len())), 200, None),
        (chunked(&format!("zz\r\n{good}\r\n0\r\n\r\n")), 400, Some("bad_request")),
        (chunked(&format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len())), 413, Some("frame_too_large")),
    ];
    for (request, status, code) in cases {
        let response = raw_http(&server.addr, request.as_bytes()).await;
        assert_eq!(response.status, status, "{}: {}", &request[..request.len().min(200)], response.body);
        if let Some(code) = code {
            assert_eq!(response.json()["code"], code, "{}", response.body);
        }
    }
}

#[tokio::test]
async fn without_a_configured_key_publishing_is_refused() {
    let server = spawn(&todo_with_server("")).await;
    for key in [None, Some(""), Some("anything")] {
        let response = publish(&server, key, &json!({"channel": "chatroom", "data": 1})).await;
        assert_eq!(response.status, 403, "key {key:?}: {}", response.body);
        assert_eq!(response.json()["code"], "permission_denied", "key {key:?}");
    }
}

#[tokio::test]
async fn the_environment_key_overrides_the_config_key() {
    let config = todo_with_server("api_key = \"file-key\"");
    let server = TestServer::spawn_with(common::BIN, &config, &[("DRAKON_API_KEY", "env-key")]).await;
    let body = json!({"channel": "chatroom", "data": 1});
    assert_eq!(publish(&server, Some("file-key"), &body).await.status, 403);
    assert_eq!(publish(&server, Some("env-key"), &body).await.status, 200);

    // And it enables publishing when the file has no key at all.
    let server = TestServer::spawn_with(common::BIN, &todo_with_server(""), &[("DRAKON_API_KEY", "env-key")]).await;
    assert_eq!(publish(&server, Some("env-key"), &body).await.status, 200);
    assert_eq!(publish(&server, Some("file-key"), &body).await.status, 403);
}

#[tokio::test]
async fn published_messages_reach_that_channels_subscribers_only() {
    let server = with_key().await;
    let mut chat = server.client().await;
    let mut chat_too = server.client().await;
    let mut room = server.client().await;
    let mut model = server.client().await;
    chat.subscribe("chat", "chat", json!({"name": "chatroom"})).await;
    chat_too.subscribe("chat", "mine", json!({"name": "chatroom"})).await;
    room.subscribe("chat", "room", json!({"name": "room.x"})).await;
    // A name nobody could publish to is refused on subscribe too, whatever pattern the route offers.
    room.err("chat", "subscribe", json!({"channel": "bad", "name": "room.a|b"}), "invalid_args").await;
    model.subscribe("todo-list", "lists", json!({})).await;

    let messages = [json!({"msg": "hi", "from": "celery"}), json!("plain"), json!([1, 2]), json!(null)];
    for data in &messages {
        let response = publish(&server, Some(KEY), &json!({"channel": "chatroom", "data": data})).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let response = publish(&server, Some(KEY), &json!({"channel": "chatroom"})).await;
    assert_eq!(response.status, 200, "data may be left out: {}", response.body);
    for client in [&mut chat, &mut chat_too] {
        for data in messages.iter().chain([&json!(null)]) {
            let p = client.next_publication(PATIENCE).await.expect("a chatroom message");
            assert_eq!(p, json!({"channel": "chatroom", "data": data}));
        }
    }
    // room.x and the model subscriber heard nothing of chatroom: their next message is their own.
    publish(&server, Some(KEY), &json!({"channel": "room.x", "data": "marker"})).await;
    assert_eq!(room.next_publication(PATIENCE).await, Some(json!({"channel": "room.x", "data": "marker"})));
    let mut writer = server.client().await;
    writer.ok("todo-list", "create", json!({"name": "marker"})).await;
    let p = model.next_publication(PATIENCE).await.expect("the model marker");
    assert_eq!(p["channel"], "todo-list|", "{p}");
    for client in [&mut chat, &mut chat_too, &mut room, &mut model] {
        assert!(client.drain_publications(QUIET).await.is_empty());
    }
}

#[tokio::test]
async fn health_and_readiness_report_the_server_state() {
    let server = spawn(TODO).await;
    let response = http(&server.addr, "GET", "/readyz", &[], b"").await;
    assert_eq!((response.status, response.json()), (200, json!({"status": "ready"})));

    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("todo-item", "items", json!({"list_id": 1})).await;
    b.subscribe("todo-item", "items", json!({"list_id": 1})).await;
    b.subscribe("chat", "chat", json!({"name": "chatroom"})).await;
    let health = http(&server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200, "{}", health.body);
    // Two connections; one shared model channel and one plain channel.
    assert_eq!(health.json(), json!({"status": "ok", "connections": 2, "channels": 2}));

    drop(a);
    drop(b);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let health = http(&server.addr, "GET", "/healthz", &[], b"").await.json();
        if health == json!({"status": "ok", "connections": 0, "channels": 0}) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "closed connections still counted: {health}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let response = http(&server.addr, "GET", "/api/publish", &[], b"").await;
    assert_eq!(response.status, 405, "publishing is POST only");
}
