//! Node liveness on Redis: a key per node, with a TTL that the node's heartbeat refreshes.
//!
//! Every [`NODE_HEARTBEAT`] a node sets `drakon:node:<id>` to expire after [`NODE_TTL`], adds its id to the set
//! `drakon:nodes` (the index the others list), then looks: it lists the set and reads which of those keys still
//! exist. A node whose key is gone is dead: it stopped heartbeating (crashed, froze, lost Redis) and the key expired,
//! or it left and deleted it. The node that notices removes it from the set. So a node that stops is seen dead by
//! every node within `NODE_TTL + NODE_HEARTBEAT`. Redis's clock decides expiry, so the nodes' clocks may differ.
//!
//! Redis without persistence forgets every key when it restarts, and the live nodes put theirs back within a
//! heartbeat of reconnecting; that must not read as every other node dying. So a node that lost Redis (any failed
//! command) declares no death until it has reached Redis again for a whole `NODE_TTL`, and until then counts the
//! nodes it saw before as alive; a real death in that window is told at its end. While Redis is unreachable the
//! view stays as it was.
//!
//! On a Redis Cluster the keys carry the `{drakon}` hash tag ([`Channels::SHARDED`](crate::Channels)), so they
//! share one slot and a node's look is two commands to one shard.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use drakon_core::limits::{NODE_HEARTBEAT, NODE_TTL};
use drakon_core::node::{Alive, Liveness, NodeId};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{Backend, CmdConn};
use crate::{Options, StartError, open};

/// The names of the liveness keys.
#[derive(Debug, Clone, Copy)]
struct Keys {
    prefix: &'static str,
}

impl Keys {
    /// The key that says `node` is alive while it exists.
    fn node(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// The set of the ids of nodes that may be alive.
    fn index(&self) -> String {
        format!("{}nodes", self.prefix)
    }
}

/// This node's liveness on Redis: its heartbeat, and which nodes it sees alive. Dropping it stops the heartbeat
/// as a crash would (the key expires); [`Liveness::leave`] deletes the key, so the others see it go at once.
#[derive(Debug)]
pub struct RedisLiveness {
    node: NodeId,
    alive: watch::Receiver<Alive>,
    /// The heartbeat task, and how to tell it to leave; taken when it stops.
    task: Mutex<Option<(JoinHandle<()>, oneshot::Sender<()>)>>,
}

impl RedisLiveness {
    /// Connects to Redis at `url` (as [`crate::start`] does), sets this node's key and looks which nodes are alive
    /// before returning, so the view holds this node and every live one from the start; then heartbeats and looks
    /// every [`NODE_HEARTBEAT`] until dropped or left.
    pub async fn start(url: &str, options: &Options, node: NodeId) -> Result<RedisLiveness, StartError> {
        let backend = open(url, options)?;
        let keys = Keys { prefix: backend.channels().keys };
        let mut conn = backend.commands().await.map_err(|e| StartError(format!("cannot connect to Redis: {e}")))?;
        let present = beat_and_look(&mut conn, keys, &node)
            .await
            .map_err(|e| StartError(format!("cannot record this node as alive on Redis: {e}")))?;
        let (tx, alive) = watch::channel(Arc::new(present));
        let (leave, leaving) = oneshot::channel();
        let task = tokio::spawn(run(backend, conn, keys, node.clone(), tx, leaving));
        Ok(RedisLiveness { node, alive, task: Mutex::new(Some((task, leave))) })
    }

    fn take_task(&self) -> Option<(JoinHandle<()>, oneshot::Sender<()>)> {
        self.task.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Drop for RedisLiveness {
    fn drop(&mut self) {
        if let Some((task, _)) = self.take_task() {
            task.abort();
        }
    }
}

#[async_trait]
impl Liveness for RedisLiveness {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn alive(&self) -> watch::Receiver<Alive> {
        self.alive.clone()
    }

    async fn leave(&self) {
        let Some((task, leave)) = self.take_task() else { return };
        // The task deletes the key on its own connection, after any heartbeat it sent: none can set it again.
        let _ = leave.send(());
        let _ = task.await;
    }
}

/// Heartbeats and looks every [`NODE_HEARTBEAT`], publishing the view on `alive`, and reconnects on the next beat
/// after a failure; deletes this node's key and ends when told to leave.
async fn run(
    backend: Backend,
    conn: CmdConn,
    keys: Keys,
    node: NodeId,
    alive: watch::Sender<Alive>,
    mut leaving: oneshot::Receiver<()>,
) {
    let mut conn = Some(conn);
    let mut tick = tokio::time::interval_at(Instant::now() + NODE_HEARTBEAT, NODE_HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a command last failed: deaths wait until Redis has answered for a whole NODE_TTL since.
    let mut failed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            left = &mut leaving => {
                // Without a word (the handle dropped) this is no leave: the key expires as after a crash.
                if left.is_ok() {
                    forget(&backend, conn, keys, &node).await;
                }
                return;
            }
        }
        let looked = match conn.as_mut() {
            Some(c) => beat_and_look(c, keys, &node).await,
            None => match backend.commands().await {
                Ok(fresh) => beat_and_look(conn.insert(fresh), keys, &node).await,
                Err(e) => Err(e),
            },
        };
        let present = match looked {
            Ok(present) => present,
            Err(e) => {
                if failed_at.is_none() {
                    tracing::warn!(error = %e, "lost Redis for node liveness; the nodes seen alive stay so meanwhile");
                }
                failed_at = Some(Instant::now());
                conn = None;
                continue;
            }
        };
        let grace = failed_at.is_some_and(|at| at.elapsed() < NODE_TTL);
        if !grace && failed_at.take().is_some() {
            tracing::warn!("node liveness on Redis is back");
        }
        alive.send_if_modified(|view| {
            let next = if grace { view.union(&present).cloned().collect() } else { present };
            let changed = **view != next;
            if changed {
                *view = Arc::new(next);
            }
            changed
        });
    }
}

/// Deletes `node`'s key and its place in the index, on `conn` if there is one.
async fn forget(backend: &Backend, conn: Option<CmdConn>, keys: Keys, node: &NodeId) {
    let gone = async {
        let mut conn = match conn {
            Some(conn) => conn,
            None => backend.commands().await?,
        };
        conn.query::<()>(redis::cmd("DEL").arg(keys.node(node.as_str()))).await?;
        conn.query::<()>(redis::cmd("SREM").arg(keys.index()).arg(node.as_str())).await
    };
    // Not fatal: the key expires on its own.
    if let Err(e) = gone.await {
        tracing::warn!(error = %e, "could not remove this node's liveness key; it expires within {NODE_TTL:?}");
    }
}

/// Refreshes `node`'s key, then reads which nodes have theirs, and forgets the others.
async fn beat_and_look(conn: &mut CmdConn, keys: Keys, node: &NodeId) -> Result<BTreeSet<NodeId>, String> {
    let ttl_ms = u64::try_from(NODE_TTL.as_millis()).unwrap_or(u64::MAX);
    conn.query::<()>(redis::cmd("SET").arg(keys.node(node.as_str())).arg(1).arg("PX").arg(ttl_ms)).await?;
    // After the key: a node listed in the index always has had its key.
    conn.query::<()>(redis::cmd("SADD").arg(keys.index()).arg(node.as_str())).await?;
    let ids: Vec<String> = conn.query(redis::cmd("SMEMBERS").arg(keys.index())).await?;
    // This node is alive whatever the index says: another node that took it for dead a moment ago (its key had
    // expired during a pause) may have removed it from the set after the SADD; the next beat adds it again.
    let mut alive = BTreeSet::from([node.clone()]);
    if ids.is_empty() {
        return Ok(alive);
    }
    let mut exists = redis::cmd("MGET");
    for id in &ids {
        exists.arg(keys.node(id));
    }
    let values: Vec<Option<String>> = conn.query(&exists).await?;
    let (present, dead): (Vec<_>, Vec<_>) = ids.into_iter().zip(values).partition(|(_, value)| value.is_some());
    if !dead.is_empty() {
        let mut forget = redis::cmd("SREM");
        forget.arg(keys.index());
        for (id, _) in &dead {
            forget.arg(id);
        }
        conn.query::<()>(&forget).await?;
    }
    alive.extend(present.into_iter().map(|(id, _)| NodeId::new(id)));
    Ok(alive)
}
