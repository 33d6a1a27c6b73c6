//! At its open-file limit the server keeps serving: when `accept` fails for want of descriptors, the connections that
//! have sent nothing yet, oldest first, are closed to make room, so a health check or a new client queued behind a
//! flood of silent connections is served at once rather than after the request-head timeout, and connections that
//! have sent a request (an open WebSocket) are left alone.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{BIN, TODO, http};
use drakon_testkit::TestServer;
use serde_json::json;
use tokio::net::TcpStream;

/// The server's descriptor limit in this test, far below the silent connections opened.
const FILES: usize = 256;

#[tokio::test]
async fn at_the_open_file_limit_silent_connections_make_room_for_health_checks_and_clients() {
    let wrapper_dir = tempfile::tempdir().expect("temp dir");
    let wrapper = wrapper_dir.path().join("drakon-with-few-files");
    std::fs::write(&wrapper, format!("#!/bin/sh\nulimit -n {FILES}\nexec '{BIN}' \"$@\"\n")).expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = TestServer::spawn(wrapper.to_str().expect("a UTF-8 path"), TODO).await;
    let mut open = server.client().await;
    open.ok("todo-list", "create", json!({"name": "before the flood"})).await;

    // More silent connections than the server has descriptors: the kernel queues those it cannot accept.
    let mut silent = Vec::new();
    for _ in 0..FILES * 3 / 2 {
        silent.push(TcpStream::connect(&server.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The request-head timeout is 15 s: an answer well within it means silent connections made room.
    let started = Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(5), http(&server.addr, "GET", "/healthz", &[], b"")).await;
    let health = health.expect("/healthz answered at the file limit");
    assert_eq!(health.status, 200, "{}", health.body);
    let mut newcomer = tokio::time::timeout(Duration::from_secs(5), server.client()).await.expect("a new client");
    newcomer.ok("todo-list", "create", json!({"name": "during the flood"})).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // The WebSocket opened before the flood was left alone and hears the newcomer's change.
    let lists = open.ok("todo-list", "get_list", json!({})).await;
    assert_eq!(lists.as_array().map(Vec::len), Some(2), "{lists}");
    let closed = silent
        .iter()
        .filter(|stream| match stream.try_read(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count();
    assert!(closed > 0, "no silent connection was closed");
}
