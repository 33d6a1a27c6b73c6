//! The Redis bus: plain pub/sub messages (`POST /api/publish`, [`BusMessage::Channel`]) cross every node.
//!
//! [`start`] returns a [`RedisBus`], the engine's [`Publisher`]: a publisher task takes each message and
//! `PUBLISH`es it to one Redis channel ([`CHANNEL`]) as JSON `{"channel", "data"}`, answering the caller once Redis
//! has it (or why not, so `POST /api/publish` can answer 503 while Redis is away); a subscriber task,
//! on its own connection, `SUBSCRIBE`s to that channel and forwards every message it receives into the node's
//! local bus (the sink the store uses) as a [`BusMessage::Channel`]. A message therefore reaches the local bus only
//! by way of Redis, so every node, the sender included, delivers it exactly once.
//!
//! Row changes ([`BusMessage::Changes`]) never go through Redis: with PostgreSQL every node already receives every
//! change through its own `LISTEN`er and the shared change log, and with SQLite there is only one node.
//!
//! Both tasks reconnect with exponential backoff (logged at `warn`) after Redis goes away, and the subscriber
//! subscribes again. While Redis is unreachable, messages cannot cross nodes: every Redis command is bounded by
//! [`COMMAND_TIMEOUT`], so nothing hangs, and the publisher of a message that cannot be sent is told so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drakon_core::store::{BusMessage, ChangeSink, Publisher};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};

/// The Redis channel that carries every node's plain pub/sub messages.
pub const CHANNEL: &str = "drakon:publish";

/// How long connecting (and subscribing) may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one `PUBLISH` may take before the connection counts as broken.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The first wait before reconnecting; it doubles after each failed attempt up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest wait between reconnection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Messages waiting to be published; bounded so that a slow Redis slows publishers instead of growing memory.
const PUBLISH_QUEUE: usize = 1024;

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
type Outgoing = (Arc<str>, Arc<Json>, oneshot::Sender<Result<(), String>>);

/// The Redis bus of one node; give it to the engine with `Engine::set_publisher`.
#[derive(Debug)]
pub struct RedisBus {
    tx: mpsc::Sender<Outgoing>,
    /// Whether the subscriber currently holds its subscription, i.e. messages from other nodes arrive.
    subscribed: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Publisher for RedisBus {
    async fn publish(&self, name: Arc<str>, data: Arc<Json>) -> Result<(), String> {
        let (ack, acked) = oneshot::channel();
        self.tx.send((name, data, ack)).await.map_err(|_| "the Redis bus has stopped".to_owned())?;
        acked.await.map_err(|_| "the Redis bus has stopped".to_owned())?
    }

    fn ready(&self) -> Result<(), String> {
        if self.subscribed.load(Ordering::Relaxed) { Ok(()) } else { Err("not subscribed on Redis".to_owned()) }
    }
}

/// Connects to Redis at `url` (publisher and subscriber, so that the first message is already delivered) and
/// starts both tasks. `local` is the node's bus (the sink the store uses), into which the subscriber feeds every
/// message. Both tasks end when the returned bus is dropped or the local bus closes.
pub async fn start(url: &str, local: ChangeSink) -> Result<Arc<RedisBus>, StartError> {
    let client = redis::Client::open(url).map_err(|e| StartError(format!("bad Redis URL: {e}")))?;
    let conn = publisher_connection(&client).await.map_err(|e| StartError(format!("cannot connect to Redis: {e}")))?;
    let pubsub = subscribe(&client).await.map_err(|e| StartError(format!("cannot subscribe on Redis: {e}")))?;
    let (sink, rx) = mpsc::channel(PUBLISH_QUEUE);
    let (done, stopped) = oneshot::channel::<()>();
    let client = Arc::new(client);
    let subscribed = Arc::new(AtomicBool::new(true));
    tokio::spawn(publisher(client.clone(), conn, rx, done));
    tokio::spawn(subscriber(client, pubsub, local, stopped, subscribed.clone()));
    Ok(Arc::new(RedisBus { tx: sink, subscribed }))
}

async fn publisher_connection(client: &redis::Client) -> Result<redis::aio::MultiplexedConnection, String> {
    match timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

async fn subscribe(client: &redis::Client) -> Result<redis::aio::PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Exponential backoff between reconnection attempts.
#[derive(Debug)]
struct Backoff(Duration);

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

async fn publish(conn: &mut redis::aio::MultiplexedConnection, payload: &str) -> Result<(), String> {
    match timeout(COMMAND_TIMEOUT, conn.publish::<_, _, i64>(CHANNEL, payload)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
    }
}

/// Publishes every message from `rx` to Redis and answers each sender. A broken connection is replaced at once
/// for the message at hand; after a failed reconnection the next attempt waits for the backoff, and messages
/// meanwhile are refused.
async fn publisher(
    client: Arc<redis::Client>,
    conn: redis::aio::MultiplexedConnection,
    mut rx: mpsc::Receiver<Outgoing>,
    _done: oneshot::Sender<()>,
) {
    let mut conn = Some(conn);
    let mut backoff = Backoff::new();
    let mut retry_at = Instant::now();
    let mut dropped: u64 = 0;
    while let Some((name, data, ack)) = rx.recv().await {
        let payload = json!({"channel": &*name, "data": &*data}).to_string();
        let mut sent = false;
        // One try on the current connection, then one on a fresh one.
        for _ in 0..2 {
            if conn.is_none() {
                if Instant::now() < retry_at {
                    break;
                }
                match publisher_connection(&client).await {
                    Ok(fresh) => {
                        tracing::warn!(dropped, "reconnected to Redis for publishing");
                        conn = Some(fresh);
                        backoff.reset();
                        dropped = 0;
                    }
                    Err(e) => {
                        let wait = backoff.next();
                        retry_at = Instant::now() + wait;
                        tracing::warn!(error = %e, retry_in = ?wait, "cannot reconnect to Redis for publishing");
                        break;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { break };
            match publish(c, &payload).await {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publishing to Redis failed; reconnecting");
                    conn = None;
                }
            }
        }
        if sent {
            let _ = ack.send(Ok(()));
        } else {
            dropped += 1;
            tracing::warn!(channel = %name, dropped, "Redis is unreachable: a plain pub/sub message was refused");
            let _ = ack.send(Err("Redis is unreachable".to_owned()));
        }
    }
}

/// Forwards every message on [`CHANNEL`] into the local bus; subscribes again, with backoff, after losing Redis.
async fn subscriber(
    client: Arc<redis::Client>,
    pubsub: redis::aio::PubSub,
    local: ChangeSink,
    mut stopped: oneshot::Receiver<()>,
    subscribed: Arc<AtomicBool>,
) {
    let mut pubsub = Some(pubsub);
    let mut backoff = Backoff::new();
    loop {
        let mut current = match pubsub.take() {
            Some(p) => p,
            None => match subscribe(&client).await {
                Ok(p) => {
                    tracing::warn!("subscribed to Redis again");
                    subscribed.store(true, Ordering::Relaxed);
                    backoff.reset();
                    p
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot subscribe on Redis");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = &mut stopped => return,
                    }
                }
            },
        };
        let mut messages = current.on_message();
        loop {
            let msg = tokio::select! {
                msg = messages.next() => msg,
                _ = &mut stopped => return,
                _ = local.closed() => return,
            };
            let Some(msg) = msg else { break };
            let Some(bus_msg) = decode(msg.get_payload_bytes()) else {
                tracing::warn!("ignoring a malformed message on the Redis channel {CHANNEL}");
                continue;
            };
            if local.send(bus_msg).await.is_err() {
                return;
            }
        }
        subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("lost the Redis subscription; subscribing again");
    }
}

/// `{"channel": name, "data": …}` → [`BusMessage::Channel`].
fn decode(payload: &[u8]) -> Option<BusMessage> {
    let Json::Object(mut fields) = serde_json::from_slice::<Json>(payload).ok()? else { return None };
    let Some(Json::String(name)) = fields.remove("channel") else { return None };
    let data = fields.remove("data").unwrap_or(Json::Null);
    Some(BusMessage::Channel { name: Arc::from(name), data: Arc::new(data) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_to_channel_messages() {
        let Some(BusMessage::Channel { name, data }) = decode(br#"{"channel":"chatroom","data":{"a":1}}"#) else {
            panic!("not decoded")
        };
        assert_eq!((&*name, &*data), ("chatroom", &json!({"a": 1})));
        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"data":1}"#).is_none());
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
