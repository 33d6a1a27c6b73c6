//! The controller's side of the worker processes: start them (the same executable, hidden `worker` subcommand),
//! show their connection progress, tell them when to count, and merge what they report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::wire::{self, Event, Plan, Subscribe};
use crate::worker::new_histogram;

/// Most connections one worker may hold: under the per-process open-file cap (~20,000) and the ~28,000 ephemeral
/// ports of one source address.
pub const MAX_PER_WORKER: usize = 18_000;

/// Connections per worker when `--processes` is not given: several processes even at moderate sizes, so that the
/// multi-process, multi-address path is the one always exercised.
pub const DEFAULT_PER_WORKER: usize = 5_000;

/// How the fleet is laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    pub processes: Option<usize>,
    /// `taskset -c <core>` for each worker, when pinning is on.
    pub core: Option<usize>,
    /// The first source address is `127.0.<octet>.2`; each step of a run takes a fresh third octet, so that ports
    /// still in TIME_WAIT from the previous step never get in the way.
    pub octet: u8,
    pub deadline: Duration,
    /// Connections being opened at once over the whole fleet (each worker takes its share).
    pub concurrency: usize,
}

/// Connections, subscriptions and timing once every worker is ready.
#[derive(Debug, Clone)]
pub struct Ready {
    pub connected: usize,
    pub failed: usize,
    pub subscriptions: usize,
    /// The slowest worker's time from its start to its last connection subscribed (the workers start together).
    pub secs: f64,
    pub first_error: Option<String>,
    /// Connect → subscribed, per connection, in microseconds.
    pub connect_latency: Histogram<u64>,
}

impl Ready {
    /// A step against `target` with `connections` asked for, its connection figures filled from this; the scenario
    /// fills the rest.
    pub fn step(&self, target: impl Into<String>, connections: usize) -> crate::report::Step {
        crate::report::Step {
            target: target.into(),
            connections,
            connected: self.connected,
            failed_connections: self.failed,
            subscriptions: self.subscriptions,
            connect_secs: self.secs,
            connects_per_sec: self.connected as f64 / self.secs.max(1e-9),
            connect_latency: crate::report::Latency::of(&self.connect_latency),
            ..Default::default()
        }
    }
}

/// What the fleet counted since `start`, merged over the workers.
#[derive(Debug)]
pub struct Counted {
    pub frames: u64,
    pub stamped: u64,
    pub closed: u64,
    pub first_close: Option<String>,
    pub latency: Histogram<u64>,
    pub cpu_secs: f64,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    ready: Option<wire::Event>,
    progress: (usize, usize),
    tick: (u64, u64),
}

#[derive(Debug)]
pub struct Fleet {
    workers: Vec<Worker>,
    events: mpsc::UnboundedReceiver<(usize, Result<Event, String>)>,
}

/// How many workers `connections` take.
pub fn processes_for(connections: usize, asked: Option<usize>) -> usize {
    let needed = connections.div_ceil(MAX_PER_WORKER).max(1);
    asked.unwrap_or_else(|| connections.div_ceil(DEFAULT_PER_WORKER)).max(needed)
}

impl Fleet {
    /// Starts the workers for `connections` connections to `server` and waits until each is subscribed or failed.
    pub async fn connect(
        layout: &Layout,
        server: SocketAddr,
        connections: usize,
        subscribe: Subscribe,
        probe: bool,
        bar: &ProgressBar,
    ) -> Result<(Fleet, Ready)> {
        Fleet::connect_to(layout, &[server], connections, subscribe, probe, bar).await
    }

    /// Like [`Fleet::connect`], counting frames from the first connection on (see [`Fleet::report`]) rather than
    /// only after [`Fleet::start`]: what the connections receive while they join.
    pub async fn connect_counting(
        layout: &Layout,
        server: SocketAddr,
        connections: usize,
        subscribe: Subscribe,
        bar: &ProgressBar,
    ) -> Result<(Fleet, Ready)> {
        Fleet::spawn(layout, &[server], connections, subscribe, false, true, bar).await
    }

    /// Like [`Fleet::connect`], over several servers: worker `w` connects to `servers[w % servers.len()]`, so the
    /// connections spread evenly when the worker count is a multiple of the server count.
    pub async fn connect_to(
        layout: &Layout,
        servers: &[SocketAddr],
        connections: usize,
        subscribe: Subscribe,
        probe: bool,
        bar: &ProgressBar,
    ) -> Result<(Fleet, Ready)> {
        Fleet::spawn(layout, servers, connections, subscribe, probe, false, bar).await
    }

    async fn spawn(
        layout: &Layout,
        servers: &[SocketAddr],
        connections: usize,
        subscribe: Subscribe,
        probe: bool,
        count_from_start: bool,
        bar: &ProgressBar,
    ) -> Result<(Fleet, Ready)> {
        let processes = processes_for(connections, layout.processes).min(connections.max(1));
        let exe = std::env::current_exe().context("finding this executable")?;
        let (tx, events) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(processes);
        let mut first_index = 0;
        for w in 0..processes {
            let share = connections / processes + usize::from(w < connections % processes);
            let plan = Plan {
                server: servers[w % servers.len()],
                source: IpAddr::V4(Ipv4Addr::new(127, 0, layout.octet, 2 + w as u8)),
                connections: share,
                first_index,
                subscribe: subscribe.clone(),
                probe,
                concurrency: (layout.concurrency / processes).max(1),
                deadline_secs: layout.deadline.as_secs().max(1),
                count_from_start,
            };
            first_index += share;
            let mut cmd = match layout.core {
                Some(core) => {
                    let mut c = Command::new("taskset");
                    c.arg("-c").arg(core.to_string()).arg(&exe);
                    c
                }
                None => Command::new(&exe),
            };
            cmd.arg("worker")
                .arg("--plan")
                .arg(serde_json::to_string(&plan)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let mut child = cmd.spawn().context("starting a worker")?;
            let stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let event = serde_json::from_str::<Event>(&line).map_err(|e| format!("{e}: {line}"));
                    if tx.send((w, event)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((w, Err("worker exited".to_owned())));
            });
            workers.push(Worker { child, stdin, ready: None, progress: (0, 0), tick: (0, 0) });
        }
        let mut fleet = Fleet { workers, events };

        bar.set_length(connections as u64);
        bar.set_position(0);
        bar.set_style(
            ProgressStyle::with_template("  {prefix:>8} connecting {bar:30} {pos:>6}/{len:6} {per_sec:>12} {msg}")
                .expect("valid template"),
        );
        let limit = Duration::from_secs(30 + (connections / 1000) as u64 * 5);
        while fleet.workers.iter().any(|w| w.ready.is_none()) {
            let (w, event) = fleet.next(limit).await?;
            match event {
                Event::Progress { connected, failed } => fleet.workers[w].progress = (connected, failed),
                ready @ Event::Ready { connected, failed, .. } => {
                    fleet.workers[w].progress = (connected, failed);
                    fleet.workers[w].ready = Some(ready);
                }
                other => bail!("worker {w} said {other:?} while connecting"),
            }
            let (up, failed) = fleet.workers.iter().fold((0, 0), |(a, b), w| (a + w.progress.0, b + w.progress.1));
            bar.set_position(up as u64);
            if failed > 0 {
                bar.set_message(format!("{failed} failed"));
            }
        }
        let mut ready = Ready {
            connected: 0,
            failed: 0,
            subscriptions: 0,
            secs: 0.0,
            first_error: None,
            connect_latency: new_histogram(),
        };
        for w in &fleet.workers {
            if let Some(Event::Ready {
                connected,
                failed,
                subscriptions,
                first_error,
                connect_secs,
                connect_latency_us,
            }) = &w.ready
            {
                ready.secs = ready.secs.max(*connect_secs);
                for &(value, count) in connect_latency_us {
                    ready.connect_latency.saturating_record_n(value, count);
                }
                ready.connected += connected;
                ready.failed += failed;
                ready.subscriptions += subscriptions;
                if ready.first_error.is_none() {
                    ready.first_error.clone_from(first_error);
                }
            }
        }
        Ok((fleet, ready))
    }

    async fn next(&mut self, limit: Duration) -> Result<(usize, Event)> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Err(_) => bail!("no word from the workers for {limit:?}"),
            Ok(None) => bail!("every worker is gone"),
            Ok(Some((w, Err(e)))) => bail!("worker {w}: {e}"),
            Ok(Some((w, Ok(event)))) => Ok((w, event)),
        }
    }

    async fn broadcast(&mut self, command: wire::Command) -> Result<()> {
        let mut line = serde_json::to_string(&command)?;
        line.push('\n');
        for w in &mut self.workers {
            w.stdin.write_all(line.as_bytes()).await.context("writing to a worker")?;
            w.stdin.flush().await?;
        }
        Ok(())
    }

    /// Tells every worker to count from now on, and waits until each has.
    pub async fn start(&mut self) -> Result<()> {
        self.broadcast(wire::Command::Start).await?;
        let mut started = 0;
        for w in &mut self.workers {
            w.tick = (0, 0);
        }
        while started < self.workers.len() {
            match self.next(Duration::from_secs(10)).await? {
                (_, Event::Started) => started += 1,
                (_, Event::Tick { .. }) => {}
                (w, other) => bail!("worker {w} said {other:?} when told to start"),
            }
        }
        Ok(())
    }

    /// Deliveries counted so far over the fleet, from the workers' ticks, waiting at most `wait` for news.
    pub async fn deliveries(&mut self, wait: Duration) -> Result<u64> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Err(_) => break,
                Ok(None) => bail!("every worker is gone"),
                Ok(Some((w, Err(e)))) => bail!("worker {w}: {e}"),
                Ok(Some((w, Ok(Event::Tick { frames, stamped })))) => self.workers[w].tick = (frames, stamped),
                Ok(Some((w, Ok(other)))) => bail!("worker {w} said {other:?} while measuring"),
            }
        }
        Ok(self.workers.iter().map(|w| w.tick.1).sum())
    }

    /// Waits until `expected` deliveries have been counted, or until none has arrived for `quiet`.
    pub async fn drain(&mut self, expected: u64, quiet: Duration, limit: Duration) -> Result<u64> {
        let until = Instant::now() + limit;
        let mut last = self.deliveries(Duration::from_millis(300)).await?;
        let mut last_change = Instant::now();
        while last < expected && Instant::now() < until && last_change.elapsed() < quiet {
            let now = self.deliveries(Duration::from_millis(300)).await?;
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        Ok(last)
    }

    /// Asks every worker for its counts and merges them.
    pub async fn report(&mut self) -> Result<Counted> {
        self.broadcast(wire::Command::Report).await?;
        let mut counted =
            Counted { frames: 0, stamped: 0, closed: 0, first_close: None, latency: new_histogram(), cpu_secs: 0.0 };
        let mut reports = 0;
        while reports < self.workers.len() {
            match self.next(Duration::from_secs(10)).await? {
                (_, Event::Report(r)) => {
                    reports += 1;
                    counted.frames += r.frames;
                    counted.stamped += r.stamped;
                    counted.closed += r.closed;
                    counted.cpu_secs += r.cpu_secs;
                    if counted.first_close.is_none() {
                        counted.first_close = r.first_close;
                    }
                    for (value, count) in r.latency_us {
                        counted.latency.saturating_record_n(value, count);
                    }
                }
                (_, Event::Tick { .. }) => {}
                (w, other) => bail!("worker {w} said {other:?} when asked to report"),
            }
        }
        Ok(counted)
    }

    /// CPU time the workers have used since they started, read from `/proc/<pid>/stat`.
    pub fn cpu_secs(&self) -> f64 {
        self.workers
            .iter()
            .filter_map(|w| w.child.id())
            .filter_map(|pid| crate::procfs::cpu_time(Some(pid)).ok())
            .map(|d| d.as_secs_f64())
            .sum()
    }

    /// Tells the workers to exit and waits for them (killing any that linger).
    pub async fn shutdown(mut self) {
        let _ = self.broadcast(wire::Command::Exit).await;
        for w in &mut self.workers {
            if tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await.is_err() {
                let _ = w.child.start_kill();
                let _ = w.child.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_workers_for_the_connections() {
        assert_eq!(processes_for(50, None), 1);
        assert_eq!(processes_for(15_000, None), 3);
        assert_eq!(processes_for(15_000, Some(1)), 1);
        assert_eq!(processes_for(40_000, Some(1)), 3, "never more than MAX_PER_WORKER per worker");
        assert_eq!(processes_for(15_000, Some(4)), 4);
    }
}
