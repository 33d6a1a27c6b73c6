//! The bus: what carries row changes and plain pub/sub messages to every node's fan-out.
//!
//! A [`Bus`] is made together with its node's [`Inbox`], the bounded queue the fan-out reads. What any node
//! [`Bus::publish`]es arrives in every node's inbox, this node's included, each message once; stores hand their
//! committed changes to a [`ChangeSink`](crate::store::ChangeSink) instead, which is the inbox's own sender on a
//! single node and, with PostgreSQL and Redis, the relay's way onto the bus. Two implementations: [`LocalBus`]
//! (one node, in process) and the Redis bus of `drakon-redis` (between nodes, at most once per message: the fan-out
//! repairs lost row changes from the change log by offset).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::store::{Change, ChangeSink};

/// What travels from stores (and the publish API) to every hub.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// Changes committed by one transaction, in offset order.
    Changes(Arc<Vec<Change>>),
    /// A plain pub/sub message (`POST /api/publish`).
    Channel { name: Arc<str>, data: Arc<Json> },
    /// How far each model's change log has been published to the bus between nodes (model, offset). A node that
    /// delivered less lost messages on the way and reads the rest from the change log; sent periodically, it
    /// bounds how long a lost message at the end of a burst stays unnoticed.
    Heads(Arc<Vec<(Arc<str>, u64)>>),
    /// What one node says about presence (see [`crate::presence::share`]).
    Presence(Arc<crate::presence::PresenceMessage>),
}

/// Where a node's fan-out reads every message published on the bus, in the order this node received them.
pub type Inbox = mpsc::Receiver<BusMessage>;

/// Why the bus did not take a message, or is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The bus has stopped: the node is shutting down.
    #[error("the bus has stopped")]
    Stopped,
    /// The bus between nodes cannot be reached now; it may come back.
    #[error("the bus between nodes is down: {0}")]
    Down(String),
}

/// Carries messages to every node.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `message` to every node, this one included; returns once the message is on its way, or says why it
    /// is not. Waits while the bus is full, so a lagging fan-out slows publishers instead of growing memory.
    async fn publish(&self, message: BusMessage) -> Result<(), BusError>;

    /// Whether messages from other nodes are arriving (for readiness); why not, when they are not.
    fn ready(&self) -> Result<(), BusError>;
}

/// The bus of a node alone: a bounded queue straight into its own fan-out.
#[derive(Debug, Clone)]
pub struct LocalBus {
    sink: ChangeSink,
}

impl LocalBus {
    /// A bus holding at most `capacity` messages (see [`crate::limits::BUS_QUEUE_BATCHES`]), and its inbox.
    pub fn new(capacity: usize) -> (LocalBus, Inbox) {
        let (sink, inbox) = mpsc::channel(capacity);
        (LocalBus { sink }, inbox)
    }

    /// The inbox's sender, for a store (or another bus) to deliver into this node's fan-out.
    pub fn sink(&self) -> ChangeSink {
        self.sink.clone()
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        self.sink.send(message).await.map_err(|_| BusError::Stopped)
    }

    fn ready(&self) -> Result<(), BusError> {
        if self.sink.is_closed() { Err(BusError::Stopped) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_local_bus_delivers_into_its_inbox_in_order_until_it_closes() {
        let (bus, mut inbox) = LocalBus::new(4);
        assert_eq!(bus.ready(), Ok(()));
        for name in ["a", "b"] {
            let message = BusMessage::Channel { name: Arc::from(name), data: Arc::new(Json::Null) };
            bus.publish(message).await.expect("the inbox is open");
        }
        let names: Vec<String> = [inbox.recv().await, inbox.recv().await]
            .into_iter()
            .map(|m| match m {
                Some(BusMessage::Channel { name, .. }) => name.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["a", "b"]);
        drop(inbox);
        assert_eq!(bus.ready(), Err(BusError::Stopped));
        assert_eq!(bus.publish(BusMessage::Heads(Arc::new(Vec::new()))).await, Err(BusError::Stopped));
    }
}
