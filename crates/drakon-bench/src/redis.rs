//! A throwaway `redis-server` for the `nodes` scenario: a free port of 127.0.0.1, no persistence, a temporary
//! directory; killed when dropped.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Debian's `redis-server` package puts it here; `DRAKON_REDIS_SERVER` names another.
const DEFAULT_BIN: &str = "/usr/bin/redis-server";

#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub async fn start() -> Result<Redis> {
        let bin = std::env::var("DRAKON_REDIS_SERVER").unwrap_or_else(|_| DEFAULT_BIN.to_owned());
        if !std::path::Path::new(&bin).exists() {
            bail!("{bin} is missing: the nodes scenario needs Redis (apt-get install -y redis-server)");
        }
        let dir = tempfile::Builder::new().prefix("drakon-bench-redis-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // Many nodes subscribe; the default output buffer limits suit them, and nothing else connects.
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let redis = Redis { port, _child: child, _dir: dir };
        for _ in 0..200 {
            if redis.ping().await {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("redis-server did not answer on port {port}")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else { return false };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }
}
