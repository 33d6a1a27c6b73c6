//! A throwaway Redis server per test: `redis-server` on a free port of 127.0.0.1, without persistence, in a
//! temporary directory; killed when the [`TestRedis`] drops. [`TestRedis::restart`] kills it and starts a fresh one
//! on the same port, as after a Redis crash.
//!
//! The binary is `DRAKON_REDIS_SERVER` when set, else `/usr/bin/redis-server` (Debian's `redis-server` package);
//! when it is missing the test fails saying what to install.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

const DEFAULT_BIN: &str = "/usr/bin/redis-server";

/// A running Redis server that only this test uses.
#[derive(Debug)]
pub struct TestRedis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

fn bin() -> PathBuf {
    let path = std::env::var_os("DRAKON_REDIS_SERVER").map(PathBuf::from).unwrap_or_else(|| DEFAULT_BIN.into());
    assert!(
        path.exists(),
        "{} is missing; the Redis bus tests need Debian's redis-server: apt-get install -y redis-server",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local address").port()
}

impl TestRedis {
    /// Starts a server and waits until it answers.
    pub fn start() -> TestRedis {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let mut redis = TestRedis { dir, port: free_port(), child: None };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (dropping every connection) and starts a fresh one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server; [`TestRedis::restart`] (or `spawn` again) brings one back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .expect("redis log file");
        let child = Command::new(bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("redis log file"))
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ping() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "redis-server did not answer within {START_TIMEOUT:?}: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
