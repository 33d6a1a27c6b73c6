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

use crate::ports::{free_port, free_port_with};

/// How long a fresh server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

const DEFAULT_BIN: &str = "/usr/bin/redis-server";

/// A running Redis server that only this test uses.
#[derive(Debug)]
pub struct TestRedis {
    dir: tempfile::TempDir,
    port: u16,
    /// With TLS: the port that speaks it (`port` stays plain, for readiness checks).
    tls_port: Option<u16>,
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

impl TestRedis {
    /// Starts a server and waits until it answers.
    pub fn start() -> TestRedis {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        let mut redis = TestRedis { dir, port: free_port(), tls_port: None, child: None };
        redis.spawn();
        redis
    }

    /// Like [`TestRedis::start`], also listening for TLS on another port ([`TestRedis::tls_url`]) with a
    /// certificate for 127.0.0.1 signed by a throwaway CA ([`TestRedis::ca_file`]); clients need no certificate.
    pub fn start_with_tls() -> TestRedis {
        let dir = tempfile::tempdir().expect("temporary directory for redis");
        crate::tls::make_certificates(dir.path());
        let mut redis = TestRedis { dir, port: free_port(), tls_port: Some(free_port()), child: None };
        redis.spawn();
        redis
    }

    /// `rediss://127.0.0.1:<tls port>` (after [`TestRedis::start_with_tls`]).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port.expect("started with TLS"))
    }

    /// The PEM file of the CA that signed the server's certificate (after [`TestRedis::start_with_tls`]).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
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
        let dir = self.dir.path().display().to_string();
        let tls: Vec<String> = match self.tls_port {
            Some(port) => vec![
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                format!("{dir}/server.crt"),
                "--tls-key-file".into(),
                format!("{dir}/server.key"),
                "--tls-ca-cert-file".into(),
                format!("{dir}/ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            None => Vec::new(),
        };
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        self.child = Some(spawn_server(self.dir.path(), self.port, &tls));
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throwaway Redis Cluster: `masters` `redis-server`s in cluster mode on free ports of 127.0.0.1, joined with
/// `redis-cli --cluster create` (no replicas), each in its own temporary directory; killed when it drops.
/// [`TestRedisCluster::restart_node`] kills one node and starts it again on the same port with its cluster state
/// file, as after a crash.
#[derive(Debug)]
pub struct TestRedisCluster {
    nodes: Vec<ClusterNode>,
}

#[derive(Debug)]
struct ClusterNode {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl ClusterNode {
    fn spawn(&mut self) {
        let cluster =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
        self.child = Some(spawn_server(self.dir.path(), self.port, &cluster));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

/// Starts `redis-server` on `port` without persistence, with its files and log in `dir`, and waits until it
/// answers `PING`.
fn spawn_server(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("redis.log")).expect("redis log file");
    let mut child = Command::new(bin())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("redis log file"))
        .stderr(log)
        .spawn()
        .expect("start redis-server");
    let read_log = || std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let deadline = Instant::now() + START_TIMEOUT;
    while !ping(port) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited with {status}: {}", read_log());
        }
        assert!(Instant::now() < deadline, "redis-server did not answer within {START_TIMEOUT:?}: {}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// `redis-cli`, beside `redis-server`.
fn cli() -> PathBuf {
    bin().with_file_name("redis-cli")
}

impl TestRedisCluster {
    /// Starts `masters` nodes (at least 3, as Redis requires), creates the cluster and waits until every node
    /// reports it healthy.
    pub fn start(masters: usize) -> TestRedisCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let mut nodes: Vec<ClusterNode> = (0..masters)
            .map(|_| ClusterNode {
                dir: tempfile::tempdir().expect("temporary directory for redis"),
                // The node binds its port + 10,000 too, for the cluster bus.
                port: free_port_with(10_000),
                child: None,
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(cli())
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = TestRedisCluster { nodes };
        cluster.wait_healthy();
        cluster
    }

    /// The node URLs, comma-separated, as `redis_url` takes them for a cluster.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// The port of the node that serves the slot of `key` (for a sharded channel, its name).
    pub fn port_of(&self, key: &str) -> u16 {
        let out = Command::new(cli())
            .args(["-p", &self.nodes[0].port.to_string(), "cluster", "keyslot", key])
            .output()
            .expect("run redis-cli cluster keyslot");
        let slot: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("a slot number");
        let out = Command::new(cli())
            .args(["-p", &self.nodes[0].port.to_string(), "cluster", "slots"])
            .output()
            .expect("run redis-cli cluster slots");
        // Lines come in groups: start slot, end slot, then the master's host, port and id.
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for group in lines.chunks(5) {
            if let [start, end, _host, port, _id] = group
                && let (Ok(start), Ok(end), Ok(port)) = (start.parse::<u16>(), end.parse::<u16>(), port.parse())
                && (start..=end).contains(&slot)
            {
                return port;
            }
        }
        panic!("no node serves slot {slot}: {text}");
    }

    /// Kills the node on `port` and starts it again with its cluster state, then waits until the cluster is
    /// healthy again.
    pub fn restart_node(&mut self, port: u16) {
        let node = self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster");
        node.kill();
        node.spawn();
        self.wait_healthy();
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &self.nodes {
            loop {
                let out = Command::new(cli()).args(["-p", &node.port.to_string(), "cluster", "info"]).output();
                if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")) {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become healthy: {}", node.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for TestRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}
