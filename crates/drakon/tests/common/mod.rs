//! Helpers shared by the integration tests: starting the real binary, a bare HTTP/1.1 client for the publish API,
//! and a bare WebSocket client for the frames tungstenite's high-level API will not send (binary frames, frames
//! past the server's hard cap while the server hangs up).

#![allow(dead_code, reason = "each test file uses a different subset of these helpers")]

use std::time::Duration;

use drakon_testkit::{Client, PATIENCE, TestServer};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_drakon");

/// The todo example app, as shipped.
pub const TODO: &str = include_str!("../../../../examples/todo/drakon.toml");

/// How long to listen for something that must not arrive, after a later event that did arrive.
pub const QUIET: Duration = Duration::from_millis(300);

pub async fn spawn(config: &str) -> TestServer {
    TestServer::spawn(BIN, config).await
}

/// The todo example with extra `[server]` keys; the example's own `[server]` table is replaced.
pub fn todo_with_server(server_keys: &str) -> String {
    let (_, rest) = TODO.split_once("[models.").expect("the todo example declares models");
    format!("[server]\n{server_keys}\n\n[models.{rest}")
}

/// Asserts that the connection still answers a valid request.
pub async fn assert_alive(client: &mut Client, after: &str) {
    let reply = client.call("todo-list", "get_list", json!({})).await;
    assert_eq!(reply["context"]["state"], "success", "connection unusable after {after}: {reply}");
    assert!(reply["data"].is_array(), "after {after}: {reply}");
}

/// The next frame that is not an app heartbeat.
pub async fn next_non_heartbeat(client: &mut Client, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = client.next_frame(left).await?;
        if frame != json!({"heartbeat": "1"}) {
            return Some(frame);
        }
    }
}

/// An HTTP response: status and body text.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    raw_http(addr, &request).await
}

/// Sends `request` exactly as given (it should ask for `Connection: close`) and reads the answer.
pub async fn raw_http(addr: &str, request: &[u8]) -> HttpResponse {
    let mut stream = tokio::time::timeout(PATIENCE, TcpStream::connect(addr)).await.expect("connect").expect("connect");
    stream.write_all(request).await.expect("write the request");
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw)).await.expect("response in time").expect("read");
    let text = String::from_utf8(raw).expect("response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no header end: {text}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status: {head}"));
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "this helper reads plain bodies only: {head}"
    );
    HttpResponse { status, head: head.to_owned(), body: body.to_owned() }
}

/// `POST /api/publish` with `Authorization: Bearer <key>` when a key is given.
pub async fn publish(server: &TestServer, key: Option<&str>, body: &Value) -> HttpResponse {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http(&server.addr, "POST", "/api/publish", &headers, body.to_string().as_bytes()).await
}

/// WebSocket opcodes this client sends or reads.
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A bare RFC 6455 client: it writes exactly the frames it is told to and never answers pings.
#[derive(Debug)]
pub struct RawWs {
    reader: BufReader<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
}

/// One frame as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("a JSON text frame")
    }

    /// The status code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawWs {
    pub async fn connect(addr: &str) -> RawWs {
        RawWs::connect_with(addr, &[]).await.unwrap_or_else(|status| panic!("handshake refused: {status}"))
    }

    /// A handshake with extra headers (`Cookie`, `Origin`); `Err` holds the status line of a refusal.
    pub async fn connect_with(addr: &str, headers: &[(&str, &str)]) -> Result<RawWs, String> {
        let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(addr)).await.expect("connect").expect("connect");
        let (read, mut write) = stream.into_split();
        let mut request = format!(
            "GET /data/websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        write.write_all(request.as_bytes()).await.expect("write handshake");
        let mut reader = BufReader::new(read);
        let mut status = String::new();
        reader.read_line(&mut status).await.expect("read handshake");
        if !status.starts_with("HTTP/1.1 101") {
            return Err(status.trim_end().to_owned());
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("read handshake headers");
            if line == "\r\n" {
                break;
            }
        }
        Ok(RawWs { reader, writer: Some(write) })
    }

    /// Writes one masked, final frame; `Err` when the server has hung up.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let frame = masked_frame(opcode, payload);
        self.writer.as_mut().expect("writer").write_all(&frame).await
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send(OP_TEXT, value.to_string().as_bytes()).await.expect("send");
    }

    /// Writes bytes as they are: for frames no well-behaved client sends.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.as_mut().expect("writer").write_all(bytes).await
    }

    /// The next frame of any kind, pings and pongs included; `None` on timeout or when the socket ends.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<RawFrame> {
        tokio::time::timeout(wait, self.read_frame()).await.ok()?.ok()
    }

    /// Takes the write half, for a writer task that may fail while the test reads.
    pub fn take_writer(&mut self) -> OwnedWriteHalf {
        self.writer.take().expect("writer")
    }

    /// The next data or close frame, skipping pings and pongs; `None` on timeout or when the socket ends.
    pub async fn next(&mut self, wait: Duration) -> Option<RawFrame> {
        tokio::time::timeout(wait, async {
            loop {
                let frame = self.read_frame().await.ok()?;
                if frame.opcode != OP_PING && frame.opcode != OP_PONG {
                    return Some(frame);
                }
            }
        })
        .await
        .ok()?
    }

    async fn read_frame(&mut self) -> std::io::Result<RawFrame> {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0F;
        assert!(head[1] & 0x80 == 0, "server frames are never masked");
        let len = match head[1] & 0x7F {
            126 => u64::from(self.reader.read_u16().await?),
            127 => self.reader.read_u64().await?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
        self.reader.read_exact(&mut payload).await?;
        Ok(RawFrame { opcode, payload })
    }
}

/// A final client frame with the given opcode, masked as RFC 6455 requires of clients.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The `tests/e2e` directory, once Chromium and the scripts' npm packages are known to be there; the browser tests
/// fail (never skip) when they are missing.
pub fn e2e_dir() -> std::path::PathBuf {
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e");
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Debian's Chromium: apt-get install -y chromium (scripts/test.sh does this)"
    );
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "the browser tests need their packages: (cd tests/e2e && npm ci) (scripts/test.sh does this)"
    );
    e2e
}

/// Runs `tests/e2e/<script>` with this build of `drakon`, its screenshots in `tests/e2e/<artifacts>`; fails with
/// the script's output unless it passes, and returns its output otherwise.
pub fn run_e2e(script: &str, artifacts: &str) -> String {
    let e2e = e2e_dir();
    let output = std::process::Command::new("node")
        .arg(e2e.join(script))
        .env("DRAKON_BIN", BIN)
        .env("E2E_ARTIFACTS", e2e.join(artifacts))
        .output()
        .expect("run node (Node.js 20 is needed for the browser tests)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", output.status);
    stdout
}

/// The HS256 secret of [`NOTES`].
pub const SECRET: &str = "the-notes-app-secret-of-32-chars-or-more";

/// A notes app with users: each note has an owner (set by the server) and may be public; staff read every note
/// and hand notes over.
pub const NOTES: &str = r#"
[auth]
jwt_secret = "the-notes-app-secret-of-32-chars-or-more"

[models.note.fields]
text = { type = "text" }
owner = { type = "text" }
public = { type = "bool", default = false }

[routes.notes]
model = "note"
publish_fields = ["text", "owner", "public"]
update_fields = ["text", "public"]
set = { owner = "$user.id" }

# Staff read every note; others their own, and anyone the public ones.
[routes.notes.rules]
read = { any = [{ role = "staff" }, { filter = { owner = "$user.id" } }, { filter = { public = true } }] }
create = "authenticated"
update = { filter = { owner = "$user.id" } }
delete = { any = [{ role = "staff" }, { filter = { owner = "$user.id" } }] }

# Staff hand notes over to another user.
[routes.handover]
model = "note"
publish_fields = ["owner"]
update_fields = ["owner"]
verbs = ["update"]

[routes.handover.rules]
update = { role = "staff" }
read = { role = "staff" }
"#;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A token signed with [`SECRET`].
pub fn token(claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).expect("a key")).expect("a token")
}

/// A token for user `id` with `roles`, valid for ten minutes.
pub fn user_token(id: &str, roles: &[&str]) -> String {
    token(json!({"sub": id, "exp": now() + 600, "roles": roles, "info": {"name": id}}))
}

// Built-in users: logging in over HTTP, and sockets whose upgrade carries the session cookie.

pub async fn login(server: &TestServer, name: &str, password: &str) -> HttpResponse {
    let addr = server.addr.as_str();
    let body = json!({"name": name, "password": password}).to_string();
    http(addr, "POST", "/auth/login", &[], body.as_bytes()).await
}

/// The `drakon_session=…` pair of a successful login.
pub fn session_cookie(response: &HttpResponse) -> String {
    let line = response
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: drakon_session="))
        .unwrap_or_else(|| panic!("no session cookie: {}", response.head));
    line["set-cookie: ".len()..].split(';').next().unwrap().to_owned()
}

pub async fn logged_in(server: &TestServer, name: &str, password: &str) -> String {
    let response = login(server, name, password).await;
    assert_eq!(response.status, 200, "{}", response.body);
    session_cookie(&response)
}

/// A protocol client whose upgrade carries `cookie` from the server's own page.
pub async fn client_with_cookie(server: &TestServer, cookie: &str) -> Client {
    let mut request = server.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    request.headers_mut().insert("origin", format!("http://{}", server.addr).parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade with a cookie");
    Client::from_socket(ws)
}

/// The todo demo with users.
pub const TODO_USERS: &str = include_str!("../../../../examples/todo/drakon-users.toml");

/// The demo's config without its static files (the test has none), with a staff user besides Alice and Bob.
pub fn todo_users_config() -> String {
    let config = TODO_USERS.replace("static_dir = \"public\"", "");
    format!(
        "{config}\n[[auth.initial_users]]\nname = \"carol\"\npassword = \"carol-staff-pass\"\nroles = [\"staff\"]\n"
    )
}
