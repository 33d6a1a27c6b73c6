//! The servers under test: a drakon process with a generated config in a temporary directory, the Node `ws`
//! baseline, or the floor (this executable's hidden `floor-server` subcommand, [`crate::floor`]). Each binds
//! `127.0.0.1:0`, says where it listens on stdout, and is killed when the step is over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procfs;

/// The api key of `POST /api/publish`, handed to every server through `DRAKON_API_KEY`.
pub const API_KEY: &str = "drakon-bench-key";

/// How long a server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Drakon,
    NodeWs,
    Floor,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Drakon => "drakon",
            Kind::NodeWs => "node-ws",
            Kind::Floor => "floor",
        }
    }
}

/// How a server is started: which programs, and on which core.
#[derive(Debug, Clone)]
pub struct Launch {
    pub drakon: PathBuf,
    pub baseline: Option<PathBuf>,
    /// This executable, which serves the floor with its `floor-server` subcommand, when the floor is measured.
    pub floor: Option<PathBuf>,
    /// `taskset -c <core>` for the server, when pinning is on.
    pub server_core: Option<usize>,
}

/// The HS256 secret of the tokens `users` signs its connections in with.
pub const JWT_SECRET: &str = "drakon-bench-jwt-secret-of-32-chars-or-more";

/// drakon's config for every scenario: a model whose rows carry the timestamp, and a plain channel route. `item`
/// has no rules; `mine` and `list` serve the same rows under per-user rules, for `users`: "my items" (the caller's
/// own rows) and a list shared by every user (own rows or shared ones). All three publish the same fields, so
/// their events are the same size.
pub fn drakon_config(max_subscriptions: usize) -> String {
    format!(
        r#"[server]
database = "bench.db"
max_subscriptions = {max_subscriptions}
# The benchmark holds connections that send nothing for minutes: keep the idle timeout out of the way.
idle_timeout_secs = 3600
ping_interval_secs = 1800

[models.item.fields]
grp = {{ type = "int" }}
ts = {{ type = "int", default = 0 }}
seq = {{ type = "int", default = 0 }}
pad = {{ type = "text", default = "" }}
owner = {{ type = "text", default = "" }}
shared = {{ type = "bool", default = false }}

[routes.item]
model = "item"
publish_fields = ["grp", "ts", "seq", "pad"]
update_fields = ["ts", "seq", "pad"]
create_fields = ["grp", "ts", "seq", "pad", "owner", "shared"]

[auth]
jwt_secret = "{JWT_SECRET}"

[routes.mine]
model = "item"
publish_fields = ["grp", "ts", "seq", "pad"]
verbs = ["get_list", "subscribe", "unsubscribe"]

[routes.mine.rules]
read = {{ filter = {{ owner = "$user.id" }} }}

[routes.list]
model = "item"
publish_fields = ["grp", "ts", "seq", "pad"]
verbs = ["get_list", "subscribe", "unsubscribe"]

[routes.list.rules]
read = {{ any = [{{ filter = {{ owner = "$user.id" }} }}, {{ filter = {{ shared = true }} }}] }}

[routes.bench]
kind = "channel"
channels = ["bench.*"]

# `presence`: rooms of signed-in members, and an anonymous joiner.
[routes.room]
kind = "channel"
channels = ["room.*"]

[routes.room.presence]
anonymous = true
"#
    )
}

/// A running server.
#[derive(Debug)]
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    dir: tempfile::TempDir,
}

fn pinned(program: &Path, core: Option<usize>) -> Command {
    match core {
        Some(core) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(core.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

impl Target {
    pub async fn start(kind: Kind, launch: &Launch, max_subscriptions: usize) -> Result<Target> {
        Target::start_with(kind, launch, max_subscriptions, &[]).await
    }

    /// Like [`Target::start`], with extra environment variables for the server (e.g. `DRAKON_REDIS_URL`).
    pub async fn start_with(
        kind: Kind,
        launch: &Launch,
        max_subscriptions: usize,
        env: &[(&str, &str)],
    ) -> Result<Target> {
        let dir = tempfile::Builder::new().prefix("drakon-bench-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut cmd = match kind {
            Kind::Drakon => {
                let config = dir.path().join("drakon.toml");
                std::fs::write(&config, drakon_config(max_subscriptions))?;
                let mut cmd = pinned(&launch.drakon, launch.server_core);
                cmd.arg("serve").arg("--config").arg(&config).arg("--bind").arg("127.0.0.1:0");
                cmd.env("DRAKON_LOG", "warn");
                cmd
            }
            Kind::NodeWs => {
                let script = launch.baseline.as_ref().context("no baseline script")?;
                let mut cmd = pinned(Path::new("node"), launch.server_core);
                cmd.arg(script).arg("--bind").arg("127.0.0.1:0");
                cmd
            }
            Kind::Floor => {
                let exe = launch.floor.as_ref().context("the floor is not measured in this run")?;
                let mut cmd = pinned(exe, launch.server_core);
                cmd.arg("floor-server").arg("--bind").arg("127.0.0.1:0");
                cmd
            }
        };
        cmd.envs(env.iter().copied())
            .env("DRAKON_API_KEY", API_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", kind.name()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let prefix = match kind {
            Kind::Drakon => "drakon listening on http://",
            Kind::NodeWs => "baseline listening on http://",
            Kind::Floor => "floor listening on http://",
        };
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    return addr.parse::<SocketAddr>().with_context(|| format!("bad address in {line:?}"));
                }
            }
            bail!("exited before listening")
        })
        .await;
        let addr = match found {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => bail!("{} {e:#}: {}", kind.name(), tail(&dir.path().join("server.log"))),
            Err(_) => bail!("{} did not listen within {START_TIMEOUT:?}", kind.name()),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Target { kind, addr, pid, child, dir })
    }

    pub fn cpu(&self) -> Result<Duration> {
        procfs::cpu_time(Some(self.pid))
    }

    pub fn rss(&self) -> Result<u64> {
        procfs::rss_bytes(self.pid)
    }

    /// Fails with the end of the server's log when it is no longer running.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}): {}", self.kind.name(), tail(&self.dir.path().join("server.log")));
        }
        Ok(())
    }

    /// Kills the server and waits for it to go.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}
