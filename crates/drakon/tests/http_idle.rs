//! Connections that never send a request do not lock anyone out: past the per-address cap they are closed at
//! accept, the rest (and a slowloris sending its headers a byte at a time, and a kept-alive connection that goes
//! quiet) are closed when the request-head timeout runs out, and meanwhile other clients and `/healthz` are served.
//! A request that frames its body by both `Content-Length` and `Transfer-Encoding`, and one whose head ends a line in
//! a bare LF, are answered 400 and end their connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drakon_core::bus::LocalBus;
use drakon_core::config;
use drakon_core::{Engine, EngineLimits, Store};
use drakon_server::ServerOptions;
use drakon_sqlite::SqliteStore;
use drakon_testkit::Client;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const TODO: &str = include_str!("../../../examples/todo/drakon.toml");
const HEAD_TIMEOUT: Duration = Duration::from_secs(1);
const CAP: usize = 20;

/// A TCP connection to `addr` from `source` (any port).
async fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from((source, 0))).expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}

/// Whether the server closed `stream` within `wait` (it reads the end of the stream, or a reset).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Whether the server has closed `stream` already, without waiting.
fn closed_now(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

/// Sends one HTTP request on `stream` and returns the status line of the answer.
async fn request(stream: &mut TcpStream, head: &str) -> String {
    stream.write_all(head.as_bytes()).await.expect("send the request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read the answer");
        assert!(n > 0, "the server closed the connection instead of answering");
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: drakon\r\n\r\n";
const HANDSHAKE: &str = "GET /data/websocket HTTP/1.1\r\nHost: drakon\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[tokio::test]
async fn silent_and_slow_connections_are_closed_and_everyone_else_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = config::parse(TODO, &dir.path().join("drakon.toml")).unwrap();
    let checked = config.schema.check().unwrap();
    let (bus, inbox) = LocalBus::new(64);
    let store = SqliteStore::open(dir.path().join("drakon.db"), bus.sink()).unwrap();
    store.migrate(checked.schema()).await.unwrap();
    let (engine, _fan_out) = Engine::start(
        drakon_core::node::NodeId::new("test"),
        checked,
        Arc::new(store),
        Arc::new(bus),
        inbox,
        EngineLimits::default(),
    );
    engine.ready().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options =
        ServerOptions { request_head_timeout: HEAD_TIMEOUT, max_pending_per_address: CAP, ..ServerOptions::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(drakon_server::serve(listener, engine, options, async {
        let _ = stopped.await;
    }));

    // A slowloris: a request head a byte every 100 ms, for as long as the server takes them.
    let opened = Instant::now();
    let mut slow = connect_from([127, 0, 0, 1], addr).await;
    let slowloris = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: drakon\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for byte in head {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await {
                break;
            }
        }
        opened.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Twice the cap of silent connections from the same address: those past the cap are closed at once.
    let mut silent = Vec::new();
    for _ in 0..2 * CAP {
        silent.push(connect_from([127, 0, 0, 1], addr).await);
    }
    // Looked at all at once, well within the head timeout.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept: Vec<TcpStream> = silent.into_iter().filter(|stream| !closed_now(stream)).collect();
    assert_eq!(kept.len(), CAP - 1, "the cap counts the slowloris too");
    let mut one_more = connect_from([127, 0, 0, 1], addr).await;
    assert!(closed_within(&mut one_more, Duration::from_millis(500)).await, "the address is at its cap");

    // Meanwhile another address is served: health checks and WebSocket handshakes.
    let mut health = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(request(&mut health, HEALTHZ).await, "HTTP/1.1 200 OK");
    let mut upgrade = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(request(&mut upgrade, HANDSHAKE).await, "HTTP/1.1 101 Switching Protocols");

    // Once the head timeout has run out, the silent connections and the slowloris are gone.
    let mut kept = kept;
    for stream in &mut kept {
        assert!(closed_within(stream, HEAD_TIMEOUT * 2).await, "a silent connection outlived the head timeout");
    }
    let lasted = slowloris.await.unwrap();
    assert!(lasted < HEAD_TIMEOUT * 3, "the slowloris lasted {lasted:?}");

    // The address is welcome again, for health checks and for real clients.
    let mut health = connect_from([127, 0, 0, 1], addr).await;
    assert_eq!(request(&mut health, HEALTHZ).await, "HTTP/1.1 200 OK");
    // A kept-alive connection that goes quiet after its request is closed too.
    assert!(closed_within(&mut health, HEAD_TIMEOUT * 2).await, "an idle kept-alive connection stayed open");
    let mut client = Client::connect(&format!("ws://{addr}/data/websocket")).await;
    let list = client.ok("todo-list", "create", json!({"name": "still served"})).await;
    assert_eq!(list["name"], "still served");

    // A request that frames its body both ways (a smuggling attempt through a proxy that reads the other one) and
    // one whose head ends a line in a bare LF are answered 400 and their connection closed; nothing in them, or
    // after them, is served.
    let both = "POST /api/publish HTTP/1.1\r\nHost: drakon\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
                0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: drakon\r\n\r\n";
    let bare = "GET /healthz HTTP/1.1\nHost: drakon\n\n";
    for (head, why) in [(both, "both Content-Length and Transfer-Encoding"), (bare, "bare LF")] {
        let mut smuggler = connect_from([127, 0, 0, 1], addr).await;
        smuggler.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), smuggler.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection is closed after the answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{why}: {answer}");
        assert!(answer.contains(r#""code":"bad_request""#) && answer.contains(why), "{why}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{why}: a smuggled request was answered: {answer}");
    }

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
}
