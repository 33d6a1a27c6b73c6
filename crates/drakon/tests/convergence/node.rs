//! The JS client as one more mirror: `node/mirror.mjs` keeps a live collection with the committed bundle
//! (`clients/js/dist/drakon.mjs`) over the `ws` package, and prints it on request.
//!
//! The JS client reconnects to the URL it was given, but a restarted server listens on a new port and a killed
//! node does not come back, so the Node mirror connects through [`Proxy`]: a TCP relay on a port that never
//! changes, which forwards each new connection to the next of the live nodes the gate names (a load balancer's
//! round robin), and can cut every relayed connection to simulate a network drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use drakon_testkit::mirror::MirrorRow;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use super::world::Gate;

/// A TCP relay with a fixed address in front of the live nodes.
#[derive(Debug)]
pub struct Proxy {
    pub addr: String,
    cut: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(gate: Gate) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let (cut, cuts) = watch::channel(0u64);
        tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut downstream, _)) = listener.accept().await {
                let gate = gate.clone();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                let turn = next;
                next += 1;
                tokio::spawn(async move {
                    // Held while connecting: stopping a node holds the gate until it is out of the list.
                    let upstream = {
                        let urls = gate.read().await;
                        TcpStream::connect(host_port(&urls[turn % urls.len()])).await
                    };
                    let Ok(mut upstream) = upstream else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/data/websocket", self.addr)
    }

    /// Drops every relayed connection at once, without a close handshake.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// `127.0.0.1:port` of a `ws://127.0.0.1:port/…` URL.
fn host_port(url: &str) -> String {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    rest.split('/').next().expect("host and port").to_owned()
}

/// What the Node mirror printed for a `dump`.
#[derive(Debug)]
pub struct NodeDump {
    pub rows: BTreeMap<i64, MirrorRow>,
    /// The live collection's status, its error and client state counts, as printed.
    pub summary: String,
}

/// The `node mirror.mjs` process.
#[derive(Debug)]
pub struct NodeMirror {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/convergence/node")
}

/// Installs the script's `ws` from its lock file when it is missing (a fresh clone).
async fn install(dir: &Path) {
    if dir.join("node_modules/ws/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run npm in {} (the Node mirror needs Node and npm): {e}", dir.display()));
    assert!(status.success(), "npm ci in {} failed: {status}", dir.display());
}

impl NodeMirror {
    pub async fn start(url: &str, route: &str, filter: &Value) -> NodeMirror {
        let dir = script_dir();
        install(&dir).await;
        let mut child = Command::new("node")
            .arg(dir.join("mirror.mjs"))
            .args([url, route, &filter.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (the Node mirror needs Node 20): {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        NodeMirror { child, stdin, stdout }
    }

    pub async fn dump(&mut self) -> NodeDump {
        self.stdin.write_all(b"dump\n").await.expect("write to the Node mirror");
        self.stdin.flush().await.expect("flush");
        let line = tokio::time::timeout(Duration::from_secs(10), self.stdout.next_line())
            .await
            .expect("the Node mirror answers within 10 s")
            .expect("read the Node mirror")
            .expect("the Node mirror exited");
        let dump: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the Node mirror printed {line:?}: {e}"));
        let rows = dump["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| {
                let row = row.as_object().expect("a row is an object").clone();
                (row["id"].as_i64().expect("id"), row)
            })
            .collect();
        let summary = format!(
            "status {}, error {}, client states {}, {} changes, offset {}",
            dump["status"], dump["error"], dump["states"], dump["changes"], dump["lastOffset"]
        );
        NodeDump { rows, summary }
    }

    /// Dumps until the rows hold every id of `ids` or `deadline` passes; returns the last dump.
    pub async fn until_holds(&mut self, ids: &[i64], deadline: Instant) -> NodeDump {
        loop {
            let dump = self.dump().await;
            if ids.iter().all(|id| dump.rows.contains_key(id)) || Instant::now() >= deadline {
                return dump;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
