//! Nodes: who this node is, and which nodes are alive.
//!
//! Every node makes a [`NodeId`] when it starts; a restarted node is a new node. State that one node holds on
//! behalf of another (such as the presence of the other's clients) must go when that node dies, whether it shut
//! down or crashed: a [`Liveness`] says which nodes are alive as this node sees them, and [`Deaths`] tells when
//! one of them dies. With Redis, `drakon-redis`'s `RedisLiveness` keeps a key per node with a TTL that the node's
//! heartbeat refreshes, so a node that stops is seen dead everywhere within
//! [`NODE_TTL`](crate::limits::NODE_TTL) + [`NODE_HEARTBEAT`](crate::limits::NODE_HEARTBEAT); a node alone has
//! [`Alone`].
//!
//! PostgreSQL's `_drakon_nodes` is not this: it records each node's place in the change log, in the database, so
//! that log trimming never removes what a live node has not published, with or without Redis.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

/// A node's identity, made at start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// The caller makes `id` unique among the nodes that share a bus (random bits, at start).
    pub fn new(id: impl Into<Arc<str>>) -> NodeId {
        NodeId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The nodes alive at one look.
pub type Alive = Arc<BTreeSet<NodeId>>;

/// Which nodes are alive, as this node sees them.
#[async_trait]
pub trait Liveness: Send + Sync + std::fmt::Debug + 'static {
    /// This node.
    fn node(&self) -> &NodeId;

    /// The nodes alive as of the last look, this one included, changing as nodes start and die. A node that
    /// leaves the set is dead (see [`Deaths`]); one that comes back later (after a long pause, say) counts as new.
    fn alive(&self) -> watch::Receiver<Alive>;

    /// Says that this node is going away, so that the others count it dead at their next look instead of after
    /// its heartbeat expires. A node that crashes never says it; that is what the expiry is for.
    async fn leave(&self);
}

/// The liveness of a node without others: it alone is alive, until it stops.
#[derive(Debug)]
pub struct Alone {
    node: NodeId,
    alive: watch::Sender<Alive>,
}

impl Alone {
    pub fn new(node: NodeId) -> Alone {
        let alive = watch::Sender::new(Arc::new(BTreeSet::from([node.clone()])));
        Alone { node, alive }
    }
}

#[async_trait]
impl Liveness for Alone {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn alive(&self) -> watch::Receiver<Alive> {
        self.alive.subscribe()
    }

    async fn leave(&self) {
        // Nobody else is there to tell.
    }
}

/// Tells which of the nodes seen alive have died.
#[derive(Debug)]
pub struct Deaths {
    alive: watch::Receiver<Alive>,
    seen: Alive,
}

impl Deaths {
    /// Watches `liveness` from now: the nodes it holds alive now are the ones whose deaths are told.
    pub fn new(liveness: &dyn Liveness) -> Deaths {
        let alive = liveness.alive();
        let seen = alive.borrow().clone();
        Deaths { alive, seen }
    }

    /// Waits until one or more nodes seen alive have died, and names them; `None` once the liveness stopped. A
    /// node that started and died between two looks was never seen, so it held nothing here.
    pub async fn next(&mut self) -> Option<Vec<NodeId>> {
        loop {
            self.alive.changed().await.ok()?;
            let now = self.alive.borrow_and_update().clone();
            let dead: Vec<NodeId> = self.seen.difference(&now).cloned().collect();
            self.seen = now;
            if !dead.is_empty() {
                return Some(dead);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_alone_is_alive_and_sees_no_deaths() {
        let alone = Alone::new(NodeId::new("a"));
        assert_eq!(alone.node().as_str(), "a");
        assert_eq!(*alone.alive().borrow().clone(), BTreeSet::from([NodeId::new("a")]));
        let mut deaths = Deaths::new(&alone);
        alone.leave().await;
        drop(alone);
        assert_eq!(deaths.next().await, None, "no death, and the end of the liveness ends the watch");
    }

    #[tokio::test]
    async fn deaths_are_the_nodes_that_left_the_alive_set() {
        let ids = |names: &[&str]| -> Alive { Arc::new(names.iter().map(|n| NodeId::new(*n)).collect()) };
        let (tx, rx) = watch::channel(ids(&["a", "b", "c"]));
        let mut deaths = Deaths { alive: rx.clone(), seen: rx.borrow().clone() };
        // A node joining is no death; two leaving at once are told together; a node never seen is not told.
        tx.send(ids(&["a", "b", "c", "d"])).unwrap();
        tx.send(ids(&["a", "d"])).unwrap();
        assert_eq!(deaths.next().await, Some(vec![NodeId::new("b"), NodeId::new("c")]));
        tx.send(ids(&["a", "d", "e"])).unwrap();
        tx.send(ids(&["a", "d"])).unwrap();
        tx.send(ids(&["a"])).unwrap();
        assert_eq!(deaths.next().await, Some(vec![NodeId::new("d")]));
    }
}
