//! `drakon-bench`: drakon's load generator. Each scenario starts its own servers (drakon, and the Node `ws`
//! baseline and the floor where there is an equivalent), drives them from worker processes over loopback, and
//! reports a table on the terminal, JSON and an SVG chart. See `bench/README.md` for the commands and what each
//! figure means.

mod client;
mod fleet;
mod floor;
mod procfs;
mod publish;
mod redis;
mod report;
mod scenario;
mod stamp;
mod steer;
mod svg;
mod target;
mod verbs;
mod wire;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "drakon-bench",
    version,
    about = "Load generator and benchmarks for drakon, next to a Node ws baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N subscribed connections held open: server memory per connection, handshake + subscribe rate.
    Idle(Common),
    /// N subscribers of one channel, messages published over HTTP at a set rate: deliveries/s, latency, losses.
    Fanout(Common),
    /// create/update verbs while N subscribers are spread over many filters: write → delivery latency, writes/s.
    Writes(Common),
    /// Many subscriptions on distinct filters, writes that match one: the cost of a write as subscriptions grow.
    Selective(Common),
    /// N users under per-user rules, each on "my items" and a shared list: writes that concern one user, and
    /// writes to the shared list next to the same subscribers without rules. `--rate own,shared`.
    Users(Common),
    /// Presence rooms of N members (`--connections`, default 10,100,1000,10000): a room filling up, then one member
    /// joining and leaving over and over: server CPU per join, frames per join, join → event latency, memory.
    Presence(Common),
    /// Several drakon nodes behind one Redis (started for the run), N connections spread over them, a broadcast.
    Nodes(Common),
    /// Every scenario but `nodes` at its default size, one after the other.
    All(Common),
    /// A worker process (started by the controller; not for direct use).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        plan: String,
    },
    /// The floor server of `fanout` and `idle` (started by the controller; not for direct use).
    #[command(hide = true)]
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
    },
}

/// Options every scenario takes. Lists are comma-separated; each value is one step of the run.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Connections (subscribers) per step, e.g. `1000,5000,10000`. In `selective`: connections holding the
    /// subscriptions.
    #[arg(long, value_delimiter = ',')]
    pub connections: Option<Vec<usize>>,
    /// Messages (fanout) or writes (writes, selective) per second, per step.
    #[arg(long, value_delimiter = ',')]
    pub rate: Option<Vec<f64>>,
    /// Seconds each measured step sends for (idle: seconds the connections are held before memory is read).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Worker processes (default: one per 5,000 connections; each binds its own 127.0.x.y source address).
    #[arg(long)]
    pub processes: Option<usize>,
    /// The drakon binary to measure.
    #[arg(long, default_value = "target/release/drakon")]
    pub server: PathBuf,
    /// The Node baseline server (run with `node`; its `ws` package must be installed: `npm ci` in its folder).
    #[arg(long, default_value = "bench/peers/broadcast.mjs")]
    pub baseline: PathBuf,
    /// Leave out the Node baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Leave out the floor: the least any server can do (one encode per message, one non-blocking write per
    /// subscriber), measured next to drakon in `fanout` and `idle`.
    #[arg(long)]
    pub no_floor: bool,
    /// Directory for `<scenario>.json` and `<scenario>.svg`.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Appended to the file names: `<scenario>-<tag>.json`.
    #[arg(long)]
    pub tag: Option<String>,
    /// Size of each published payload in bytes (fanout).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Distinct filters the subscribers of `writes` are spread over (default: connections ÷ 10).
    #[arg(long)]
    pub filters: Option<usize>,
    /// Subscriptions per step in `selective`, e.g. `1000,10000,100000`.
    #[arg(long, value_delimiter = ',')]
    pub subscriptions: Option<Vec<usize>>,
    /// drakon nodes in `nodes` (default: one per 16,000 connections).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Connections the writes of `writes` and `selective` are sent over: at 1,000 writes/s, 125 a second each, within
    /// the server's default request budget per connection (200 a second).
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Connections being opened at once over all workers: a reconnect storm, not a trickle. More than the
    /// server's listen backlog overflows its accept queue, and those clients retry a second later.
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
    /// Do not pin the server and the generator to separate cores with `taskset`.
    #[arg(long)]
    pub no_pin: bool,
    /// For the length of the run, steer loopback's receive processing to the generator's core (writes its CPU mask
    /// to /sys/class/net/lo/queues/rx-0/rps_cpus and raises net.core.netdev_max_backlog; needs root and pinning), so
    /// that the server's core no longer runs its clients' kernel receive path. Both are restored when the run ends.
    #[arg(long)]
    pub steer_receive: bool,
    /// The whole run stops after this many seconds, whatever state it is in.
    #[arg(long, default_value_t = 1800)]
    pub time_limit: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Worker { plan } = &cli.command {
        let plan: wire::Plan = match serde_json::from_str(plan) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("drakon-bench worker: bad plan: {e}");
                return ExitCode::from(2);
            }
        };
        return match worker::run(plan) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("drakon-bench worker: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::FloorServer { bind } = &cli.command {
        return match floor::run(*bind) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("drakon-bench floor-server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    let (which, common) = match command {
        Command::Idle(c) => (vec![scenario::Name::Idle], c),
        Command::Fanout(c) => (vec![scenario::Name::Fanout], c),
        Command::Writes(c) => (vec![scenario::Name::Writes], c),
        Command::Selective(c) => (vec![scenario::Name::Selective], c),
        Command::Users(c) => (vec![scenario::Name::Users], c),
        Command::Presence(c) => (vec![scenario::Name::Presence], c),
        Command::Nodes(c) => (vec![scenario::Name::Nodes], c),
        Command::All(c) => (scenario::Name::ALL.to_vec(), c),
        Command::Worker { .. } | Command::FloorServer { .. } => unreachable!("handled in main"),
    };
    let limit = Duration::from_secs(common.time_limit);
    // Dropped when this function returns, however the run ends: receive steering is undone then.
    let ctx = scenario::Context::new(common)?;
    let work = tokio::time::timeout(limit, async {
        let mut summary = Vec::new();
        for name in which {
            summary.push(scenario::run(&ctx, name).await.with_context(|| format!("scenario {}", name.as_str()))?);
        }
        if summary.len() > 1 {
            println!("\n==> summary");
            for text in summary {
                print!("{text}");
            }
        }
        Ok::<_, anyhow::Error>(())
    });
    tokio::select! {
        done = work => done.map_err(|_| anyhow::anyhow!("the run passed its time limit of {limit:?} and was stopped"))?,
        signal = stop_signal() => bail!("stopped by {signal}"),
    }
}

/// Waits for SIGINT or SIGTERM (`timeout` in bench/run.sh sends SIGTERM), so that the run ends through its
/// destructors (servers and workers killed, receive steering undone) rather than at the kernel's hands.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
