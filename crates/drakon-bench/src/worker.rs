//! One worker process: a share of the connections, all from one source address, on a single-threaded runtime.
//!
//! Several processes, each bound to its own `127.0.0.x`, get past the per-process open-file cap and the ~28,000
//! ephemeral ports one source address has towards one server port. Each connection binds its socket before
//! connecting, performs the WebSocket handshake, pipelines its subscribe requests, waits for their replies, and from
//! then on only counts frames: the send timestamp is read with a byte scan ([`crate::stamp::find_stamp`]), never by
//! parsing the frame as JSON. The connections speak WebSocket through the lean [`crate::client`] rather than
//! tokio-tungstenite: the generator must cost less per delivery than the server it measures.

use std::cell::RefCell;
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::Connection;
use crate::client::frame::{CLOSE, TEXT, describe_close};
use crate::procfs;
use crate::stamp::{find_stamp, now_micros};
use crate::wire::{Command, Event, Plan, Report};

/// How long one connection may take to connect, upgrade and subscribe before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the WebSocket endpoint is, in drakon, the baseline and the floor.
const WS_PATH: &str = "/data/websocket";

/// How often progress and ticks are reported.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Largest latency the histogram holds, in microseconds; anything slower is clamped to it.
pub const MAX_LATENCY_US: u64 = 120_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The read and write buffers of the writers' tungstenite connections. tungstenite's defaults (128 KiB each) would
/// cost gigabytes at 15,000 connections; frames here are a few hundred bytes.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(4096)
}

#[derive(Debug)]
struct Stats {
    connected: usize,
    failed: usize,
    subscriptions: usize,
    first_error: Option<String>,
    /// When the last connection got its outcome (subscribed or failed).
    settled: Option<Instant>,
    /// Connect → subscribed, per connection, in microseconds.
    connect_latency: Histogram<u64>,
    measuring: bool,
    frames: u64,
    stamped: u64,
    closed: u64,
    first_close: Option<String>,
    latency: Histogram<u64>,
}

type Shared = Rc<RefCell<Stats>>;

fn emit(event: &Event) {
    let mut line = serde_json::to_string(event).expect("events serialize");
    line.push('\n');
    let mut out = std::io::stdout().lock();
    // The controller is gone if this fails; the deadline or stdin EOF ends the worker soon after.
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// Runs a worker to the end: until the controller says `exit`, closes stdin, or the deadline passes.
pub fn run(plan: Plan) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, work(plan))?;
    // Dropping thousands of sockets one by one is slow and pointless: the process exit closes them all.
    std::process::exit(0);
}

async fn work(plan: Plan) -> Result<()> {
    let deadline = tokio::time::sleep(Duration::from_secs(plan.deadline_secs));
    tokio::pin!(deadline);
    let stats: Shared = Rc::new(RefCell::new(Stats {
        connected: 0,
        failed: 0,
        subscriptions: 0,
        first_error: None,
        settled: None,
        connect_latency: new_histogram(),
        measuring: plan.count_from_start,
        frames: 0,
        stamped: 0,
        closed: 0,
        first_close: None,
        latency: new_histogram(),
    }));

    let (commands_tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    tokio::task::spawn_local(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Command>(line.trim()) {
                Ok(c) => {
                    if commands_tx.send(c).is_err() {
                        return;
                    }
                }
                Err(_) => eprintln!("drakon-bench worker: unknown command {line:?}"),
            }
        }
        let _ = commands_tx.send(Command::Exit);
    });

    let started = Instant::now();
    let gate = Rc::new(Semaphore::new(plan.concurrency.max(1)));
    let ports = Rc::new(Ports::default());
    let host: Rc<str> = plan.server.to_string().into();
    for i in 0..plan.connections {
        let index = plan.first_index + i;
        let frames = plan.subscribe.frames(index, plan.probe);
        let path = plan.subscribe.path(index, WS_PATH);
        let ports = ports.clone();
        let (host, gate, stats) = (host.clone(), gate.clone(), stats.clone());
        tokio::task::spawn_local(connection(plan.clone(), host, path, frames, gate, ports, stats));
    }

    // Connecting: report progress until every connection has an outcome.
    let mut every = tokio::time::interval(REPORT_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = &mut deadline => return Ok(()),
            c = commands.recv() => if matches!(c, None | Some(Command::Exit)) { return Ok(()) },
        }
        let s = stats.borrow();
        if s.connected + s.failed >= plan.connections {
            break;
        }
        emit(&Event::Progress { connected: s.connected, failed: s.failed });
    }
    {
        let s = stats.borrow();
        emit(&Event::Ready {
            connected: s.connected,
            failed: s.failed,
            subscriptions: s.subscriptions,
            connect_secs: s.settled.unwrap_or_else(Instant::now).duration_since(started).as_secs_f64(),
            first_error: s.first_error.clone(),
            connect_latency_us: s
                .connect_latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        });
    }

    let mut cpu_at_start = procfs::cpu_time(None)?;
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            _ = every.tick() => {
                let s = stats.borrow();
                if s.measuring {
                    emit(&Event::Tick { frames: s.frames, stamped: s.stamped });
                }
            }
            command = commands.recv() => match command {
                None | Some(Command::Exit) => return Ok(()),
                Some(Command::Start) => {
                    let mut s = stats.borrow_mut();
                    s.frames = 0;
                    s.stamped = 0;
                    s.closed = 0;
                    s.first_close = None;
                    s.latency.reset();
                    s.measuring = true;
                    cpu_at_start = procfs::cpu_time(None)?;
                    emit(&Event::Started);
                }
                Some(Command::Report) => {
                    let cpu = procfs::cpu_time(None)?.saturating_sub(cpu_at_start);
                    let s = stats.borrow();
                    emit(&Event::Report(Report {
                        frames: s.frames,
                        stamped: s.stamped,
                        closed: s.closed,
                        first_close: s.first_close.clone(),
                        latency_us: s.latency.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect(),
                        cpu_secs: cpu.as_secs_f64(),
                    }));
                }
            }
        }
    }
}

async fn connection(
    plan: Plan,
    host: Rc<str>,
    path: String,
    frames: Vec<String>,
    gate: Rc<Semaphore>,
    ports: Rc<Ports>,
    stats: Shared,
) {
    let permit = gate.acquire().await.expect("the gate is never closed");
    let began = Instant::now();
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&plan, &host, &path, &frames, &ports, &stats)).await;
    drop(permit);
    let mut conn = match opened {
        Ok(Ok(conn)) => {
            let mut s = stats.borrow_mut();
            let us = (began.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
            s.connect_latency.saturating_record(us);
            s.connected += 1;
            s.subscriptions += frames.len();
            s.settled = Some(Instant::now());
            conn
        }
        Ok(Err(e)) => return fail(&stats, format!("{e:#}")),
        Err(_) => return fail(&stats, format!("no subscribed connection within {CONNECT_TIMEOUT:?}")),
    };
    let why = conn.receive(|payload| on_frame(&stats, payload)).await;
    let mut s = stats.borrow_mut();
    s.closed += 1;
    if s.first_close.is_none() {
        s.first_close = Some(why);
    }
}

fn fail(stats: &Shared, error: String) {
    let mut s = stats.borrow_mut();
    s.failed += 1;
    s.settled = Some(Instant::now());
    if s.first_error.is_none() {
        s.first_error = Some(error);
    }
}

fn on_frame(stats: &Shared, frame: &[u8]) {
    let mut s = stats.borrow_mut();
    if !s.measuring {
        return;
    }
    s.frames += 1;
    if let Some(ts) = find_stamp(frame) {
        s.stamped += 1;
        let latency = now_micros().saturating_sub(ts).clamp(1, MAX_LATENCY_US);
        s.latency.saturating_record(latency);
    }
}

/// The source ports of one worker. The worker owns its source address, so it hands out ports itself instead of
/// binding port 0: the kernel's search for a free port slows down badly once tens of thousands of ports of the
/// address are taken (by this run, or in TIME_WAIT from the previous one), and with SO_REUSEADDR it may even hand
/// out a port whose four-tuple is still in use.
#[derive(Debug)]
struct Ports {
    next: std::cell::Cell<u16>,
}

/// Source ports a worker uses: above the well-known and registered services that tests tend to listen on.
const FIRST_PORT: u16 = 20_000;

impl Default for Ports {
    fn default() -> Self {
        Ports { next: std::cell::Cell::new(FIRST_PORT) }
    }
}

impl Ports {
    fn take(&self) -> u16 {
        let port = self.next.get();
        self.next.set(if port == u16::MAX { FIRST_PORT } else { port + 1 });
        port
    }
}

/// Connects from the plan's source address, upgrades on `path`, and subscribes with `frames`, waiting for every
/// reply; other frames that come meanwhile are counted like later ones.
async fn open(
    plan: &Plan,
    host: &str,
    path: &str,
    frames: &[String],
    ports: &Ports,
    stats: &Shared,
) -> Result<Connection> {
    let mut tries = 0;
    let stream = loop {
        let socket = if plan.server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // Ports of earlier runs may still sit in TIME_WAIT towards another server port: reusing them is safe.
        socket.set_reuseaddr(true)?;
        let source = SocketAddr::new(plan.source, ports.take());
        // A port that something else holds (a listener on 0.0.0.0, a socket of this run towards the same server
        // after a wrap-around) fails at bind or at connect: try the next one.
        let attempt = match socket.bind(source) {
            Ok(()) => socket.connect(plan.server).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(stream) => break stream,
            Err(e) if tries < 64 && matches!(e.kind(), ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable) => {
                tries += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("connecting from {source} to {}", plan.server)),
        }
    };
    stream.set_nodelay(true)?;
    let mut conn = Connection::handshake(stream, host, path).await.context("websocket handshake")?;
    for frame in frames {
        conn.queue_text(frame);
    }
    conn.flush().await?;
    let mut pending = frames.len();
    while pending > 0 {
        match conn.next_frame() {
            Ok(Some(f)) if f.opcode == TEXT => {
                let t = String::from_utf8_lossy(f.payload);
                if !t.contains("\"client_callback_name\"") {
                    on_frame(stats, f.payload);
                    continue;
                }
                if !t.contains("\"state\":\"success\"") {
                    bail!("subscribe refused: {t}");
                }
                pending -= 1;
            }
            Ok(Some(f)) if f.opcode == CLOSE => bail!("closed while subscribing: {}", describe_close(f.payload)),
            Ok(Some(_)) => {}
            Ok(None) => {
                // Pongs to pings that came with the replies go out before waiting for more.
                conn.flush().await?;
                conn.fill().await.context("reading subscribe replies")?;
            }
            Err(e) => bail!("reading subscribe replies: {e}"),
        }
    }
    Ok(conn)
}
