//! A client that stops reading: the server writes what the socket takes, queues the rest, gives up when the queue is
//! full and closes with 4008, while a client that reads gets everything in time.

mod common;

use std::time::Duration;

use common::{OP_TEXT, RawWs, publish, spawn, todo_with_server};
use drakon_testkit::PATIENCE;
use serde_json::json;

const KEY: &str = "slow-key";
/// Messages published, and the size of each: together far more than loopback's socket buffers and a full queue hold.
const MESSAGES: usize = 6000;
const MESSAGE_BYTES: usize = 4096;

#[tokio::test]
async fn a_client_that_stops_reading_gets_what_was_written_then_4008_and_a_reader_gets_everything() {
    let server = spawn(&todo_with_server(&format!("api_key = \"{KEY}\""))).await;
    let subscribe = json!({"route": "chat", "verb": "subscribe", "args": {"channel": "c", "name": "chatroom"},
                           "callbackname": "s"});
    let mut stalled = RawWs::connect(&server.addr).await;
    let mut reader = RawWs::connect(&server.addr).await;
    for ws in [&mut stalled, &mut reader] {
        ws.send_json(&subscribe).await;
        let reply = ws.next(PATIENCE).await.expect("a subscribe reply").json();
        assert_eq!(reply["context"]["state"], "success", "{reply}");
    }
    let reading = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < MESSAGES {
            let Some(frame) = reader.next(PATIENCE).await else { break };
            seen.push(frame.json()["data"]["seq"].as_u64().expect("seq"));
        }
        seen
    });

    let pad = "x".repeat(MESSAGE_BYTES);
    for seq in 0..MESSAGES {
        let body = json!({"channel": "chatroom", "data": {"seq": seq, "pad": pad}});
        let response = publish(&server, Some(KEY), &body).await;
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let seen = reading.await.expect("the reader");
    assert_eq!(seen, (0..MESSAGES as u64).collect::<Vec<_>>(), "the reading client gets every message, in order");

    // The stalled client reads again, a while after the server gave up on it: first the frames that were written
    // or queued before that, in order and whole, then the close frame.
    tokio::time::sleep(Duration::from_millis(2500)).await; // longer than the 2 s close grace of other closes
    let mut next = 0;
    let close = loop {
        let frame = stalled.next(Duration::from_secs(10)).await.expect("frames, then a close frame");
        if frame.opcode != OP_TEXT {
            break frame;
        }
        assert_eq!(frame.json()["data"]["seq"], next, "in order, none missing, none torn");
        next += 1;
    };
    assert_eq!(close.close_code(), Some(4008), "{close:?}");
    assert!((next as usize) < MESSAGES, "the server gave up before the end ({next} messages arrived)");
}
