//! The bounds a connection lives within: frame sizes, subscription count, idleness, heartbeats and shutdown.

mod common;

use std::time::Duration;

use common::{OP_TEXT, QUIET, RawWs, TODO, assert_alive, masked_frame, next_non_heartbeat, spawn, todo_with_server};
use drakon_testkit::{Client, PATIENCE};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// A valid `todo-list get_list` request padded to exactly `len` bytes.
fn request_of_len(callback: &str, len: usize) -> String {
    let frame = |pad: &str| {
        json!({"route": "todo-list", "verb": "get_list", "args": {}, "callbackname": callback, "pad": pad}).to_string()
    };
    let bare = frame("").len();
    assert!(len >= bare, "{len} is shorter than an empty request");
    let text = frame(&"x".repeat(len - bare));
    assert_eq!(text.len(), len);
    text
}

async fn reply_to(client: &mut Client, frame: &str) -> Value {
    client.send_text(frame).await;
    client.next_frame(PATIENCE).await.unwrap_or_else(|| panic!("no reply to a {}-byte frame", frame.len()))
}

#[tokio::test]
async fn frames_over_the_limit_get_frame_too_large_and_the_connection_stays_up() {
    let server = spawn(&todo_with_server("max_frame_bytes = 1024")).await;
    let mut c = server.client().await;
    // (frame length, accepted)
    let cases = [(1024, true), (1025, false), (2048, false), (1000, true), (1_000_000, false)];
    for (len, accepted) in cases {
        let reply = reply_to(&mut c, &request_of_len("sized", len)).await;
        if accepted {
            assert_eq!(reply["context"]["state"], "success", "{len} bytes: {reply}");
            assert_eq!(reply["context"]["client_callback_name"], "sized", "{len} bytes: {reply}");
        } else {
            assert_eq!(reply["context"]["state"], "error", "{len} bytes: {reply}");
            assert_eq!(reply["data"]["code"], "frame_too_large", "{len} bytes: {reply}");
            let message = reply["data"]["message"].as_str().unwrap();
            assert!(message.contains("1024"), "the message names the limit: {reply}");
        }
        assert_alive(&mut c, &format!("a {len}-byte frame")).await;
    }
}

#[tokio::test]
async fn a_frame_past_the_hard_cap_closes_the_connection_with_1009() {
    let server = spawn(&todo_with_server("max_frame_bytes = 1024")).await;
    let mut bystander = server.client().await;
    let mut ws = RawWs::connect(&server.addr).await;
    // The hard cap is max(4 × 1024, 1 MiB) = 1 MiB; send half as much again.
    let payload = request_of_len("huge", 1536 * 1024);
    let frame = masked_frame(OP_TEXT, payload.as_bytes());
    let mut writer = ws.take_writer();
    // The server stops reading mid-frame and hangs up, so the write may fail: that is expected.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&frame).await;
        writer
    });
    let closed = ws.next(PATIENCE).await.expect("a close frame");
    assert_eq!(closed.close_code(), Some(1009), "{closed:?}");
    write.abort();
    assert!(ws.next(QUIET).await.is_none(), "nothing follows the close frame");
    assert_alive(&mut bystander, "another connection's oversize frame").await;
}

#[tokio::test]
async fn subscriptions_past_the_limit_get_too_many_subscriptions() {
    let server = spawn(&todo_with_server("max_subscriptions = 3")).await;
    let mut c = server.client().await;
    for (local, list) in [("a", 1), ("b", 2), ("c", 3)] {
        c.subscribe("todo-item", local, json!({"list_id": list})).await;
    }
    let error = c.err("todo-item", "subscribe", json!({"channel": "d", "list_id": 4}), "too_many_subscriptions").await;
    assert!(error["message"].as_str().unwrap().contains('3'), "the message names the limit: {error}");
    // A second local channel on a held remote counts too; a plain channel counts like a model channel.
    c.err("todo-item", "subscribe", json!({"channel": "a2", "list_id": 1}), "too_many_subscriptions").await;
    c.err("chat", "subscribe", json!({"channel": "chat", "name": "chatroom"}), "too_many_subscriptions").await;
    // Subscribing again to what is held is not a new subscription.
    c.subscribe("todo-item", "a", json!({"list_id": 1})).await;
    // The limit is per connection.
    let mut other = server.client().await;
    for local in ["x", "y", "z"] {
        other.subscribe("todo-item", local, json!({})).await;
    }
    // Unsubscribing frees a slot, and the rejected subscription was never made.
    c.ok("todo-item", "unsubscribe", json!({"channel": "b", "list_id": 2})).await;
    c.err("todo-item", "unsubscribe", json!({"channel": "d", "list_id": 4}), "not_subscribed").await;
    c.subscribe("chat", "chat", json!({"name": "chatroom"})).await;
    c.err("todo-item", "subscribe", json!({"channel": "d", "list_id": 4}), "too_many_subscriptions").await;
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_4000() {
    // The config requires the ping interval to be shorter than the idle timeout.
    let server = spawn(&todo_with_server("idle_timeout_secs = 2\nping_interval_secs = 1")).await;
    // `silent` reads its socket but, being a bare client, never answers a ping; `live` is tungstenite, which answers
    // each ping it reads.
    let mut silent = RawWs::connect(&server.addr).await;
    let mut live = server.client().await;
    let started = Instant::now();
    let (closed, live_closed) = tokio::join!(silent.next(PATIENCE), live.closed(Duration::from_millis(4500)));
    let closed = closed.expect("the silent client gets a close frame");
    assert_eq!(closed.close_code(), Some(4000), "{closed:?}");
    assert_eq!(&closed.payload[2..], b"idle timeout");
    let after = started.elapsed();
    assert!(after >= Duration::from_secs(2), "closed after {after:?}, before the idle timeout");
    assert_eq!(live_closed, None, "a client that answers pings was closed");
    assert_alive(&mut live, "the idle timeout of another client").await;
}

#[tokio::test]
async fn app_heartbeats_arrive_periodically_and_client_heartbeats_get_no_reply() {
    let server = spawn(&todo_with_server("heartbeat_secs = 1")).await;
    let mut c = server.client().await;
    for n in 1..=2 {
        let frame = c.next_frame(PATIENCE).await.unwrap_or_else(|| panic!("heartbeat {n}"));
        assert_eq!(frame, json!({"heartbeat": "1"}), "heartbeat {n}");
    }
    // Heartbeats from the client, in both spellings, are swallowed: the next reply is for the request after them.
    for heartbeat in [r#"{"heartbeat":"1"}"#, r#"{"heartbeat":1}"#, r#"{"heartbeat": "1"}"#] {
        c.send_text(heartbeat).await;
        c.send_text(r#"{"route":"todo-list","verb":"get_list","args":{},"callbackname":"after"}"#).await;
        let reply = next_non_heartbeat(&mut c, PATIENCE).await.expect("a reply");
        assert_eq!(reply["context"]["client_callback_name"], "after", "{heartbeat} got a reply: {reply}");
        assert_eq!(reply["context"]["state"], "success", "{reply}");
    }
}

/// Shutdown races the process exit against the connection tasks' close frames, so one lucky run proves little:
/// every connection of several shutdowns must get its 1001.
#[tokio::test]
async fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let mut failures = Vec::new();
    for round in 0..10 {
        let server = spawn(TODO).await;
        // Bare clients: they write nothing after their requests, so nothing they send can turn the server's close
        // into a reset. Half of them hold subscriptions.
        let mut clients = Vec::new();
        for i in 0..4 {
            let mut ws = RawWs::connect(&server.addr).await;
            if i % 2 == 1 {
                let args = json!({"channel": "items", "list_id": i});
                ws.send_json(&json!({"route": "todo-item", "verb": "subscribe", "args": args, "callbackname": "s"}))
                    .await;
                let reply = ws.next(PATIENCE).await.expect("a subscribe reply").json();
                assert_eq!(reply["context"]["state"], "success", "{reply}");
            }
            clients.push(ws);
        }
        let (status, _dir) = server.terminate().await;
        if !status.success() {
            failures.push(format!("round {round}: drakon exited with {status}"));
        }
        for (i, ws) in clients.iter_mut().enumerate() {
            let frame = ws.next(PATIENCE).await;
            let clean = frame
                .as_ref()
                .is_some_and(|f| f.close_code() == Some(1001) && f.payload[2..] == *b"server shutting down");
            if !clean {
                failures.push(format!("round {round}, connection {i}: ended with {frame:?}, not a 1001 close frame"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn requests_past_the_rate_limit_get_rate_limited_and_the_budget_refills() {
    let server = spawn(&todo_with_server("max_requests_per_second = 5")).await;
    let mut client = server.client().await;
    let mut other = server.client().await;
    // A burst of twice the rate goes through; then each request is refused, without being run.
    let mut codes = Vec::new();
    for i in 0..14 {
        let reply = client.call("todo-list", "create", json!({"name": format!("list {i}")})).await;
        codes.push(reply["data"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    let ok = codes.iter().filter(|c| *c == "ok").count();
    assert!((10..=11).contains(&ok), "{codes:?}");
    assert!(codes[ok..].iter().all(|c| c == "rate_limited"), "{codes:?}");
    let lists = other.ok("todo-list", "get_list", json!({})).await;
    assert_eq!(lists.as_array().map(Vec::len), Some(ok), "refused requests did not run");
    // Another connection has its own budget, and this one earns requests back at the rate.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_alive(&mut client, "the rate limit").await;
}
