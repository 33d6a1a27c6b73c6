//! Reads `drakon.toml`: the `[server]` settings and the `[models]` and `[routes]` that become a [`Schema`].
//!
//! Every problem carries the line it is about so that `drakon check` can print `path:line: message` for each one.
//! A TOML syntax or shape error (an unknown key, a string where a list belongs) stops reading at the first one, as
//! the toml crate does; past that, every semantic problem in the file is collected, including those that
//! [`Schema::finish`] finds; each of those carries the path of what it is about (`["routes", "todo-item",
//! "publish_fields"]`), which is mapped to the line where the file declares that.
//!
//! By job: `raw` is the file as written (serde structs whose keys keep their spans), `read` turns it into a
//! [`ServerConfig`] and a [`Schema`] with the problems it finds on the way, recording where each thing is declared,
//! and `locate` maps a problem's path to that line. This module ties them together.

mod locate;
mod raw;
mod read;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::limits;
use crate::schema::Schema;
use raw::RawConfig;
use read::Reader;

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

/// The shortest admin secret accepted, from the file or the environment.
const MIN_ADMIN_SECRET_LEN: usize = 12;

/// The environment variable that overrides `[auth] jwt_secret`.
pub const JWT_SECRET_ENV: &str = "DRAKON_JWT_SECRET";

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
    /// How clients sign in; `None` without an `[auth]` table (everyone is anonymous).
    pub auth: Option<AuthConfig>,
}

/// The `[auth]` table: how signed tokens are checked and read.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The HS256 secret; tokens signed with it are accepted.
    pub jwt_secret: Option<String>,
    /// A PEM public key (RSA for RS256, Ed25519 for EdDSA); tokens signed with its private key are accepted.
    pub jwt_public_key_file: Option<PathBuf>,
    /// A JWKS file (RFC 7517, `{"keys": [...]}`): RSA and Ed25519 public keys, each picked by the `kid` a token
    /// names, so that an issuer can rotate keys by publishing the next one before signing with it.
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// The claim holding the user's roles (a list of strings).
    pub roles_claim: String,
    /// The claim holding the user's public information.
    pub info_claim: String,
    /// Built-in users (`users = true`): accounts in the store, `POST /auth/login` and a session cookie.
    pub users: bool,
    /// The app's own login (`auth_url`): an upgrade's cookies and `Authorization` are forwarded there, and the app
    /// answers with the user or 401.
    pub auth_url: Option<String>,
    /// How long an `auth_url` answer is reused for the same credentials.
    pub auth_url_cache: std::time::Duration,
    /// How long drakon waits for `auth_url` before refusing the upgrade with `auth_unavailable`.
    pub auth_url_timeout: std::time::Duration,
    /// Built-in users created at start when no user of that name exists yet (`[[auth.initial_users]]`), for demos
    /// and first runs; their passwords sit in the config file, so change them (`drakon user passwd`) for real use.
    pub initial_users: Vec<InitialUser>,
}

/// One `[[auth.initial_users]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct InitialUser {
    pub name: String,
    pub password: String,
    pub roles: Vec<String>,
}

impl fmt::Debug for InitialUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitialUser").field("name", &self.name).field("roles", &self.roles).finish_non_exhaustive()
    }
}

impl Default for AuthConfig {
    /// Nothing configured: the claim names and `auth_url` timings that an empty `[auth]` table gets.
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            jwt_public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            roles_claim: "roles".into(),
            info_claim: "info".into(),
            users: false,
            auth_url: None,
            auth_url_cache: std::time::Duration::from_secs(30),
            auth_url_timeout: std::time::Duration::from_secs(3),
            initial_users: Vec::new(),
        }
    }
}

// Hand-written so that the secret never reaches a log line.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("jwt_public_key_file", &self.jwt_public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("roles_claim", &self.roles_claim)
            .field("info_claim", &self.info_claim)
            .field("users", &self.users)
            .field("auth_url", &self.auth_url)
            .field("auth_url_cache", &self.auth_url_cache)
            .field("auth_url_timeout", &self.auth_url_timeout)
            .field("initial_users", &self.initial_users)
            .finish()
    }
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
    /// How long a client has to send a whole request head (the next one, on a kept-alive connection).
    pub request_head_timeout: Duration,
    /// Connections one client address may hold open before sending a whole request head.
    pub max_pending_per_address: usize,
    /// Requests one connection may send per second (with a burst of as many again).
    pub max_requests_per_second: u32,
    /// Origins besides the server's own whose pages may open WebSockets and use the admin cookie (`*` for any).
    pub allowed_origins: Vec<String>,
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
            request_head_timeout: limits::DEFAULT_REQUEST_HEAD_TIMEOUT,
            max_pending_per_address: limits::DEFAULT_MAX_PENDING_PER_ADDRESS,
            max_requests_per_second: limits::DEFAULT_MAX_REQUESTS_PER_SECOND,
            allowed_origins: Vec::new(),
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
            .field("request_head_timeout", &self.request_head_timeout)
            .field("max_pending_per_address", &self.max_pending_per_address)
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("allowed_origins", &self.allowed_origins)
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
        if secret.len() < MIN_ADMIN_SECRET_LEN {
            return Err(ConfigError {
                path: path.to_owned(),
                problems: vec![ConfigProblem {
                    line: None,
                    message: format!("{ADMIN_SECRET_ENV} must be at least {MIN_ADMIN_SECRET_LEN} characters"),
                }],
            });
        }
        config.server.admin_secret = Some(secret);
    }
    if let Ok(secret) = std::env::var(JWT_SECRET_ENV)
        && !secret.is_empty()
        && let Some(auth) = &mut config.auth
    {
        auth.jwt_secret = Some(secret);
    }
    Ok(config)
}

/// Parses config text; `path` names the file in problems and anchors relative paths. Reads no environment.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError { path: path.to_owned(), problems };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| locate::line_of(text, s.start));
        fail(vec![ConfigProblem { line, message: e.message().to_owned() }])
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut reader = Reader::new(text);
    let server = reader.server(raw.server, &base_dir);
    let auth = raw.auth.map(|auth| reader.auth(auth, &base_dir));
    let mut schema = reader.schema(raw.models, raw.routes);
    let (mut problems, anchors) = reader.into_parts();
    for problem in schema.finish() {
        let line = anchors.locate(&problem.path);
        // Without a line the message alone would not say where; the dotted path does.
        let message = if line.is_some() { problem.message } else { problem.to_string() };
        problems.push(ConfigProblem { line, message });
    }
    if problems.is_empty() {
        Ok(Config { server, schema, base_dir, auth })
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(fail(problems))
    }
}
