//! The Redis bus: row changes and plain pub/sub messages cross every node; and node liveness.
//!
//! [`start`] returns a [`RedisBus`], the engine's [`Bus`] between nodes. Every message is versioned JSON (see
//! `wire`), and two Redis channels carry them (see [`Channels`]):
//!
//! - the publish channel carries plain pub/sub messages (`POST /api/publish`, [`BusMessage::Channel`]).
//!   [`Bus::publish`] answers once Redis has the message (or says why not, so `POST /api/publish` can answer 503
//!   while Redis is away).
//! - the changes channel carries committed row changes, one transaction per message, and, every second, how far
//!   each model's log has been relayed (heads). The store hands them to [`RedisBus::relay`]; with PostgreSQL, one
//!   node at a time (the relay, elected through the database) reads the shared change log and publishes it, so each
//!   committed change is published once, whichever node or program wrote it.
//!
//! A subscriber task on every node `SUBSCRIBE`s to both channels and feeds what it receives into the node's inbox
//! (the queue its fan-out reads), so every node, the sender included, delivers each message once. A message of a
//! version this node does not know is skipped, and said once per version. Redis pub/sub
//! is at-most-once: a message published while a subscriber was reconnecting is simply not delivered to it. For row
//! changes that costs nothing but latency: each carries its per-model offset, and a node that sees an offset jump,
//! or a head past what it delivered, reads the missing changes from the store's change log (the engine's fan-out
//! does this). Plain pub/sub messages have no log; one refused while Redis is down is reported to its publisher.
//!
//! Both tasks reconnect with exponential backoff (logged at `warn`) after Redis goes away, and the subscriber
//! subscribes again. Every Redis command is bounded by [`COMMAND_TIMEOUT`], so nothing hangs.
//!
//! With `sharded`, the bus is a Redis Cluster and uses sharded pub/sub (`SPUBLISH` / `SSUBSCRIBE`, Redis 7): a
//! sharded message travels only within the shard that owns its channel's slot, instead of over the whole cluster
//! bus. Both channels carry the hash tag `{drakon}` ([`Channels::SHARDED`]), so they live in one slot and one
//! connection per node follows them; the cluster client finds that shard, follows it when slots move, and
//! subscribes again after reconnecting (see `backend`).
//!
//! [`RedisLiveness`] (see `liveness`) says which nodes are alive, by a key per node with a TTL.

mod backend;
mod liveness;
mod wire;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drakon_core::Schema;
use drakon_core::bus::{Bus, BusError};
use drakon_core::store::{BusMessage, ChangeSink};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::backend::{Backend, CmdConn};
pub use crate::liveness::RedisLiveness;
use crate::wire::DecodeError;

/// The names of the bus's two Redis channels (and the prefix of its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    /// Plain pub/sub messages (`POST /api/publish`).
    pub publish: &'static str,
    /// Committed row changes and the relay's heads.
    pub changes: &'static str,
    /// What the names of the bus's keys (node liveness) start with.
    pub keys: &'static str,
}

impl Channels {
    /// The channels on a single Redis server.
    pub const SINGLE: Channels = Channels { publish: "drakon:publish", changes: "drakon:changes", keys: "drakon:" };
    /// The channels (and keys) on a Redis Cluster: one hash tag, so one slot.
    pub const SHARDED: Channels =
        Channels { publish: "{drakon}:publish", changes: "{drakon}:changes", keys: "{drakon}:" };
}

/// How long connecting (and subscribing) may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one command (`PUBLISH`, or a liveness key's) may take before the connection counts as broken.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The first wait before reconnecting; it doubles after each failed attempt up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Messages waiting to be published; bounded so that a slow Redis slows publishers instead of growing memory.
const PUBLISH_QUEUE: usize = 1024;

/// Transactions waiting to be relayed; bounded like the local bus, so a slow Redis slows the relay's log reading.
const RELAY_QUEUE: usize = 256;

/// Why the Redis bus could not start.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// One message for the publisher task, and where to say whether Redis took it.
type Outgoing = (BusMessage, oneshot::Sender<Result<(), BusError>>);

/// The Redis bus of one node; give it to the engine at `Engine::start`, and its [`RedisBus::relay`] to the store.
#[derive(Debug)]
pub struct RedisBus {
    tx: mpsc::Sender<Outgoing>,
    relay: ChangeSink,
    /// Whether the subscriber currently holds its subscription, i.e. messages from other nodes arrive.
    subscribed: Arc<AtomicBool>,
    /// Whether the last message this node tried to publish reached Redis.
    publishing: Arc<AtomicBool>,
}

impl RedisBus {
    /// Where the store sends committed changes (and heads) to be published on the changes channel. A transaction
    /// Redis does not take is dropped with a warning: the nodes read it from the change log (see the module doc).
    pub fn relay(&self) -> ChangeSink {
        self.relay.clone()
    }

    /// Whether Redis took the last message this node tried to publish (a relay that keeps failing hands over).
    pub fn publishing(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let publishing = self.publishing.clone();
        move || publishing.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        let (ack, acked) = oneshot::channel();
        self.tx.send((message, ack)).await.map_err(|_| BusError::Stopped)?;
        acked.await.map_err(|_| BusError::Stopped)?
    }

    fn ready(&self) -> Result<(), BusError> {
        if self.subscribed.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(BusError::Down("not subscribed on Redis".to_owned()))
        }
    }
}

/// Connects to Redis at `url` (publisher and subscriber, so that the first message is already delivered) and
/// starts both tasks. With `options.sharded`, `url` names one or more nodes of a Redis Cluster, comma-separated,
/// and the bus uses sharded pub/sub; `rediss://` URLs use TLS. `inbox` is the sender of the node's inbox (the
/// queue its fan-out reads), into which the subscriber feeds every message; `schema` types the row changes it
/// receives. Both tasks end when the returned bus is dropped or the inbox closes.
pub async fn start(
    url: &str,
    options: Options,
    inbox: ChangeSink,
    schema: Arc<Schema>,
) -> Result<Arc<RedisBus>, StartError> {
    let backend = open(url, &options)?;
    let conn = backend.commands().await.map_err(|e| StartError(format!("cannot connect to Redis: {e}")))?;
    let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
    let (relay, relayed) = mpsc::channel(RELAY_QUEUE);
    let (done, stopped) = oneshot::channel::<()>();
    let subscribed = Arc::new(AtomicBool::new(false));
    let publishing = Arc::new(AtomicBool::new(true));
    let inbound = Inbound {
        local: inbox,
        schema: schema.clone(),
        channels: backend.channels(),
        unknown_versions: HashSet::new(),
    };
    backend
        .subscribe(inbound, stopped, subscribed.clone())
        .await
        .map_err(|e| StartError(format!("cannot subscribe on Redis: {e}")))?;
    tokio::spawn(publisher(backend, conn, rx, relayed, schema, done, publishing.clone()));
    Ok(Arc::new(RedisBus { tx, relay, subscribed, publishing }))
}

/// Checks `url` and `options` (reading the CA file), without connecting.
fn open(url: &str, options: &Options) -> Result<Backend, StartError> {
    let ca = match &options.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| StartError(format!("cannot read the Redis CA file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    Backend::open(url, options.sharded, ca).map_err(|e| StartError(format!("bad Redis URL: {e}")))
}

/// How to reach Redis beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A Redis Cluster, with sharded pub/sub; the URL may name several nodes, comma-separated.
    pub sharded: bool,
    /// For `rediss://` URLs: the PEM file of the CA that signed the server's certificate (else the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Where messages from Redis go: decoded, into the node's inbox.
struct Inbound {
    local: ChangeSink,
    schema: Arc<Schema>,
    channels: Channels,
    /// The versions of messages this node skipped, each said once: a newer node sends many.
    unknown_versions: HashSet<u64>,
}

impl Inbound {
    /// Decodes a message received on `channel` and feeds it to the inbox; false once the inbox closed.
    async fn forward(&mut self, channel: &str, payload: &[u8]) -> bool {
        match wire::decode(&self.schema, payload) {
            Ok(msg) => self.local.send(msg).await.is_ok(),
            Err(e @ DecodeError::UnknownVersion(v)) => {
                if self.unknown_versions.insert(v) {
                    tracing::warn!(channel, error = %e, "skipping messages of an unknown version on Redis");
                }
                true
            }
            Err(e @ DecodeError::Malformed(_)) => {
                tracing::warn!(channel, error = %e, "ignoring a malformed message on Redis");
                true
            }
        }
    }
}

/// Exponential backoff between reconnection attempts.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(BACKOFF_MIN)
    }

    fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        wait
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }
}

/// What the publisher task sends next.
enum Job {
    /// A message from [`Bus::publish`], whose sender waits for the outcome.
    Publish(Outgoing),
    /// A relayed transaction or heads; nobody waits, a failure is logged.
    Relay(BusMessage),
}

/// The publishing connection, replaced after it breaks; after a failed reconnection the next attempt waits for
/// the backoff, and messages meanwhile are refused rather than queued behind a dead server.
struct Connection {
    backend: Backend,
    conn: Option<CmdConn>,
    backoff: Backoff,
    retry_at: Instant,
    failed: u64,
    /// Set after every attempt: whether it reached Redis.
    publishing: Arc<AtomicBool>,
}

impl Connection {
    /// Publishes `payload` on `channel`: one try on the current connection, then one on a fresh one.
    async fn publish(&mut self, channel: &str, payload: &str) -> Result<(), BusError> {
        let sent = self.try_publish(channel, payload).await;
        self.publishing.store(sent.is_ok(), Ordering::Relaxed);
        sent
    }

    async fn try_publish(&mut self, channel: &str, payload: &str) -> Result<(), BusError> {
        for _ in 0..2 {
            if self.conn.is_none() {
                if Instant::now() < self.retry_at {
                    break;
                }
                match self.backend.commands().await {
                    Ok(fresh) => {
                        tracing::warn!(failed = self.failed, "reconnected to Redis for publishing");
                        self.conn = Some(fresh);
                        self.backoff.reset();
                        self.failed = 0;
                    }
                    Err(e) => {
                        let wait = self.backoff.next();
                        self.retry_at = Instant::now() + wait;
                        tracing::warn!(error = %e, retry_in = ?wait, "cannot reconnect to Redis for publishing");
                        break;
                    }
                }
            }
            let Some(c) = self.conn.as_mut() else { break };
            match c.publish(channel, payload).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing to Redis failed; reconnecting");
                    self.conn = None;
                }
            }
        }
        self.failed += 1;
        Err(BusError::Down("Redis is unreachable".to_owned()))
    }
}

/// The Redis channel that carries `message`: row changes and heads on one, plain messages on the other.
fn channel_of(channels: Channels, message: &BusMessage) -> &'static str {
    match message {
        BusMessage::Changes(_) | BusMessage::Heads(_) => channels.changes,
        // Presence goes with plain messages: neither has a log, and both are for every node at once.
        BusMessage::Channel { .. } | BusMessage::Presence(_) => channels.publish,
    }
}

/// Publishes messages (answering each sender) and relayed changes, one at a time, in arrival order per kind,
/// until both queues close.
async fn publisher(
    backend: Backend,
    conn: CmdConn,
    mut rx: mpsc::Receiver<Outgoing>,
    mut relayed: mpsc::Receiver<BusMessage>,
    schema: Arc<Schema>,
    _done: oneshot::Sender<()>,
    publishing: Arc<AtomicBool>,
) {
    let channels = backend.channels();
    let mut conn = Connection {
        backend,
        conn: Some(conn),
        backoff: Backoff::new(),
        retry_at: Instant::now(),
        failed: 0,
        publishing,
    };
    let mut relay_open = true;
    loop {
        let job = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => Job::Publish(job),
                None => return,
            },
            msg = relayed.recv(), if relay_open => match msg {
                Some(msg) => Job::Relay(msg),
                None => {
                    relay_open = false;
                    continue;
                }
            },
        };
        match job {
            Job::Publish((msg, ack)) => {
                let sent = conn.publish(channel_of(channels, &msg), &wire::encode(&schema, &msg)).await;
                if sent.is_err() {
                    tracing::warn!("Redis is unreachable: a message for every node was refused");
                }
                let _ = ack.send(sent);
            }
            Job::Relay(msg) => {
                let payload = wire::encode(&schema, &msg);
                // Said once per outage; the reconnection reports how many messages failed in all.
                if conn.publish(channel_of(channels, &msg), &payload).await.is_err() && conn.failed == 1 {
                    tracing::warn!(
                        "Redis is unreachable: relayed changes are dropped until it returns; the nodes will read \
                         them from the change log"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_heads_go_on_the_changes_channel_and_plain_messages_on_the_other() {
        let channels = Channels::SINGLE;
        let heads = BusMessage::Heads(Arc::new(Vec::new()));
        let changes = BusMessage::Changes(Arc::new(Vec::new()));
        let plain = BusMessage::Channel { name: Arc::from("chat"), data: Arc::new(serde_json::json!(1)) };
        assert_eq!(channel_of(channels, &heads), "drakon:changes");
        assert_eq!(channel_of(channels, &changes), "drakon:changes");
        assert_eq!(channel_of(Channels::SHARDED, &plain), "{drakon}:publish");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new();
        let waits: Vec<_> = (0..8).map(|_| b.next()).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        b.reset();
        assert_eq!(b.next(), BACKOFF_MIN);
    }
}
