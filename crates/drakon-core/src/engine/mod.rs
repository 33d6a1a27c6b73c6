//! The engine: every verb, the write path, and the fan-out task that carries committed changes to the hub.
//!
//! Write path: verb → route checks → typed validation → [`Store::write`] (row and change log in one transaction,
//! then the committed changes go to the bus in commit order) → fan-out task → [`Hub`] → session queues. Reads and
//! subscriptions go through the same route rules, so a filter means the same thing everywhere.
//!
//! By job: `routes` compiles routes and turns a client's arguments into filters, `verbs` reads and writes rows,
//! `session` holds sessions (who, which channels, which queue) and the parked ones, `subscriptions` the verbs that
//! join and leave channels (with snapshots and replays), `fan_out` carries the bus to the
//! hub, `custom` is the custom-verb API, `error` the errors a client gets. This module dispatches a request to them.

mod custom;
mod error;
mod fan_out;
mod presence;
mod routes;
mod session;
mod subscriptions;
mod verbs;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use drakon_protocol::{Args, ChannelAction, ErrorCode};
use serde_json::Value as Json;
use tokio::task::JoinHandle;

pub use custom::{BoxFuture, CustomVerb, VerbContext, custom_verb};
pub use error::VerbError;
use error::unknown_verb;
pub use routes::ADMIN_ROUTE_PREFIX;
use routes::Routes;
use session::Parked;
pub use session::{Principal, Session};

use crate::bus::{Bus, BusError, BusMessage, Inbox};
use crate::event::Event;
use crate::filter::Filter;
use crate::hub::Hub;
use crate::limits;
use crate::node::NodeId;
use crate::presence::Presence;
use crate::rules::Action;
use crate::schema::{CheckedSchema, Model, Schema, Verb};
use crate::store::{Change, Store, WriteOp};

/// Per-connection limits the engine enforces.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    pub max_subscriptions: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits { max_subscriptions: limits::DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION }
    }
}

struct Inner {
    schema: Arc<Schema>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    /// Where plain pub/sub messages go to every node.
    bus: Arc<dyn Bus>,
    models: HashMap<String, Arc<Model>>,
    routes: Routes,
    /// References the store already logs touches for (see [`Store::watch_reference`]).
    watched: std::sync::Mutex<HashSet<(String, String)>>,
    limits: EngineLimits,
    /// Becomes true once the fan-out knows every model's head offset (see [`Engine::ready`]).
    ready: tokio::sync::watch::Receiver<bool>,
    /// Sessions between two transport connections (see [`Engine::park`]).
    parked: Parked,
    /// The presence rooms of this node.
    presence: Arc<Presence>,
}

/// The engine of one node; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("routes", &self.inner.schema.routes.len()).finish_non_exhaustive()
    }
}

/// What a verb answered, before a protocol frames it.
#[derive(Debug)]
pub struct Outcome {
    pub data: Payload,
    /// Extra context for the client, such as `get_list`'s page counts.
    pub client_context: Option<Json>,
    /// The server channels a `subscribe` or `unsubscribe` joined or left.
    pub channel: Option<ChannelChange>,
}

/// The data of an outcome.
#[derive(Debug)]
pub enum Payload {
    /// A verb's JSON result: rows as their route publishes them, or a custom verb's value.
    Json(Json),
    /// A subscription's matching rows and the offset they reflect; `reload` when the client asked to resume and
    /// the change log no longer reached back, so it must replace what it holds.
    Snapshot { rows: Vec<Json>, offset: u64, reload: bool },
    /// The events a resuming subscriber missed, in order, and the offset they lead up to.
    Replay { events: Vec<Event>, offset: u64 },
}

/// Which server channels back a client's local channel, and whether they were joined or left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelChange {
    pub local: String,
    pub remotes: Vec<String>,
    pub action: ChannelAction,
}

impl ChannelChange {
    fn one(local: String, remote: String, action: ChannelAction) -> Option<ChannelChange> {
        Some(ChannelChange { local, remotes: vec![remote], action })
    }
}

impl Outcome {
    fn data(data: Json) -> Outcome {
        Outcome { data: Payload::Json(data), client_context: None, channel: None }
    }
}

impl Engine {
    /// Starts an engine for a checked schema (see [`Schema::check`]) over a migrated store, on `bus` (where
    /// [`Engine::publish`] sends) and its `inbox` (which receives what every node publishes and what the store
    /// commits); the returned task fans the inbox out to the hub until every sender is gone. `node` is this node's
    /// id, which its presence entries carry.
    pub fn start(
        node: NodeId,
        checked: CheckedSchema,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        inbox: Inbox,
        limits: EngineLimits,
    ) -> (Engine, JoinHandle<()>) {
        let schema = checked.schema().clone();
        let models: HashMap<String, Arc<Model>> =
            schema.models.iter().map(|m| (m.name.clone(), Arc::new(m.clone()))).collect();
        let routes = Routes::compile(&checked, &models);
        let hub = Arc::new(Hub::new());
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            schema,
            store,
            hub,
            bus,
            models,
            routes,
            watched: Default::default(),
            limits,
            ready,
            parked: Parked::default(),
            presence: Arc::new(Presence::new(node)),
        });
        let task = tokio::spawn(fan_out::fan_out(inner.clone(), inbox, ready_tx));
        tokio::spawn(expire_parked(Arc::downgrade(&inner)));
        tokio::spawn(crate::presence::batches(Arc::downgrade(&inner.presence)));
        (Engine { inner }, task)
    }

    /// Waits until the fan-out has read where each model's change log stands, so that it can tell a change the
    /// bus lost from one it already delivered. Serve clients only after this.
    pub async fn ready(&self) {
        let mut ready = self.inner.ready.clone();
        // The sender lives in the fan-out task; if that ended, there is nothing left to wait for.
        let _ = ready.wait_for(|r| *r).await;
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.inner.schema
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The presence rooms of this node.
    pub fn presence(&self) -> &Arc<Presence> {
        &self.inner.presence
    }

    /// Shares presence with the other nodes on the bus (see [`crate::presence::share`]): this node's changes go
    /// out as they happen, with a head every [`limits::PRESENCE_HEAD_INTERVAL`], and a node that `liveness` reports
    /// dead has its members dropped here. For nodes behind a bus between them; a node alone needs none of it.
    pub fn share_presence(&self, liveness: &dyn crate::node::Liveness) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.inner.presence.share(tx);
        let bus = self.inner.bus.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let message = BusMessage::Presence(Arc::new(message));
                match tokio::time::timeout(limits::PUBLISH_TIMEOUT, bus.publish(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(BusError::Stopped)) => return,
                    // Lost: the others see the gap by the next head and ask for everything.
                    Ok(Err(e)) => tracing::debug!(error = %e, "a presence change did not reach the bus"),
                    Err(_) => tracing::debug!("a presence change did not reach the bus in time"),
                }
            }
        });
        let presence = Arc::downgrade(&self.inner.presence);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(limits::PRESENCE_HEAD_INTERVAL);
            loop {
                tick.tick().await;
                let Some(presence) = presence.upgrade() else { return };
                presence.send_head();
            }
        });
        let presence = Arc::downgrade(&self.inner.presence);
        let mut deaths = crate::node::Deaths::new(liveness);
        tokio::spawn(async move {
            while let Some(dead) = deaths.next().await {
                let Some(presence) = presence.upgrade() else { return };
                for node in dead {
                    tracing::info!(%node, "a node died: its presence members leave");
                    presence.drop_node(&node);
                }
            }
        });
    }

    /// Handles one request of a session (`verb` of `route`, with `args`, and `page` for `get_list`); the
    /// session's protocol frames the outcome as the reply.
    pub async fn handle(
        &self,
        session: &mut Session,
        route: &str,
        verb: &str,
        args: Args,
        page: Option<u64>,
    ) -> Result<Outcome, VerbError> {
        self.dispatch(Some(session), route, verb, args, page).await
    }

    /// Calls a verb that needs no connection (everything but subscribe and unsubscribe), as custom verbs and the
    /// admin do; writes publish like any other.
    pub async fn call(&self, route: &str, verb: &str, args: Args) -> Result<Json, VerbError> {
        let page = args.get("_page").and_then(Json::as_u64);
        let mut args = args;
        args.remove("_page");
        match self.dispatch(None, route, verb, args, page).await?.data {
            Payload::Json(data) => Ok(data),
            // Snapshots and replays answer subscriptions, which need a session and are refused above.
            Payload::Snapshot { .. } | Payload::Replay { .. } => {
                Err(VerbError::new(ErrorCode::InvalidArgs, "subscriptions need a connection"))
            }
        }
    }

    /// Deletes every row of `model` that matches `filter` (filter syntax as in `get_list`), in one transaction, and
    /// returns the committed changes (cascades included).
    pub async fn delete_where(&self, model: &str, filter: &Args) -> Result<Vec<Change>, VerbError> {
        let m = self.model(model)?;
        let filter = Filter::parse(&self.inner.schema, &m, filter)?;
        Ok(self.inner.store.write(WriteOp::DeleteWhere { model: model.to_owned(), filter }).await?)
    }

    /// Whether the bus is connected (between nodes, whether messages from the others arrive).
    pub fn bus_ready(&self) -> Result<(), BusError> {
        self.inner.bus.ready()
    }

    /// Publishes a plain pub/sub message to channel `name` on every node.
    pub async fn publish(&self, name: &str, data: Json) -> Result<(), VerbError> {
        routes::check_plain_channel_name(name)?;
        let message = BusMessage::Channel { name: Arc::from(name), data: Arc::new(data) };
        match tokio::time::timeout(limits::PUBLISH_TIMEOUT, self.inner.bus.publish(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(BusError::Stopped)) => Err(VerbError::new(ErrorCode::Unavailable, "the server is shutting down")),
            Ok(Err(e @ BusError::Down(_))) => Err(VerbError::new(ErrorCode::Unavailable, e.to_string())),
            Err(_) => Err(VerbError::new(ErrorCode::Unavailable, "the bus did not take the message in time")),
        }
    }

    fn model(&self, name: &str) -> Result<Arc<Model>, VerbError> {
        self.inner
            .models
            .get(name)
            .cloned()
            .ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, format!("unknown model `{name}`")))
    }

    async fn dispatch(
        &self,
        session: Option<&mut Session>,
        route_name: &str,
        verb: &str,
        args: Args,
        page: Option<u64>,
    ) -> Result<Outcome, VerbError> {
        if let Some(spec) = self.inner.routes.channel.get(route_name) {
            let session =
                session.ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "subscriptions need a connection"))?;
            return match verb {
                "subscribe" => self.plain(session, route_name, spec, args, ChannelAction::Subscribe),
                "unsubscribe" => self.plain(session, route_name, spec, args, ChannelAction::Unsubscribe),
                _ if spec.presence.is_some() && presence::VERBS.contains(&verb) => {
                    self.channel_presence(session, route_name, spec, verb, args)
                }
                _ if spec.presence.is_some() => Err(unknown_verb(
                    route_name,
                    verb,
                    &[&["subscribe", "unsubscribe"][..], &presence::VERBS[..]].concat(),
                )),
                _ => Err(unknown_verb(route_name, verb, &["subscribe", "unsubscribe"])),
            };
        }
        // Admin routes exist only for admin sessions and in-process callers; to anyone else they are unknown.
        let route = self.inner.routes.model(route_name, session.as_ref().is_none_or(|s| s.is_admin()))?;
        if let Some(custom) = route.spec.custom_verbs.get(verb) {
            let ctx = VerbContext {
                engine: self.clone(),
                route: route_name.to_owned(),
                conn: session.as_ref().map(|s| s.conn),
                principal: session.as_ref().map(|s| s.principal.clone()),
            };
            return custom.call(ctx, args).await.map(Outcome::data);
        }
        if route.spec.presence.is_some() && presence::VERBS.contains(&verb) {
            let session =
                session.ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "presence needs a connection"))?;
            let scope = self.inner.routes.scope(&self.inner.schema, route, Action::Read, Some(&session.principal))?;
            return self.model_presence(session, route, &scope, verb, args).await;
        }
        let Some(builtin) = Verb::parse(verb) else {
            let mut known: Vec<&str> = route.spec.verbs.iter().map(|v| v.as_str()).collect();
            known.extend(route.spec.custom_verbs.keys().map(String::as_str));
            if route.spec.presence.is_some() {
                known.extend(presence::VERBS);
            }
            return Err(unknown_verb(route_name, verb, &known));
        };
        if !route.spec.verbs.contains(&builtin) {
            return Err(VerbError::new(
                ErrorCode::VerbNotAllowed,
                format!("route `{route_name}` does not allow `{verb}`"),
            ));
        }
        let principal = session.as_ref().map(|s| s.principal.clone());
        let scope = |action| self.inner.routes.scope(&self.inner.schema, route, action, principal.as_ref());
        match builtin {
            Verb::GetList => self.get_list(route, &scope(Action::Read)?, args, page).await,
            Verb::GetSingle => self.get_single(route, &scope(Action::Read)?, args).await,
            Verb::Create => {
                let user = principal.as_ref().and_then(Principal::user);
                self.create(route, scope(Action::Create)?, user, args).await
            }
            // A row the caller cannot read is not found, whatever the write rule says.
            Verb::Update => self.update(route, scope(Action::Read)?, scope(Action::Update)?, args).await,
            Verb::Delete => self.delete(route, &scope(Action::Read)?, &scope(Action::Delete)?, args).await,
            Verb::Subscribe | Verb::Unsubscribe => {
                let session =
                    session.ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "subscriptions need a connection"))?;
                let scope = scope(Action::Subscribe)?;
                if builtin == Verb::Subscribe {
                    self.subscribe_model(session, route, &scope, args).await
                } else {
                    self.unsubscribe_model(session, route, &scope, args)
                }
            }
        }
    }
}

/// Closes parked sessions whose time ran out, every [`limits::PARKED_SWEEP_INTERVAL`], for as long as the engine
/// lives.
async fn expire_parked(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(limits::PARKED_SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let closed = inner.parked.expire(&inner.hub, &inner.presence, std::time::Instant::now());
        if closed > 0 {
            tracing::debug!(closed, "closed parked sessions nobody picked up");
        }
    }
}

/// A small todo app for the engine's unit tests: lists, and items with a field no route publishes.
#[cfg(test)]
pub(super) mod fixture {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::routes::Routes;
    use crate::schema::{CheckedSchema, Field, Model, ModelRoute, OnDelete, Schema};
    use crate::value::Value;

    pub(in crate::engine) fn schema() -> CheckedSchema {
        Schema::new()
            .model(Model::new("todo_list").field(Field::text("name")).field(Field::text("note").optional()))
            .model(
                Model::new("todo_item")
                    .field(Field::text("text"))
                    .field(Field::bool("done").default(Value::Bool(false)))
                    .field(Field::text("secret").optional())
                    .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
            )
            .model_route("todo-list", ModelRoute::new("todo_list").publish(&["name"]).update(&["name"]))
            .model_route(
                "todo-item",
                ModelRoute::new("todo_item")
                    .publish(&["text", "done", "todo_list"])
                    .update(&["text", "done"])
                    .create(&["text", "done", "todo_list"])
                    .param("list_id", "todo_list__id"),
            )
            .check()
            .expect("the fixture's schema checks")
    }

    pub(in crate::engine) fn routes() -> (CheckedSchema, Routes) {
        let checked = schema();
        let models: HashMap<_, _> =
            checked.schema().models.iter().map(|m| (m.name.clone(), Arc::new(m.clone()))).collect();
        let routes = Routes::compile(&checked, &models);
        (checked, routes)
    }
}
