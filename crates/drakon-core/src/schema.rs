//! The internal description of an app: models (typed tables) and routes (what clients may see and do).
//!
//! `drakon.toml` and the Rust API both build a [`Schema`]; everything else reads only this. [`Schema::validate`]
//! reports every problem at once so that `drakon check` can list them all. A schema under construction may be
//! unfinished or wrong; [`Schema::check`] turns a finished, valid one into a [`CheckedSchema`], the only kind the
//! engine accepts, so that starting an engine never meets a route it cannot compile.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::filter::{Filter, Lookup, parse_lookup};
use crate::limits;
use crate::value::Value;
use crate::verb::CustomVerb;
use drakon_protocol::{Args, ErrorCode};
use serde_json::Value as Json;

use crate::rules::Rules;

/// What happens to rows that refer to a deleted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnDelete {
    /// Delete the referring rows too (each deletion is a change of its own and publishes).
    Cascade,
    /// Refuse the delete while referring rows exist.
    Restrict,
    /// Set the reference to null (the field must be optional).
    SetNull,
}

impl OnDelete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Cascade => "cascade",
            OnDelete::Restrict => "restrict",
            OnDelete::SetNull => "set_null",
        }
    }
}

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// The integer primary key; every model has exactly one, named `id`, assigned by the store.
    Id,
    Text,
    Int,
    Float,
    Bool,
    DateTime,
    Json,
    /// A reference to a row of another model, stored as its id.
    Ref {
        model: String,
        on_delete: OnDelete,
    },
}

impl FieldType {
    /// The name used in `drakon.toml`.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Text => "text",
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::DateTime => "datetime",
            FieldType::Json => "json",
            FieldType::Ref { .. } => "ref",
        }
    }

    /// How error messages name a value of this type.
    pub fn describe(&self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Ref { .. } => "an integer id",
            FieldType::Text => "text",
            FieldType::Int => "an integer",
            FieldType::Float => "a number",
            FieldType::Bool => "a bool",
            FieldType::DateTime => "a datetime",
            FieldType::Json => "JSON",
        }
    }
}

/// One typed column of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    /// Null allowed; a missing value on create stores the default or null.
    pub optional: bool,
    /// Stored when a create does not give the field.
    pub default: Option<Value>,
    /// No two rows may hold the same non-null value.
    pub unique: bool,
}

impl Field {
    pub fn new(name: impl Into<String>, ty: FieldType) -> Field {
        Field { name: name.into(), ty, optional: false, default: None, unique: false }
    }
    pub fn text(name: impl Into<String>) -> Field {
        Field::new(name, FieldType::Text)
    }
    pub fn int(name: impl Into<String>) -> Field {
        Field::new(name, FieldType::Int)
    }
    pub fn float(name: impl Into<String>) -> Field {
        Field::new(name, FieldType::Float)
    }
    pub fn bool(name: impl Into<String>) -> Field {
        Field::new(name, FieldType::Bool)
    }
    pub fn datetime(name: impl Into<String>) -> Field {
        Field::new(name, FieldType::DateTime)
    }
    pub fn json(name: impl Into<String>) -> Field {
        Field::new(name, FieldType::Json)
    }
    pub fn reference(name: impl Into<String>, model: impl Into<String>, on_delete: OnDelete) -> Field {
        Field::new(name, FieldType::Ref { model: model.into(), on_delete })
    }
    pub fn optional(mut self) -> Field {
        self.optional = true;
        self
    }
    pub fn unique(mut self) -> Field {
        self.unique = true;
        self
    }
    pub fn default(mut self, value: Value) -> Field {
        self.default = Some(value);
        self
    }

    /// Whether a create may leave this field out.
    pub fn has_fallback(&self) -> bool {
        self.optional || self.default.is_some() || self.ty == FieldType::Id
    }

    pub fn ref_target(&self) -> Option<(&str, OnDelete)> {
        match &self.ty {
            FieldType::Ref { model, on_delete } => Some((model, *on_delete)),
            _ => None,
        }
    }
}

/// A table with typed fields. Field 0 is always `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    pub fields: Vec<Field>,
}

impl Model {
    /// A model with only its `id` field.
    pub fn new(name: impl Into<String>) -> Model {
        Model { name: name.into(), fields: vec![Field::new("id", FieldType::Id)] }
    }

    pub fn field(mut self, field: Field) -> Model {
        self.fields.push(field);
        self
    }

    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn get_field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The built-in verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    GetList,
    GetSingle,
    Create,
    Update,
    Delete,
    Subscribe,
    Unsubscribe,
}

impl Verb {
    pub const ALL: [Verb; 7] =
        [Verb::GetList, Verb::GetSingle, Verb::Create, Verb::Update, Verb::Delete, Verb::Subscribe, Verb::Unsubscribe];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::GetList => "get_list",
            Verb::GetSingle => "get_single",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Subscribe => "subscribe",
            Verb::Unsubscribe => "unsubscribe",
        }
    }

    pub fn parse(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == name)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route over a model: SwampDragon's `ModelRouter` plus its serializer.
#[derive(Clone)]
pub struct ModelRoute {
    pub model: String,
    /// Fields sent to clients (besides `id` and `_type`, which always are).
    pub publish_fields: Vec<String>,
    /// More fields sent to users with a role (`staff` → `["email"]`), on top of `publish_fields`.
    pub publish_fields_for: BTreeMap<String, Vec<String>>,
    /// Fields a client may change with `update`.
    pub update_fields: Vec<String>,
    /// Fields a client may set with `create`; defaults to `update_fields`.
    pub create_fields: Vec<String>,
    pub verbs: BTreeSet<Verb>,
    pub page_size: u32,
    /// Named arguments that stand for a filter lookup, e.g. `list_id` → `todo_list__id`.
    pub params: BTreeMap<String, String>,
    /// A filter that always applies, to reads, writes and subscriptions alike.
    pub fixed_filter: Args,
    /// Lookups (without their operator) that clients may filter on; `None` allows every field.
    pub filter_fields: Option<BTreeSet<String>>,
    pub custom_verbs: BTreeMap<String, CustomVerb>,
    /// Who may read, subscribe, create, update and delete, per verb.
    pub rules: Rules,
    /// Fields the server sets on `create` (`owner = "$user.id"`); clients cannot set them.
    pub set: Args,
    /// Presence on the route's objects (`[routes.X.presence]`); `None`: no presence verbs.
    pub presence: Option<PresenceSpec>,
}

/// A route's presence (`[routes.X.presence]`): who may join a room, and what the others see of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceSpec {
    /// Keys of a user's public info shown to the other members (`["name"]`); the id always is.
    pub fields: Vec<String>,
    /// Whether anonymous sessions may join, each as a member of its own with an id for the session.
    pub anonymous: bool,
    /// Above this many members a room sends counts and batched changes instead of each change.
    pub large_room: usize,
}

impl Default for PresenceSpec {
    fn default() -> Self {
        PresenceSpec { fields: Vec::new(), anonymous: false, large_room: limits::DEFAULT_PRESENCE_LARGE_ROOM }
    }
}

impl fmt::Debug for ModelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRoute")
            .field("model", &self.model)
            .field("publish_fields", &self.publish_fields)
            .field("publish_fields_for", &self.publish_fields_for)
            .field("update_fields", &self.update_fields)
            .field("create_fields", &self.create_fields)
            .field("verbs", &self.verbs)
            .field("page_size", &self.page_size)
            .field("params", &self.params)
            .field("fixed_filter", &self.fixed_filter)
            .field("filter_fields", &self.filter_fields)
            .field("custom_verbs", &self.custom_verbs.keys().collect::<Vec<_>>())
            .field("rules", &self.rules)
            .field("set", &self.set)
            .field("presence", &self.presence)
            .finish()
    }
}

impl ModelRoute {
    /// A route publishing every field of `model`, writable nowhere, with all built-in verbs.
    pub fn new(model: impl Into<String>) -> ModelRoute {
        ModelRoute {
            model: model.into(),
            publish_fields: Vec::new(),
            publish_fields_for: BTreeMap::new(),
            update_fields: Vec::new(),
            create_fields: Vec::new(),
            verbs: Verb::ALL.into_iter().collect(),
            page_size: limits::DEFAULT_PAGE_SIZE,
            params: BTreeMap::new(),
            fixed_filter: Args::new(),
            filter_fields: None,
            custom_verbs: BTreeMap::new(),
            rules: Rules::default(),
            set: Args::new(),
            presence: None,
        }
    }
    pub fn publish(mut self, fields: &[&str]) -> ModelRoute {
        self.publish_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn update(mut self, fields: &[&str]) -> ModelRoute {
        self.update_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn create(mut self, fields: &[&str]) -> ModelRoute {
        self.create_fields = fields.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn param(mut self, name: &str, lookup: &str) -> ModelRoute {
        self.params.insert(name.into(), lookup.into());
        self
    }
    pub fn verb(mut self, name: &str, verb: CustomVerb) -> ModelRoute {
        self.custom_verbs.insert(name.into(), verb);
        self
    }
    /// Sets the rules of the route's verbs.
    pub fn rules(mut self, rules: Rules) -> ModelRoute {
        self.rules = rules;
        self
    }
}

/// A route of named channels for plain pub/sub (SwampDragon's `BaseRouter` with `get_subscription_channels`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRoute {
    /// Channel names clients may subscribe to; a name ending in `*` allows every name with that prefix.
    pub channels: Vec<String>,
    /// Who may subscribe to which of them (`[routes.X.rules] subscribe`); `None`: anyone, to any of them.
    pub subscribe: Option<crate::rules::Rule>,
    /// Presence on the route's channels, under the same rule as subscribing; `None`: no presence verbs.
    pub presence: Option<PresenceSpec>,
}

impl ChannelRoute {
    pub fn allows(&self, name: &str) -> bool {
        self.channels.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix) && name.len() > prefix.len(),
            None => pattern == name,
        })
    }
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "a handful of routes per app, built once")]
pub enum RouteKind {
    Model(ModelRoute),
    Channel(ChannelRoute),
}

/// A route as clients name it.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub kind: RouteKind,
}

/// Models and routes: the whole app.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub models: Vec<Model>,
    pub routes: Vec<Route>,
}

/// One thing wrong with a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// What the problem is about, as `drakon.toml` names it, down to the key when there is one:
    /// `["models", "todo_item", "fields", "todo_list", "to"]`, `["routes", "todo-item", "publish_fields"]`,
    /// `["routes", "todo-item", "params", "list_id"]`. The config reader finds a problem's line from it.
    pub path: Vec<String>,
    pub message: String,
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

impl Schema {
    pub fn new() -> Schema {
        Schema::default()
    }

    pub fn model(mut self, model: Model) -> Schema {
        self.models.push(model);
        self
    }

    pub fn model_route(mut self, name: &str, route: ModelRoute) -> Schema {
        self.routes.push(Route { name: name.into(), kind: RouteKind::Model(route) });
        self
    }

    pub fn channel_route(mut self, name: &str, route: ChannelRoute) -> Schema {
        self.routes.push(Route { name: name.into(), kind: RouteKind::Channel(route) });
        self
    }

    pub fn get_model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn get_route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn route_mut(&mut self, name: &str) -> Option<&mut Route> {
        self.routes.iter_mut().find(|r| r.name == name)
    }

    /// Fills defaults that depend on other parts (empty `publish_fields` means every field; empty `create_fields`
    /// means `update_fields`) and returns every problem found.
    pub fn finish(&mut self) -> Vec<SchemaProblem> {
        for route in &mut self.routes {
            let RouteKind::Model(r) = &mut route.kind else { continue };
            if r.publish_fields.is_empty()
                && let Some(model) = self.models.iter().find(|m| m.name == r.model)
            {
                r.publish_fields = model.fields.iter().skip(1).map(|f| f.name.clone()).collect();
            }
            if r.create_fields.is_empty() {
                r.create_fields = r.update_fields.clone();
            }
        }
        self.validate()
    }

    /// Finishes the schema (see [`Schema::finish`]) and, when it has no problem, compiles what every model route
    /// filters with, so that nothing about it is left to fail later.
    pub fn check(mut self) -> Result<CheckedSchema, Vec<SchemaProblem>> {
        let mut problems = self.finish();
        let mut routes = HashMap::new();
        for route in &self.routes {
            let RouteKind::Model(spec) = &route.kind else { continue };
            // `validate` has checked each of these; a failure here is reported the same way, never assumed away.
            let mut problem = |key: &str, message: String| {
                let path = ["routes", route.name.as_str(), key].map(String::from).to_vec();
                problems.push(SchemaProblem { path, message })
            };
            let Some(model) = self.get_model(&spec.model) else {
                problem("model", format!("names unknown model `{}`", spec.model));
                continue;
            };
            let fixed = Filter::parse(&self, model, &spec.fixed_filter)
                .map_err(|e| problem("filters", format!("fixed filter is invalid: {}", e.message)));
            let filter_paths = spec.filter_fields.as_ref().map(|paths| {
                paths
                    .iter()
                    .filter_map(|p| parse_lookup(&self, model, p).map_err(|e| problem("filter_fields", e.message)).ok())
                    .collect()
            });
            if let Ok(fixed) = fixed {
                routes.insert(route.name.clone(), CheckedRoute { model: Arc::new(model.clone()), fixed, filter_paths });
            }
        }
        if problems.is_empty() { Ok(CheckedSchema { schema: Arc::new(self), routes }) } else { Err(problems) }
    }

    /// Every problem in the schema; empty when it is usable.
    pub fn validate(&self) -> Vec<SchemaProblem> {
        let mut problems = Vec::new();
        let mut problem = |path: &[&str], message: String| {
            problems.push(SchemaProblem { path: path.iter().map(|s| s.to_string()).collect(), message })
        };
        let mut seen = BTreeSet::new();
        for model in &self.models {
            if !seen.insert(model.name.as_str()) {
                problem(&["models", &model.name], "model is declared twice".into());
            }
            if !is_identifier(&model.name) || model.name.starts_with("_drakon") {
                problem(
                    &["models", &model.name],
                    "model names are lowercase identifiers (a-z, 0-9, _) not starting with _drakon".into(),
                );
            }
            let mut fields = BTreeSet::new();
            for (i, field) in model.fields.iter().enumerate() {
                let path = ["models", model.name.as_str(), "fields", field.name.as_str()];
                if !fields.insert(field.name.as_str()) {
                    problem(&path, "field is declared twice".into());
                }
                if !is_identifier(&field.name) || field.name.starts_with('_') {
                    problem(&path, "field names are lowercase identifiers (a-z, 0-9, _) not starting with _".into());
                }
                if field.name.contains("__") {
                    problem(&path, "field names may not contain `__`, which separates lookups in filters".into());
                }
                if (i == 0) != (field.ty == FieldType::Id) || (i == 0 && field.name != "id") {
                    problem(
                        &path,
                        "`id` is implicit: every model has one integer id and no other field may be of type id".into(),
                    );
                }
                let key = |key| ["models", model.name.as_str(), "fields", field.name.as_str(), key];
                if let Some((target, on_delete)) = field.ref_target() {
                    if self.get_model(target).is_none() {
                        problem(&key("to"), format!("refers to unknown model `{target}`"));
                    }
                    if on_delete == OnDelete::SetNull && !field.optional {
                        problem(&key("on_delete"), "on_delete = \"set_null\" needs the field to be optional".into());
                    }
                }
                if field.ty == FieldType::Json && field.unique {
                    problem(&key("unique"), "json fields cannot be unique".into());
                }
                if let Some(default) = &field.default
                    && !default_fits(&field.ty, default)
                {
                    problem(&key("default"), format!("default does not fit type {}", field.ty.name()));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for route in &self.routes {
            let path = ["routes", route.name.as_str()];
            let key = |key| ["routes", route.name.as_str(), key];
            if !seen.insert(route.name.as_str()) {
                problem(&path, "route is declared twice".into());
            }
            if route.name.is_empty() || route.name.contains('|') || route.name.chars().any(char::is_whitespace) {
                problem(&path, "route names may not be empty or contain `|` or spaces".into());
            }
            if route.name == SERVER_ROUTE {
                problem(&path, format!("the route name `{SERVER_ROUTE}` is the server's own (its `auth` verb)"));
            }
            if route.name.starts_with(ADMIN_ROUTE_PREFIX) {
                problem(&path, format!("route names starting with `{}` are the admin's", ADMIN_ROUTE_PREFIX));
            }
            match &route.kind {
                RouteKind::Model(r) => {
                    let Some(model) = self.get_model(&r.model) else {
                        problem(&key("model"), format!("unknown model `{}`", r.model));
                        continue;
                    };
                    for (list, label) in [
                        (&r.publish_fields, "publish_fields"),
                        (&r.update_fields, "update_fields"),
                        (&r.create_fields, "create_fields"),
                    ] {
                        for name in list {
                            match model.get_field(name) {
                                None => problem(
                                    &key(label),
                                    format!("{label} names unknown field `{name}` of model `{}`", model.name),
                                ),
                                Some(f) if f.ty == FieldType::Id && label != "publish_fields" => {
                                    problem(&key(label), format!("{label} may not include `id`: the store assigns it"))
                                }
                                _ => {}
                            }
                        }
                    }
                    for (role, fields) in &r.publish_fields_for {
                        for name in fields {
                            if model.get_field(name).is_none() {
                                problem(
                                    &key("publish_fields_for"),
                                    format!(
                                        "publish_fields_for.{role} names unknown field `{name}` of model `{}`",
                                        model.name
                                    ),
                                );
                            }
                        }
                    }
                    if r.page_size == 0 || r.page_size > limits::MAX_PAGE_SIZE {
                        problem(
                            &key("page_size"),
                            format!("page_size must be between 1 and {}", limits::MAX_PAGE_SIZE),
                        );
                    }
                    for (name, lookup) in &r.params {
                        let path = ["routes", route.name.as_str(), "params", name.as_str()];
                        if let Err(e) = crate::filter::parse_lookup(self, model, lookup) {
                            problem(&path, format!("param `{name}` maps to a bad lookup: {}", e.message));
                        }
                        if name == "channel" || name.starts_with('_') {
                            problem(&path, format!("param `{name}` clashes with a reserved argument"));
                        }
                    }
                    if let Err(e) = crate::filter::Filter::parse(self, model, &r.fixed_filter) {
                        problem(&key("filters"), format!("fixed filter is invalid: {}", e.message));
                    }
                    for (k, message) in rule_problems(self, model, r) {
                        problem(&key(k), message);
                    }
                    for lookup in r.filter_fields.iter().flatten() {
                        if let Err(e) = crate::filter::parse_lookup(self, model, lookup) {
                            problem(
                                &key("filter_fields"),
                                format!("filter_fields names a bad lookup `{lookup}`: {}", e.message),
                            );
                        }
                    }
                    for name in r.custom_verbs.keys() {
                        if Verb::parse(name).is_some() {
                            problem(&path, format!("custom verb `{name}` has the name of a built-in verb"));
                        }
                    }
                }
                RouteKind::Channel(c) => {
                    if c.channels.is_empty() {
                        problem(&key("channels"), "a channel route needs at least one channel".into());
                    }
                    for name in &c.channels {
                        if name.contains('|') || name.is_empty() || name == "*" {
                            problem(
                                &key("channels"),
                                format!("channel `{name}` must be non-empty, not `*`, and may not contain `|`"),
                            );
                        }
                    }
                }
            }
        }
        problems
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

fn default_fits(ty: &FieldType, value: &Value) -> bool {
    matches!(
        (ty, value),
        (_, Value::Null)
            | (FieldType::Text, Value::Text(_))
            | (FieldType::Int | FieldType::Ref { .. }, Value::Int(_))
            | (FieldType::Float, Value::Float(_) | Value::Int(_))
            | (FieldType::Bool, Value::Bool(_))
            | (FieldType::DateTime, Value::DateTime(_))
            | (FieldType::Json, Value::Json(_))
    )
}

/// Prefix of the per-model routes the engine makes for admin sessions; no route of a schema may start with it.
pub const ADMIN_ROUTE_PREFIX: &str = "admin:";

/// The route of the server's own requests (`auth`), which no app route may take.
pub const SERVER_ROUTE: &str = "drakon";

/// Shared, immutable schema.
pub type SharedSchema = Arc<Schema>;

/// Problems with a model route's rules and server-set fields, each with the key it is about.
fn rule_problems(schema: &Schema, model: &Model, spec: &ModelRoute) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let mut problem = |key: &'static str, message: String| problems.push((key, message));
    for (verb, rule) in [
        ("read", &spec.rules.read),
        ("subscribe", &spec.rules.subscribe),
        ("create", &spec.rules.create),
        ("update", &spec.rules.update),
        ("delete", &spec.rules.delete),
    ] {
        let Some(rule) = rule else { continue };
        for filter in rule.row_filters() {
            if let Err(message) = check_user_filter(schema, model, filter) {
                problem("rules", format!("{verb}: {message}"));
            }
        }
    }
    for (field, value) in &spec.set {
        let Some(index) = model.field_index(field).filter(|&i| i > 0) else {
            problem("set", format!("model `{}` has no field `{field}`", model.name));
            continue;
        };
        if spec.create_fields.contains(field) {
            problem("set", format!("`{field}` is set by the server; remove it from create_fields"));
        }
        if value != crate::rules::USER_ID && Value::from_json(&model.fields[index].ty, value).is_err() {
            problem("set", format!("`{field}`: {value} is neither \"$user.id\" nor a value of the field's type"));
        }
    }
    problems
}

/// Whether a rule's row filter parses on `model` once `$user.id` stands for a user id, as text or, for integer
/// fields, as a number.
fn check_user_filter(schema: &Schema, model: &Model, filter: &Args) -> Result<(), String> {
    let sample = crate::rules::User { id: "1".into(), roles: Vec::new(), info: Json::Null, expires: None };
    user_filter(schema, model, filter, &sample).map(drop).map_err(|e| e.message)
}

/// A rule's row filter for `user`, parsed on `model`. A user id is text; a field holding integers compares with it
/// as a number when it is one.
pub fn user_filter(
    schema: &Schema,
    model: &Model,
    filter: &Args,
    user: &crate::rules::User,
) -> Result<Filter, crate::filter::FilterError> {
    let mut args = crate::rules::substitute(filter, user);
    match Filter::parse(schema, model, &args) {
        Err(e) if e.code == ErrorCode::WrongType => {
            let Ok(number) = user.id.parse::<i64>() else { return Err(e) };
            for (key, value) in args.iter_mut() {
                if filter.get(key).is_some_and(|v| v == crate::rules::USER_ID) {
                    *value = Json::from(number);
                }
            }
            Filter::parse(schema, model, &args)
        }
        parsed => parsed,
    }
}

/// A finished schema without problems, with what its model routes filter with compiled (see [`Schema::check`]).
#[derive(Debug, Clone)]
pub struct CheckedSchema {
    schema: SharedSchema,
    routes: HashMap<String, CheckedRoute>,
}

/// A model route's model and compiled filters.
#[derive(Debug, Clone)]
pub struct CheckedRoute {
    pub model: Arc<Model>,
    /// The route's fixed filter, parsed.
    pub fixed: Filter,
    /// `filter_fields`, parsed: the only lookups client filters may use, when set.
    pub filter_paths: Option<HashSet<Lookup>>,
}

impl CheckedSchema {
    pub fn schema(&self) -> &SharedSchema {
        &self.schema
    }

    /// The compiled parts of model route `name`.
    pub fn model_route(&self, name: &str) -> Option<&CheckedRoute> {
        self.routes.get(name)
    }
}
