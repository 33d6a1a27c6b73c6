//! Presence: who has an object or a channel open, counted once per user, with a small state each.
//!
//! A session joins a room (`todo-item:7`, or a plain channel of a channel route) and becomes one of its watchers:
//! it gets the members in its reply and, from then on, each change as an event on the room's channel. The rooms of a
//! node are in one [`Presence`], whose lock orders every change of a room with the joins that read it: a joiner's
//! list holds every change before its join, and its events every change after.
//!
//! Rooms have two sizes. Up to [`PresenceLimits::large_room`] members a room sends each change at once as
//! `member_joined`, `member_updated` or `member_left`. Above it, changes wait up to [`limits::PRESENCE_BATCH`] and go
//! out together as one `presence_batch` per watcher, with the count and at most [`limits::PRESENCE_BATCH_CHANGES`]
//! of them (more, and the batch says `"truncated": true` and carries the count alone); clients page through the
//! members with `get_presence`. A thousand joins within one batch window cost each watcher one frame, not a
//! thousand.

pub mod room;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value as Json, json};

use crate::event::{Event, PresenceAction};
use crate::hub::ConnId;
use crate::limits;
use crate::node::NodeId;
use crate::outbox::{Outbox, Push};
pub use room::{Change, Entry, Member, Place, Room, Stamp};

/// How a room is shown to the watchers of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Above this many members a room sends counts and batched changes instead of each change.
    pub large_room: usize,
}

/// Who joins a room: the member's id and public info, and the state it starts with (none: `{}`, which does not
/// hide a state the user's other connections set).
#[derive(Debug, Clone)]
pub struct Joining {
    pub user: Arc<str>,
    pub info: Arc<Json>,
    pub state: Option<Arc<Json>>,
}

/// What a joiner is told: the first page of members (all of them in a small room) and how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub members: Vec<Member>,
    pub count: usize,
    /// Whether the room sends batches (`presence_batch`) rather than each change.
    pub large: bool,
}

impl Snapshot {
    pub fn to_json(&self, room: &str) -> Json {
        let members: Vec<Json> = self.members.iter().map(Member::to_json).collect();
        let next = (self.members.len() < self.count).then(|| self.members.last().map(|m| &*m.id)).flatten();
        json!({"room": room, "members": members, "count": self.count, "large": self.large, "next": next})
    }
}

/// One room on this node: its members (from every node) and this node's watchers.
#[derive(Debug)]
struct Hosted {
    name: Arc<str>,
    room: Room,
    limits: PresenceLimits,
    watchers: HashMap<ConnId, Arc<Outbox>>,
    /// Changes of a large room waiting for the next batch.
    pending: Vec<Change>,
}

impl Hosted {
    fn is_large(&self) -> bool {
        self.room.member_count() > self.limits.large_room
    }

    /// Tells the watchers (but `except`) about `change`: at once in a small room, in the next batch in a large one.
    fn tell(&mut self, change: Change, except: Option<ConnId>, dirty: &mut HashSet<Arc<str>>) {
        if self.is_large() || !self.pending.is_empty() {
            self.pending.push(change);
            dirty.insert(self.name.clone());
            return;
        }
        let (action, data) = match change {
            Change::Joined(member) => (PresenceAction::MemberJoined, member.to_json()),
            Change::Updated(member) => (PresenceAction::MemberUpdated, member.to_json()),
            Change::Left(id) => (PresenceAction::MemberLeft, json!({"id": &*id})),
        };
        let event = Arc::new(Event::presence(self.name.clone(), action, Arc::new(data)));
        self.push(&event, except);
    }

    /// The batch of what waited, to every watcher.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let count = self.room.member_count();
        let data = if pending.len() > limits::PRESENCE_BATCH_CHANGES {
            json!({"count": count, "truncated": true})
        } else {
            let (mut joined, mut updated, mut left) = (Vec::new(), Vec::new(), Vec::new());
            for change in pending {
                match change {
                    Change::Joined(m) => joined.push(m.to_json()),
                    Change::Updated(m) => updated.push(m.to_json()),
                    Change::Left(id) => left.push(Json::from(&*id)),
                }
            }
            json!({"count": count, "joined": joined, "updated": updated, "left": left})
        };
        let event = Arc::new(Event::presence(self.name.clone(), PresenceAction::Batch, Arc::new(data)));
        self.push(&event, None);
    }

    fn push(&mut self, event: &Arc<Event>, except: Option<ConnId>) {
        let mut dead = Vec::new();
        for (conn, outbox) in &self.watchers {
            if Some(*conn) == except {
                continue;
            }
            if let Push::Full = outbox.push(event, None) {
                // Like a subscriber that cannot keep up: its transport closes, and its session leaves the room.
                outbox.close();
                dead.push(*conn);
            }
        }
        for conn in dead {
            self.watchers.remove(&conn);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<Arc<str>, Hosted>,
    /// Large rooms with changes waiting for their batch.
    dirty: HashSet<Arc<str>>,
}

/// Why a presence operation did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("this connection has not joined that room")]
    NotJoined,
}

/// A room as the admin lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSummary {
    pub name: Arc<str>,
    pub count: usize,
    pub connections: usize,
    /// The first members in id order.
    pub members: Vec<Member>,
}

/// The presence rooms of one node.
#[derive(Debug)]
pub struct Presence {
    node: NodeId,
    state: Mutex<State>,
    /// This node's count of state changes, for [`Stamp`]s.
    seq: AtomicU64,
}

impl Presence {
    pub fn new(node: NodeId) -> Presence {
        Presence { node, state: Mutex::default(), seq: AtomicU64::new(0) }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stamp for a change made now on this node.
    pub fn stamp(&self) -> Stamp {
        Stamp { ms: crate::unix_now_ms(), seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1 }
    }

    fn place(&self, conn: ConnId) -> Place {
        Place { node: self.node.clone(), conn }
    }

    /// Joins connection `conn` (whose events go to `outbox`) to room `name` as `user`, and makes it a watcher.
    /// The others hear of it (when it is the user's first connection); the joiner gets the members, itself
    /// included.
    pub fn join(
        &self,
        name: &Arc<str>,
        limits: PresenceLimits,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        joining: Joining,
    ) -> Snapshot {
        let Joining { user, info, state } = joining;
        let joined = self.stamp();
        let stamp = if state.is_some() { joined } else { Stamp::NEVER };
        let entry = Entry { user, info, state: state.unwrap_or_else(empty_state), stamp, joined };
        let mut guard = self.lock();
        let State { rooms, dirty } = &mut *guard;
        let hosted = rooms.entry(name.clone()).or_insert_with(|| Hosted {
            name: name.clone(),
            room: Room::default(),
            limits,
            watchers: HashMap::new(),
            pending: Vec::new(),
        });
        if let Some(change) = hosted.room.join(self.place(conn), entry) {
            hosted.tell(change, Some(conn), dirty);
        }
        hosted.watchers.insert(conn, outbox.clone());
        let large = hosted.is_large();
        let page = if large { hosted.limits.large_room } else { usize::MAX };
        Snapshot { members: hosted.room.members(None, page), count: hosted.room.member_count(), large }
    }

    /// Sets the state connection `conn` shows in room `name`.
    pub fn set(&self, name: &str, conn: ConnId, state: Arc<Json>) -> Result<(), PresenceError> {
        let stamp = self.stamp();
        let at = self.place(conn);
        let mut guard = self.lock();
        let State { rooms, dirty } = &mut *guard;
        let hosted = rooms.get_mut(name).filter(|h| h.room.entry(&at).is_some()).ok_or(PresenceError::NotJoined)?;
        if let Some(change) = hosted.room.set(&at, state, stamp) {
            hosted.tell(change, Some(conn), dirty);
        }
        Ok(())
    }

    /// Takes connection `conn` out of room `name`, as a member and as a watcher.
    pub fn leave(&self, name: &str, conn: ConnId) -> Result<(), PresenceError> {
        let at = self.place(conn);
        let mut guard = self.lock();
        let State { rooms, dirty } = &mut *guard;
        let hosted = rooms.get_mut(name).ok_or(PresenceError::NotJoined)?;
        // A watcher dropped for being slow is still a member until its session leaves.
        let watched = hosted.watchers.remove(&conn).is_some();
        if !watched && hosted.room.entry(&at).is_none() {
            return Err(PresenceError::NotJoined);
        }
        if let Some(change) = hosted.room.leave(&at) {
            hosted.tell(change, None, dirty);
        }
        if hosted.room.is_empty() && hosted.watchers.is_empty() {
            rooms.remove(name);
            dirty.remove(name);
        }
        Ok(())
    }

    /// A page of room `name`'s members in id order, after `after`; `None` when nobody is in it.
    pub fn members(&self, name: &str, after: Option<&str>, limit: usize) -> Option<Snapshot> {
        let state = self.lock();
        let hosted = state.rooms.get(name)?;
        Some(Snapshot {
            members: hosted.room.members(after, limit),
            count: hosted.room.member_count(),
            large: hosted.is_large(),
        })
    }

    /// Sends the batches of large rooms whose changes waited; returns how many rooms sent one.
    pub fn flush(&self) -> usize {
        let mut guard = self.lock();
        let State { rooms, dirty } = &mut *guard;
        let mut sent = 0;
        for name in dirty.drain() {
            if let Some(hosted) = rooms.get_mut(&name) {
                hosted.flush();
                sent += 1;
            }
        }
        sent
    }

    /// Every room with members, with its first `limit` members, in name order.
    pub fn rooms(&self, limit: usize) -> Vec<RoomSummary> {
        let state = self.lock();
        let mut rooms: Vec<RoomSummary> = state
            .rooms
            .values()
            .filter(|h| !h.room.is_empty())
            .map(|h| RoomSummary {
                name: h.name.clone(),
                count: h.room.member_count(),
                connections: h.room.entry_count(),
                members: h.room.members(None, limit),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// How many rooms this node hosts, and how many connections are joined to them.
    pub fn stats(&self) -> (usize, usize) {
        let state = self.lock();
        (state.rooms.len(), state.rooms.values().map(|h| h.room.entry_count()).sum())
    }
}

fn empty_state() -> Arc<Json> {
    Arc::new(Json::Object(Default::default()))
}

/// Sends large rooms' batches every [`limits::PRESENCE_BATCH`] for as long as `presence` lives.
pub async fn batches(presence: std::sync::Weak<Presence>) {
    let mut tick = tokio::time::interval(limits::PRESENCE_BATCH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(presence) = presence.upgrade() else { return };
        presence.flush();
    }
}

#[cfg(test)]
mod tests;
