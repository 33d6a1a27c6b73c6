//! drakon as a library: load or build an app description, add custom verbs in Rust, and run it.
//!
//! ```no_run
//! use drakon::{App, custom_verb};
//! use serde_json::json;
//! # async fn run() -> anyhow::Result<()> {
//! let app = App::load("examples/todo/drakon.toml".as_ref())?
//!     .custom_verb("todo-list", "ping", custom_verb(|_ctx, _args| async { Ok(json!("pong")) }))?;
//! let running = app.start(None).await?;
//! println!("listening on {}", running.addr);
//! running.wait().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use drakon_core::config::{Config, ServerConfig};
use drakon_core::engine::CustomVerb;
use drakon_core::limits::BUS_QUEUE_BATCHES;
use drakon_core::node::{Alone, Liveness, NodeId};
use drakon_core::schema::RouteKind;
use drakon_core::{Bus, LocalBus, Store};
use drakon_postgres::PgStore;
use drakon_redis::RedisLiveness;
use drakon_server::ServerOptions;
use drakon_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod users;

pub use drakon_core::config;
pub use drakon_core::engine::{VerbContext, VerbError, custom_verb};
pub use drakon_core::{Engine, Schema};
pub use drakon_protocol::{Args, ErrorCode};

/// An app ready to start: its schema, server settings and custom verbs.
#[derive(Debug)]
pub struct App {
    pub config: Config,
}

/// A started app.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub engine: Engine,
    /// This node, and which nodes are alive (with Redis, every node on it; else this one alone).
    pub liveness: Arc<dyn Liveness>,
    /// A login link for the admin page, when the admin secret was generated for this run (and so is known only
    /// from this link).
    pub admin_link: Option<String>,
    /// Installed at start, before anyone can know the address, so a signal is never missed.
    signals: Signals,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl App {
    /// Loads `drakon.toml`; the error lists every problem with its line.
    pub fn load(path: &Path) -> Result<App, config::ConfigError> {
        Ok(App { config: config::load(path)? })
    }

    /// An app described in Rust rather than in a config file.
    pub fn from_schema(schema: Schema, server: ServerConfig) -> App {
        App { config: Config { server, schema, base_dir: std::env::current_dir().unwrap_or_default(), auth: None } }
    }

    /// Adds a custom verb to a model route.
    pub fn custom_verb(mut self, route: &str, name: &str, verb: CustomVerb) -> anyhow::Result<App> {
        let Some(r) = self.config.schema.route_mut(route) else { bail!("there is no route named `{route}`") };
        let RouteKind::Model(spec) = &mut r.kind else {
            bail!("route `{route}` is a channel route; custom verbs live on model routes")
        };
        spec.custom_verbs.insert(name.to_owned(), verb);
        Ok(self)
    }

    /// Opens the store, applies safe migrations, and starts serving on `bind` (or the configured address, or
    /// `127.0.0.1:8000`).
    pub async fn start(self, bind: Option<SocketAddr>) -> anyhow::Result<Running> {
        // TLS (to PostgreSQL and Redis) uses rustls with ring; name it the process default once, so no library
        // has to guess. A second App in the same process finds it installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let checked = self.config.schema.check().map_err(|problems| {
            anyhow::anyhow!(
                "the schema has problems:\n{}",
                problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
            )
        })?;
        let server = self.config.server;
        // The config loader has already resolved a relative path against the config file's directory.
        let store_name = match &server.database_url {
            Some(_) => "postgresql".to_owned(),
            None => server.database.display().to_string(),
        };
        let schema = checked.schema().clone();
        let node = NodeId::new(random_hex::<8>()?);
        let (local, inbox) = LocalBus::new(BUS_QUEUE_BATCHES);
        // With a Redis URL, messages published on the bus go out through Redis and come back to every node's
        // inbox. With PostgreSQL as well, so do row changes: one node at a time relays the shared change log to
        // Redis (see drakon_redis and PgStore::connect_relay). With SQLite there is one node, and changes stay
        // in-process. Node liveness lives on Redis too; without it this node is alone.
        let (redis, liveness) = match &server.redis_url {
            Some(url) => {
                let options =
                    drakon_redis::Options { sharded: server.redis_sharded, ca_file: server.redis_ca_file.clone() };
                let bus = drakon_redis::start(url, options.clone(), local.sink(), schema.clone())
                    .await
                    .context("starting the Redis bus")?;
                let liveness = RedisLiveness::start(url, &options, node.clone())
                    .await
                    .context("starting node liveness on Redis")?;
                (Some(bus), Arc::new(liveness) as Arc<dyn Liveness>)
            }
            None => (None, Arc::new(Alone::new(node.clone())) as Arc<dyn Liveness>),
        };
        let store: Arc<dyn Store> = match (&server.database_url, &redis) {
            (Some(url), Some(redis)) => Arc::new(
                PgStore::connect_relay(url, redis.relay(), server.log_retention, Arc::new(redis.publishing()))
                    .await
                    .context("connecting to PostgreSQL")?,
            ),
            _ => open_store(&server, local.sink()).await?,
        };
        let report = store.migrate(&schema).await.context("the database does not fit the config")?;
        for table in &report.created_tables {
            tracing::info!(table, "created table");
        }
        for column in &report.added_columns {
            tracing::info!(column, "added column");
        }
        if let Some(auth) = self.config.auth.as_ref().filter(|auth| auth.users) {
            users::create_initial(store.as_ref(), &auth.initial_users).await.context("creating initial users")?;
        }
        let limits = drakon_core::EngineLimits { max_subscriptions: server.max_subscriptions };
        let bus: Arc<dyn Bus> = match redis {
            Some(redis) => redis,
            None => Arc::new(local),
        };
        let shared = server.redis_url.is_some();
        let (engine, _fan_out) = Engine::start(node.clone(), checked, store, bus, inbox, limits);
        engine.ready().await;
        if shared {
            engine.share_presence(liveness.as_ref());
        }
        let addr = bind.or(server.bind).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000)));
        let generated = server.admin_secret.is_none();
        let admin_secret = match &server.admin_secret {
            Some(secret) => secret.clone(),
            None => random_hex::<16>()?,
        };
        let listener = listen(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let identity = match &self.config.auth {
            Some(auth) => Some(Arc::new(
                drakon_server::identity::Identity::from_config(auth).map_err(|e| anyhow::anyhow!("[auth]: {e}"))?,
            )),
            None => None,
        };
        let options = ServerOptions {
            max_frame_bytes: server.max_frame_bytes,
            idle_timeout: server.idle_timeout,
            ping_interval: server.ping_interval,
            heartbeat_interval: server.heartbeat_interval,
            api_key: server.api_key.clone(),
            admin_secret: admin_secret.clone(),
            static_dir: server.static_dir.clone(),
            request_head_timeout: server.request_head_timeout,
            max_pending_per_address: server.max_pending_per_address,
            max_requests_per_second: server.max_requests_per_second,
            allowed_origins: server.allowed_origins.clone(),
            identity,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let admin_link = format!("http://{addr}/admin/login?token={admin_secret}");
        let serve_engine = engine.clone();
        let server = tokio::spawn(async move {
            drakon_server::serve(listener, serve_engine, options, async move {
                let _ = stopped.await;
            })
            .await
        });
        tracing::info!(%addr, store = %store_name, %node, "drakon is serving");
        let signals = Signals::install()?;
        Ok(Running { addr, engine, liveness, signals, stop, server, admin_link: generated.then_some(admin_link) })
    }
}

impl Running {
    /// What `drakon serve` prints once it listens: the address, the WebSocket URL and how to reach the admin page.
    pub fn banner(&self) -> String {
        let admin = match &self.admin_link {
            Some(link) => format!(
                "admin: {link}  (secret generated for this run; set admin_secret or DRAKON_ADMIN_SECRET to keep one)"
            ),
            None => format!("admin: http://{}/admin", self.addr),
        };
        format!("drakon listening on http://{0}  (WebSocket: ws://{0}/data/websocket)\n{admin}", self.addr)
    }

    /// Stops accepting, closes connections with 1001 once their in-flight request is done, and waits for that;
    /// then tells the other nodes that this one is gone.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let grace = drakon_core::limits::SHUTDOWN_GRACE;
        let stopped = match tokio::time::timeout(grace, self.server).await {
            Ok(joined) => joined.context("server task failed").and_then(|served| served.context("server failed")),
            Err(_) => Err(anyhow::anyhow!("connections did not close within {grace:?}")),
        };
        self.liveness.leave().await;
        stopped
    }

    /// Runs until the server stops by itself (it only does on error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.await.context("server task failed")?.context("server failed")
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn until_signal(mut self) -> anyhow::Result<()> {
        self.signals.recv().await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// SIGINT and SIGTERM handlers.
#[derive(Debug)]
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
                terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The configured store, publishing to `sink`: PostgreSQL at `database_url` (as a node without a shared bus), or
/// else the SQLite file.
async fn open_store(server: &ServerConfig, sink: drakon_core::store::ChangeSink) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &server.database_url {
        Some(url) => {
            Arc::new(PgStore::connect(url, sink, server.log_retention).await.context("connecting to PostgreSQL")?)
        }
        None => Arc::new(
            SqliteStore::open_with(&server.database, sink, server.log_retention)
                .with_context(|| format!("opening {}", server.database.display()))?,
        ),
    })
}

/// `N` random bytes as hex: the admin secret of a run that configured none (16), a node's id (8).
fn random_hex<const N: usize>() -> anyhow::Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("cannot draw random bytes: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Binds with a deep accept queue: the default of 128 overflows when thousands of clients connect at once (say,
/// after a restart), and each overflowed client waits a second before retrying.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(drakon_core::limits::LISTEN_BACKLOG)
}
