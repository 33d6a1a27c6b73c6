//! The engine: every verb, the write path, and the fan-out task that carries committed changes to the hub.
//!
//! Write path (DESIGN §3.1): verb → route checks → typed validation → [`Store::write`] (row and change log in one
//! transaction, then the committed changes go to the bus in commit order) → fan-out task → [`Hub`] → connection
//! queues. Reads and subscriptions go through the same route rules, so a filter means the same thing everywhere.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use drakon_protocol::{
    Args, ChannelAction, ChannelData, ErrorBody, ErrorCode, ReplyContext, Request, State, encode_error, encode_reply,
    model_channel_name,
};
use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::filter::{Filter, FilterError, Lookup};
use crate::hub::{ConnId, Hub, Remote, RouteView, replay_event};
use crate::limits;
use crate::schema::{ChannelRoute, FieldType, Model, ModelRoute, RouteKind, Schema, Verb};
use crate::store::{
    BusMessage, Change, ChangeSink, LogRead, OrderBy, Publisher, Row, Store, StoreError, WriteOp, row_to_json,
};
use crate::value::Value;

/// An error a verb reports to its client: a stable code, a message saying what to do, and per-field messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct VerbError {
    pub code: ErrorCode,
    pub message: String,
    pub fields: Option<Map<String, Json>>,
}

impl VerbError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> VerbError {
        VerbError { code, message: message.into(), fields: None }
    }

    /// An error about named fields: `fields` maps each field to its messages.
    pub fn fields(code: ErrorCode, message: impl Into<String>, fields: BTreeMap<String, Vec<String>>) -> VerbError {
        let fields = fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
        VerbError { code, message: message.into(), fields: Some(fields) }
    }

    fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code, message: self.message.clone(), fields: self.fields.clone() }
    }
}

impl From<FilterError> for VerbError {
    fn from(e: FilterError) -> VerbError {
        let mut fields = BTreeMap::new();
        if !e.key.is_empty() {
            fields.insert(e.key.clone(), vec![e.message.clone()]);
        }
        let message = if e.key.is_empty() { e.message } else { format!("filter `{}`: {}", e.key, e.message) };
        VerbError {
            fields: (!fields.is_empty()).then(|| fields.into_iter().map(|(k, v)| (k, json!(v))).collect()),
            ..VerbError::new(e.code, message)
        }
    }
}

impl From<StoreError> for VerbError {
    fn from(e: StoreError) -> VerbError {
        let one = |field: &str, message: String| BTreeMap::from([(field.to_owned(), vec![message])]);
        match &e {
            StoreError::NotFound { .. } => VerbError::new(ErrorCode::NotFound, e.to_string()),
            StoreError::Unique { field, .. } => {
                VerbError::fields(ErrorCode::Conflict, e.to_string(), one(field, "must be unique".into()))
            }
            StoreError::MissingRef { field, .. } => {
                VerbError::fields(ErrorCode::ValidationFailed, e.to_string(), one(field, e.to_string()))
            }
            StoreError::Restricted { .. } => VerbError::new(ErrorCode::Conflict, e.to_string()),
            StoreError::OutsideRoute => VerbError::new(ErrorCode::PermissionDenied, e.to_string()),
            StoreError::Closed => VerbError::new(ErrorCode::Unavailable, e.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unreachable");
                VerbError::new(
                    ErrorCode::Unavailable,
                    "the database is unreachable; nothing was changed unless a later read shows it. Try again shortly",
                )
            }
            StoreError::Migration(_) | StoreError::Database(_) | StoreError::Conflict(_) | StoreError::Deadlock(_) => {
                tracing::error!(error = %e, "store failure");
                VerbError::new(ErrorCode::Internal, "the server could not complete this request; try again later")
            }
        }
    }
}

/// Prefix of the per-model routes that only admin sessions may use.
pub const ADMIN_ROUTE_PREFIX: &str = "admin:";

/// A boxed future, as custom verbs return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A custom verb: an async function of the calling context and the client's args.
pub type CustomVerb = Arc<dyn Fn(VerbContext, Args) -> BoxFuture<Result<Json, VerbError>> + Send + Sync>;

/// Wraps an async function as a [`CustomVerb`].
///
/// ```
/// use drakon_core::engine::{custom_verb, VerbContext};
/// use serde_json::json;
/// let hello = custom_verb(|_ctx: VerbContext, args| async move { Ok(json!({"hello": args.get("name")})) });
/// # let _ = hello;
/// ```
pub fn custom_verb<F, Fut>(f: F) -> CustomVerb
where
    F: Fn(VerbContext, Args) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Json, VerbError>> + Send + 'static,
{
    Arc::new(move |ctx, args| Box::pin(f(ctx, args)))
}

/// What a custom verb can see and use.
#[derive(Debug, Clone)]
pub struct VerbContext {
    pub engine: Engine,
    pub route: String,
    /// The calling connection, when the call came over a socket.
    pub conn: Option<ConnId>,
}

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

/// One connection's subscriptions, owned by its connection task.
#[derive(Debug)]
pub struct Session {
    pub conn: ConnId,
    /// Admin sessions may use the `admin:<model>` routes, which see and write every field.
    pub admin: bool,
    /// The server channels this connection holds. A list, not a tree: a connection holds a handful, and a B-tree's
    /// first node alone would cost most of an idle connection's memory.
    subs: Vec<Subscription>,
    count: usize,
}

/// One server channel a connection holds, and the client's local channel names for it.
#[derive(Debug)]
struct Subscription {
    remote: String,
    /// For model channels.
    model: Option<String>,
    locals: Vec<String>,
}

impl Session {
    fn sub(&self, remote: &str) -> Option<&Subscription> {
        self.subs.iter().find(|s| s.remote == remote)
    }

    fn holds(&self, local: &str, remote: &str) -> bool {
        self.sub(remote).is_some_and(|s| s.locals.iter().any(|l| l == local))
    }
}

impl Session {
    /// How many (local, remote) subscriptions the connection holds.
    pub fn subscription_count(&self) -> usize {
        self.count
    }
}

struct CompiledRoute {
    name: String,
    view: Arc<RouteView>,
    spec: ModelRoute,
    fixed: Filter,
    /// Admin routes may filter on every field of every model.
    admin: bool,
    /// `filter_fields`, parsed: the only lookups client filters may use, when set.
    filter_paths: Option<HashSet<Lookup>>,
}

struct Inner {
    schema: Arc<Schema>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    sink: ChangeSink,
    models: HashMap<String, Arc<Model>>,
    model_routes: HashMap<String, CompiledRoute>,
    /// `admin:<model>` for every model: every field visible and writable, for the admin page only.
    admin_routes: HashMap<String, CompiledRoute>,
    channel_routes: HashMap<String, ChannelRoute>,
    /// Per model, the fields some (non-admin) route publishes, plus `id`: what a client filter may read through
    /// a reference. Filtering on a hidden field would let a client learn its value by counting rows.
    visible: HashMap<String, HashSet<String>>,
    /// The bus between nodes for plain pub/sub, when there is one.
    publisher: std::sync::OnceLock<Arc<dyn Publisher>>,
    /// References the store already logs touches for (see [`Store::watch_reference`]).
    watched: std::sync::Mutex<HashSet<(String, String)>>,
    limits: EngineLimits,
    /// Becomes true once the fan-out knows every model's head offset (see [`Engine::ready`]).
    ready: tokio::sync::watch::Receiver<bool>,
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

/// The result of a verb before it is framed.
struct Outcome {
    data: Json,
    client_context: Option<Json>,
    channel: Option<(String, Vec<String>, ChannelAction)>,
}

impl Outcome {
    fn data(data: Json) -> Outcome {
        Outcome { data, client_context: None, channel: None }
    }
}

impl Engine {
    /// Starts an engine over a migrated store. `bus` receives what the store (and [`Engine::publish`]) sends to
    /// `sink`; the returned task fans it out to the hub until every sender is gone.
    pub fn start(
        schema: Arc<Schema>,
        store: Arc<dyn Store>,
        sink: ChangeSink,
        bus: mpsc::Receiver<BusMessage>,
        limits: EngineLimits,
    ) -> (Engine, JoinHandle<()>) {
        let models: HashMap<String, Arc<Model>> =
            schema.models.iter().map(|m| (m.name.clone(), Arc::new(m.clone()))).collect();
        let mut model_routes = HashMap::new();
        let mut channel_routes = HashMap::new();
        for route in &schema.routes {
            match &route.kind {
                RouteKind::Model(spec) => {
                    let model = models[&spec.model].clone();
                    let publish = spec.publish_fields.iter().filter_map(|f| model.field_index(f)).collect();
                    let fixed = Filter::parse(&schema, &model, &spec.fixed_filter).expect("validated schema");
                    let view = Arc::new(RouteView { name: route.name.clone(), model, publish });
                    model_routes.insert(
                        route.name.clone(),
                        CompiledRoute {
                            name: route.name.clone(),
                            view,
                            filter_paths: spec.filter_fields.as_ref().map(|paths| {
                                let model = &models[&spec.model];
                                paths
                                    .iter()
                                    .filter_map(|p| crate::filter::parse_lookup(&schema, model, p).ok())
                                    .collect()
                            }),
                            spec: spec.clone(),
                            fixed,
                            admin: false,
                        },
                    );
                }
                RouteKind::Channel(spec) => {
                    channel_routes.insert(route.name.clone(), spec.clone());
                }
            }
        }
        let mut admin_routes = HashMap::new();
        for model in models.values() {
            let name = format!("{ADMIN_ROUTE_PREFIX}{}", model.name);
            let fields: Vec<&str> = model.fields.iter().skip(1).map(|f| f.name.as_str()).collect();
            let mut spec = ModelRoute::new(model.name.clone()).publish(&fields).update(&fields).create(&fields);
            spec.page_size = limits::ADMIN_PAGE_SIZE;
            let publish = (1..model.fields.len()).collect();
            let view = Arc::new(RouteView { name: name.clone(), model: model.clone(), publish });
            admin_routes.insert(
                name.clone(),
                CompiledRoute { name, view, spec, fixed: Filter::default(), admin: true, filter_paths: None },
            );
        }
        let mut visible: HashMap<String, HashSet<String>> = HashMap::new();
        for route in model_routes.values() {
            let fields =
                visible.entry(route.view.model.name.clone()).or_insert_with(|| HashSet::from(["id".to_owned()]));
            fields.extend(route.spec.publish_fields.iter().cloned());
        }
        let hub = Arc::new(Hub::new());
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            schema,
            store,
            hub,
            sink,
            models,
            model_routes,
            admin_routes,
            channel_routes,
            visible,
            watched: Default::default(),
            publisher: Default::default(),
            limits,
            ready,
        });
        let task = tokio::spawn(fan_out(inner.clone(), bus, ready_tx));
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

    /// Opens a session for a connection registered with the hub; `admin` unlocks the `admin:<model>` routes.
    pub fn open_session(&self, conn: ConnId, admin: bool) -> Session {
        Session { conn, admin, subs: Vec::new(), count: 0 }
    }

    /// Drops every subscription of the session and its hub registration.
    pub fn close_session(&self, session: Session) {
        let hub = &self.inner.hub;
        for sub in session.subs {
            match sub.model {
                Some(model) => hub.unsubscribe_model(session.conn, &model, &sub.remote),
                None => hub.unsubscribe_plain(session.conn, &sub.remote),
            }
        }
        hub.unregister(session.conn);
    }

    /// Handles one request from a connection and returns the reply frame.
    pub async fn handle(&self, session: &mut Session, request: Request) -> Bytes {
        let result = self.dispatch(Some(session), &request.route, &request.verb, request.args, request.page).await;
        let callback = request.callbackname.as_deref();
        match result {
            Ok(outcome) => {
                let ctx = ReplyContext {
                    client_callback_name: callback,
                    verb: &request.verb,
                    state: State::Success,
                    client_context: outcome.client_context.as_ref(),
                    page: request.page,
                };
                let channel = outcome.channel.as_ref().map(|(local, remotes, action)| ChannelData {
                    local_channel: local,
                    remote_channels: remotes,
                    action: *action,
                });
                encode_reply(&outcome.data, &ctx, channel.as_ref())
            }
            Err(e) => encode_error(&e.body(), callback, &request.verb),
        }
    }

    /// Calls a verb that needs no connection (everything but subscribe and unsubscribe), as custom verbs and the
    /// admin do; writes publish like any other.
    pub async fn call(&self, route: &str, verb: &str, args: Args) -> Result<Json, VerbError> {
        let page = args.get("_page").and_then(Json::as_u64);
        let mut args = args;
        args.remove("_page");
        self.dispatch(None, route, verb, args, page).await.map(|o| o.data)
    }

    /// Deletes every row of `model` that matches `filter` (filter syntax as in `get_list`), in one transaction, and
    /// returns the committed changes (cascades included).
    pub async fn delete_where(&self, model: &str, filter: &Args) -> Result<Vec<Change>, VerbError> {
        let m = self.model(model)?;
        let filter = Filter::parse(&self.inner.schema, &m, filter)?;
        Ok(self.inner.store.write(WriteOp::DeleteWhere { model: model.to_owned(), filter }).await?)
    }

    /// Sends plain pub/sub messages through `publisher` (a bus between nodes) instead of this node's own bus. Set it
    /// once, before serving.
    pub fn set_publisher(&self, publisher: Arc<dyn Publisher>) {
        let _ = self.inner.publisher.set(publisher);
    }

    /// Whether the bus between nodes (if any) is connected.
    pub fn bus_ready(&self) -> Result<(), String> {
        self.inner.publisher.get().map_or(Ok(()), |p| p.ready())
    }

    /// Publishes a plain pub/sub message to channel `name` on every node.
    pub async fn publish(&self, name: &str, data: Json) -> Result<(), VerbError> {
        if name.is_empty() || name.contains('|') {
            return Err(VerbError::new(
                ErrorCode::InvalidArgs,
                "channel names must be non-empty and may not contain `|`",
            ));
        }
        let (name, data): (Arc<str>, Arc<Json>) = (Arc::from(name), Arc::new(data));
        if let Some(publisher) = self.inner.publisher.get() {
            return match tokio::time::timeout(limits::PUBLISH_TIMEOUT, publisher.publish(name, data)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    Err(VerbError::new(ErrorCode::Unavailable, format!("the bus between nodes is down: {e}")))
                }
                Err(_) => Err(VerbError::new(
                    ErrorCode::Unavailable,
                    "the bus between nodes did not take the message in time",
                )),
            };
        }
        let msg = BusMessage::Channel { name, data };
        self.inner
            .sink
            .send(msg)
            .await
            .map_err(|_| VerbError::new(ErrorCode::Unavailable, "the server is shutting down"))
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
        if let Some(spec) = self.inner.channel_routes.get(route_name) {
            let session =
                session.ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "subscriptions need a connection"))?;
            return match verb {
                "subscribe" => self.subscribe_plain(session, route_name, spec, args),
                "unsubscribe" => self.unsubscribe_plain(session, route_name, spec, args),
                _ => Err(unknown_verb(route_name, verb, &["subscribe", "unsubscribe"])),
            };
        }
        // Admin routes exist only for admin sessions and in-process callers; to anyone else they are unknown.
        let admin_allowed = session.as_ref().is_none_or(|s| s.admin);
        let route = match self.inner.model_routes.get(route_name) {
            Some(route) => route,
            None => match self.inner.admin_routes.get(route_name).filter(|_| admin_allowed) {
                Some(route) => route,
                None => {
                    return Err(VerbError::new(
                        ErrorCode::UnknownRoute,
                        format!("there is no route named `{route_name}`"),
                    ));
                }
            },
        };
        if let Some(custom) = route.spec.custom_verbs.get(verb) {
            let ctx = VerbContext { engine: self.clone(), route: route_name.to_owned(), conn: session.map(|s| s.conn) };
            return custom(ctx, args).await.map(Outcome::data);
        }
        let Some(builtin) = Verb::parse(verb) else {
            let mut known: Vec<&str> = route.spec.verbs.iter().map(|v| v.as_str()).collect();
            known.extend(route.spec.custom_verbs.keys().map(String::as_str));
            return Err(unknown_verb(route_name, verb, &known));
        };
        if !route.spec.verbs.contains(&builtin) {
            return Err(VerbError::new(
                ErrorCode::VerbNotAllowed,
                format!("route `{route_name}` does not allow `{verb}`"),
            ));
        }
        match builtin {
            Verb::GetList => self.get_list(route, args, page).await,
            Verb::GetSingle => self.get_single(route, args).await,
            Verb::Create => self.create(route, args).await,
            Verb::Update => self.update(route, args).await,
            Verb::Delete => self.delete(route, args).await,
            Verb::Subscribe | Verb::Unsubscribe => {
                let session =
                    session.ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "subscriptions need a connection"))?;
                if builtin == Verb::Subscribe {
                    self.subscribe_model(session, route, args).await
                } else {
                    self.unsubscribe_model(session, route, args)
                }
            }
        }
    }

    /// Maps route params to lookups, checks `filter_fields`, and parses the client's filter; returns the effective
    /// filter (the route's fixed filter and the client's) and the client's filter in canonical form (for channel
    /// names; see [`canonical_args`]).
    fn route_filter(&self, route: &CompiledRoute, args: Args) -> Result<(Filter, Args), VerbError> {
        let mut normalized = Args::new();
        for (key, value) in args {
            if key.starts_with('_') {
                return Err(VerbError::new(ErrorCode::InvalidArgs, format!("unknown argument `{key}`")));
            }
            let key = route.spec.params.get(&key).cloned().unwrap_or(key);
            normalized.insert(key, value);
        }
        let client = Filter::parse(&self.inner.schema, &route.view.model, &normalized)?;
        if let Some(allowed) = &route.filter_paths {
            // Compared as parsed lookups, so `tag`, `tag__id` and `tag__id__in` all count as the allowed `tag`.
            for (key, cond) in normalized.keys().zip(&client.conds) {
                if !allowed.contains(&cond.lookup) {
                    let path = lookup_path_without_op(key);
                    return Err(VerbError::new(
                        ErrorCode::InvalidFilter,
                        format!("route `{}` does not allow filtering on `{path}`", route.name),
                    ));
                }
            }
        }
        if !route.admin && route.filter_paths.is_none() {
            for (key, cond) in normalized.keys().zip(&client.conds) {
                self.check_visible(route, key, &cond.lookup)?;
            }
        }
        let canonical = canonical_args(&client)?;
        Ok((route.fixed.clone().and(client), canonical))
    }

    /// Refuses a lookup that reads a field the client cannot see: on the route's model, a field outside
    /// `publish_fields`; behind a reference, a field no route publishes. It answers as for a field that does not
    /// exist, so the refusal reveals nothing either.
    fn check_visible(&self, route: &CompiledRoute, key: &str, lookup: &Lookup) -> Result<(), VerbError> {
        let first = lookup.hops.first().map_or(&lookup.field, |h| &h.field);
        let model = &route.view.model;
        let on_route = first == "id" || route.spec.publish_fields.contains(first);
        let mut hidden = (!on_route).then(|| (model.name.as_str(), first.as_str()));
        for (i, hop) in lookup.hops.iter().enumerate() {
            let field = lookup.hops.get(i + 1).map_or(&lookup.field, |next| &next.field);
            let seen = self.inner.visible.get(&hop.to_model).is_some_and(|f| f.contains(field));
            if hidden.is_none() && !seen {
                hidden = Some((hop.to_model.as_str(), field.as_str()));
            }
        }
        match hidden {
            None => Ok(()),
            Some((model, field)) => Err(VerbError::fields(
                ErrorCode::UnknownField,
                format!("filter `{key}`: model `{model}` has no field `{field}`"),
                BTreeMap::from([(key.to_owned(), vec![format!("model `{model}` has no field `{field}`")])]),
            )),
        }
    }

    async fn get_list(&self, route: &CompiledRoute, mut args: Args, page: Option<u64>) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let order = parse_order(model, &route.view.publish, args.remove("_order"))?;
        let (filter, _) = self.route_filter(route, args)?;
        let page_size = u64::from(route.spec.page_size);
        let number = page.unwrap_or(1);
        let result = self.inner.store.list(model, &filter, &order, page_size, (number - 1) * page_size).await?;
        let page_count = result.total.div_ceil(page_size).max(1);
        if number > page_count {
            return Err(VerbError::new(
                ErrorCode::PageOutOfRange,
                format!("page {number} is past the last page, {page_count}"),
            ));
        }
        let data = result.rows.iter().map(|r| row_to_json(model, r, &route.view.publish)).collect();
        let info = json!({"page": {
            "page": number, "page_count": page_count, "page_size": page_size, "total": result.total,
            "has_next": number < page_count, "has_previous": number > 1,
        }});
        Ok(Outcome { data: Json::Array(data), client_context: Some(info), channel: None })
    }

    async fn get_single(&self, route: &CompiledRoute, mut args: Args) -> Result<Outcome, VerbError> {
        let id = take_id(&mut args)?;
        args.remove("_type");
        let (filter, _) = self.route_filter(route, args)?;
        let row = self.fetch(route, id, filter).await?;
        Ok(Outcome::data(row_to_json(&route.view.model, &row, &route.view.publish)))
    }

    async fn fetch(&self, route: &CompiledRoute, id: i64, filter: Filter) -> Result<Row, VerbError> {
        let model = &route.view.model;
        let by_id = Filter::parse(&self.inner.schema, model, &Args::from_iter([("id".to_owned(), json!(id))]))?;
        let page = self.inner.store.list(model, &filter.and(by_id), &[], 1, 0).await?;
        page.rows
            .into_iter()
            .next()
            .ok_or_else(|| VerbError::new(ErrorCode::NotFound, format!("no {} with id {id}", model.name)))
    }

    async fn create(&self, route: &CompiledRoute, mut args: Args) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        args.remove("_type");
        if args.get("id").is_some_and(|v| !v.is_null()) {
            return Err(read_only("id", "the store assigns ids"));
        }
        args.remove("id");
        let mut errors = FieldErrors::default();
        let mut values = Vec::new();
        let mut given = BTreeSet::new();
        for (key, json) in &args {
            let Some(index) = model.field_index(key) else {
                errors.add(ErrorCode::UnknownField, key, format!("{} has no field `{key}`", model.name));
                continue;
            };
            if !route.spec.create_fields.contains(key) {
                // A field the route does not publish is one the client does not know of.
                if route.view.publish.contains(&index) {
                    let message = format!("route `{}` does not let clients set `{key}`", route.name);
                    errors.add(ErrorCode::ReadOnlyField, key, message);
                } else {
                    errors.add(ErrorCode::UnknownField, key, format!("{} has no field `{key}`", model.name));
                }
                continue;
            }
            if let Some(v) = errors.typed(model, index, json) {
                given.insert(index);
                values.push((index, v));
            }
        }
        for (index, field) in model.fields.iter().enumerate().skip(1) {
            if !given.contains(&index) && !field.has_fallback() && !errors.has(&field.name) {
                errors.add(ErrorCode::ValidationFailed, &field.name, "this field is required".into());
            }
        }
        errors.into_result()?;
        let changes = self
            .inner
            .store
            .write(WriteOp::Create { model: model.name.clone(), values, guard: route.fixed.clone() })
            .await?;
        let row = primary_image(&changes, |c| c.new.as_ref())?;
        Ok(Outcome::data(row_to_json(model, row, &route.view.publish)))
    }

    async fn update(&self, route: &CompiledRoute, mut args: Args) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let id = take_id(&mut args)?;
        args.remove("_type");
        let current = self.fetch(route, id, route.fixed.clone()).await?;
        let mut errors = FieldErrors::default();
        let mut values = Vec::new();
        for (key, json) in &args {
            let index = model
                .field_index(key)
                .filter(|&i| route.view.publish.contains(&i) || route.spec.update_fields.contains(key));
            let Some(index) = index else {
                errors.add(ErrorCode::UnknownField, key, format!("{} has no field `{key}`", model.name));
                continue;
            };
            let Some(value) = errors.typed(model, index, json) else { continue };
            if route.spec.update_fields.contains(key) {
                if value != current[index] {
                    values.push((index, value));
                }
            } else if value != current[index] {
                // Clients send back whole objects; an unchanged read-only field is fine, a changed one is not.
                errors.add(
                    ErrorCode::ReadOnlyField,
                    key,
                    format!("route `{}` does not let clients change `{key}`", route.name),
                );
            }
        }
        errors.into_result()?;
        let ident = row_to_json(model, &current, &[]);
        if values.is_empty() {
            return Ok(Outcome::data(ident));
        }
        let changes = self
            .inner
            .store
            .write(WriteOp::Update { model: model.name.clone(), id, values, guard: route.fixed.clone() })
            .await?;
        let Some(change) = changes.first() else { return Ok(Outcome::data(ident)) };
        let (old, new) = (change.old.as_ref(), change.new.as_ref());
        let changed: Vec<usize> =
            route.view.publish.iter().copied().filter(|&i| old.map(|o| &o[i]) != new.map(|n| &n[i])).collect();
        let row = new.ok_or_else(|| VerbError::new(ErrorCode::Internal, "update returned no row"))?;
        Ok(Outcome::data(row_to_json(model, row, &changed)))
    }

    async fn delete(&self, route: &CompiledRoute, mut args: Args) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let id = take_id(&mut args)?;
        args.remove("_type");
        // Other arguments are conditions the row must meet, as in get_single.
        let (guard, _) = self.route_filter(route, args)?;
        let changes = self.inner.store.write(WriteOp::Delete { model: model.name.clone(), id, guard }).await?;
        let row = changes
            .iter()
            .find(|c| *c.model == model.name && c.id == id)
            .and_then(|c| c.old.as_ref())
            .ok_or_else(|| VerbError::new(ErrorCode::Internal, "the store reported no change"))?;
        Ok(Outcome::data(row_to_json(model, row, &route.view.publish)))
    }

    fn take_local_channel(args: &mut Args) -> Result<String, VerbError> {
        match args.remove("channel") {
            Some(Json::String(s)) if !s.is_empty() => Ok(s),
            _ => Err(VerbError::fields(
                ErrorCode::InvalidArgs,
                "subscribe and unsubscribe need `channel`, the client's local channel name",
                BTreeMap::from([("channel".to_owned(), vec!["a non-empty string is required".to_owned()])]),
            )),
        }
    }

    /// Subscribes; with `"snapshot": true` the reply also carries the matching rows and the offset they reflect.
    ///
    /// The hub registration comes before the read, so every change committed after the read is delivered; changes
    /// committed before it may be delivered too, and carry offsets at or below the snapshot's, which the client
    /// skips.
    async fn subscribe_model(
        &self,
        session: &mut Session,
        route: &CompiledRoute,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        let snapshot = match args.remove("snapshot") {
            None | Some(Json::Bool(false)) => false,
            Some(Json::Bool(true)) => true,
            Some(_) => return Err(VerbError::new(ErrorCode::InvalidArgs, "`snapshot` takes true or false")),
        };
        let since = match args.remove("since") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                VerbError::new(ErrorCode::InvalidArgs, "`since` takes the last offset the client applied, an integer")
            })?),
        };
        if snapshot && since.is_some() {
            return Err(VerbError::new(ErrorCode::InvalidArgs, "ask for `snapshot` or `since`, not both"));
        }
        let order = parse_order(&route.view.model, &route.view.publish, args.remove("_order"))?;
        let (filter, normalized) = self.route_filter(route, args)?;
        let remote = model_channel_name(&route.name, &normalized);
        let channel = Some((local.clone(), vec![remote.clone()], ChannelAction::Subscribe));
        let fresh = !session.holds(&local, &remote);
        // Before anything can be missed: renames of referenced rows must log touches for this filter's references.
        for lookup in filter.remote_lookups() {
            self.watch_reference(&route.view.model.name, &lookup.hops[0].field).await?;
        }
        self.add_subscription(session, &local, &remote, Some(&route.view.model.name))?;
        self.inner.hub.subscribe_model(session.conn, &route.view, &remote, &filter);
        if !snapshot && since.is_none() {
            return Ok(Outcome { data: json!([]), client_context: None, channel });
        }
        if let Some(since) = since {
            match self.replay(route, &filter, &remote, since).await {
                Ok(Some(data)) => return Ok(Outcome { data, client_context: None, channel }),
                // The log no longer reaches back: answer with a fresh snapshot, marked as a reload.
                Ok(None) => {}
                Err(e) => {
                    if fresh && self.drop_subscription(session, &local, &remote)? {
                        self.inner.hub.unsubscribe_model(session.conn, &route.view.model.name, &remote);
                    }
                    return Err(e);
                }
            }
        }
        let max = limits::MAX_SNAPSHOT_ROWS as u64;
        let read = self.inner.store.list(&route.view.model, &filter, &order, max, 0).await.map_err(VerbError::from);
        let page = match read {
            Ok(page) if page.total <= max => page,
            failed => {
                if fresh && self.drop_subscription(session, &local, &remote)? {
                    self.inner.hub.unsubscribe_model(session.conn, &route.view.model.name, &remote);
                }
                return Err(failed.err().unwrap_or_else(|| {
                    VerbError::new(
                        ErrorCode::InvalidArgs,
                        format!("the filter matches more than {max} rows, too many for a snapshot; narrow it or page with get_list"),
                    )
                }));
            }
        };
        let rows: Vec<Json> =
            page.rows.iter().map(|r| row_to_json(&route.view.model, r, &route.view.publish)).collect();
        let data = if since.is_some() {
            json!({"reload": true, "rows": rows, "offset": page.offset})
        } else {
            json!({"rows": rows, "offset": page.offset})
        };
        Ok(Outcome { data, client_context: None, channel })
    }

    async fn watch_reference(&self, model: &str, field: &str) -> Result<(), VerbError> {
        let key = (model.to_owned(), field.to_owned());
        if self.inner.watched.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Ok(());
        }
        self.inner.store.watch_reference(model, field).await?;
        self.inner.watched.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
        Ok(())
    }

    /// The events a subscriber that last applied offset `since` missed, as `{"events": […], "offset": head}`;
    /// `None` when the log no longer reaches back that far.
    async fn replay(
        &self,
        route: &CompiledRoute,
        filter: &Filter,
        channel: &str,
        since: u64,
    ) -> Result<Option<Json>, VerbError> {
        let model = &route.view.model;
        let (changes, head) = match self.inner.store.log_since(model, since, limits::MAX_REPLAY_CHANGES).await? {
            LogRead::Changes { changes, head } => (changes, head),
            LogRead::Gone { .. } => return Ok(None),
        };
        let lookups: Vec<Lookup> = filter.remote_lookups().cloned().collect();
        let images = BatchImages::of(&changes);
        let mut events = Vec::new();
        for change in &changes {
            let remote_old = resolve(&self.inner, model, change, true, &lookups, &images.before).await;
            let remote_new = resolve(&self.inner, model, change, false, &lookups, &images.after).await;
            // Touches carry the referenced row before and after, so they replay like any change.
            if let Some(event) = replay_event(change, &route.view, filter, channel, &remote_old, &remote_new) {
                events.push(event);
            }
        }
        Ok(Some(json!({"events": events, "offset": head})))
    }

    fn unsubscribe_model(
        &self,
        session: &mut Session,
        route: &CompiledRoute,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        // Clients reuse their subscribe arguments; what only shapes the snapshot does not name the channel.
        args.remove("snapshot");
        args.remove("since");
        args.remove("_order");
        let (_, normalized) = self.route_filter(route, args)?;
        let remote = model_channel_name(&route.name, &normalized);
        if self.drop_subscription(session, &local, &remote)? {
            self.inner.hub.unsubscribe_model(session.conn, &route.view.model.name, &remote);
        }
        Ok(Outcome {
            data: json!("unsubscribed"),
            client_context: None,
            channel: Some((local, vec![remote], ChannelAction::Unsubscribe)),
        })
    }

    fn plain_channel_name(route_name: &str, spec: &ChannelRoute, args: &mut Args) -> Result<String, VerbError> {
        let name = match args.remove("name") {
            Some(Json::String(s)) => s,
            None if spec.channels.len() == 1 && !spec.channels[0].ends_with('*') => spec.channels[0].clone(),
            _ => {
                return Err(VerbError::new(
                    ErrorCode::InvalidArgs,
                    format!("route `{route_name}` needs `name`, the channel to subscribe to"),
                ));
            }
        };
        if let Some(extra) = args.keys().next() {
            return Err(VerbError::new(ErrorCode::InvalidArgs, format!("unknown argument `{extra}`")));
        }
        if !spec.allows(&name) {
            return Err(VerbError::new(
                ErrorCode::PermissionDenied,
                format!("route `{route_name}` does not offer channel `{name}`"),
            ));
        }
        Ok(name)
    }

    fn subscribe_plain(
        &self,
        session: &mut Session,
        route_name: &str,
        spec: &ChannelRoute,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        let remote = Self::plain_channel_name(route_name, spec, &mut args)?;
        self.add_subscription(session, &local, &remote, None)?;
        self.inner.hub.subscribe_plain(session.conn, &remote);
        Ok(Outcome {
            data: json!("subscribed"),
            client_context: None,
            channel: Some((local, vec![remote], ChannelAction::Subscribe)),
        })
    }

    fn unsubscribe_plain(
        &self,
        session: &mut Session,
        route_name: &str,
        spec: &ChannelRoute,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        let remote = Self::plain_channel_name(route_name, spec, &mut args)?;
        if self.drop_subscription(session, &local, &remote)? {
            self.inner.hub.unsubscribe_plain(session.conn, &remote);
        }
        Ok(Outcome {
            data: json!("unsubscribed"),
            client_context: None,
            channel: Some((local, vec![remote], ChannelAction::Unsubscribe)),
        })
    }

    fn add_subscription(
        &self,
        session: &mut Session,
        local: &str,
        remote: &str,
        model: Option<&str>,
    ) -> Result<(), VerbError> {
        if session.holds(local, remote) {
            return Ok(());
        }
        if session.count >= self.inner.limits.max_subscriptions {
            return Err(VerbError::new(
                ErrorCode::TooManySubscriptions,
                format!(
                    "a connection may hold at most {} subscriptions; unsubscribe from some first",
                    self.inner.limits.max_subscriptions
                ),
            ));
        }
        match session.subs.iter_mut().find(|s| s.remote == remote) {
            Some(sub) => sub.locals.push(local.to_owned()),
            None => session.subs.push(Subscription {
                remote: remote.to_owned(),
                model: model.map(str::to_owned),
                locals: vec![local.to_owned()],
            }),
        }
        session.count += 1;
        Ok(())
    }

    /// Removes one (local, remote) pair; true when the connection no longer needs `remote` at all.
    fn drop_subscription(&self, session: &mut Session, local: &str, remote: &str) -> Result<bool, VerbError> {
        let not_subscribed = || {
            VerbError::new(ErrorCode::NotSubscribed, format!("local channel `{local}` is not subscribed to `{remote}`"))
        };
        let at = session.subs.iter().position(|s| s.remote == remote).ok_or_else(not_subscribed)?;
        let locals = &mut session.subs[at].locals;
        let held = locals.iter().position(|l| l == local).ok_or_else(not_subscribed)?;
        locals.swap_remove(held);
        session.count -= 1;
        if locals.is_empty() {
            session.subs.swap_remove(at);
            return Ok(true);
        }
        Ok(false)
    }
}

/// The client's filter in one spelling, for channel names: operators spelled out only when not `eq`, a reference
/// compared by id as `ref__id`, values as their field type gives them (`1.0` for a float). Filters that mean the
/// same thing share one channel; one condition given twice is refused, since one name must mean one filter.
fn canonical_args(filter: &Filter) -> Result<Args, VerbError> {
    let mut out = Args::new();
    for cond in &filter.conds {
        let mut key = cond.lookup.path();
        if matches!(cond.lookup.ty, FieldType::Ref { .. }) && cond.lookup.field != "id" {
            key.push_str("__id");
        }
        if cond.op != crate::filter::Op::Eq {
            key.push_str("__");
            key.push_str(cond.op.as_str());
        }
        let value = match &cond.operand {
            crate::filter::Operand::One(v) => v.to_json(),
            crate::filter::Operand::List(vs) => Json::Array(vs.iter().map(Value::to_json).collect()),
            crate::filter::Operand::Flag(b) => Json::Bool(*b),
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(VerbError::new(ErrorCode::InvalidFilter, format!("the condition `{key}` is given twice")));
        }
    }
    Ok(out)
}

fn unknown_verb(route: &str, verb: &str, known: &[&str]) -> VerbError {
    VerbError::new(ErrorCode::UnknownVerb, format!("route `{route}` has no verb `{verb}`; it has {}", known.join(", ")))
}

fn read_only(field: &str, message: &str) -> VerbError {
    VerbError::fields(ErrorCode::ReadOnlyField, message, BTreeMap::from([(field.to_owned(), vec![message.to_owned()])]))
}

fn lookup_path_without_op(key: &str) -> &str {
    match key.rsplit_once("__") {
        Some((path, op)) if crate::filter::Op::ALL.iter().any(|o| o.as_str() == op) => path,
        _ => key,
    }
}

fn take_id(args: &mut Args) -> Result<i64, VerbError> {
    match args.remove("id") {
        Some(v) => v.as_i64().ok_or_else(|| {
            VerbError::fields(
                ErrorCode::WrongType,
                "`id` must be an integer",
                BTreeMap::from([("id".to_owned(), vec!["expected an integer id".to_owned()])]),
            )
        }),
        None => Err(VerbError::fields(
            ErrorCode::InvalidArgs,
            "this verb needs `id`",
            BTreeMap::from([("id".to_owned(), vec!["this field is required".to_owned()])]),
        )),
    }
}

fn primary_image<'a>(
    changes: &'a [Change],
    pick: impl Fn(&'a Change) -> Option<&'a Row>,
) -> Result<&'a Row, VerbError> {
    changes.first().and_then(pick).ok_or_else(|| VerbError::new(ErrorCode::Internal, "the store reported no change"))
}

fn parse_order(model: &Model, publish: &[usize], order: Option<Json>) -> Result<Vec<OrderBy>, VerbError> {
    let keys: Vec<String> = match order {
        None => Vec::new(),
        Some(Json::String(s)) => vec![s],
        Some(Json::Array(items)) => {
            items.into_iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<_>>().ok_or_else(|| {
                VerbError::new(ErrorCode::InvalidArgs, "`_order` takes a field name or a list of them")
            })?
        }
        Some(_) => return Err(VerbError::new(ErrorCode::InvalidArgs, "`_order` takes a field name or a list of them")),
    };
    let mut out = Vec::with_capacity(keys.len() + 1);
    for key in keys {
        let (name, descending) = key.strip_prefix('-').map_or((key.as_str(), false), |k| (k, true));
        match model.field_index(name) {
            Some(i) if i == 0 || publish.contains(&i) => out.push(OrderBy { field: i, descending }),
            _ => {
                return Err(VerbError::new(
                    ErrorCode::InvalidArgs,
                    format!("cannot order by `{name}`: not a published field"),
                ));
            }
        }
    }
    if !out.iter().any(|o| o.field == 0) {
        out.push(OrderBy { field: 0, descending: false });
    }
    Ok(out)
}

/// Collects per-field errors so that one reply lists them all.
#[derive(Default)]
struct FieldErrors {
    fields: BTreeMap<String, Vec<String>>,
    code: Option<ErrorCode>,
}

impl FieldErrors {
    fn add(&mut self, code: ErrorCode, field: &str, message: String) {
        // The first kind of problem names the error; a mix of kinds is a validation failure.
        self.code = Some(match self.code {
            None => code,
            Some(c) if c == code => c,
            Some(_) => ErrorCode::ValidationFailed,
        });
        self.fields.entry(field.to_owned()).or_default().push(message);
    }

    fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    fn typed(&mut self, model: &Model, index: usize, json: &Json) -> Option<Value> {
        let field = &model.fields[index];
        match Value::from_json(&field.ty, json) {
            Ok(Value::Null) if !field.optional => {
                self.add(ErrorCode::ValidationFailed, &field.name, "this field may not be null".into());
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.add(ErrorCode::WrongType, &field.name, e.0);
                None
            }
        }
    }

    fn into_result(self) -> Result<(), VerbError> {
        let Some(code) = self.code else { return Ok(()) };
        let summary = self.fields.iter().map(|(f, m)| format!("{f}: {}", m.join("; "))).collect::<Vec<_>>().join(", ");
        Err(VerbError::fields(code, summary, self.fields))
    }
}

/// Carries bus messages to the hub, in order, resolving lookups through references where channels need them.
///
/// Offsets make the bus's delivery checkable: per model, a change at or below the last delivered offset is a
/// duplicate and is dropped, and one past the next expected offset means the bus lost something, which is fetched
/// from the store's change log and delivered first. So a lossy or duplicating bus costs latency, never events.
async fn fan_out(inner: Arc<Inner>, mut bus: mpsc::Receiver<BusMessage>, ready: tokio::sync::watch::Sender<bool>) {
    // Where each model stands before anyone subscribes: changes up to here concern no client of this node, and a
    // change past here that the bus loses is noticed by the next one, or by the next `Heads`.
    let mut delivered: HashMap<Arc<str>, u64> = HashMap::new();
    for model in inner.models.values() {
        match inner.store.log_head(model).await {
            Ok(head) => {
                delivered.insert(Arc::from(model.name.as_str()), head);
            }
            Err(e) => tracing::warn!(error = %e, model = %model.name, "could not read the change log's head"),
        }
    }
    let _ = ready.send(true);
    while let Some(msg) = bus.recv().await {
        match msg {
            BusMessage::Changes(changes) => {
                let images = BatchImages::of(&changes);
                for (i, change) in changes.iter().enumerate() {
                    // Behind this change: the rest of its transaction, or more on the bus.
                    inner.hub.set_backlogged(i + 1 < changes.len() || !bus.is_empty());
                    let Some(model) = inner.models.get(&*change.model) else { continue };
                    let last = delivered.get(&change.model).copied();
                    if last.is_some_and(|last| change.offset <= last) {
                        continue;
                    }
                    if let Some(last) = last.filter(|last| change.offset > last + 1) {
                        repair_gap(&inner, model, last, change.offset).await;
                    }
                    deliver(&inner, model, change, &images).await;
                    delivered.insert(change.model.clone(), change.offset);
                }
            }
            BusMessage::Heads(heads) => {
                for (name, head) in heads.iter() {
                    let Some(model) = inner.models.get(&**name) else { continue };
                    match delivered.get(name).copied() {
                        Some(last) if *head > last => repair_gap(&inner, model, last, head + 1).await,
                        Some(_) => continue,
                        None => {}
                    }
                    delivered.insert(name.clone(), *head);
                }
            }
            BusMessage::Channel { name, data } => {
                inner.hub.set_backlogged(!bus.is_empty());
                inner.hub.deliver_plain(&name, &data);
            }
        }
    }
}

async fn deliver(inner: &Inner, model: &Model, change: &Change, images: &BatchImages) {
    let lookups = inner.hub.remote_lookups(&model.name);
    let remote_old = resolve(inner, model, change, true, &lookups, &images.before).await;
    let remote_new = resolve(inner, model, change, false, &lookups, &images.after).await;
    inner.hub.deliver_change(change, model, &remote_old, &remote_new);
}

/// Delivers the changes of `model` after `last` and before `next` from the change log.
async fn repair_gap(inner: &Inner, model: &Model, last: u64, next: u64) {
    tracing::warn!(model = %model.name, last, next, "the bus skipped changes; reading them from the change log");
    match inner.store.log_since(model, last, limits::MAX_REPLAY_CHANGES).await {
        Ok(LogRead::Changes { changes, .. }) => {
            let missing: Vec<Change> = changes.into_iter().filter(|c| c.offset < next).collect();
            let images = BatchImages::of(&missing);
            for change in &missing {
                deliver(inner, model, change, &images).await;
            }
        }
        Ok(LogRead::Gone { .. }) => {
            // Their subscribers cannot be repaired live: closed with the resumable code, they resume with `since`
            // and, the log not reaching back, get a fresh snapshot (`reload`).
            let closed = inner.hub.close_subscribers_of(
                &model.name,
                "missed changes the log no longer holds: reconnect and subscribe again",
            );
            tracing::error!(
                model = %model.name, last, next, closed,
                "the change log no longer holds the skipped changes; their subscribers were closed to reload"
            );
        }
        Err(e) => tracing::error!(error = %e, model = %model.name, "could not read the skipped changes"),
    }
}

type RowKey = (Arc<str>, i64);

/// The rows a batch touched, as they were before it and as they are after it (`None`: absent then). A row's old
/// image is matched against the related rows as they were too: when a list and its items go in one cascade, the
/// items' old `todo_list__name` is the list's name before the delete, not the null of a row already gone.
struct BatchImages {
    before: HashMap<RowKey, Option<Row>>,
    after: HashMap<RowKey, Option<Row>>,
}

impl BatchImages {
    fn of(changes: &[Change]) -> BatchImages {
        let mut before = HashMap::new();
        let mut after = HashMap::new();
        for c in changes {
            let key = (c.model.clone(), c.id);
            before.entry(key.clone()).or_insert_with(|| c.old.clone());
            after.insert(key, c.new.clone());
        }
        BatchImages { before, after }
    }
}

/// The values of `lookups` for the old (`old = true`) or new image of `change`. The first hop of each lookup uses
/// the referenced row the store recorded with the change, as it was at commit; without one, and for further hops,
/// rows come from `images` (the batch's own rows) first and the store second.
async fn resolve(
    inner: &Inner,
    model: &Model,
    change: &Change,
    old: bool,
    lookups: &[Lookup],
    images: &HashMap<RowKey, Option<Row>>,
) -> Remote {
    let mut out = Remote::new();
    let Some(row) = (if old { change.old.as_ref() } else { change.new.as_ref() }) else { return out };
    for lookup in lookups {
        let recorded = lookup.hops.first().and_then(|hop| change.referenced(old, &hop.field));
        match resolve_one(inner, model, row, lookup, recorded, images).await {
            Ok(value) => {
                out.insert(lookup.clone(), value);
            }
            Err(e) => {
                tracing::error!(error = %e, model = %model.name, lookup = %lookup.path(), "could not resolve a related value; subscriptions on it miss this event");
            }
        }
    }
    out
}

async fn resolve_one(
    inner: &Inner,
    model: &Model,
    row: &Row,
    lookup: &Lookup,
    recorded: Option<Option<&Row>>,
    images: &HashMap<RowKey, Option<Row>>,
) -> Result<Value, StoreError> {
    let mut current_row = row.clone();
    let mut current_model = model;
    for (depth, hop) in lookup.hops.iter().enumerate() {
        let Some(id) = current_model.field_index(&hop.field).and_then(|i| current_row[i].as_i64()) else {
            return Ok(Value::Null);
        };
        let Some(target) = inner.models.get(&hop.to_model) else { return Ok(Value::Null) };
        let found = match (depth, recorded, images.get(&(Arc::from(hop.to_model.as_str()), id))) {
            (0, Some(at_commit), _) => at_commit.cloned(),
            (_, _, Some(image)) => image.clone(),
            _ => {
                let by_id = Filter::parse(&inner.schema, target, &Args::from_iter([("id".to_owned(), json!(id))]))
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                inner.store.list(target, &by_id, &[], 1, 0).await?.rows.into_iter().next()
            }
        };

        let Some(found) = found else { return Ok(Value::Null) };
        current_row = found;
        current_model = target;
    }
    Ok(current_model.field_index(&lookup.field).map_or(Value::Null, |i| current_row[i].clone()))
}
