//! Test support: a real `drakon` process on `127.0.0.1:0` with its own temporary directory, and a real WebSocket
//! client that speaks the native protocol.
//!
//! Nothing here is a stand-in: the server is the release binary under test and the client is tokio-tungstenite,
//! an implementation independent of the server's. [`store_suite`](mod@store_suite) is the store conformance suite
//! that every store runs against its real database.

pub mod mirror;
mod ports;
pub mod postgres;
pub mod redis;
pub mod store_suite;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen at once; generous, because CI machines stall.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running `drakon serve` process.
#[derive(Debug)]
pub struct TestServer {
    pub addr: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl TestServer {
    /// Writes `config` to `drakon.toml` in a fresh directory and runs `binary serve` on a free port.
    pub async fn spawn(binary: &str, config: &str) -> TestServer {
        Self::spawn_with(binary, config, &[]).await
    }

    /// Like [`TestServer::spawn`], with extra environment variables.
    pub async fn spawn_with(binary: &str, config: &str, env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("drakon.toml"), config).expect("write config");
        Self::spawn_in(binary, dir, env).await
    }

    /// Runs `binary serve` with the `drakon.toml` already in `dir`.
    pub async fn spawn_in(binary: &str, dir: tempfile::TempDir, env: &[(&str, &str)]) -> TestServer {
        let mut cmd = Command::new(binary);
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.path().join("drakon.toml"))
            .arg("--bind")
            .arg("127.0.0.1:0")
            // `DRAKON_TEST_LOG` (e.g. `drakon_server=debug`) shows more of what the servers under test do.
            .env("DRAKON_LOG", std::env::var("DRAKON_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.strip_prefix("drakon listening on http://") {
                    return rest.split_whitespace().next().expect("address").to_owned();
                }
            }
            panic!("drakon exited before listening")
        })
        .await
        .expect("drakon did not start in time");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        TestServer { addr, dir, child }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/data/websocket", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("drakon.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("drakon.toml")
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// Sends SIGTERM and returns the exit status once the process has ended.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let pid = self.child.id().expect("running") as i32;
        let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill");
        assert!(status.success(), "kill -TERM failed");
        let status =
            tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("drakon did not exit").expect("wait");
        (status, self.dir)
    }

    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A native-protocol client that keeps publications that arrive while it waits for a reply.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    next_callback: u64,
    publications: std::collections::VecDeque<Value>,
}

/// What ended a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Client::from_socket(ws)
    }

    /// A client over a WebSocket connected some other way (with headers of its own, say).
    pub fn from_socket(ws: Ws) -> Client {
        Client { ws, next_callback: 0, publications: Default::default() }
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Reads the next JSON text frame, answering nothing else; `None` when the connection closed.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next()).await.ok()??.ok()?;
            match msg {
                Message::Text(t) => return Some(serde_json::from_str(t.as_str()).expect("server sent JSON")),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Sends a request and returns its reply; publications that arrive first are kept for
    /// [`Client::next_publication`].
    pub async fn call(&mut self, route: &str, verb: &str, args: Value) -> Value {
        self.next_callback += 1;
        let callback = format!("cb_{}", self.next_callback);
        let frame = json!({"route": route, "verb": verb, "args": args, "callbackname": callback});
        self.send_text(&frame.to_string()).await;
        self.reply_to(&callback).await
    }

    /// Waits for the reply whose callback name is `callback`.
    pub async fn reply_to(&mut self, callback: &str) -> Value {
        loop {
            let frame = self.next_frame(PATIENCE).await.unwrap_or_else(|| panic!("no reply to {callback}"));
            if frame["context"]["client_callback_name"] == callback {
                return frame;
            }
            if frame.get("channel").is_some() {
                self.publications.push_back(frame);
            }
        }
    }

    /// Calls and asserts success; returns `data`.
    pub async fn ok(&mut self, route: &str, verb: &str, args: Value) -> Value {
        let reply = self.call(route, verb, args.clone()).await;
        assert_eq!(reply["context"]["state"], "success", "{route} {verb} {args} failed: {reply}");
        reply["data"].clone()
    }

    /// Calls and asserts an error with `code`; returns `data` (code, message, fields).
    pub async fn err(&mut self, route: &str, verb: &str, args: Value, code: &str) -> Value {
        let reply = self.call(route, verb, args.clone()).await;
        assert_eq!(reply["context"]["state"], "error", "{route} {verb} {args} should fail: {reply}");
        assert_eq!(reply["data"]["code"], code, "{route} {verb} {args}: {reply}");
        reply["data"].clone()
    }

    /// Subscribes `local` with `args` and returns the server channel names.
    pub async fn subscribe(&mut self, route: &str, local: &str, mut args: Value) -> Vec<String> {
        args["channel"] = json!(local);
        let reply = self.call(route, "subscribe", args).await;
        assert_eq!(reply["context"]["state"], "success", "subscribe failed: {reply}");
        serde_json::from_value(reply["channel_data"]["remote_channels"].clone()).expect("remote channels")
    }

    /// The next publication, waiting up to `wait`.
    pub async fn next_publication(&mut self, wait: Duration) -> Option<Value> {
        if let Some(p) = self.publications.pop_front() {
            return Some(p);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame.get("channel").is_some() {
                return Some(frame);
            }
        }
    }

    /// Every publication that arrives within `wait` (use after the writes that cause them).
    pub async fn drain_publications(&mut self, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(p) = self.next_publication(wait).await {
            out.push(p);
        }
        out
    }

    /// Waits for the server to close the connection and returns its close frame.
    pub async fn closed(&mut self, wait: Duration) -> Option<Closed> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Closed { code: None, reason: String::new() }),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let frame: Option<CloseFrame> = frame;
                    return Some(Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The underlying socket, for tests that misbehave on purpose.
    pub fn socket(&mut self) -> &mut Ws {
        &mut self.ws
    }
}
