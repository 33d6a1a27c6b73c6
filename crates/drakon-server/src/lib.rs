//! drakon's HTTP and WebSocket front. This is the only crate that knows axum and the WebSocket library; every
//! transport here adapts onto the same [`Engine`].
//!
//! Routes: `GET /data/websocket` (the native protocol), `GET /drakon.js` (the browser client), `GET /healthz`,
//! `GET /readyz`, `POST /api/publish`, `/admin` (the admin page), and the app's own files at `/` when a static
//! directory is configured.

mod admin;
mod http;
mod socket;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use drakon_core::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Per-connection settings of the front.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Larger text frames get a `frame_too_large` error reply; the connection stays open.
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    /// Period of the SwampDragon app heartbeat `{"heartbeat":"1"}`, if enabled.
    pub heartbeat_interval: Option<Duration>,
    /// Key for `POST /api/publish`; without one the endpoint refuses every request.
    pub api_key: Option<String>,
    /// The secret that opens `/admin`.
    pub admin_secret: String,
    /// Files served at `/`.
    pub static_dir: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        use drakon_core::limits;
        ServerOptions {
            max_frame_bytes: limits::DEFAULT_MAX_FRAME_BYTES,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            ping_interval: limits::DEFAULT_PING_INTERVAL,
            heartbeat_interval: None,
            api_key: None,
            admin_secret: String::new(),
            static_dir: None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    options: Arc<ServerOptions>,
    /// Flips to true when the server begins shutting down; every connection task watches it.
    shutdown: watch::Receiver<bool>,
}

/// The HTTP routes, for embedding into a larger axum app.
pub fn router(engine: Engine, options: ServerOptions, shutdown: watch::Receiver<bool>) -> Router {
    let state = AppState { engine, options: Arc::new(options), shutdown };
    let static_dir = state.options.static_dir.clone();
    let router = Router::new()
        .route("/data/websocket", get(socket::upgrade))
        .route("/drakon.js", get(http::client_script))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/api/publish", post(http::publish))
        .route("/admin", get(admin::page))
        .route("/admin/admin.js", get(admin::script))
        .route("/admin/admin.css", get(admin::style))
        .route("/admin/login", get(admin::login_link).post(admin::login_form))
        .route("/admin/logout", post(admin::logout))
        .route("/admin/api/schema", get(admin::schema))
        .with_state(state);
    match static_dir {
        Some(dir) => router.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => router,
    }
}

/// Serves until `shutdown` resolves, then stops accepting, closes every connection with 1001 after its in-flight
/// request completes, and returns.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = router(engine, options, rx);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}
