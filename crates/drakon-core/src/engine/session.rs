//! Sessions: one client's state on a node, whatever transport carries it. A session owns who it acts for, its
//! subscriptions, its presence memberships and its outbound queue (whose encoding is its protocol's).
//!
//! A [`Session`] is the one owner of its memberships: the hub's index follows from the session's joins and leaves
//! (every hub (un)subscription happens in [`Session::join`], [`Session::leave`] and [`Session::close`]), so the two
//! cannot drift apart, and undoing a subscription whose first read failed is one `leave`. Presence rooms follow the
//! same way (`join_room`, `leave_room`, and `close` leaves them all).
//!
//! A session normally lives on its transport connection's task. One whose transport comes and goes (a SockJS
//! session between two polling requests, a client about to resume) is *parked* in the engine's registry by id
//! ([`Engine::park`]), still subscribed, its queue filling, until the next connection picks it up
//! ([`Engine::resume`]) or its time runs out and it is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drakon_protocol::ErrorCode;

use super::{Engine, EngineLimits, VerbError};
use crate::filter::Filter;
use crate::hub::{ConnId, Hub, RouteView};
use crate::outbox::Outbox;
use crate::presence::{Joining, Presence, PresenceLimits, Snapshot};
pub use crate::rules::Principal;

/// One client's state on this node: who it is and the channels it holds.
#[derive(Debug)]
pub struct Session {
    /// The session's id on this node; the hub knows its queue by it.
    pub conn: ConnId,
    pub principal: Principal,
    /// Where the hub pushes this session's events.
    outbox: Arc<Outbox>,
    /// The server channels and presence rooms this session holds. A list, not a tree: a session holds a handful,
    /// and a B-tree's first node alone would cost most of an idle connection's memory. One list for both keeps an
    /// idle session (the most common kind) as small as before presence.
    subs: Vec<Subscription>,
    /// How many (local, remote) subscriptions it holds, presence rooms not counted.
    count: usize,
}

/// One server channel (or presence room) a session holds, and the client's local channel names for it.
#[derive(Debug)]
struct Subscription {
    remote: String,
    held: Held,
    locals: Vec<String>,
}

/// What a [`Subscription`] is.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// A model channel, of this model.
    Model(String),
    Plain,
    /// A presence room (`remote` is its name).
    Room,
}

fn who(principal: &Principal) -> Option<crate::hub::Who> {
    match principal {
        Principal::Anonymous => None,
        Principal::Admin => Some(crate::hub::Who::Admin),
        Principal::User(user) => Some(crate::hub::Who::User(user.clone())),
    }
}

/// What a session joins: a model channel (with the route it is seen through, its filter and the name its
/// subscribers see) or a plain one.
pub(super) enum Target<'a> {
    Model(&'a Arc<RouteView>, &'a Filter, &'a str),
    Plain,
}

impl Session {
    /// A session acting for `principal` whose events go to `outbox`, registered with the hub.
    pub(super) fn open(hub: &Hub, outbox: Arc<Outbox>, principal: Principal) -> Session {
        let conn = hub.register(outbox.clone());
        hub.set_who(conn, who(&principal));
        Session { conn, principal, outbox, subs: Vec::new(), count: 0 }
    }

    /// Makes the session act for `principal` from now on (a token given with the `auth` request).
    pub fn act_for(&mut self, hub: &Hub, principal: Principal) {
        hub.set_who(self.conn, who(&principal));
        self.principal = principal;
    }

    /// The session's bounded queue of events.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Admin sessions (the admin secret's, or a user with the `staff` role) may use the `admin:<model>` routes,
    /// which see and write every field.
    pub fn is_admin(&self) -> bool {
        match &self.principal {
            Principal::Admin => true,
            Principal::User(user) => user.has_role(crate::rules::STAFF_ROLE),
            Principal::Anonymous => false,
        }
    }

    /// When the credentials that signed the session's user in expire (seconds since the Unix epoch), if they do.
    pub fn expires(&self) -> Option<u64> {
        self.principal.user().and_then(|u| u.expires)
    }

    /// Whether this session holds any subscription or presence membership (both were chosen by its user's rules).
    pub fn is_subscribed(&self) -> bool {
        !self.subs.is_empty()
    }

    /// Whether this session is in a presence room: its transport then checks more often that the peer is there,
    /// so that a vanished member leaves within [`crate::limits::PRESENCE_LEAVE_BOUND`].
    pub fn in_presence(&self) -> bool {
        self.subs.iter().any(|s| s.held == Held::Room)
    }

    /// Where presence room `room` is in the session's list.
    fn room_at(&self, room: &str) -> Option<usize> {
        self.subs.iter().position(|s| s.held == Held::Room && s.remote == room)
    }

    /// Whether this session is in presence room `room`.
    pub(super) fn in_room(&self, room: &str) -> bool {
        self.room_at(room).is_some()
    }

    /// Joins presence room `room` as `entry` says (again, to change its state), under local channel `local`.
    pub(super) fn join_room(
        &mut self,
        presence: &Presence,
        room: &Arc<str>,
        local: &str,
        limits: PresenceLimits,
        entry: Joining,
    ) -> Result<Snapshot, VerbError> {
        let at = self.room_at(room);
        let rooms = self.subs.iter().filter(|s| s.held == Held::Room).count();
        if at.is_none() && rooms >= crate::limits::MAX_PRESENCE_ROOMS_PER_CONNECTION {
            return Err(VerbError::new(
                ErrorCode::TooManySubscriptions,
                format!(
                    "a connection may be in at most {} presence rooms; leave some first",
                    crate::limits::MAX_PRESENCE_ROOMS_PER_CONNECTION
                ),
            ));
        }
        let snapshot = presence.join(room, limits, self.conn, &self.outbox, entry);
        match at {
            Some(at) if !self.subs[at].locals.iter().any(|l| l == local) => self.subs[at].locals.push(local.to_owned()),
            Some(_) => {}
            None => {
                let locals = vec![local.to_owned()];
                self.subs.push(Subscription { remote: room.to_string(), held: Held::Room, locals });
            }
        }
        Ok(snapshot)
    }

    /// Leaves presence room `room` for local channel `local`; the session stays in it while another local channel
    /// needs it.
    pub(super) fn leave_room(&mut self, presence: &Presence, room: &str, local: &str) -> Result<(), VerbError> {
        let not_joined =
            || VerbError::new(ErrorCode::NotSubscribed, format!("local channel `{local}` is not in presence `{room}`"));
        let at = self.room_at(room).ok_or_else(not_joined)?;
        let locals = &mut self.subs[at].locals;
        let held = locals.iter().position(|l| l == local).ok_or_else(not_joined)?;
        locals.swap_remove(held);
        if locals.is_empty() {
            self.subs.swap_remove(at);
            // Gone already only if the room dropped it, which it does not: a membership ends with its session.
            let _ = presence.leave(room, self.conn);
        }
        Ok(())
    }

    /// How many (local, remote) subscriptions the session holds.
    pub fn subscription_count(&self) -> usize {
        self.count
    }

    /// Where server channel `remote` is in the session's list.
    fn channel_at(&self, remote: &str) -> Option<usize> {
        self.subs.iter().position(|s| s.held != Held::Room && s.remote == remote)
    }

    fn holds(&self, local: &str, remote: &str) -> bool {
        self.channel_at(remote).is_some_and(|at| self.subs[at].locals.iter().any(|l| l == local))
    }

    /// Adds the local channel `local` for server channel `remote`, and the session to the hub's subscribers of
    /// `remote`. Returns whether the pair is new (false: the session already held it, and nothing changed).
    pub(super) fn join(
        &mut self,
        hub: &Hub,
        local: &str,
        remote: &str,
        target: Target<'_>,
        limits: EngineLimits,
    ) -> Result<bool, VerbError> {
        if self.holds(local, remote) {
            return Ok(false);
        }
        if self.count >= limits.max_subscriptions {
            return Err(VerbError::new(
                ErrorCode::TooManySubscriptions,
                format!(
                    "a connection may hold at most {} subscriptions; unsubscribe from some first",
                    limits.max_subscriptions
                ),
            ));
        }
        let held = match target {
            Target::Model(view, filter, visible) => {
                hub.subscribe_model(self.conn, view, remote, visible, filter);
                Held::Model(view.model.name.clone())
            }
            Target::Plain => {
                hub.subscribe_plain(self.conn, remote);
                Held::Plain
            }
        };
        match self.channel_at(remote) {
            Some(at) => self.subs[at].locals.push(local.to_owned()),
            None => self.subs.push(Subscription { remote: remote.to_owned(), held, locals: vec![local.to_owned()] }),
        }
        self.count += 1;
        Ok(true)
    }

    /// Removes one (local, remote) pair, and the session from the hub's subscribers of `remote` when no local
    /// channel needs it any more.
    pub(super) fn leave(&mut self, hub: &Hub, local: &str, remote: &str) -> Result<(), VerbError> {
        let not_subscribed = || {
            VerbError::new(ErrorCode::NotSubscribed, format!("local channel `{local}` is not subscribed to `{remote}`"))
        };
        let at = self.channel_at(remote).ok_or_else(not_subscribed)?;
        let locals = &mut self.subs[at].locals;
        let held = locals.iter().position(|l| l == local).ok_or_else(not_subscribed)?;
        locals.swap_remove(held);
        self.count -= 1;
        if locals.is_empty() {
            let sub = self.subs.swap_remove(at);
            unsubscribe(hub, self.conn, sub);
        }
        Ok(())
    }

    /// Leaves every channel and presence room, and unregisters from the hub.
    pub(super) fn close(self, hub: &Hub, presence: &Presence) {
        for sub in self.subs {
            match sub.held {
                Held::Room => {
                    let _ = presence.leave(&sub.remote, self.conn);
                }
                _ => unsubscribe(hub, self.conn, sub),
            }
        }
        hub.unregister(self.conn);
    }
}

fn unsubscribe(hub: &Hub, conn: ConnId, sub: Subscription) {
    match sub.held {
        Held::Model(model) => hub.unsubscribe_model(conn, &model, &sub.remote),
        Held::Plain => hub.unsubscribe_plain(conn, &sub.remote),
        Held::Room => {}
    }
}

/// Sessions without a transport connection, by id, each with the moment it is closed unless picked up.
#[derive(Debug, Default)]
pub(super) struct Parked {
    sessions: Mutex<HashMap<ConnId, (Session, Instant)>>,
}

impl Parked {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, (Session, Instant)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the sessions whose time ran out by `now`; returns how many.
    pub(super) fn expire(&self, hub: &Hub, presence: &Presence, now: Instant) -> usize {
        let expired: Vec<Session> = {
            let mut sessions = self.lock();
            let ids: Vec<ConnId> = sessions.iter().filter(|(_, (_, until))| *until <= now).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| sessions.remove(&id)).map(|(session, _)| session).collect()
        };
        let count = expired.len();
        for session in expired {
            session.close(hub, presence);
        }
        count
    }
}

impl Engine {
    /// Opens a session acting for `principal`, whose events the hub pushes into `outbox`.
    pub fn open_session(&self, outbox: Arc<Outbox>, principal: Principal) -> Session {
        Session::open(&self.inner.hub, outbox, principal)
    }

    /// Drops every subscription of the session and its hub registration, and closes its queue.
    pub fn close_session(&self, session: Session) {
        session.close(&self.inner.hub, &self.inner.presence);
    }

    /// Keeps `session`, still subscribed, for a later transport connection to pick up with [`Engine::resume`] within
    /// `keep`; after that it is closed. Its events keep filling its bounded queue meanwhile. Returns its id.
    pub fn park(&self, session: Session, keep: Duration) -> ConnId {
        let id = session.conn;
        self.inner.parked.lock().insert(id, (session, Instant::now() + keep));
        id
    }

    /// The parked session `id`, taken out of the registry; `None` if there is none (never parked, picked up
    /// already, or closed when its time ran out).
    pub fn resume(&self, id: ConnId) -> Option<Session> {
        self.inner.parked.lock().remove(&id).map(|(session, _)| session)
    }

    /// How many sessions are parked.
    pub fn parked_sessions(&self) -> usize {
        self.inner.parked.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use crate::event::TestEncoding;

    use super::super::fixture;
    use super::*;

    #[test]
    fn a_session_owns_its_memberships_and_the_hub_follows_them() {
        let (checked, routes) = fixture::routes();
        let hub = Hub::new();
        let mut session = Session::open(&hub, Outbox::new(8, &TestEncoding), Principal::Anonymous);
        let limits = EngineLimits { max_subscriptions: 3 };
        let route = routes.model("todo-item", false).expect("the route");
        let args = serde_json::json!({"todo_list": 1}).as_object().unwrap().clone();
        let scope = crate::engine::routes::Scope::whole(route);
        let (filter, _) = routes.filter(checked.schema(), route, &scope, args).expect("a filter");
        let items = Target::Model(&route.view, &filter, "todo-item|todo_list__id:1");
        assert_eq!(session.join(&hub, "a", "todo-item|todo_list__id:1", items, limits), Ok(true));
        let items = Target::Model(&route.view, &filter, "todo-item|todo_list__id:1");
        assert_eq!(session.join(&hub, "a", "todo-item|todo_list__id:1", items, limits), Ok(false), "held already");
        let items = Target::Model(&route.view, &filter, "todo-item|todo_list__id:1");
        assert_eq!(session.join(&hub, "b", "todo-item|todo_list__id:1", items, limits), Ok(true));
        assert_eq!(session.join(&hub, "c", "room", Target::Plain, limits), Ok(true));
        assert_eq!(
            session.join(&hub, "d", "room", Target::Plain, limits).map_err(|e| e.code),
            Err(ErrorCode::TooManySubscriptions)
        );
        assert_eq!((session.subscription_count(), hub.stats().model_channels, hub.stats().plain_channels), (3, 1, 1));

        // The channel stays while one local channel still needs it.
        session.leave(&hub, "a", "todo-item|todo_list__id:1").expect("held");
        assert_eq!(hub.stats().model_channels, 1);
        assert_eq!(
            session.leave(&hub, "a", "todo-item|todo_list__id:1").map_err(|e| e.code),
            Err(ErrorCode::NotSubscribed)
        );
        session.leave(&hub, "b", "todo-item|todo_list__id:1").expect("held");
        assert_eq!((session.subscription_count(), hub.stats().model_channels), (1, 0));

        let outbox = session.outbox().clone();
        session.close(&hub, &Presence::new(crate::node::NodeId::new("n")));
        assert_eq!((hub.stats().plain_channels, hub.stats().connections), (0, 0));
        assert!(outbox.is_closed(), "its transport is told to close");
    }

    #[test]
    fn a_parked_session_keeps_its_subscriptions_until_picked_up_or_expired() {
        let hub = Hub::new();
        let parked = Parked::default();
        let limits = EngineLimits { max_subscriptions: 4 };
        let now = Instant::now();
        let mut kept = Session::open(&hub, Outbox::new(8, &TestEncoding), Principal::Anonymous);
        kept.join(&hub, "a", "room", Target::Plain, limits).expect("joined");
        let mut lapsed = Session::open(&hub, Outbox::new(8, &TestEncoding), Principal::Anonymous);
        lapsed.join(&hub, "b", "lobby", Target::Plain, limits).expect("joined");
        let (kept_id, lapsed_id) = (kept.conn, lapsed.conn);
        parked.lock().insert(kept_id, (kept, now + Duration::from_secs(10)));
        parked.lock().insert(lapsed_id, (lapsed, now + Duration::from_secs(1)));
        // Parked, both still receive.
        assert_eq!(hub.deliver_plain(&Arc::from("room"), &Arc::new(serde_json::json!(1))), 1);
        let presence = Presence::new(crate::node::NodeId::new("n"));
        assert_eq!(parked.expire(&hub, &presence, now + Duration::from_secs(2)), 1);
        assert_eq!(hub.stats().plain_channels, 1, "the lapsed session left its channel");
        let kept = parked.lock().remove(&kept_id).map(|(s, _)| s).expect("still parked");
        assert_eq!((kept.subscription_count(), kept.outbox().len()), (1, 1), "its event waited in its queue");
        assert!(parked.lock().remove(&lapsed_id).is_none());
    }
}
