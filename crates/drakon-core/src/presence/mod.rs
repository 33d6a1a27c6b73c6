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
pub mod share;

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
pub use share::{DeltaOp, PresenceMessage, SyncEntry, WireEntry};
use share::{Next, Origins};

/// How a room is shown to the watchers of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    /// Above this many members a room sends counts and batched changes instead of each change.
    pub large_room: usize,
}

/// Who joins a room: the member's id and public info, and the state it starts with (none: `{}`, which does not
/// hide a state the user's other connections set; or, joining again, the state the connection set before).
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
    /// Where this node's changes go to the other nodes, once it shares presence (see [`share`]).
    share: Option<tokio::sync::mpsc::UnboundedSender<PresenceMessage>>,
    /// How many changes of its own entries this node has made.
    seq: u64,
    /// What this node applied of each other node's changes.
    origins: Origins,
}

impl State {
    /// The room `name`, made with `limits` if this node has not seen it.
    fn room(&mut self, name: &str, limits: PresenceLimits) -> &mut Hosted {
        if !self.rooms.contains_key(name) {
            let name: Arc<str> = Arc::from(name);
            let hosted = Hosted {
                name: name.clone(),
                room: Room::default(),
                limits,
                watchers: HashMap::new(),
                pending: Vec::new(),
            };
            self.rooms.insert(name, hosted);
        }
        self.rooms.get_mut(name).expect("just made")
    }

    /// Tells the other nodes about a change of this node's entry `conn` in room `room`.
    fn tell_nodes(&mut self, node: &NodeId, room: &str, conn: ConnId, op: DeltaOp) {
        let Some(share) = &self.share else { return };
        self.seq += 1;
        let op = Box::new(op);
        let delta = PresenceMessage::Delta { node: node.to_string(), seq: self.seq, room: room.to_owned(), conn, op };
        let _ = share.send(delta);
    }

    /// Every entry of this node, as of its latest change.
    fn sync(&self, node: &NodeId) -> PresenceMessage {
        let entries = self
            .rooms
            .values()
            .flat_map(|hosted| {
                hosted.room.entries_of(node).map(|(conn, entry)| SyncEntry {
                    room: hosted.name.to_string(),
                    conn,
                    entry: wire_entry(entry, hosted.limits),
                })
            })
            .collect();
        PresenceMessage::Sync { node: node.to_string(), seq: self.seq, entries }
    }

    /// Drops the rooms nobody is in or watches any more.
    fn tidy(&mut self, name: &str) {
        if self.rooms.get(name).is_some_and(|h| h.room.is_empty() && h.watchers.is_empty()) {
            self.rooms.remove(name);
            self.dirty.remove(name);
        }
    }
}

fn wire_entry(entry: &Entry, limits: PresenceLimits) -> WireEntry {
    WireEntry {
        user: entry.user.to_string(),
        info: (*entry.info).clone(),
        state: (*entry.state).clone(),
        stamp: entry.stamp,
        joined: entry.joined,
        large_room: limits.large_room,
    }
}

fn entry_of(wire: WireEntry) -> (Entry, PresenceLimits) {
    let entry = Entry {
        user: Arc::from(wire.user),
        info: Arc::new(wire.info),
        state: Arc::new(wire.state),
        stamp: wire.stamp,
        joined: wire.joined,
    };
    (entry, PresenceLimits { large_room: wire.large_room.max(1) })
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
        let mut guard = self.lock();
        // Joining again without a state keeps the one this connection set.
        let kept =
            state.is_none().then(|| guard.rooms.get(&**name).and_then(|h| h.room.entry(&self.place(conn)))).flatten();
        let (state, stamp) = match (state, kept) {
            (Some(state), _) => (state, joined),
            (None, Some(entry)) => (entry.state.clone(), entry.stamp),
            (None, None) => (empty_state(), Stamp::NEVER),
        };
        let entry = Entry { user, info, state, stamp, joined };
        let state = &mut *guard;
        state.tell_nodes(&self.node, name, conn, DeltaOp::Join(wire_entry(&entry, limits)));
        let mut dirty = std::mem::take(&mut state.dirty);
        let hosted = state.room(name, limits);
        if let Some(change) = hosted.room.join(self.place(conn), entry) {
            hosted.tell(change, Some(conn), &mut dirty);
        }
        hosted.watchers.insert(conn, outbox.clone());
        let large = hosted.is_large();
        let page = if large { hosted.limits.large_room } else { usize::MAX };
        let snapshot = Snapshot { members: hosted.room.members(None, page), count: hosted.room.member_count(), large };
        state.dirty = dirty;
        snapshot
    }

    /// Sets the state connection `conn` shows in room `name`.
    pub fn set(&self, name: &str, conn: ConnId, state: Arc<Json>) -> Result<(), PresenceError> {
        let stamp = self.stamp();
        let at = self.place(conn);
        let mut guard = self.lock();
        let shared = &mut *guard;
        let hosted =
            shared.rooms.get_mut(name).filter(|h| h.room.entry(&at).is_some()).ok_or(PresenceError::NotJoined)?;
        let op = DeltaOp::Set { state: (*state).clone(), stamp };
        if let Some(change) = hosted.room.set(&at, state, stamp) {
            hosted.tell(change, Some(conn), &mut shared.dirty);
        }
        shared.tell_nodes(&self.node, name, conn, op);
        Ok(())
    }

    /// Takes connection `conn` out of room `name`, as a member and as a watcher.
    pub fn leave(&self, name: &str, conn: ConnId) -> Result<(), PresenceError> {
        let at = self.place(conn);
        let mut guard = self.lock();
        let state = &mut *guard;
        let hosted = state.rooms.get_mut(name).ok_or(PresenceError::NotJoined)?;
        // A watcher dropped for being slow is still a member until its session leaves.
        let watched = hosted.watchers.remove(&conn).is_some();
        if !watched && hosted.room.entry(&at).is_none() {
            return Err(PresenceError::NotJoined);
        }
        let was_member = hosted.room.entry(&at).is_some();
        if let Some(change) = hosted.room.leave(&at) {
            hosted.tell(change, None, &mut state.dirty);
        }
        if was_member {
            state.tell_nodes(&self.node, name, conn, DeltaOp::Leave);
        }
        state.tidy(name);
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

    /// From now on, tells the other nodes about this node's changes through `share` (whose receiver a task
    /// publishes on the bus), and asks them for theirs.
    pub fn share(&self, share: tokio::sync::mpsc::UnboundedSender<PresenceMessage>) {
        let mut state = self.lock();
        let _ = share.send(PresenceMessage::Want { to: None });
        state.share = Some(share);
    }

    /// How many changes this node has made, for the other nodes to tell whether they missed some.
    pub fn head(&self) -> PresenceMessage {
        PresenceMessage::Head { node: self.node.to_string(), seq: self.lock().seq }
    }

    /// Sends [`Presence::head`] to the other nodes, after the changes it counts.
    pub fn send_head(&self) {
        let state = self.lock();
        if let Some(share) = &state.share {
            let _ = share.send(PresenceMessage::Head { node: self.node.to_string(), seq: state.seq });
        }
    }

    /// Applies what another node said (messages of this node itself are ignored: its own changes are applied when
    /// made).
    pub fn receive(&self, message: &PresenceMessage) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = std::time::Instant::now();
        let mine = self.node.as_str();
        match message {
            PresenceMessage::Want { to } if to.as_deref().is_none_or(|to| to == mine) => {
                if let Some(share) = &state.share {
                    let _ = share.send(state.sync(&self.node));
                }
            }
            PresenceMessage::Head { node, seq } if node != mine => {
                let origin = state.origins.entry(node.clone()).or_default();
                if origin.behind(*seq) && origin.ask(now, limits::PRESENCE_HEAD_INTERVAL) {
                    want(state, node);
                }
            }
            PresenceMessage::Delta { node, seq, room, conn, op } if node != mine => {
                let origin = state.origins.entry(node.clone()).or_default();
                match origin.next(*seq) {
                    Next::Skip => {}
                    Next::Gap => {
                        origin.synced = false;
                        if origin.ask(now, limits::PRESENCE_HEAD_INTERVAL) {
                            want(state, node);
                        }
                    }
                    Next::Apply => {
                        origin.seq = *seq;
                        apply_delta(state, &NodeId::new(node.as_str()), room, *conn, (**op).clone());
                    }
                }
            }
            PresenceMessage::Sync { node, seq, entries } if node != mine => {
                let origin = state.origins.entry(node.clone()).or_default();
                if origin.synced && *seq <= origin.seq {
                    return;
                }
                origin.seq = *seq;
                origin.synced = true;
                origin.wanted = None;
                replace_node(state, &NodeId::new(node.as_str()), entries.clone());
            }
            _ => {}
        }
    }

    /// Drops the entries of `node`, which died: its members leave everywhere it was their last connection. This
    /// node's own entries stay whatever the others think of it.
    pub fn drop_node(&self, node: &NodeId) {
        if *node == self.node {
            return;
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        state.origins.remove(node.as_str());
        replace_node(state, node, Vec::new());
    }

    /// Sends the batches of large rooms whose changes waited; returns how many rooms sent one.
    pub fn flush(&self) -> usize {
        let mut guard = self.lock();
        let State { rooms, dirty, .. } = &mut *guard;
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

/// Asks `node` for all of its entries.
fn want(state: &State, node: &str) {
    if let Some(share) = &state.share {
        let _ = share.send(PresenceMessage::Want { to: Some(node.to_owned()) });
    }
}

fn apply_delta(state: &mut State, node: &NodeId, room: &str, conn: ConnId, op: DeltaOp) {
    let at = Place { node: node.clone(), conn };
    let mut dirty = std::mem::take(&mut state.dirty);
    let change = match op {
        DeltaOp::Join(wire) => {
            let (entry, limits) = entry_of(wire);
            state.room(room, limits).room.join(at, entry)
        }
        DeltaOp::Set { state: value, stamp } => {
            state.rooms.get_mut(room).and_then(|h| h.room.set(&at, Arc::new(value), stamp))
        }
        DeltaOp::Leave => state.rooms.get_mut(room).and_then(|h| h.room.leave(&at)),
    };
    if let (Some(change), Some(hosted)) = (change, state.rooms.get_mut(room)) {
        hosted.tell(change, None, &mut dirty);
    }
    state.dirty = dirty;
    state.tidy(room);
}

/// Makes `node`'s entries in every room exactly `entries`.
fn replace_node(state: &mut State, node: &NodeId, entries: Vec<SyncEntry>) {
    let mut by_room: HashMap<String, (PresenceLimits, Vec<(ConnId, Entry)>)> = HashMap::new();
    for SyncEntry { room, conn, entry } in entries {
        let (entry, limits) = entry_of(entry);
        by_room.entry(room).or_insert_with(|| (limits, Vec::new())).1.push((conn, entry));
    }
    // Rooms where the node had entries, and rooms where it has them now.
    let mut names: Vec<String> =
        state.rooms.values().filter(|h| h.room.entries_of(node).next().is_some()).map(|h| h.name.to_string()).collect();
    names.extend(by_room.keys().cloned());
    names.sort();
    names.dedup();
    let mut dirty = std::mem::take(&mut state.dirty);
    for name in names {
        let (limits, entries) =
            by_room.remove(&name).unwrap_or((PresenceLimits { large_room: usize::MAX }, Vec::new()));
        let hosted = state.room(&name, limits);
        for change in hosted.room.replace_node(node, entries) {
            hosted.tell(change, None, &mut dirty);
        }
        state.tidy(&name);
    }
    state.dirty = dirty;
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
