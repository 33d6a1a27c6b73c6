//! Presence across nodes: each node tells the others about its own entries, and drops a dead node's.
//!
//! Every node holds every room's entries, each tagged with the node that owns it (see [`super::room::Place`]); only
//! the owner changes its entries. A node numbers its changes (`seq`, from 1) and publishes each as a
//! [`PresenceMessage::Delta`] on the bus, and every second its latest number ([`PresenceMessage::Head`]). The bus
//! is at most once, so a receiver checks the numbers: the next one is applied; a gap, or a head beyond what it
//! applied, means it lost some, and it asks that node ([`PresenceMessage::Want`]) for all of its entries at once
//! ([`PresenceMessage::Sync`]), which replace what it held of that node. A node that starts asks every node. A node
//! that dies (its liveness key expired, see [`crate::node::Deaths`]) has its entries dropped everywhere, and its
//! members leave. Since each entry has one owner and each owner's changes apply in its own order, every node ends
//! with the same entries, whatever order messages from different nodes arrive in.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::room::Stamp;
use crate::hub::ConnId;

/// What nodes tell each other about presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceMessage {
    /// One change of `node`'s own entries, its `seq`th.
    Delta { node: String, seq: u64, room: String, conn: ConnId, op: Box<DeltaOp> },
    /// How many changes `node` has made so far.
    Head { node: String, seq: u64 },
    /// Every entry of `node` as of its change `seq`.
    Sync { node: String, seq: u64, entries: Vec<SyncEntry> },
    /// Asks node `to` (every node, when `None`) for a [`PresenceMessage::Sync`].
    Want { to: Option<String> },
}

/// One change of one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaOp {
    Join(WireEntry),
    Set { state: Json, stamp: Stamp },
    Leave,
}

/// An entry as it travels: who, what they show, and the room's size limit (so a node that has not seen the room
/// yet makes it alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEntry {
    pub user: String,
    pub info: Json,
    pub state: Json,
    pub stamp: Stamp,
    pub joined: Stamp,
    pub large_room: usize,
}

/// One entry of a [`PresenceMessage::Sync`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncEntry {
    pub room: String,
    pub conn: ConnId,
    pub entry: WireEntry,
}

/// What this node knows of another node's changes.
#[derive(Debug, Default)]
pub(super) struct Origin {
    /// The last change applied.
    pub(super) seq: u64,
    /// Whether every change up to `seq` was applied (or came in a sync); until then, its deltas wait for a sync.
    pub(super) synced: bool,
    /// When this node last asked it for a sync, so a burst of gaps asks once.
    pub(super) wanted: Option<std::time::Instant>,
}

/// What to do with a delta of a node, given what was applied of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Apply,
    /// Seen already (a duplicate, or older than the last sync).
    Skip,
    /// Changes were lost: ask for a sync.
    Gap,
}

impl Origin {
    /// A delta numbered `seq`: the next one is applied. The first ever seen from a node is the next one only if it
    /// is its first change; otherwise this node missed the ones before (it started later) and needs a sync.
    pub(super) fn next(&mut self, seq: u64) -> Next {
        if !self.synced && self.seq == 0 && seq == 1 {
            self.synced = true;
        }
        match (self.synced, seq) {
            (true, s) if s == self.seq + 1 => Next::Apply,
            (_, s) if s <= self.seq => Next::Skip,
            _ => Next::Gap,
        }
    }

    /// A head: whether changes up to `seq` were lost.
    pub(super) fn behind(&mut self, seq: u64) -> bool {
        if !self.synced && self.seq == 0 && seq == 0 {
            self.synced = true;
        }
        !self.synced || seq > self.seq
    }

    /// Whether to ask for a sync now: not if this node asked within `every`.
    pub(super) fn ask(&mut self, now: std::time::Instant, every: std::time::Duration) -> bool {
        if self.wanted.is_some_and(|at| now.duration_since(at) < every) {
            return false;
        }
        self.wanted = Some(now);
        true
    }
}

/// The other nodes, by id.
pub(super) type Origins = HashMap<String, Origin>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_apply_in_order_and_a_gap_waits_for_a_sync() {
        let mut origin = Origin::default();
        assert_eq!(origin.next(1), Next::Apply, "a node's first change needs nothing before it");
        origin.seq = 1;
        assert_eq!(origin.next(2), Next::Apply);
        origin.seq = 2;
        assert_eq!(origin.next(2), Next::Skip);
        assert_eq!(origin.next(4), Next::Gap);
        assert!(origin.behind(3) && !origin.behind(2));

        let mut late = Origin::default();
        assert_eq!(late.next(7), Next::Gap, "started after the node: its earlier changes are unknown here");
        assert!(late.behind(7));
        let mut idle = Origin::default();
        assert!(!idle.behind(0), "a node that never changed anything holds nothing");
        assert_eq!(idle.next(1), Next::Apply);
    }

    #[test]
    fn a_burst_of_gaps_asks_once_a_second() {
        let mut origin = Origin::default();
        let now = std::time::Instant::now();
        let second = std::time::Duration::from_secs(1);
        assert!(origin.ask(now, second));
        assert!(!origin.ask(now + second / 2, second));
        assert!(origin.ask(now + second, second));
    }

    #[test]
    fn messages_keep_their_shape_on_the_wire() {
        let entry = WireEntry {
            user: "bob".into(),
            info: serde_json::json!({"name": "Bob"}),
            state: serde_json::json!({}),
            stamp: Stamp::NEVER,
            joined: Stamp { ms: 5, seq: 1 },
            large_room: 100,
        };
        let delta = PresenceMessage::Delta {
            node: "n1".into(),
            seq: 1,
            room: "presence:todo-item:7".into(),
            conn: 3,
            op: Box::new(DeltaOp::Join(entry)),
        };
        let json = serde_json::to_value(&delta).unwrap();
        assert_eq!(json["delta"]["op"]["join"]["joined"], serde_json::json!({"ms": 5, "seq": 1}));
        assert_eq!(serde_json::from_value::<PresenceMessage>(json).unwrap(), delta);
        let want = serde_json::to_value(PresenceMessage::Want { to: None }).unwrap();
        assert_eq!(want, serde_json::json!({"want": {"to": null}}));
    }
}
