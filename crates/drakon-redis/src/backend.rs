//! The two ways to reach Redis: one server (`PUBLISH` / `SUBSCRIBE` over a multiplexed connection and a pub/sub
//! connection) or a Redis Cluster (`SPUBLISH` / `SSUBSCRIBE` over the cluster client, RESP3 pushes). Other
//! commands (the liveness keys) go over the same kind of connection as publishing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::{BACKOFF_MAX, Backoff, COMMAND_TIMEOUT, CONNECT_TIMEOUT, Channels, Inbound};

/// Pushes waiting for the cluster subscriber; bounded, since the cluster client must never wait on us. A push
/// that does not fit is dropped: for row changes the fan-out repairs the gap from the log.
const PUSH_QUEUE: usize = 4096;

/// Where the bus lives.
#[derive(Clone)]
pub enum Backend {
    Single(Arc<redis::Client>),
    Cluster(Arc<Vec<String>>, Option<Arc<Vec<u8>>>),
}

/// A connection for publishing and other commands.
pub enum CmdConn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// `result` of a command bounded by `limit`, with the error as text.
async fn bounded<T>(
    limit: std::time::Duration,
    command: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match timeout(limit, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

fn cluster_builder(nodes: &[String], ca: &Option<Arc<Vec<u8>>>) -> ClusterClientBuilder {
    let builder = ClusterClientBuilder::new(nodes.to_vec())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT);
    match ca {
        Some(ca) => builder.certs(certificates(ca)),
        None => builder,
    }
}

/// Trust `ca` (PEM) for the server's certificate instead of the system's roots.
fn certificates(ca: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) }
}

impl Backend {
    /// Checks `url` (comma-separated node URLs for a cluster) without connecting. With `rediss://` URLs the
    /// connections use TLS, the server's certificate checked against `ca` (PEM) or else the system's roots.
    pub fn open(url: &str, sharded: bool, ca: Option<Vec<u8>>) -> Result<Backend, String> {
        if !sharded {
            let client = match &ca {
                Some(ca) => redis::Client::build_with_tls(url, certificates(ca)),
                None => redis::Client::open(url),
            };
            return client.map(|c| Backend::Single(Arc::new(c))).map_err(|e| e.to_string());
        }
        let nodes: Vec<String> = url.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        let ca = ca.map(Arc::new);
        cluster_builder(&nodes, &ca).build().map_err(|e| e.to_string())?;
        Ok(Backend::Cluster(Arc::new(nodes), ca))
    }

    pub fn channels(&self) -> Channels {
        match self {
            Backend::Single(_) => Channels::SINGLE,
            Backend::Cluster(..) => Channels::SHARDED,
        }
    }

    pub async fn commands(&self) -> Result<CmdConn, String> {
        match self {
            Backend::Single(client) => {
                bounded(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await.map(CmdConn::Single)
            }
            Backend::Cluster(nodes, ca) => {
                let client = cluster_builder(nodes, ca).build().map_err(|e| e.to_string())?;
                bounded(CONNECT_TIMEOUT, client.get_async_connection()).await.map(CmdConn::Cluster)
            }
        }
    }

    /// Subscribes to both channels (returning once subscribed, or why not) and spawns the task that forwards what
    /// arrives to `inbound` until `stopped` fires or the local bus closes; `subscribed` tells whether the
    /// subscription is currently held.
    pub async fn subscribe(
        &self,
        inbound: Inbound,
        stopped: oneshot::Receiver<()>,
        subscribed: Arc<AtomicBool>,
    ) -> Result<(), String> {
        match self {
            Backend::Single(client) => {
                let pubsub = single_subscription(client, inbound.channels).await?;
                subscribed.store(true, Ordering::Relaxed);
                tokio::spawn(single_subscriber(client.clone(), pubsub, inbound, stopped, subscribed));
            }
            Backend::Cluster(nodes, ca) => {
                let (tx, rx) = mpsc::channel(PUSH_QUEUE);
                let push = move |info: PushInfo| tx.try_send(info);
                let client = cluster_builder(nodes, ca).push_sender(push).build().map_err(|e| e.to_string())?;
                let conn = cluster_subscription(&client, inbound.channels).await?;
                subscribed.store(true, Ordering::Relaxed);
                tokio::spawn(cluster_subscriber(conn, rx, inbound, stopped, subscribed));
            }
        }
        Ok(())
    }
}

impl CmdConn {
    pub async fn publish(&mut self, channel: &str, payload: &str) -> Result<(), String> {
        match self {
            CmdConn::Single(c) => bounded(COMMAND_TIMEOUT, c.publish::<_, _, i64>(channel, payload)).await.map(|_| ()),
            CmdConn::Cluster(c) => {
                bounded(COMMAND_TIMEOUT, c.spublish::<_, _, i64>(channel, payload)).await.map(|_| ())
            }
        }
    }

    /// Runs `cmd`; on a cluster, on the node that serves its keys' slot.
    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, String> {
        match self {
            CmdConn::Single(c) => bounded(COMMAND_TIMEOUT, cmd.query_async(c)).await,
            CmdConn::Cluster(c) => bounded(COMMAND_TIMEOUT, cmd.query_async(c)).await,
        }
    }
}

async fn single_subscription(client: &redis::Client, channels: Channels) -> Result<redis::aio::PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&[channels.publish, channels.changes]).await?;
        Ok(pubsub)
    };
    bounded(CONNECT_TIMEOUT, attempt).await
}

/// Forwards every message on both channels; subscribes again, with backoff, after losing Redis.
async fn single_subscriber(
    client: Arc<redis::Client>,
    pubsub: redis::aio::PubSub,
    mut inbound: Inbound,
    mut stopped: oneshot::Receiver<()>,
    subscribed: Arc<AtomicBool>,
) {
    let mut pubsub = Some(pubsub);
    let mut backoff = Backoff::new();
    loop {
        let mut current = match pubsub.take() {
            Some(p) => p,
            None => match single_subscription(&client, inbound.channels).await {
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
                _ = inbound.local.closed() => return,
            };
            let Some(msg) = msg else { break };
            if !inbound.forward(msg.get_channel_name(), msg.get_payload_bytes()).await {
                return;
            }
        }
        subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("lost the Redis subscription; subscribing again");
    }
}

async fn cluster_subscription(client: &ClusterClient, channels: Channels) -> Result<ClusterConnection, String> {
    let attempt = async {
        let mut conn = client.get_async_connection().await?;
        conn.ssubscribe(&[channels.publish, channels.changes]).await?;
        Ok(conn)
    };
    bounded(CONNECT_TIMEOUT, attempt).await
}

/// Forwards every sharded message. The cluster client reconnects and subscribes again by itself (following the
/// slot to whichever node serves it); its pushes say when the subscription is lost (`Disconnection`) and held
/// again (`SSubscribe`). A connection that does not come back within the longest backoff is replaced.
async fn cluster_subscriber(
    conn: ClusterConnection,
    mut pushes: mpsc::Receiver<PushInfo>,
    mut inbound: Inbound,
    mut stopped: oneshot::Receiver<()>,
    subscribed: Arc<AtomicBool>,
) {
    // Held so that the client keeps the subscription alive.
    let mut conn = conn;
    let mut check = tokio::time::interval(BACKOFF_MAX);
    loop {
        let push = tokio::select! {
            push = pushes.recv() => push,
            _ = check.tick() => {
                // While the subscription is down, a ping makes the client reconnect (and resubscribe) now rather
                // than on the next command.
                if !subscribed.load(Ordering::Relaxed) {
                    let _ = bounded(COMMAND_TIMEOUT, redis::cmd("PING").query_async::<Value>(&mut conn)).await;
                }
                continue;
            }
            _ = &mut stopped => return,
            _ = inbound.local.closed() => return,
        };
        let Some(push) = push else { return };
        match push.kind {
            PushKind::SMessage => {
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (push.data.first(), push.data.get(1))
                else {
                    continue;
                };
                if !inbound.forward(&String::from_utf8_lossy(channel), payload).await {
                    return;
                }
            }
            PushKind::SSubscribe if !subscribed.swap(true, Ordering::Relaxed) => {
                tracing::warn!("subscribed to the Redis Cluster again");
            }
            PushKind::Disconnection if subscribed.swap(false, Ordering::Relaxed) => {
                tracing::warn!("lost a Redis Cluster connection; the client reconnects and subscribes again");
            }
            _ => {}
        }
    }
}
