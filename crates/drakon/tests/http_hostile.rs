//! No HTTP request is the server's fault: three thousand random requests to every HTTP route (random methods, paths
//! with traversal and encoding tricks, forged origins, cookies, keys and upgrade headers, random bodies) each get an
//! answer, never a 5xx, never a file from outside the static directory or the admin secret, and the server serves
//! everyone normally afterwards.

mod common;

use std::time::Duration;

use common::{TODO, http};
use drakon_testkit::{Client, TestServer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "publish-key-for-the-fuzzer";
const ADMIN: &str = "admin-secret-for-the-fuzzer";
/// In the config file, which a request must never be able to read.
const CANARY: &str = "canary-7f3a1c";

const METHODS: &[&str] =
    &["GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "G\tET", "BREW"];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/healthz",
    "/readyz",
    "/drakon.js",
    "/api/publish",
    "/api/publish/",
    "/admin",
    "/admin/",
    "/admin/admin.js",
    "/admin/admin.css",
    "/admin/login",
    "/admin/logout",
    "/admin/api/schema",
    "/data/websocket",
    "/escape",
    "/escape/drakon.toml",
    "/../drakon.toml",
    "/%2e%2e/drakon.toml",
    "/..%2fdrakon.toml",
    "/%2e%2e%2fdrakon.toml",
    "//drakon.toml",
    "/./index.html",
    "/index.html%00.toml",
    "/%ff%fe",
    "/nope",
    "*",
    "http://evil.example/admin",
];
const QUERIES: &[&str] = &["", "", "", "?token=", "?token=00.00", "?secret=", "?a=%zz", "?x=1&x=2", "?"];
const ORIGINS: &[&str] = &["http://evil.example", "null", "http://127.0.0.1", "file://", "http://[::1]", "\u{7f}"];
const HEADER_NAMES: &[&str] = &[
    "Origin",
    "Cookie",
    "Authorization",
    "X-Drakon-Key",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Content-Type",
    "Range",
    "Accept-Encoding",
    "If-Modified-Since",
    "X-Forwarded-For",
    "Expect",
];

fn random_text(rng: &mut ChaCha8Rng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    (0..len).map(|_| char::from(rng.random_range(0x20u8..0x7f))).collect()
}

fn header_value(rng: &mut ChaCha8Rng, name: &str) -> String {
    match (name, rng.random_range(0..4)) {
        ("Origin", 0..=2) => ORIGINS[rng.random_range(0..ORIGINS.len())].to_owned(),
        ("Cookie", 0..=1) => format!("drakon_admin={}", random_text(rng, 80)),
        ("Cookie", 2) => format!("drakon_admin={ADMIN}"),
        ("Authorization", 0) => format!("Bearer {KEY}"),
        ("Authorization", 1..=2) => format!("Bearer {}", random_text(rng, 40)),
        ("Upgrade", 0..=2) => "websocket".into(),
        ("Connection", 0..=2) => "Upgrade".into(),
        ("Sec-WebSocket-Version", 0..=2) => "13".into(),
        ("Sec-WebSocket-Key", 0..=1) => "dGhlIHNhbXBsZSBub25jZQ==".into(),
        ("Range", 0..=2) => format!("bytes={}-{}", rng.random_range(0..100), rng.random_range(0..10_000)),
        ("Content-Type", 0..=1) => "application/x-www-form-urlencoded".into(),
        _ => random_text(rng, 60),
    }
}

fn random_body(rng: &mut ChaCha8Rng) -> Vec<u8> {
    match rng.random_range(0..6) {
        0 => Vec::new(),
        1 => json!({"channel": random_text(rng, 12), "data": random_text(rng, 30)}).to_string().into_bytes(),
        2 => format!("secret={}", random_text(rng, 30)).into_bytes(),
        3 => format!("secret={ADMIN}").into_bytes(),
        4 => (0..rng.random_range(0..300)).map(|_| rng.random()).collect(),
        _ => random_text(rng, 300).into_bytes(),
    }
}

fn random_request(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let method = METHODS[rng.random_range(0..METHODS.len())];
    let path = match rng.random_range(0..10) {
        0 => format!("/{}", random_text(rng, 40).replace(' ', "%20")),
        _ => PATHS[rng.random_range(0..PATHS.len())].to_owned(),
    };
    let query = QUERIES[rng.random_range(0..QUERIES.len())];
    let mut head = format!("{method} {path}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for _ in 0..rng.random_range(0..5) {
        let name = HEADER_NAMES[rng.random_range(0..HEADER_NAMES.len())];
        head.push_str(&format!("{name}: {}\r\n", header_value(rng, name)));
    }
    let body = random_body(rng);
    if !body.is_empty() || rng.random_bool(0.2) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(&body);
    request
}

/// The status and whole answer to `request`; a `101` is read up to its head only (the socket then carries
/// WebSocket frames, and is dropped).
async fn answer(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer in 5 s to {}", String::from_utf8_lossy(request)))
            .unwrap_or(0);
        raw.extend_from_slice(&buf[..n]);
        if n == 0 || raw.starts_with(b"HTTP/1.1 101") && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status = status.unwrap_or_else(|| panic!("no status line ({text:?}) for {}", String::from_utf8_lossy(request)));
    (status, text)
}

#[tokio::test]
async fn random_http_requests_get_an_answer_never_a_server_error_or_a_file_outside_the_static_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, models) = TODO.split_once("[models.").expect("models");
    let config = format!(
        "# {CANARY}\n[server]\napi_key = \"{KEY}\"\nadmin_secret = \"{ADMIN}\"\nstatic_dir = \"public\"\n\n[models.{models}"
    );
    std::fs::write(dir.path().join("drakon.toml"), config).expect("config");
    std::fs::create_dir(dir.path().join("public")).expect("public");
    std::fs::write(dir.path().join("public/index.html"), "<h1>todo</h1>").expect("index");
    std::os::unix::fs::symlink(dir.path(), dir.path().join("public/escape")).expect("symlink");
    let server = TestServer::spawn_in(common::BIN, dir, &[]).await;

    let mut rng = ChaCha8Rng::seed_from_u64(0x4877_7470);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..3_000 {
        let request = random_request(&mut rng);
        let (status, text) = answer(&server.addr, &request).await;
        let what = String::from_utf8_lossy(&request[..request.len().min(300)]).into_owned();
        assert!(status < 500, "{status} for {what}\n{text}");
        assert!(!text.contains(CANARY), "the config file was served for {what}");
        assert!(!text.contains(ADMIN), "the admin secret was echoed for {what}");
        *statuses.entry(status).or_default() += 1;
    }
    // The requests reached the routes' own checks, not only the parser's.
    for status in [200, 400, 404] {
        assert!(statuses.get(&status).is_some_and(|&n| n > 20), "too few {status}s: {statuses:?}");
    }

    let health = http(&server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200, "{}", health.body);
    let mut client = Client::connect(&server.ws_url()).await;
    client.ok("todo-list", "create", json!({"name": "after the fuzzing"})).await;
}
