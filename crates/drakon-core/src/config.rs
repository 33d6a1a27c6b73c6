//! Reads `drakon.toml`: the `[server]` settings and the `[models]` and `[routes]` that become a [`Schema`].
//!
//! Every problem carries the line it is about so that `drakon check` can print `path:line: message` for each one.
//! A TOML syntax or shape error (an unknown key, a string where a list belongs) stops reading at the first one, as
//! the toml crate does; past that, every semantic problem in the file is collected, including those that
//! [`Schema::finish`] finds, which are mapped back to the line of the model, field, route or route key they name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;
use toml::Spanned;

use crate::limits;
use crate::schema::{ChannelRoute, Field, FieldType, Model, ModelRoute, OnDelete, Schema, SchemaProblem, Verb};
use crate::value::Value;

/// The environment variable that overrides `[server] api_key`, so that the key need not live in the file.
pub const API_KEY_ENV: &str = "DRAKON_API_KEY";

/// The environment variable that overrides `[server] database_url`.
pub const DATABASE_URL_ENV: &str = "DRAKON_DATABASE_URL";

/// The environment variable that overrides `[server] redis_url`.
pub const REDIS_URL_ENV: &str = "DRAKON_REDIS_URL";

/// The environment variable that overrides `[server] redis_sharded` (`true`/`false`, `1`/`0`, `yes`/`no`).
pub const REDIS_SHARDED_ENV: &str = "DRAKON_REDIS_SHARDED";

/// The environment variable that overrides `[server] admin_secret`.
pub const ADMIN_SECRET_ENV: &str = "DRAKON_ADMIN_SECRET";

/// The SQLite file used when `[server]` names none.
const DEFAULT_DATABASE: &str = "drakon.db";

/// A whole `drakon.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// Finished: defaults filled and validated.
    pub schema: Schema,
    /// The directory of the config file, against which relative paths in it were resolved.
    pub base_dir: PathBuf,
}

/// The `[server]` table.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where to listen; `None` leaves the choice to the command line.
    pub bind: Option<SocketAddr>,
    /// The SQLite file; relative paths in the file are resolved against its directory.
    pub database: PathBuf,
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    /// Period of the app-level heartbeat frame `{"heartbeat":"1"}`; `None` sends none.
    pub heartbeat_interval: Option<Duration>,
    /// The key that `POST /api/publish` and other server-side callers present; [`load`] lets
    /// [`API_KEY_ENV`] override it.
    pub api_key: Option<String>,
    /// The secret that opens `/admin`; [`load`] lets [`ADMIN_SECRET_ENV`] override it, and `drakon serve` makes
    /// one up (and prints a login link) when neither is set.
    pub admin_secret: Option<String>,
    /// A directory of files served at `/` (the app's pages); relative paths are resolved against the config file.
    pub static_dir: Option<PathBuf>,
    /// How much of the change log is kept for resuming clients.
    pub log_retention: crate::store::LogRetention,
    /// A PostgreSQL URL: rows and the change log live there instead of in the SQLite `database`, shared by every
    /// node. [`load`] lets [`DATABASE_URL_ENV`] override it.
    pub database_url: Option<String>,
    /// A Redis URL (`redis://…`): the bus between nodes. Plain pub/sub messages (`POST /api/publish`) cross every
    /// node through it, and with `database_url` so do row changes. With `redis_sharded`, one or more Redis Cluster
    /// node URLs, comma-separated. [`load`] lets [`REDIS_URL_ENV`] override it.
    pub redis_url: Option<String>,
    /// Use a Redis Cluster's sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`). [`load`] lets [`REDIS_SHARDED_ENV`]
    /// override it.
    pub redis_sharded: bool,
    /// The PEM file of the CA that signed the Redis server's certificate, for `rediss://` URLs (else the system's
    /// trusted roots are used). Relative to the config file's directory.
    pub redis_ca_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            bind: None,
            database: PathBuf::from(DEFAULT_DATABASE),
            max_frame_bytes: limits::DEFAULT_MAX_FRAME_BYTES,
            max_subscriptions: limits::DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            ping_interval: limits::DEFAULT_PING_INTERVAL,
            heartbeat_interval: None,
            api_key: None,
            admin_secret: None,
            static_dir: None,
            log_retention: crate::store::LogRetention::default(),
            database_url: None,
            redis_url: None,
            redis_sharded: false,
            redis_ca_file: None,
        }
    }
}

// Hand-written so that the api key never reaches a log line.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("database", &self.database)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_subscriptions", &self.max_subscriptions)
            .field("idle_timeout", &self.idle_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("admin_secret", &self.admin_secret.as_ref().map(|_| "<redacted>"))
            .field("static_dir", &self.static_dir)
            .field("log_retention", &self.log_retention)
            .field("database_url", &self.database_url.as_ref().map(|_| "<redacted>"))
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_sharded", &self.redis_sharded)
            .field("redis_ca_file", &self.redis_ca_file)
            .finish()
    }
}

/// One problem with its 1-based line (`None` when unknown) — `drakon check` prints `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub line: Option<usize>,
    pub message: String,
}

/// Everything wrong with one config file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.path, .problems))]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<ConfigProblem>,
}

fn render(path: &Path, problems: &[ConfigProblem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("{}:{line}: {}", path.display(), p.message),
            None => format!("{}: {}", path.display(), p.message),
        })
        .collect();
    lines.join("\n")
}

/// Reads and parses the config file at `path`; [`API_KEY_ENV`], when set and not empty, replaces `api_key`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.to_owned(),
        problems: vec![ConfigProblem {
            line: None,
            message: format!("cannot read the config file ({e}); check the path and its permissions"),
        }],
    })?;
    let mut config = parse(&text, path)?;
    if let Ok(key) = std::env::var(API_KEY_ENV)
        && !key.is_empty()
    {
        tracing::debug!("api key taken from {API_KEY_ENV}");
        config.server.api_key = Some(key);
    }
    if let Ok(url) = std::env::var(DATABASE_URL_ENV)
        && !url.is_empty()
    {
        config.server.database_url = Some(url);
    }
    if let Ok(url) = std::env::var(REDIS_URL_ENV)
        && !url.is_empty()
    {
        config.server.redis_url = Some(url);
    }
    if let Ok(flag) = std::env::var(REDIS_SHARDED_ENV)
        && !flag.is_empty()
    {
        config.server.redis_sharded = match flag.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" => false,
            _ => {
                return Err(ConfigError {
                    path: path.to_owned(),
                    problems: vec![ConfigProblem {
                        line: None,
                        message: format!("{REDIS_SHARDED_ENV} must be true or false, got {flag:?}"),
                    }],
                });
            }
        };
    }
    if let Ok(secret) = std::env::var(ADMIN_SECRET_ENV)
        && !secret.is_empty()
    {
        config.server.admin_secret = Some(secret);
    }
    Ok(config)
}

/// Parses config text; `path` names the file in problems and anchors relative paths. Reads no environment.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError { path: path.to_owned(), problems };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        fail(vec![ConfigProblem { line: e.span().map(|s| line_of(text, s.start)), message: e.message().to_owned() }])
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut reader = Reader { text, problems: Vec::new(), anchors: BTreeMap::new() };
    let server = reader.server(raw.server, &base_dir);
    let mut schema = reader.schema(raw.models, raw.routes);
    for problem in schema.finish() {
        let line = reader.schema_problem_line(&problem);
        // Without a line the message alone would not say where; the dotted path does.
        let message = if line.is_some() { problem.message } else { problem.to_string() };
        reader.problems.push(ConfigProblem { line, message });
    }
    if reader.problems.is_empty() {
        Ok(Config { server, schema, base_dir })
    } else {
        reader.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(fail(reader.problems))
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

// The file as written. Keys are `Spanned` so that problems can name their line; every table denies unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    models: BTreeMap<Spanned<String>, RawModel>,
    #[serde(default)]
    routes: BTreeMap<Spanned<String>, RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    max_frame_bytes: Option<Spanned<i64>>,
    max_subscriptions: Option<Spanned<i64>>,
    idle_timeout_secs: Option<Spanned<i64>>,
    ping_interval_secs: Option<Spanned<i64>>,
    heartbeat_secs: Option<Spanned<i64>>,
    api_key: Option<Spanned<String>>,
    admin_secret: Option<Spanned<String>>,
    static_dir: Option<Spanned<String>>,
    log_retention_count: Option<Spanned<i64>>,
    log_retention_secs: Option<Spanned<i64>>,
    database_url: Option<Spanned<String>>,
    redis_url: Option<Spanned<String>>,
    redis_sharded: Option<bool>,
    redis_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a model table such as [models.todo_list.fields]")]
struct RawModel {
    #[serde(default)]
    fields: BTreeMap<Spanned<String>, RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a field spec such as { type = \"text\" }")]
struct RawField {
    r#type: Option<Spanned<String>>,
    #[serde(default)]
    optional: bool,
    default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    unique: bool,
    to: Option<Spanned<String>>,
    on_delete: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route table such as [routes.todo-list]")]
struct RawRoute {
    kind: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    publish_fields: Option<Spanned<Vec<String>>>,
    update_fields: Option<Spanned<Vec<String>>>,
    create_fields: Option<Spanned<Vec<String>>>,
    verbs: Option<Spanned<Vec<Spanned<String>>>>,
    page_size: Option<Spanned<i64>>,
    params: Option<Spanned<BTreeMap<Spanned<String>, String>>>,
    filters: Option<Spanned<toml::Table>>,
    filter_fields: Option<Spanned<Vec<String>>>,
    channels: Option<Spanned<Vec<String>>>,
}

/// Map entries in the order the file declares them: serde cannot fill an order-keeping map with spanned keys, so
/// the keys' positions restore it.
fn in_file_order<V>(map: BTreeMap<Spanned<String>, V>) -> Vec<(Spanned<String>, V)> {
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Turns the raw file into typed config, collecting problems instead of stopping at the first.
struct Reader<'a> {
    text: &'a str,
    problems: Vec<ConfigProblem>,
    /// The line of each declared model, field, route and route key, keyed by the path a [`SchemaProblem`] uses
    /// (`["models", "todo_item", "fields", "text"]`, `["routes", "todo-item", "page_size"]`).
    anchors: BTreeMap<Vec<String>, usize>,
}

impl Reader<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = Some(self.line(span));
        self.problems.push(ConfigProblem { line, message: message.into() });
    }

    fn anchor(&mut self, path: &[&str], span: Range<usize>) {
        let line = self.line(span);
        self.anchors.insert(path.iter().map(|s| s.to_string()).collect(), line);
    }

    fn server(&mut self, raw: RawServer, base_dir: &Path) -> ServerConfig {
        let mut server = ServerConfig::default();
        if let Some(bind) = raw.bind {
            match bind.get_ref().parse() {
                Ok(addr) => server.bind = Some(addr),
                Err(_) => self.problem(bind.span(), "bind must be an IP address and port such as \"127.0.0.1:8000\""),
            }
        }
        match raw.database {
            Some(db) if db.get_ref().is_empty() => {
                self.problem(db.span(), "database must name a SQLite file such as \"todo.db\"")
            }
            Some(db) => server.database = base_dir.join(db.get_ref()),
            None => server.database = base_dir.join(DEFAULT_DATABASE),
        }
        if let Some(n) = self.number("max_frame_bytes", raw.max_frame_bytes.as_ref(), 1) {
            server.max_frame_bytes = n;
        }
        if let Some(n) = self.number("max_subscriptions", raw.max_subscriptions.as_ref(), 1) {
            server.max_subscriptions = n;
        }
        let idle = self.number("idle_timeout_secs", raw.idle_timeout_secs.as_ref(), 1);
        let ping = self.number("ping_interval_secs", raw.ping_interval_secs.as_ref(), 1);
        server.idle_timeout = idle.map_or(server.idle_timeout, Duration::from_secs);
        server.ping_interval = ping.map_or(server.ping_interval, Duration::from_secs);
        // A bad number has its own problem already; comparing the default in its place would only add noise.
        let both_read =
            (idle.is_some() || raw.idle_timeout_secs.is_none()) && (ping.is_some() || raw.ping_interval_secs.is_none());
        if both_read
            && server.ping_interval >= server.idle_timeout
            && let Some(span) = raw.ping_interval_secs.or(raw.idle_timeout_secs).map(|s| s.span())
        {
            self.problem(
                span,
                format!(
                    "ping_interval_secs ({}) must be shorter than idle_timeout_secs ({}), or clients that only \
                     answer pings are closed as idle; lower the one or raise the other",
                    server.ping_interval.as_secs(),
                    server.idle_timeout.as_secs()
                ),
            );
        }
        if let Some(secs) = self.number::<u64>("heartbeat_secs", raw.heartbeat_secs.as_ref(), 0) {
            server.heartbeat_interval = (secs > 0).then(|| Duration::from_secs(secs));
        }
        match raw.api_key {
            Some(key) if key.get_ref().is_empty() => {
                self.problem(key.span(), format!("api_key is empty; set a key, remove the line or use {API_KEY_ENV}"))
            }
            Some(key) => server.api_key = Some(key.into_inner()),
            None => {}
        }
        match raw.admin_secret {
            Some(secret) if secret.get_ref().len() < 12 => self.problem(
                secret.span(),
                format!("admin_secret must be at least 12 characters; remove it to have one generated, or use {ADMIN_SECRET_ENV}"),
            ),
            Some(secret) => server.admin_secret = Some(secret.into_inner()),
            None => {}
        }
        if let Some(n) = self.number("log_retention_count", raw.log_retention_count.as_ref(), 1) {
            server.log_retention.count = n;
        }
        if let Some(n) = self.number("log_retention_secs", raw.log_retention_secs.as_ref(), 1) {
            server.log_retention.age = Duration::from_secs(n);
        }
        match raw.database_url {
            Some(url) if !(url.get_ref().starts_with("postgres://") || url.get_ref().starts_with("postgresql://")) => {
                self.problem(url.span(), "database_url must be a PostgreSQL URL such as \"postgres://user@host/db\"")
            }
            Some(url) => server.database_url = Some(url.into_inner()),
            None => {}
        }
        server.redis_sharded = raw.redis_sharded.unwrap_or(false);
        match raw.redis_url {
            Some(url)
                if url
                    .get_ref()
                    .split(',')
                    .any(|u| !(u.trim().starts_with("redis://") || u.trim().starts_with("rediss://"))) =>
            {
                self.problem(
                    url.span(),
                    "redis_url must be a Redis URL such as \"redis://127.0.0.1:6379\" (rediss:// for TLS; with \
                     redis_sharded, one or more, comma-separated)",
                )
            }
            Some(url) if url.get_ref().contains(',') && !server.redis_sharded => self.problem(
                url.span(),
                "several Redis URLs make sense only for a Redis Cluster: set redis_sharded = true, or give one URL",
            ),
            Some(url) => server.redis_url = Some(url.into_inner()),
            None => {}
        }
        match raw.redis_ca_file {
            Some(file) if file.get_ref().is_empty() => {
                self.problem(file.span(), "redis_ca_file must name a PEM file of CA certificates")
            }
            Some(file) => server.redis_ca_file = Some(base_dir.join(file.get_ref())),
            None => {}
        }
        match raw.static_dir {
            Some(dir) if dir.get_ref().is_empty() => self.problem(dir.span(), "static_dir must name a directory"),
            Some(dir) => server.static_dir = Some(base_dir.join(dir.get_ref())),
            None => {}
        }
        server
    }

    /// A whole number of at least `min`, or a problem at its line.
    fn number<T: TryFrom<i64>>(&mut self, key: &str, value: Option<&Spanned<i64>>, min: i64) -> Option<T> {
        let value = value?;
        let n = *value.get_ref();
        let converted = if n >= min { T::try_from(n).ok() } else { None };
        if converted.is_none() {
            self.problem(value.span(), format!("{key} must be a whole number of at least {min}, got {n}"));
        }
        converted
    }

    fn schema(
        &mut self,
        models: BTreeMap<Spanned<String>, RawModel>,
        routes: BTreeMap<Spanned<String>, RawRoute>,
    ) -> Schema {
        let mut schema = Schema::new();
        for (name, raw) in in_file_order(models) {
            self.anchor(&["models", name.get_ref()], name.span());
            let mut model = Model::new(name.get_ref());
            for (field_name, raw_field) in in_file_order(raw.fields) {
                self.anchor(&["models", name.get_ref(), "fields", field_name.get_ref()], field_name.span());
                if field_name.get_ref() == "id" {
                    self.problem(field_name.span(), "`id` is implicit in every model; remove this field");
                    continue;
                }
                model = model.field(self.field(field_name, raw_field));
            }
            schema = schema.model(model);
        }
        for (name, raw) in in_file_order(routes) {
            self.anchor(&["routes", name.get_ref()], name.span());
            schema = self.route(schema, name, raw);
        }
        schema
    }

    fn field(&mut self, name: Spanned<String>, raw: RawField) -> Field {
        if raw.r#type.as_ref().is_none_or(|t| t.get_ref() != "ref") {
            for (key, value) in [("to", &raw.to), ("on_delete", &raw.on_delete)] {
                if let Some(value) = value {
                    self.problem(value.span(), format!("`{key}` only applies to fields of type ref; remove it"));
                }
            }
        }
        // A field whose type is unusable is still declared, as json, so that routes naming it raise no follow-on
        // problems; its default and uniqueness are not checked against a type it may not have.
        let Some(ty) = self.field_type(&name, &raw) else {
            return Field { optional: raw.optional, ..Field::json(name.into_inner()) };
        };
        let mut field = Field::new(name.into_inner(), ty);
        field.optional = raw.optional;
        field.unique = raw.unique;
        if let Some(default) = raw.default {
            match default_value(&field.ty, default.get_ref()) {
                Ok(value) => field.default = Some(value),
                Err(message) => self.problem(default.span(), message),
            }
        }
        field
    }

    fn field_type(&mut self, name: &Spanned<String>, raw: &RawField) -> Option<FieldType> {
        let Some(ty) = &raw.r#type else {
            self.problem(name.span(), "field needs a type, e.g. { type = \"text\" }");
            return None;
        };
        Some(match ty.get_ref().as_str() {
            "text" => FieldType::Text,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "datetime" => FieldType::DateTime,
            "json" => FieldType::Json,
            "ref" => {
                let on_delete = match &raw.on_delete {
                    None => Some(OnDelete::Restrict),
                    Some(s) => {
                        let parsed = [OnDelete::Cascade, OnDelete::Restrict, OnDelete::SetNull]
                            .into_iter()
                            .find(|o| o.as_str() == s.get_ref());
                        if parsed.is_none() {
                            self.problem(
                                s.span(),
                                format!("unknown on_delete `{}`; use cascade, restrict or set_null", s.get_ref()),
                            );
                        }
                        parsed
                    }
                };
                if raw.to.is_none() {
                    self.problem(
                        ty.span(),
                        "a ref field needs `to`, the model it refers to, e.g. { type = \"ref\", to = \"todo_list\" }",
                    );
                }
                FieldType::Ref { model: raw.to.as_ref()?.get_ref().clone(), on_delete: on_delete? }
            }
            "id" => {
                self.problem(ty.span(), "type id is reserved for the implicit `id` field; use int or ref");
                return None;
            }
            other => {
                self.problem(
                    ty.span(),
                    format!("unknown type `{other}`; use one of text, int, float, bool, datetime, json, ref"),
                );
                return None;
            }
        })
    }

    fn route(&mut self, schema: Schema, name: Spanned<String>, raw: RawRoute) -> Schema {
        let route_name = name.get_ref().as_str();
        let keys = [
            ("model", raw.model.as_ref().map(Spanned::span)),
            ("publish_fields", raw.publish_fields.as_ref().map(Spanned::span)),
            ("update_fields", raw.update_fields.as_ref().map(Spanned::span)),
            ("create_fields", raw.create_fields.as_ref().map(Spanned::span)),
            ("verbs", raw.verbs.as_ref().map(Spanned::span)),
            ("page_size", raw.page_size.as_ref().map(Spanned::span)),
            ("params", raw.params.as_ref().map(Spanned::span)),
            ("filters", raw.filters.as_ref().map(Spanned::span)),
            ("filter_fields", raw.filter_fields.as_ref().map(Spanned::span)),
            ("channels", raw.channels.as_ref().map(Spanned::span)),
        ];
        for (key, span) in &keys {
            if let Some(span) = span {
                self.anchor(&["routes", route_name, key], span.clone());
            }
        }
        match raw.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("model") => {}
            Some("channel") => {
                for (key, span) in keys {
                    if let Some(span) = span
                        && key != "channels"
                    {
                        self.problem(span, format!("`{key}` does not apply to a channel route; remove it"));
                    }
                }
                let channels = raw.channels.map(Spanned::into_inner).unwrap_or_default();
                return schema.channel_route(route_name, ChannelRoute { channels });
            }
            Some(other) => {
                let span = raw.kind.as_ref().map_or(name.span(), Spanned::span);
                self.problem(span, format!("unknown route kind `{other}`; use \"model\" or \"channel\""));
                return schema;
            }
        }
        if let Some(channels) = &raw.channels {
            self.problem(
                channels.span(),
                "`channels` only applies to channel routes; add kind = \"channel\" or remove it",
            );
        }
        let Some(model) = raw.model else {
            self.problem(name.span(), "a model route needs `model`, the model it serves, e.g. model = \"todo_list\"");
            return schema;
        };
        let mut route = ModelRoute::new(model.into_inner());
        if let Some(fields) = raw.publish_fields {
            route.publish_fields = fields.into_inner();
        }
        if let Some(fields) = raw.update_fields {
            route.update_fields = fields.into_inner();
        }
        if let Some(fields) = raw.create_fields {
            route.create_fields = fields.into_inner();
        }
        if let Some(verbs) = raw.verbs {
            route.verbs = BTreeSet::new();
            for verb in verbs.into_inner() {
                match Verb::parse(verb.get_ref()) {
                    Some(v) => {
                        route.verbs.insert(v);
                    }
                    None => {
                        let known: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
                        self.problem(
                            verb.span(),
                            format!("unknown verb `{}`; use one of {}", verb.get_ref(), known.join(", ")),
                        );
                    }
                }
            }
        }
        if let Some(size) = raw.page_size {
            // Out of u32 range becomes 0, which Schema::validate rejects with the allowed bounds.
            route.page_size = u32::try_from(*size.get_ref()).unwrap_or(0);
        }
        if let Some(params) = raw.params {
            for (param, lookup) in params.into_inner() {
                self.anchor(&["routes", route_name, "params", param.get_ref()], param.span());
                route.params.insert(param.into_inner(), lookup);
            }
        }
        if let Some(filters) = raw.filters {
            for (key, value) in filters.get_ref() {
                match toml_to_json(value) {
                    Ok(json) => {
                        route.fixed_filter.insert(key.clone(), json);
                    }
                    Err(message) => self.problem(filters.span(), format!("filter `{key}`: {message}")),
                }
            }
        }
        route.filter_fields = raw.filter_fields.map(|f| f.into_inner().into_iter().collect());
        schema.model_route(route_name, route)
    }

    /// The line a problem from [`Schema::finish`] is about: the most specific declared thing its path names.
    fn schema_problem_line(&self, problem: &SchemaProblem) -> Option<usize> {
        let mut path = problem.path.clone();
        if path.len() == 2 && path[0] == "routes" {
            path.extend(route_key_named_by(&problem.message));
        }
        while !path.is_empty() {
            if let Some(line) = self.anchors.get(&path) {
                return Some(*line);
            }
            path.pop();
        }
        None
    }
}

/// The route key a [`Schema::validate`] message is about, judged from how the message starts, so that the problem
/// points at that key rather than at the route header. A message that names no key, or a key the route left out,
/// falls back to the header.
fn route_key_named_by(message: &str) -> Vec<String> {
    let mut words = message.split(' ');
    match (words.next(), words.next()) {
        (Some("param"), Some(name)) => vec!["params".into(), name.trim_matches('`').into()],
        (Some("fixed"), Some("filter")) => vec!["filters".into()],
        (Some("unknown"), Some("model")) => vec!["model".into()],
        (Some("channel"), _) | (Some("a"), Some("channel")) => vec!["channels".into()],
        (Some(key @ ("publish_fields" | "update_fields" | "create_fields" | "page_size")), _) => vec![key.into()],
        _ => Vec::new(),
    }
}

/// A field's `default` as a value of its type. TOML datetimes and strings both serve for datetime fields.
fn default_value(ty: &FieldType, value: &toml::Value) -> Result<Value, String> {
    if *ty == FieldType::DateTime && value.as_str() == Some("now") {
        return Err("default \"now\" is not supported yet; give a fixed time such as \"2026-11-27T10:00:00Z\" \
                    or make the field optional"
            .into());
    }
    let json = toml_to_json(value)?;
    Value::from_json(ty, &json).map_err(|e| format!("bad default: {e}"))
}

fn toml_to_json(value: &toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} has no JSON form; use a finite number"))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| Ok((k.clone(), toml_to_json(v)?))).collect::<Result<_, String>>()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RouteKind;
    use serde_json::json;

    const EXAMPLE: &str = include_str!("../../../examples/todo/drakon.toml");

    fn doc(lines: &[&str]) -> String {
        lines.join("\n") + "\n"
    }

    /// Expected problems: the 1-based line and the message.
    type Problems<'a> = &'a [(usize, &'a str)];

    /// Parses `lines` (line N of the file is `lines[N - 1]`) and compares every problem with `want`.
    fn check(name: &str, lines: &[&str], want: Problems) {
        let text = doc(lines);
        let got = match parse(&text, Path::new("drakon.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| (p.line, p.message)).collect::<Vec<_>>(),
        };
        let want: Vec<_> = want.iter().map(|(line, message)| (Some(*line), message.to_string())).collect();
        assert_eq!(got, want, "{name}:\n{text}");
    }

    fn parse_ok(lines: &[&str]) -> Config {
        let text = doc(lines);
        parse(&text, Path::new("app/drakon.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn model_route<'a>(schema: &'a Schema, name: &str) -> &'a ModelRoute {
        match &schema.get_route(name).unwrap_or_else(|| panic!("no route {name}")).kind {
            RouteKind::Model(r) => r,
            RouteKind::Channel(_) => panic!("{name} is a channel route"),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn example_parses_into_the_todo_schema() {
        let config = parse(EXAMPLE, Path::new("examples/todo/drakon.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.server.bind, Some("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(config.server.database, Path::new("examples/todo/todo.db"));
        assert_eq!(config.base_dir, Path::new("examples/todo"));
        assert_eq!(config.server.api_key, None);

        let models = vec![
            Model::new("todo_list")
                .field(Field::text("name"))
                .field(Field::text("description").default(Value::Text(String::new()))),
            Model::new("todo_item")
                .field(Field::text("text"))
                .field(Field::bool("done").default(Value::Bool(false)))
                .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
        ];
        assert_eq!(config.schema.models, models);

        let names: Vec<&str> = config.schema.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["todo-list", "todo-item", "chat"]);

        let list = model_route(&config.schema, "todo-list");
        assert_eq!(list.model, "todo_list");
        assert_eq!(list.publish_fields, strings(&["name", "description"]));
        assert_eq!(list.update_fields, strings(&["name", "description"]));
        assert_eq!(list.create_fields, list.update_fields, "create_fields defaults to update_fields");
        assert_eq!(list.verbs, Verb::ALL.into_iter().collect());
        assert_eq!(list.page_size, limits::DEFAULT_PAGE_SIZE);
        assert!(list.params.is_empty());

        let item = model_route(&config.schema, "todo-item");
        assert_eq!(item.model, "todo_item");
        assert_eq!(item.publish_fields, strings(&["text", "done", "todo_list"]));
        assert_eq!(item.update_fields, strings(&["done", "text"]));
        assert_eq!(item.create_fields, strings(&["text", "done", "todo_list"]));
        assert_eq!(item.params, BTreeMap::from([("list_id".to_string(), "todo_list__id".to_string())]));
        assert_eq!(item.filter_fields, None);

        let RouteKind::Channel(chat) = &config.schema.get_route("chat").unwrap().kind else {
            panic!("chat is not a channel route");
        };
        assert_eq!(chat.channels, strings(&["chatroom", "room.*"]));
    }

    #[test]
    fn load_reads_the_file_and_resolves_paths_beside_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todo");
        let config = load(&dir.join("drakon.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.base_dir, dir);
        assert_eq!(config.server.database, dir.join("todo.db"));
    }

    #[test]
    fn load_reports_an_unreadable_file_without_a_line() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-drakon.toml");
        let err = load(&path).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].line, None);
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{}: cannot read the config file (", path.display())), "{shown}");
    }

    #[test]
    fn error_display_prints_one_problem_per_line() {
        let err = ConfigError {
            path: PathBuf::from("app/drakon.toml"),
            problems: vec![
                ConfigProblem { line: Some(3), message: "first".into() },
                ConfigProblem { line: None, message: "second".into() },
            ],
        };
        assert_eq!(err.to_string(), "app/drakon.toml:3: first\napp/drakon.toml: second");
    }

    #[test]
    fn field_specs_become_typed_fields() {
        let config = parse_ok(&[
            "[models.list.fields]",
            "title = { type = \"text\", unique = true }",
            "[models.event.fields]",
            "at = { type = \"datetime\", default = \"2026-11-27T10:00:00+01:00\" }",
            "until = { type = \"datetime\", default = 2026-11-28T00:00:00Z }",
            "weight = { type = \"float\", default = 2 }",
            "count = { type = \"int\", optional = true }",
            "extra = { type = \"json\", default = { tags = [\"a\", 1], ok = true } }",
            "list = { type = \"ref\", to = \"list\", optional = true, on_delete = \"set_null\" }",
            "owner = { type = \"ref\", to = \"list\" }",
        ]);
        let want = Model::new("event")
            .field(Field::datetime("at").default(Value::DateTime("2026-11-27T09:00:00.000000Z".into())))
            .field(Field::datetime("until").default(Value::DateTime("2026-11-28T00:00:00.000000Z".into())))
            .field(Field::float("weight").default(Value::Float(2.0)))
            .field(Field::int("count").optional())
            .field(Field::json("extra").default(Value::Json(json!({"tags": ["a", 1], "ok": true}))))
            .field(Field::reference("list", "list", OnDelete::SetNull).optional())
            .field(Field::reference("owner", "list", OnDelete::Restrict));
        assert_eq!(config.schema.get_model("event"), Some(&want));
        assert_eq!(config.schema.get_model("list"), Some(&Model::new("list").field(Field::text("title").unique())));
    }

    #[test]
    fn route_keys_fill_the_model_route() {
        let config = parse_ok(&[
            "[models.item.fields]",
            "text = { type = \"text\" }",
            "done = { type = \"bool\" }",
            "[routes.items]",
            "model = \"item\"",
            "verbs = [\"get_list\", \"subscribe\"]",
            "page_size = 20",
            "filters = { done = false }",
            "filter_fields = [\"done\"]",
        ]);
        let route = model_route(&config.schema, "items");
        assert_eq!(route.publish_fields, strings(&["text", "done"]), "publish_fields defaults to every field");
        assert!(route.update_fields.is_empty() && route.create_fields.is_empty());
        assert_eq!(route.verbs, BTreeSet::from([Verb::GetList, Verb::Subscribe]));
        assert_eq!(route.page_size, 20);
        assert_eq!(serde_json::Value::Object(route.fixed_filter.clone()), json!({"done": false}));
        assert_eq!(route.filter_fields, Some(BTreeSet::from(["done".to_string()])));
    }

    #[test]
    fn server_keys_override_defaults() {
        let defaults = ServerConfig { database: PathBuf::from("app/drakon.db"), ..ServerConfig::default() };
        let cases: &[(&[&str], ServerConfig)] = &[
            (&[], defaults.clone()),
            (&["[server]", "heartbeat_secs = 0"], defaults.clone()),
            (
                &[
                    "[server]",
                    "bind = \"[::1]:9000\"",
                    "database = \"/var/lib/drakon/app.db\"",
                    "max_frame_bytes = 1024",
                    "max_subscriptions = 8",
                    "idle_timeout_secs = 60",
                    "ping_interval_secs = 20",
                    "heartbeat_secs = 15",
                    "api_key = \"secret\"",
                ],
                ServerConfig {
                    bind: Some("[::1]:9000".parse().unwrap()),
                    database: PathBuf::from("/var/lib/drakon/app.db"),
                    max_frame_bytes: 1024,
                    max_subscriptions: 8,
                    idle_timeout: Duration::from_secs(60),
                    ping_interval: Duration::from_secs(20),
                    heartbeat_interval: Some(Duration::from_secs(15)),
                    api_key: Some("secret".into()),
                    ..ServerConfig::default()
                },
            ),
        ];
        for (lines, want) in cases {
            assert_eq!(&parse_ok(lines).server, want, "{lines:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_api_key() {
        let server = ServerConfig { api_key: Some("hunter2".into()), ..ServerConfig::default() };
        let shown = format!("{server:?}");
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn broken_configs_report_each_problem_at_its_line() {
        let cases: &[(&str, &[&str], Problems)] = &[
            (
                "toml syntax error",
                &["[models.a.fields]", "x = { type = \"text\" }", "y = { type = \"text\""],
                &[(3, "unclosed inline table, expected `}`")],
            ),
            (
                "unknown key in a field spec",
                &["[models.a.fields]", "x = { type = \"text\" }", "y = { type = \"text\", uniq = true }"],
                &[(
                    3,
                    "unknown field `uniq`, expected one of `type`, `optional`, `default`, `unique`, `to`, `on_delete`",
                )],
            ),
            (
                "field spec that is not a table",
                &["[models.a.fields]", "x = \"text\""],
                &[(2, "invalid type: string \"text\", expected a field spec such as { type = \"text\" }")],
            ),
            (
                "unknown top-level key",
                &["[server]", "bind = \"127.0.0.1:8000\"", "", "[model.a.fields]"],
                &[(4, "unknown field `model`, expected one of `server`, `models`, `routes`")],
            ),
            (
                "unknown server key",
                &["[server]", "port = 8000"],
                &[(
                    2,
                    "unknown field `port`, expected one of `bind`, `database`, `max_frame_bytes`, `max_subscriptions`, \
                     `idle_timeout_secs`, `ping_interval_secs`, `heartbeat_secs`, `api_key`, `admin_secret`, `static_dir`, `log_retention_count`, `log_retention_secs`, `database_url`, `redis_url`, `redis_sharded`, `redis_ca_file`",
                )],
            ),
            (
                "unknown type",
                &["[models.a.fields]", "x = { type = \"txt\" }"],
                &[(2, "unknown type `txt`; use one of text, int, float, bool, datetime, json, ref")],
            ),
            (
                "missing type",
                &["[models.a.fields]", "x = { optional = true }"],
                &[(2, "field needs a type, e.g. { type = \"text\" }")],
            ),
            (
                "ref without to",
                &["[models.a.fields]", "b = { type = \"ref\" }"],
                &[(2, "a ref field needs `to`, the model it refers to, e.g. { type = \"ref\", to = \"todo_list\" }")],
            ),
            (
                "ref to an unknown model",
                &["[models.a.fields]", "x = { type = \"text\" }", "b = { type = \"ref\", to = \"bb\" }"],
                &[(3, "refers to unknown model `bb`")],
            ),
            (
                "unknown on_delete",
                &["[models.a.fields]", "b = { type = \"ref\", to = \"a\", on_delete = \"nullify\" }"],
                &[(2, "unknown on_delete `nullify`; use cascade, restrict or set_null")],
            ),
            (
                "set_null on a required field",
                &["[models.a.fields]", "", "parent = { type = \"ref\", to = \"a\", on_delete = \"set_null\" }"],
                &[(3, "on_delete = \"set_null\" needs the field to be optional")],
            ),
            (
                "to and on_delete on a non-ref field",
                &["[models.a.fields]", "x = { type = \"int\", to = \"a\", on_delete = \"cascade\" }"],
                &[
                    (2, "`to` only applies to fields of type ref; remove it"),
                    (2, "`on_delete` only applies to fields of type ref; remove it"),
                ],
            ),
            (
                "declared id",
                &["[models.a.fields]", "id = { type = \"int\" }", "n = { type = \"id\" }"],
                &[
                    (2, "`id` is implicit in every model; remove this field"),
                    (3, "type id is reserved for the implicit `id` field; use int or ref"),
                ],
            ),
            (
                "default of the wrong type",
                &["[models.a.fields]", "done = { type = \"bool\", default = \"false\" }"],
                &[(2, "bad default: expected a bool, got a string")],
            ),
            (
                "datetime default now",
                &["[models.a.fields]", "at = { type = \"datetime\", default = \"now\" }"],
                &[(
                    2,
                    "default \"now\" is not supported yet; give a fixed time such as \"2026-11-27T10:00:00Z\" or make \
                     the field optional",
                )],
            ),
            (
                "field declared in its own table",
                &["[models.a.fields.x]", "type = \"json\"", "unique = true"],
                &[(1, "json fields cannot be unique")],
            ),
            (
                "bad model name",
                &["[models.a.fields]", "", "[models.Todo.fields]", "x = { type = \"text\" }"],
                &[(3, "model names are lowercase identifiers (a-z, 0-9, _) not starting with _drakon")],
            ),
            (
                "route on an unknown model",
                &["[models.a.fields]", "x = { type = \"text\" }", "[routes.r]", "model = \"nope\""],
                &[(4, "unknown model `nope`")],
            ),
            (
                "route without a model",
                &["[models.a.fields]", "[routes.r]", "page_size = 5"],
                &[(2, "a model route needs `model`, the model it serves, e.g. model = \"todo_list\"")],
            ),
            (
                "publish_fields naming an unknown field",
                &[
                    "[models.a.fields]",
                    "x = { type = \"text\" }",
                    "[routes.r]",
                    "model = \"a\"",
                    "publish_fields = [\"x\", \"y\"]",
                ],
                &[(5, "publish_fields names unknown field `y` of model `a`")],
            ),
            (
                "bad verb name",
                &[
                    "[models.a.fields]",
                    "[routes.r]",
                    "model = \"a\"",
                    "verbs = [",
                    "  \"get_list\",",
                    "  \"destroy\",",
                    "]",
                ],
                &[(
                    6,
                    "unknown verb `destroy`; use one of get_list, get_single, create, update, delete, subscribe, unsubscribe",
                )],
            ),
            (
                "page_size of zero",
                &["[models.a.fields]", "[routes.r]", "model = \"a\"", "page_size = 0"],
                &[(4, "page_size must be between 1 and 1000")],
            ),
            (
                "negative page_size",
                &["[models.a.fields]", "[routes.r]", "model = \"a\"", "page_size = -5"],
                &[(4, "page_size must be between 1 and 1000")],
            ),
            (
                "param mapping to a bad lookup",
                &[
                    "[models.a.fields]",
                    "x = { type = \"text\" }",
                    "[routes.r]",
                    "model = \"a\"",
                    "[routes.r.params]",
                    "ok = \"x\"",
                    "list_id = \"list__id\"",
                ],
                &[(7, "param `list_id` maps to a bad lookup: model `a` has no field `list`")],
            ),
            (
                "bad fixed filter",
                &["[models.a.fields]", "[routes.r]", "model = \"a\"", "filters = { nope = 1 }"],
                &[(4, "fixed filter is invalid: model `a` has no field `nope`")],
            ),
            (
                "unknown route kind",
                &["[routes.r]", "kind = \"stream\""],
                &[(2, "unknown route kind `stream`; use \"model\" or \"channel\"")],
            ),
            (
                "model keys on a channel route",
                &["[routes.chat]", "kind = \"channel\"", "channels = [\"room\"]", "model = \"a\""],
                &[(4, "`model` does not apply to a channel route; remove it")],
            ),
            (
                "channels on a model route",
                &["[models.a.fields]", "[routes.r]", "model = \"a\"", "channels = [\"room\"]"],
                &[(4, "`channels` only applies to channel routes; add kind = \"channel\" or remove it")],
            ),
            (
                "channel route without channels",
                &["[routes.chat]", "kind = \"channel\"", "channels = []"],
                &[(3, "a channel route needs at least one channel")],
            ),
            (
                "route name with a space",
                &["[models.a.fields]", "[routes.\"my route\"]", "model = \"a\""],
                &[(2, "route names may not be empty or contain `|` or spaces")],
            ),
            (
                "bad server values",
                &[
                    "[server]",
                    "bind = \"localhost:8000\"",
                    "database = \"\"",
                    "max_frame_bytes = 0",
                    "heartbeat_secs = -1",
                    "api_key = \"\"",
                ],
                &[
                    (2, "bind must be an IP address and port such as \"127.0.0.1:8000\""),
                    (3, "database must name a SQLite file such as \"todo.db\""),
                    (4, "max_frame_bytes must be a whole number of at least 1, got 0"),
                    (5, "heartbeat_secs must be a whole number of at least 0, got -1"),
                    (6, "api_key is empty; set a key, remove the line or use DRAKON_API_KEY"),
                ],
            ),
            (
                "redis_url that is not a Redis URL",
                &["[server]", "", "redis_url = \"127.0.0.1:6379\""],
                &[(
                    3,
                    "redis_url must be a Redis URL such as \"redis://127.0.0.1:6379\" (rediss:// for TLS; with \
                     redis_sharded, one or more, comma-separated)",
                )],
            ),
            (
                "several Redis URLs without a cluster",
                &["[server]", "redis_url = \"redis://10.0.0.1:7000,redis://10.0.0.2:7000\""],
                &[(
                    2,
                    "several Redis URLs make sense only for a Redis Cluster: set redis_sharded = true, or give one URL",
                )],
            ),
            (
                "ping interval not under the idle timeout",
                &["[server]", "idle_timeout_secs = 20"],
                &[(
                    2,
                    "ping_interval_secs (30) must be shorter than idle_timeout_secs (20), or clients that only answer \
                     pings are closed as idle; lower the one or raise the other",
                )],
            ),
            (
                "two problems in one file, reported in line order",
                &[
                    "[routes.r]",
                    "model = \"nope\"",
                    "",
                    "[models.a.fields]",
                    "x = { type = \"strng\" }",
                    "y = { type = \"text\" }",
                ],
                &[
                    (2, "unknown model `nope`"),
                    (5, "unknown type `strng`; use one of text, int, float, bool, datetime, json, ref"),
                ],
            ),
        ];
        for (name, lines, want) in cases {
            check(name, lines, want);
        }
    }

    #[test]
    fn a_field_with_a_bad_type_causes_no_follow_on_problems() {
        check(
            "bad type named by a route",
            &["[models.a.fields]", "x = { type = \"txt\" }", "[routes.r]", "model = \"a\"", "publish_fields = [\"x\"]"],
            &[(2, "unknown type `txt`; use one of text, int, float, bool, datetime, json, ref")],
        );
    }
}
