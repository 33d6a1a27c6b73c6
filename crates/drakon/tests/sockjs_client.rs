//! SockJS at `/data`, against code nobody here wrote: `sockjs-client` from npm (installed by `npm ci` in
//! `tests/e2e`, never committed) connects to the real binary over xhr-streaming and xhr-polling, calls verbs,
//! subscribes, and receives the event of a write made by a WebSocket client (`tests/e2e/sockjs.e2e.mjs`). Also the
//! endpoints' own answers: the greeting, `info`, CORS, a second receiver, an unknown session, a broken body.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, TODO, http, raw_http};
use drakon_testkit::TestServer;

#[test]
fn sockjs_client_from_npm_works_over_each_http_transport() {
    let e2e = common::e2e_dir();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let config = TODO.replace("static_dir = \"public\"", "");
    let server = runtime.block_on(TestServer::spawn(BIN, &config));
    let output = Command::new("node")
        .arg(e2e.join("sockjs.e2e.mjs"))
        .arg(server.http_url(""))
        .output()
        .expect("run node (Node.js 20 is needed for this test)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sockjs-client failed ({}):\n{stdout}\n{stderr}", output.status);
    for transport in ["xhr-streaming", "xhr-polling"] {
        assert!(stdout.contains(&format!("ok {transport}")), "{stdout}");
    }
}

#[tokio::test]
async fn the_endpoints_answer_as_the_sockjs_protocol_says() {
    let config = TODO.replace("static_dir = \"public\"", "");
    let server = TestServer::spawn(BIN, &config).await;
    let addr = server.addr.as_str();
    assert_eq!(http(addr, "GET", "/data", &[], b"").await.body, "Welcome to SockJS!\n");
    // SwampDragon's pages load /settings.js, which names this server as the request reached it.
    let settings = http(addr, "GET", "/settings.js", &[], b"").await;
    let expected = format!(
        "window.swampdragon_settings = {{\"endpoint\": \"/data\"}};\nwindow.swampdragon_host = \"http://{addr}\";\n"
    );
    assert_eq!(settings.body, expected);
    let hostile =
        raw_http(addr, b"GET /settings.js HTTP/1.1\r\nHost: x\";alert(1)//\r\nConnection: close\r\n\r\n").await;
    assert_eq!(hostile.status, 400, "{}", hostile.body);
    let info = http(addr, "GET", "/data/info", &[("Origin", "http://app.example")], b"").await;
    let head = info.head.to_ascii_lowercase();
    assert!(head.contains("access-control-allow-origin: http://app.example"), "{}", info.head);
    assert!(head.contains("access-control-allow-credentials: true"), "{}", info.head);
    assert_eq!(info.json()["cookie_needed"], false);
    let preflight = http(addr, "OPTIONS", "/data/000/s1/xhr", &[("Origin", "http://app.example")], b"").await;
    assert_eq!(preflight.status, 204);
    assert!(preflight.head.to_ascii_lowercase().contains("access-control-allow-methods: options, post"));

    // A page of another origin may not open a session (its cookies would ride along) unless allowed_origins lists it.
    let foreign = http(addr, "POST", "/data/000/s0/xhr", &[("Origin", "http://evil.example")], b"").await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);

    // Opening, then a long poll that a second receiver cannot join.
    assert_eq!(http(addr, "POST", "/data/000/s1/xhr", &[], b"").await.body, "o\n");
    let waiting = {
        let addr = addr.to_owned();
        tokio::spawn(async move { http(&addr, "POST", "/data/000/s1/xhr", &[], b"").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = http(addr, "POST", "/data/000/s1/xhr", &[], b"").await;
    assert_eq!(second.body, "c[2010,\"Another connection still open\"]\n");
    let sent = http(
        addr,
        "POST",
        "/data/000/s1/xhr_send",
        &[],
        br#"["{\"route\":\"todo-list\",\"verb\":\"get_list\",\"args\":{},\"callbackname\":\"cb\"}"]"#,
    )
    .await;
    assert_eq!(sent.status, 204);
    let answered = waiting.await.unwrap();
    assert!(answered.body.starts_with("a[\"{\\\"data\\\":[]"), "{}", answered.body);

    // A client that goes away in the middle of a long poll leaves the session free for its next poll.
    let dropped = {
        let addr = addr.to_owned();
        tokio::spawn(async move { http(&addr, "POST", "/data/000/s1/xhr", &[], b"").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    dropped.abort();
    let _ = dropped.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    http(addr, "POST", "/data/000/s1/xhr_send", &[], b"[\"{}\"]").await;
    let next = http(addr, "POST", "/data/000/s1/xhr", &[], b"").await;
    assert!(next.body.starts_with("a["), "the poll after an abandoned one: {}", next.body);

    // Sending to nobody, or nothing, or garbage.
    assert_eq!(http(addr, "POST", "/data/000/nobody/xhr_send", &[], b"[\"x\"]").await.status, 404);
    let empty = http(addr, "POST", "/data/000/s1/xhr_send", &[], b"").await;
    assert_eq!((empty.status, empty.body.as_str()), (500, "Payload expected."));
    let broken = http(addr, "POST", "/data/000/s1/xhr_send", &[], b"[\"x").await;
    assert_eq!((broken.status, broken.body.as_str()), (500, "Broken JSON encoding."));
    // A message that is not a request gets the protocol's error reply, and the session stays.
    assert_eq!(http(addr, "POST", "/data/000/s1/xhr_send", &[], b"[\"not json\"]").await.status, 204);
    let reply = http(addr, "POST", "/data/000/s1/xhr", &[], b"").await;
    assert!(reply.body.contains("bad_json"), "{}", reply.body);
    // Ids with a dot are no session ids.
    assert_eq!(http(addr, "POST", "/data/000/a.b/xhr", &[], b"").await.status, 404);

    // Nobody receives for the disconnect delay (5 s): the session is closed, and sending to it finds nobody.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(http(addr, "POST", "/data/000/s1/xhr_send", &[], b"[\"x\"]").await.status, 404);
}
