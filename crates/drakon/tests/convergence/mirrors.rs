//! One task per mirror: it keeps its [`LiveMirror`] applying what arrives, reconnects and resumes whenever the
//! connection ends (a slow-consumer close, a restart, a killed node, or a disconnect the test asked for), and
//! answers the test's commands. A resume goes to any live node, chosen at random, so with several nodes a mirror
//! often resumes with `since` on another node than the one it left. Every notable step goes to the mirror's
//! journal, which the test prints when the mirror diverges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drakon_testkit::Closed;
use drakon_testkit::mirror::{LiveMirror, SyncEnd};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::world::{self, Gate, Spec};

/// How long one sync round reads before the task looks at its commands again.
const ROUND: Duration = Duration::from_millis(50);

/// How long a mirror that read again after a stall waits for the server's close once it has caught up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub enum Cmd {
    /// Drop the connection (with a close handshake when `graceful`), stay away for `pause`, then resume.
    Disconnect { pause: Duration, graceful: bool },
    /// Reconnect (to node `at` if it is up, so that the test can watch that node's fan-out through another
    /// mirror there), then stop reading the socket until [`Cmd::Resume`]; acknowledged once the task has stopped.
    Stall { at: String, ack: oneshot::Sender<()> },
    /// Read again until the connection ends, or until the mirror has applied offset `until` and [`CLOSE_GRACE`] more
    /// has passed; answers with the close, if any.
    Resume { until: u64, reply: oneshot::Sender<Option<Closed>> },
    /// Sync until the mirror holds every row of `ids` (the barrier rows it must see), then a quiet moment, and hand
    /// the mirror and its journal back.
    Finish { ids: Vec<i64>, deadline: Instant, reply: oneshot::Sender<Finished> },
}

/// A finished mirror: what it holds, its journal, and how many of its resumes went to another node than the one
/// its connection had been to.
#[derive(Debug)]
pub struct Finished {
    pub mirror: LiveMirror,
    pub journal: Vec<String>,
    pub moves: u64,
}

/// The test's side of a mirror task.
#[derive(Debug)]
pub struct MirrorHandle {
    pub spec: Spec,
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub task: JoinHandle<()>,
    /// The mirror's last applied offset, as of its latest sync round.
    pub progress: Arc<AtomicU64>,
    /// The node the mirror is connected to (its WebSocket URL), or `None` while it is away.
    pub at: Arc<Mutex<Option<String>>>,
}

impl MirrorHandle {
    /// The node the mirror is connected to, if it is.
    pub fn node(&self) -> Option<String> {
        self.at.lock().expect("the mirror's node").clone()
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Disconnect { pause, graceful } => write!(f, "Disconnect({pause:?}, graceful: {graceful})"),
            Cmd::Stall { at, .. } => write!(f, "Stall(at {at})"),
            Cmd::Resume { until, .. } => write!(f, "Resume(until {until})"),
            Cmd::Finish { ids, .. } => write!(f, "Finish({ids:?})"),
        }
    }
}

/// Connects the mirror to the `n`th live node (under the gate, wrapping around) and starts its task.
pub async fn spawn(spec: Spec, local: &str, gate: Gate, n: usize, rng: ChaCha8Rng, start: Instant) -> MirrorHandle {
    let (mirror, url) = {
        let urls = gate.read().await;
        let url = urls[n % urls.len()].clone();
        (LiveMirror::connect(&url, spec.route, local, spec.filter.clone()).await, url)
    };
    let progress = Arc::new(AtomicU64::new(mirror.last_offset()));
    let at = Arc::new(Mutex::new(Some(url.clone())));
    let (tx, rx) = mpsc::unbounded_channel();
    let task = Task {
        mirror,
        gate,
        rng,
        rx,
        start,
        journal: Vec::new(),
        progress: progress.clone(),
        at: at.clone(),
        last_node: url,
        moves: 0,
    };
    MirrorHandle { spec, tx, task: tokio::spawn(task.run()), progress, at }
}

struct Task {
    mirror: LiveMirror,
    gate: Gate,
    rng: ChaCha8Rng,
    rx: mpsc::UnboundedReceiver<Cmd>,
    start: Instant,
    journal: Vec<String>,
    progress: Arc<AtomicU64>,
    at: Arc<Mutex<Option<String>>>,
    /// The node of the latest connection.
    last_node: String,
    moves: u64,
}

/// `127.0.0.1:port` of a node's URL, for the journal.
fn addr(url: &str) -> &str {
    url.strip_prefix("ws://").and_then(|rest| rest.split('/').next()).unwrap_or(url)
}

impl Task {
    fn note(&mut self, what: String) {
        let at = self.start.elapsed().as_secs_f64();
        self.journal.push(format!("{at:7.3}s offset {:>6}: {what}", self.mirror.last_offset()));
    }

    async fn run(mut self) {
        loop {
            while let Ok(cmd) = self.rx.try_recv() {
                match cmd {
                    Cmd::Disconnect { pause, graceful } => {
                        self.mirror.disconnect(graceful).await;
                        self.left();
                        self.note(format!("disconnected (graceful: {graceful}), away for {pause:?}"));
                        tokio::time::sleep(pause).await;
                    }
                    Cmd::Stall { at, ack } => self.stall(at, ack).await,
                    Cmd::Resume { .. } => panic!("{}: Resume without Stall", self.mirror.label()),
                    Cmd::Finish { ids, deadline, reply } => {
                        self.finish(&ids, deadline).await;
                        let _ = reply.send(Finished { mirror: self.mirror, journal: self.journal, moves: self.moves });
                        return;
                    }
                }
            }
            if !self.mirror.is_connected() {
                self.resume(None).await;
                continue;
            }
            if let SyncEnd::Closed(closed) = self.mirror.sync_until(Instant::now() + ROUND).await {
                self.closed(&closed).await;
            }
            self.progress.store(self.mirror.last_offset(), Ordering::Relaxed);
        }
    }

    /// The connection has ended.
    fn left(&mut self) {
        *self.at.lock().expect("the mirror's node") = None;
    }

    async fn closed(&mut self, closed: &Closed) {
        self.left();
        self.note(format!("closed by the server: {closed:?}"));
        // After a restart, come back at scattered moments while writes go on, as real clients do.
        let spread = if closed.code == Some(1001) { 1500 } else { 300 };
        let pause = Duration::from_millis(self.rng.random_range(0..spread));
        tokio::time::sleep(pause).await;
    }

    /// Reconnects to node `at` if it is up, else to any live node, and resumes with `since`.
    async fn resume(&mut self, at: Option<&str>) {
        let before = self.mirror.stats().clone();
        let since = self.mirror.last_offset();
        let (result, url) = {
            let urls = self.gate.read().await;
            let url = match at {
                Some(at) if urls.iter().any(|u| u == at) => at.to_owned(),
                _ => world::pick(&urls, &mut self.rng),
            };
            (self.mirror.reconnect(&url).await, url)
        };
        let after = self.mirror.stats().clone();
        let moved = if url == self.last_node { "" } else { " (another node)" };
        let on = format!("on {}{moved}", addr(&url));
        if url != self.last_node {
            self.moves += 1;
            self.last_node = url.clone();
        }
        match result {
            Ok(()) if after.reloads > before.reloads => {
                self.note(format!("resumed {on} since {since}: reload with {} rows", self.mirror.rows().len()))
            }
            Ok(()) => {
                self.note(format!("resumed {on} since {since}: replayed {} events", after.replayed - before.replayed))
            }
            Err(closed) => {
                self.note(format!("resume {on} since {since} failed: {closed:?}"));
                self.closed(&closed).await;
                return;
            }
        }
        *self.at.lock().expect("the mirror's node") = Some(url);
        self.progress.store(self.mirror.last_offset(), Ordering::Relaxed);
    }

    async fn stall(&mut self, at: String, ack: oneshot::Sender<()>) {
        // A fresh connection: a long-running one's receive buffer has grown to megabytes, which a stall would
        // have to fill before the server's queue does.
        self.mirror.disconnect(true).await;
        self.left();
        while !self.mirror.is_connected() {
            self.resume(Some(&at)).await;
        }
        self.note("stalled: no longer reading".into());
        let _ = ack.send(());
        let Some(Cmd::Resume { until, reply }) = self.rx.recv().await else {
            panic!("{}: a stalled mirror waits for Resume", self.mirror.label())
        };
        // The server gives up on the connection when its queue is full, but its connection task only sees that
        // once a write to the socket completes, so the close comes after the queued frames: read those, then wait
        // a moment for the close.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut end = self.mirror.sync_while(deadline, |m| m.is_connected() && m.last_offset() < until).await;
        if end == SyncEnd::Open {
            end = self.mirror.sync_until(Instant::now() + CLOSE_GRACE).await;
        }
        let outcome = match end {
            SyncEnd::Closed(closed) => Some(closed),
            SyncEnd::Open => None,
        };
        self.note(format!("reading again, until {until}: {outcome:?}"));
        let _ = reply.send(outcome.clone());
        if let Some(closed) = outcome {
            self.closed(&closed).await;
        }
    }

    async fn finish(&mut self, ids: &[i64], deadline: Instant) {
        self.note(format!("finishing: waiting for barrier rows {ids:?}"));
        let has_all = |m: &LiveMirror| ids.iter().all(|id| m.rows().contains_key(id));
        while Instant::now() < deadline {
            if !self.mirror.is_connected() {
                self.resume(None).await;
                continue;
            }
            match self.mirror.sync_while(deadline, |m| !has_all(m)).await {
                SyncEnd::Closed(closed) => {
                    self.left();
                    self.note(format!("closed while finishing: {closed:?}"));
                }
                SyncEnd::Open => break,
            }
        }
        // Nothing is being written any more; whatever still arrives must be applied (and a late stray event
        // would show as a difference).
        let quiet = (Instant::now() + Duration::from_millis(300)).min(deadline.max(Instant::now()));
        if let SyncEnd::Closed(closed) = self.mirror.sync_until(quiet).await {
            self.left();
            self.note(format!("closed after the barrier: {closed:?}"));
        }
        self.note(format!(
            "finished with {} rows, barrier rows present: {}",
            self.mirror.rows().len(),
            has_all(&self.mirror)
        ));
    }
}
