//! drakon's own WebSocket framing, seen from a bare client: the opening handshake and its refusals, fragmented
//! requests, pings, the closing handshake, and frames a server must refuse.

mod common;

use common::{OP_CLOSE, OP_TEXT, RawWs, http, masked_frame, spawn};
use drakon_testkit::PATIENCE;
use serde_json::json;

const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Request headers, then the expected status and a phrase of the body.
type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test]
async fn handshakes_drakon_cannot_accept_are_refused_with_what_to_fix() {
    let server = spawn(common::TODO).await;
    let upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")];
    let key = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    let cases: [Case; 4] = [
        (vec![], 426, "send an upgrade request"),
        (vec![upgrade[0], upgrade[1], ("Sec-WebSocket-Version", "8"), key], 426, "version 13"),
        (vec![upgrade[0], upgrade[1], upgrade[2]], 400, "Sec-WebSocket-Key"),
        (vec![upgrade[0], upgrade[1], upgrade[2], ("Sec-WebSocket-Key", "c2hvcnQ=")], 400, "Sec-WebSocket-Key"),
    ];
    for (headers, status, says) in cases {
        let response = http(&server.addr, "GET", "/data/websocket", &headers, b"").await;
        assert_eq!(response.status, status, "{headers:?}: {}", response.head);
        assert!(response.body.contains(says), "{headers:?}: {}", response.body);
        if status == 426 {
            let head = response.head.to_ascii_lowercase();
            assert!(head.contains("sec-websocket-version: 13"), "{head}");
            assert!(head.contains("upgrade: websocket"), "{head}");
        }
    }
}

#[tokio::test]
async fn a_fragmented_request_is_answered_and_pings_get_their_payload_back() {
    let server = spawn(common::TODO).await;
    let mut ws = RawWs::connect(&server.addr).await;
    let request = json!({"route": "todo-list", "verb": "get_list", "args": {}, "callbackname": "frag"}).to_string();
    let (head, tail) = request.as_bytes().split_at(10);
    // The first fragment (FIN clear, text), a ping between the fragments, then the last fragment (continuation).
    let mut first = masked_frame(OP_TEXT, head);
    first[0] &= 0x7F;
    let mut last = masked_frame(0x0, tail);
    last[0] |= 0x80;
    ws.send_raw(&first).await.expect("send");
    ws.send(OP_PING, b"are you there").await.expect("send");
    ws.send_raw(&last).await.expect("send");
    let pong = ws.next_frame(PATIENCE).await.expect("a pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (OP_PONG, &b"are you there"[..]));
    let reply = ws.next(PATIENCE).await.expect("a reply").json();
    assert_eq!(reply["context"]["client_callback_name"], "frag", "{reply}");
    assert_eq!(reply["context"]["state"], "success", "{reply}");

    // The client closes: the server answers with the same code and hangs up.
    ws.send(OP_CLOSE, &1000u16.to_be_bytes()).await.expect("send");
    let close = ws.next_frame(PATIENCE).await.expect("the server's close frame");
    assert_eq!((close.opcode, close.close_code()), (OP_CLOSE, Some(1000)));
    assert!(ws.next_frame(PATIENCE).await.is_none(), "the server hangs up after its close frame");
}

#[tokio::test]
async fn frames_a_server_must_refuse_close_the_connection_with_the_rfcs_code() {
    let server = spawn(common::TODO).await;
    let unmasked = [0x81, 0x02, b'{', b'}'].to_vec();
    let mut reserved = masked_frame(OP_TEXT, b"{}");
    reserved[0] |= 0x40;
    let not_utf8 = masked_frame(OP_TEXT, &[0xC3, 0x28]);
    for (what, frame, code) in [("unmasked", unmasked, 1002), ("RSV1", reserved, 1002), ("bad UTF-8", not_utf8, 1007)] {
        let mut ws = RawWs::connect(&server.addr).await;
        ws.send_raw(&frame).await.expect("send");
        let close = ws.next(PATIENCE).await.unwrap_or_else(|| panic!("{what}: a close frame"));
        assert_eq!(close.close_code(), Some(code), "{what}: {close:?}");
    }
    // The server is fine, and so is a well-behaved client.
    let mut client = server.client().await;
    client.ok("todo-list", "get_list", json!({})).await;
}
