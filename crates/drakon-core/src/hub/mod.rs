//! One node's registry of connections and subscriptions, and its fan-out.
//!
//! Subscriptions with the same route and filter share one *channel* (its server name, e.g.
//! `todo-item|todo_list__id:1`). Channels are indexed by the value of one equality (or `in`) condition, so a change
//! is matched only against channels whose indexed value the row had before or has after, plus the few channels
//! without such a condition. Each change makes one typed [`Event`] per channel it concerns, and the same `Arc<Event>`
//! goes to every subscriber; their sessions' protocols encode it (once per protocol, see [`crate::event`]).
//! Under per-user rules each user's subscription is a channel of its own, whose hub name carries the user's rule
//! values but whose *visible* name (the one in its events) does not: channels of one visible name that see a change
//! alike share one event, so a change to a list that 10,000 users share is built and encoded once.
//!
//! The state sits behind one `std::sync::Mutex` that is never held across an `.await`, nor while frames are pushed:
//! under it a delivery only matches, builds the events and takes each channel's list of recipients (an `Arc`, rebuilt only
//! after the channel's membership changed), then pushes into the connections' bounded queues without it, so
//! subscribes and connects never wait for a fan-out to 10,000 queues. A second lock keeps deliveries one after the
//! other, so every connection sees events in the same order. A connection whose queue is full is dropped from the
//! hub and told to close (its transport closes it as resumable), so one stalled client never delays the others.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value as Json};

use crate::event::{Action, Event};
use crate::outbox::{Outbox, Push};

use crate::filter::matcher::Resolver;
use crate::filter::{Filter, Lookup, Op, Operand};
use crate::schema::Model;
use crate::store::{Change, Row};
use crate::value::{IndexKey, Value};

/// An event one delivery made for a visible channel name, a view of the route (the fields its subscribers see) and
/// a (matched before, matches after) pair, or `None` when that pair tells its subscribers nothing; other channels
/// of the same name, view and pair reuse it.
type Made = (Arc<str>, *const RouteView, (bool, bool), Option<Arc<Event>>);

/// Identifies one connection within a hub.
pub type ConnId = u64;

/// A model route as the hub needs it: which model, and which fields its subscribers may see.
#[derive(Debug)]
pub struct RouteView {
    pub name: String,
    pub model: Arc<Model>,
    /// Indexes of `publish_fields` in the model.
    pub publish: Vec<usize>,
}

/// The connections a delivery pushes into: their ids (to drop the ones that cannot keep up) and queues.
type Recipients = Arc<[(ConnId, Arc<Outbox>)]>;

/// The subscribers of one channel, and the recipient list deliveries share until the membership changes.
#[derive(Debug, Default)]
struct Subscribers {
    ids: HashSet<ConnId>,
    recipients: Option<Recipients>,
}

impl Subscribers {
    fn of(conn: ConnId) -> Subscribers {
        Subscribers { ids: HashSet::from([conn]), recipients: None }
    }

    fn insert(&mut self, conn: ConnId) {
        if self.ids.insert(conn) {
            self.recipients = None;
        }
    }

    fn remove(&mut self, conn: ConnId) {
        if self.ids.remove(&conn) {
            self.recipients = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The queues of the subscribers that are still registered. A connection the hub gives up on stays listed until
    /// its session unsubscribes; its closed queue refuses the pushes meanwhile.
    fn recipients(&mut self, conns: &HashMap<ConnId, Arc<Outbox>>) -> Recipients {
        let ids = &self.ids;
        self.recipients
            .get_or_insert_with(|| {
                ids.iter().filter_map(|id| conns.get(id).map(|outbox| (*id, outbox.clone()))).collect()
            })
            .clone()
    }
}

#[derive(Debug)]
struct Channel {
    route: Arc<RouteView>,
    /// The name the channel's subscribers see (its events carry it): the hub's name without the caller's rule
    /// values, so channels of one filter under different users' rules make the same events.
    visible: Arc<str>,
    filter: Filter,
    /// Where the channel is found in its model's index: every row it matches holds one of these keys at its lookup.
    /// Empty: the channel is checked against every change of its model.
    index: Vec<(Lookup, Vec<IndexKey>)>,
    subscribers: Subscribers,
}

/// The hasher of the maps a delivery looks channel names up in: seeded per process (so clients cannot choose
/// names that collide), and several times cheaper than SipHash on names of tens of bytes, which a change to a list
/// shared by 10,000 users hashes 10,000 times.
type Fast = foldhash::fast::RandomState;

/// Channels by their slot in [`ModelChannels::slots`], as the index keeps them per indexed value.
type Slots = HashSet<usize, Fast>;

#[derive(Debug, Default)]
struct ModelChannels {
    /// Each channel's slot by its hub name.
    by_name: HashMap<Arc<str>, usize, Fast>,
    /// The channels, where the index finds them without hashing their names; `None` is a free slot.
    slots: Vec<Option<Channel>>,
    free: Vec<usize>,
    index: HashMap<Lookup, HashMap<IndexKey, Slots, Fast>>,
    scan: Slots,
    /// Each visible name in use, once, with how many channels share it: channels of one visible name hold the same
    /// `Arc`, so a delivery tells them apart by pointer.
    visible: HashMap<Arc<str>, usize, Fast>,
    /// Lookups through references used by any channel, with how many channels use each.
    remote: HashMap<Lookup, usize>,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Arc<Outbox>>,
    /// Who each connection acts for, when it is not anonymous.
    who: HashMap<ConnId, Who>,
    models: HashMap<String, ModelChannels>,
    plain: HashMap<Arc<str>, Subscribers>,
}

/// What one delivery cost: channels whose filter was evaluated, and frames queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    pub candidates: usize,
    pub queued: usize,
}

/// Who a connection acts for, as the admin page lists it.
#[derive(Debug, Clone)]
pub enum Who {
    Admin,
    User(Arc<crate::rules::User>),
}

/// Who is connected to this node, for the admin page.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Connected {
    pub connections: usize,
    pub anonymous: usize,
    /// Connections opened with the admin secret.
    pub admins: usize,
    /// Signed-in users by id, each with how many connections they hold.
    pub users: Vec<ConnectedUser>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConnectedUser {
    pub id: String,
    pub roles: Vec<String>,
    pub info: Json,
    pub connections: usize,
}

/// Counters for health endpoints and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    pub connections: usize,
    pub model_channels: usize,
    pub plain_channels: usize,
}

/// The registry and fan-out of one node.
#[derive(Debug, Default)]
pub struct Hub {
    state: Mutex<State>,
    /// Held for a whole delivery, pushes included, so deliveries never interleave; `state` is not held meanwhile.
    delivering: Mutex<()>,
    next_id: AtomicU64,
    /// More deliveries are waiting behind this one: pushes go through the queues (each connection's task then writes
    /// several frames with one syscall) rather than straight onto the sockets (one syscall each, cheapest when the
    /// fan-out keeps up). See [`Hub::set_backlogged`].
    backlogged: AtomicBool,
}

/// Values of remote lookups for one row image.
pub type Remote = HashMap<Lookup, Value>;

struct RowResolver<'a> {
    model: &'a Model,
    row: &'a Row,
    remote: &'a Remote,
}

impl Resolver for RowResolver<'_> {
    fn value(&self, lookup: &Lookup) -> Cow<'_, Value> {
        let found = if lookup.is_local() {
            // A lookup of the model the row belongs to: its position was taken from the same model.
            debug_assert_eq!(self.model.field_index(&lookup.field), Some(lookup.position));
            self.row.get(lookup.position)
        } else {
            self.remote.get(lookup)
        };
        found.map_or(Cow::Owned(Value::Null), Cow::Borrowed)
    }
}

/// Where to index a channel with `filter`: one equality (or `in`) condition every matching row meets; or, for a
/// group of alternatives (a rule joined with `any`) each of which has one, all of theirs, since a matching row meets
/// one of the alternatives. Empty when there is no such condition.
fn index_choice(filter: &Filter) -> Vec<(Lookup, Vec<IndexKey>)> {
    let direct = filter.conds.iter().find_map(|c| match (&c.op, &c.operand) {
        (Op::Eq, Operand::One(v)) => Some((c.lookup.clone(), vec![v.index_key()?])),
        (Op::In, Operand::List(vs)) => {
            Some((c.lookup.clone(), vs.iter().map(Value::index_key).collect::<Option<_>>()?))
        }
        _ => None,
    });
    if let Some(entry) = direct {
        return vec![entry];
    }
    filter
        .any_of
        .iter()
        .find_map(|group| {
            let entries: Vec<Vec<_>> = group.iter().map(index_choice).collect();
            (!group.is_empty() && entries.iter().all(|e| !e.is_empty())).then(|| entries.concat())
        })
        .unwrap_or_default()
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Tells the hub whether more deliveries are waiting behind the next one. The fan-out sets it before each.
    pub fn set_backlogged(&self, backlogged: bool) {
        self.backlogged.store(backlogged, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind, still consistent enough to serve.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection's outbound queue. When the hub gives up on the connection it closes the queue
    /// ([`Outbox::close`]), which tells the connection's task to close the socket.
    pub fn register(&self, outbox: Arc<Outbox>) -> ConnId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().conns.insert(id, outbox);
        id
    }

    /// Forgets a connection's queue; its session unsubscribes its channels (see [`remove_conn`]).
    pub fn unregister(&self, conn: ConnId) {
        let mut state = self.lock();
        remove_conn(&mut state, conn);
    }

    /// Records who `conn` acts for (`None`: anonymous), for [`Hub::connected`].
    pub fn set_who(&self, conn: ConnId, who: Option<Who>) {
        let mut state = self.lock();
        match who {
            Some(who) if state.conns.contains_key(&conn) => {
                state.who.insert(conn, who);
            }
            _ => {
                state.who.remove(&conn);
            }
        }
    }

    /// Who is connected to this node now.
    pub fn connected(&self) -> Connected {
        let state = self.lock();
        let mut users: std::collections::BTreeMap<&str, ConnectedUser> = std::collections::BTreeMap::new();
        let mut admins = 0;
        for who in state.who.values() {
            match who {
                Who::Admin => admins += 1,
                Who::User(user) => {
                    users
                        .entry(&user.id)
                        .or_insert_with(|| ConnectedUser {
                            id: user.id.clone(),
                            roles: user.roles.clone(),
                            info: user.info.clone(),
                            connections: 0,
                        })
                        .connections += 1;
                }
            }
        }
        Connected {
            connections: state.conns.len(),
            anonymous: state.conns.len().saturating_sub(state.who.len()),
            admins,
            users: users.into_values().collect(),
        }
    }

    pub fn is_registered(&self, conn: ConnId) -> bool {
        self.lock().conns.contains_key(&conn)
    }

    /// Adds `conn` to the model channel `name`, creating the channel if needed; its events name it `visible`.
    pub fn subscribe_model(&self, conn: ConnId, route: &Arc<RouteView>, name: &str, visible: &str, filter: &Filter) {
        let mut state = self.lock();
        if !state.conns.contains_key(&conn) {
            return;
        }
        let models = state.models.entry(route.model.name.clone()).or_default();
        if let Some(channel) = models.by_name.get(name).and_then(|&slot| models.slots[slot].as_mut()) {
            channel.subscribers.insert(conn);
            return;
        }
        let name: Arc<str> = Arc::from(name);
        let slot = models.free.pop().unwrap_or_else(|| {
            models.slots.push(None);
            models.slots.len() - 1
        });
        let index = index_choice(filter);
        for (lookup, keys) in &index {
            let buckets = models.index.entry(lookup.clone()).or_default();
            for key in keys {
                buckets.entry(key.clone()).or_default().insert(slot);
            }
        }
        if index.is_empty() {
            models.scan.insert(slot);
        }
        for lookup in filter.remote_lookups() {
            *models.remote.entry(lookup.clone()).or_default() += 1;
        }
        let visible = match models.visible.get_key_value(visible) {
            Some((shared, _)) => shared.clone(),
            None if *visible == *name => name.clone(),
            None => Arc::from(visible),
        };
        *models.visible.entry(visible.clone()).or_default() += 1;
        let subscribers = Subscribers::of(conn);
        let channel = Channel { route: route.clone(), visible, filter: filter.clone(), index, subscribers };
        models.slots[slot] = Some(channel);
        models.by_name.insert(name, slot);
    }

    /// Removes `conn` from the model channel `name`; the channel goes when its last subscriber does.
    pub fn unsubscribe_model(&self, conn: ConnId, model: &str, name: &str) {
        let mut state = self.lock();
        if let Some(models) = state.models.get_mut(model) {
            drop_model_subscriber(models, name, conn);
        }
    }

    pub fn subscribe_plain(&self, conn: ConnId, name: &str) {
        let mut state = self.lock();
        if state.conns.contains_key(&conn) {
            state.plain.entry(Arc::from(name)).or_default().insert(conn);
        }
    }

    pub fn unsubscribe_plain(&self, conn: ConnId, name: &str) {
        let mut state = self.lock();
        if let Some(subs) = state.plain.get_mut(name) {
            subs.remove(conn);
            if subs.is_empty() {
                state.plain.remove(name);
            }
        }
    }

    /// Lookups through references that some channel of `model` needs to match an event.
    pub fn remote_lookups(&self, model: &str) -> Vec<Lookup> {
        self.lock().models.get(model).map(|m| m.remote.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn stats(&self) -> HubStats {
        let state = self.lock();
        HubStats {
            connections: state.conns.len(),
            model_channels: state.models.values().map(|m| m.by_name.len()).sum(),
            plain_channels: state.plain.len(),
        }
    }

    /// Sends `change` to every channel it concerns, as seen through each channel's filter. `remote_old` and
    /// `remote_new` hold the values of [`Hub::remote_lookups`] for the old and new row images.
    pub fn deliver_change(&self, change: &Change, model: &Model, remote_old: &Remote, remote_new: &Remote) -> Delivery {
        let _order = self.delivering.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = Vec::new();
        let count;
        {
            let mut state = self.lock();
            let State { conns, models, .. } = &mut *state;
            let Some(ModelChannels { slots, index, scan, .. }) = models.get_mut(&*change.model) else {
                return Delivery::default();
            };
            let old = change.old.as_ref().map(|row| RowResolver { model, row, remote: remote_old });
            let new = change.new.as_ref().map(|row| RowResolver { model, row, remote: remote_new });

            // The index buckets the old and new images fall in, each once (an update that keeps its indexed value
            // finds the same bucket twice).
            let mut buckets: Vec<&Slots> = Vec::new();
            for (lookup, by_key) in &*index {
                for image in [&old, &new].into_iter().flatten() {
                    if let Some(bucket) = image.value(lookup).index_key().and_then(|k| by_key.get(&k))
                        && !buckets.iter().any(|b| std::ptr::eq(*b, bucket))
                    {
                        buckets.push(bucket);
                    }
                }
            }
            // Channels of one visible name (one filter, under several users' rules) that see the change alike share
            // its event, and with it the encoded frame.
            let mut made: Vec<Made> = Vec::new();
            let mut visit = |slot: usize| {
                let Some(Some(channel)) = slots.get_mut(slot) else { return };
                let was = old.as_ref().is_some_and(|r| channel.filter.matches(r));
                let is = new.as_ref().is_some_and(|r| channel.filter.matches(r));
                if !was && !is {
                    return;
                }
                let view = Arc::as_ptr(&channel.route);
                let seen = made
                    .iter()
                    .find(|(v, r, how, _)| *how == (was, is) && *r == view && Arc::ptr_eq(v, &channel.visible));
                let event = match seen {
                    Some((_, _, _, event)) => event.clone(),
                    None => {
                        let event = event_for(change, &channel.route, was, is).map(|(action, data)| {
                            Arc::new(Event::row(channel.visible.clone(), action, change.id, data, change.offset))
                        });
                        made.push((channel.visible.clone(), view, (was, is), event.clone()));
                        event
                    }
                };
                if let Some(event) = event {
                    events.push((event, channel.subscribers.recipients(conns)));
                }
            };
            match (scan.is_empty(), buckets.as_slice()) {
                // The common case: one bucket and nothing to scan, so no channel can come up twice.
                (true, [] | [_]) => {
                    count = buckets.first().map_or(0, |b| b.len());
                    buckets.first().into_iter().flat_map(|b| b.iter().copied()).for_each(&mut visit);
                }
                _ => {
                    let mut candidates: Slots = scan.clone();
                    candidates.extend(buckets.iter().flat_map(|b| b.iter().copied()));
                    count = candidates.len();
                    candidates.into_iter().for_each(&mut visit);
                }
            }
        }

        let mut queued = 0;
        // One clock read per delivery, for every recipient's direct-write check.
        let direct = (!self.backlogged.load(Ordering::Relaxed)).then(std::time::Instant::now);
        let mut dead = Vec::new();
        for (event, recipients) in &events {
            for (conn, outbox) in recipients.iter() {
                match outbox.push(event, direct) {
                    Push::Sent | Push::Queued | Push::Conflated => queued += 1,
                    Push::Full => dead.push(*conn),
                    Push::Closed => {}
                }
            }
        }
        self.give_up(dead);
        Delivery { candidates: count, queued }
    }

    /// Sends a plain pub/sub message to every subscriber of channel `name`.
    pub fn deliver_plain(&self, name: &Arc<str>, data: &Arc<Json>) -> usize {
        let _order = self.delivering.lock().unwrap_or_else(|e| e.into_inner());
        let recipients = {
            let mut state = self.lock();
            let State { conns, plain, .. } = &mut *state;
            let Some(subs) = plain.get_mut(name) else { return 0 };
            subs.recipients(conns)
        };
        let event = Arc::new(Event::message(name.clone(), data.clone()));
        let mut queued = 0;
        // One clock read per delivery, for every recipient's direct-write check.
        let direct = (!self.backlogged.load(Ordering::Relaxed)).then(std::time::Instant::now);
        let mut dead = Vec::new();
        for (conn, outbox) in recipients.iter() {
            match outbox.push(&event, direct) {
                Push::Sent | Push::Queued | Push::Conflated => queued += 1,
                Push::Full => dead.push(*conn),
                Push::Closed => {}
            }
        }
        self.give_up(dead);
        queued
    }

    /// Drops the connections whose queues were full and tells each to close.
    /// Closes, with `reason` and the resumable close code, every connection subscribed to a channel of `model`: for
    /// when this node lost changes of the model that the log no longer holds, so that those clients resume and,
    /// the log not reaching back, take a fresh snapshot. Returns how many were closed.
    pub fn close_subscribers_of(&self, model: &str, reason: &'static str) -> usize {
        let mut state = self.lock();
        let conns: HashSet<ConnId> = state
            .models
            .get(model)
            .map(|m| m.slots.iter().flatten().flat_map(|c| c.subscribers.ids.iter().copied()).collect())
            .unwrap_or_default();
        for conn in &conns {
            if let Some(outbox) = state.conns.remove(conn) {
                outbox.close_because(reason);
            }
        }
        conns.len()
    }

    fn give_up(&self, dead: Vec<ConnId>) {
        if dead.is_empty() {
            return;
        }
        let mut state = self.lock();
        for conn in dead {
            remove_conn(&mut state, conn);
        }
    }
}

/// The event `change` makes for a subscriber of `route` whose filter is `filter`, on channel `channel`; for replaying
/// the change log to a resuming client.
pub fn replay_event(
    change: &Change,
    route: &RouteView,
    filter: &Filter,
    channel: &Arc<str>,
    remote_old: &Remote,
    remote_new: &Remote,
) -> Option<Event> {
    let model = &route.model;
    let was = change.old.as_ref().is_some_and(|row| filter.matches(&RowResolver { model, row, remote: remote_old }));
    let is = change.new.as_ref().is_some_and(|row| filter.matches(&RowResolver { model, row, remote: remote_new }));
    let (action, data) = event_for(change, route, was, is)?;
    Some(Event::row(channel.clone(), action, change.id, data, change.offset))
}

/// What a subscriber whose filter matched the row before (`was`) and after (`is`) receives.
fn event_for(change: &Change, route: &RouteView, was: bool, is: bool) -> Option<(Action, Map<String, Json>)> {
    let model = &route.model;
    let ident = |row: &Row| {
        let mut m = Map::with_capacity(2);
        m.insert("id".into(), row[0].to_json());
        m.insert("_type".into(), Json::String(model.name.clone()));
        m
    };
    match (was, is) {
        (false, true) => {
            let new = change.new.as_ref()?;
            let mut data = ident(new);
            for &i in &route.publish {
                data.insert(model.fields[i].name.clone(), new[i].to_json());
            }
            Some((Action::Created, data))
        }
        (true, true) => {
            let (old, new) = (change.old.as_ref()?, change.new.as_ref()?);
            let mut data = ident(new);
            for &i in route.publish.iter().filter(|&&i| old[i] != new[i]) {
                data.insert(model.fields[i].name.clone(), new[i].to_json());
            }
            // Nothing this route publishes changed: the subscriber has nothing to learn.
            (data.len() > 2).then_some((Action::Updated, data))
        }
        (true, false) => {
            let old = change.old.as_ref()?;
            Some((Action::Deleted, ident(old)))
        }
        (false, false) => None,
    }
}

fn drop_model_subscriber(models: &mut ModelChannels, name: &str, conn: ConnId) {
    let Some(&slot) = models.by_name.get(name) else { return };
    let Some(channel) = models.slots[slot].as_mut() else { return };
    channel.subscribers.remove(conn);
    if !channel.subscribers.is_empty() {
        return;
    }
    models.by_name.remove(name);
    let Some(channel) = models.slots[slot].take() else { return };
    models.free.push(slot);
    for (lookup, keys) in &channel.index {
        if let Some(buckets) = models.index.get_mut(lookup) {
            for key in keys {
                if let Some(slots) = buckets.get_mut(key) {
                    slots.remove(&slot);
                    if slots.is_empty() {
                        buckets.remove(key);
                    }
                }
            }
            if buckets.is_empty() {
                models.index.remove(lookup);
            }
        }
    }
    if channel.index.is_empty() {
        models.scan.remove(&slot);
    }
    if let Some(count) = models.visible.get_mut(&channel.visible) {
        *count -= 1;
        if *count == 0 {
            models.visible.remove(&channel.visible);
        }
    }
    for lookup in channel.filter.remote_lookups() {
        if let Some(count) = models.remote.get_mut(lookup) {
            *count -= 1;
            if *count == 0 {
                models.remote.remove(lookup);
            }
        }
    }
}

/// Drops a connection's queue and closes it, which wakes the connection's task to close the socket. Its channel
/// memberships are removed by its session as it closes (it knows them, so nobody scans every channel), and
/// deliveries to a removed connection are skipped until then, by its closed queue.
fn remove_conn(state: &mut State, conn: ConnId) {
    state.who.remove(&conn);
    if let Some(outbox) = state.conns.remove(&conn) {
        outbox.close();
    }
}

#[cfg(test)]
mod tests;
