//! drakon's HTTP and WebSocket front. This is the only crate that knows axum and the WebSocket library; every
//! transport here adapts onto the same [`Engine`].
//!
//! Routes: `GET /data/websocket` (the native protocol), `GET /drakon.js` (the browser client), `GET /healthz`,
//! `GET /readyz`, `POST /api/publish`, `/admin` (the admin page), and the app's own files at `/` when a static
//! directory is configured.

mod admin;
mod app_login;
#[cfg(feature = "autobahn")]
pub mod autobahn;
mod http;
pub mod identity;
mod origin;
mod protocol;
mod socket;
mod sockjs;
mod static_files;
mod strict;
pub mod users;
mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use drakon_core::{Engine, limits};
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
    /// How long a client has to send a whole request head (the next one, on a kept-alive connection).
    pub request_head_timeout: Duration,
    /// Connections one client address may hold that have not yet sent a whole request head; more are closed at
    /// accept.
    pub max_pending_per_address: usize,
    /// Requests one connection may send per second (with a burst of as many again); more are `rate_limited`.
    pub max_requests_per_second: u32,
    /// Origins besides the server's own whose pages may open WebSockets and use the admin cookie
    /// (`http://app.example:3000`; `*` for any).
    pub allowed_origins: Vec<String>,
    /// How clients sign in (`[auth]`); without it every client is anonymous.
    pub identity: Option<Arc<identity::Identity>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_frame_bytes: limits::DEFAULT_MAX_FRAME_BYTES,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            ping_interval: limits::DEFAULT_PING_INTERVAL,
            heartbeat_interval: None,
            api_key: None,
            admin_secret: String::new(),
            static_dir: None,
            request_head_timeout: limits::DEFAULT_REQUEST_HEAD_TIMEOUT,
            max_pending_per_address: limits::DEFAULT_MAX_PENDING_PER_ADDRESS,
            max_requests_per_second: limits::DEFAULT_MAX_REQUESTS_PER_SECOND,
            allowed_origins: Vec::new(),
            identity: None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    engine: Engine,
    options: Arc<ServerOptions>,
    /// Flips to true when the server begins shutting down; every connection task watches it.
    shutdown: watch::Receiver<bool>,
    /// Open WebSocket connections, which axum's graceful shutdown does not wait for.
    connections: Arc<Connections>,
    /// What only the HTTP endpoints use, behind one pointer: every WebSocket's task holds an `AppState`, and each
    /// field more would make every idle connection bigger.
    http: Arc<HttpState>,
}

/// The state of the HTTP endpoints (see [`AppState::http`]).
#[derive(Debug, Default)]
struct HttpState {
    /// Live admin logins.
    logins: admin::Logins,
    /// Failed logins, by address and by name.
    login_throttle: users::Throttle,
    /// SockJS sessions between their requests.
    sockjs: sockjs::Sessions,
}

/// The client address of a request, when drakon's own accept loop serves it (not when the router is embedded).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddress(std::net::SocketAddr);

impl PeerAddress {
    pub(crate) fn ip(&self) -> std::net::IpAddr {
        self.0.ip()
    }
}

/// Counts live connection tasks so that shutdown can wait for their close frames.
#[derive(Debug, Default)]
struct Connections {
    open: std::sync::atomic::AtomicUsize,
    closed: tokio::sync::Notify,
}

/// Held by a connection task for as long as it runs.
struct ConnectionGuard(Arc<Connections>);

impl Connections {
    fn enter(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ConnectionGuard(self.clone())
    }

    async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            if self.open.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.closed.notify_waiters();
    }
}

/// The HTTP routes, for embedding into a larger axum app.
pub fn router(engine: Engine, options: ServerOptions, shutdown: watch::Receiver<bool>) -> Router {
    router_with(engine, options, shutdown, Arc::default())
}

fn router_with(
    engine: Engine,
    options: ServerOptions,
    shutdown: watch::Receiver<bool>,
    connections: Arc<Connections>,
) -> Router {
    let state = AppState { engine, options: Arc::new(options), shutdown, connections, http: Arc::default() };
    let static_dir = state.options.static_dir.clone();
    let router = Router::new()
        .route("/data/websocket", get(socket::upgrade))
        .route("/data", get(sockjs::greeting))
        .route("/settings.js", get(sockjs::settings))
        .route("/data/", get(sockjs::greeting))
        .route("/data/info", get(sockjs::info).options(sockjs::info))
        .route("/data/{server}/{session}/{transport}", post(sockjs::transport).options(sockjs::transport))
        .route("/drakon.js", get(http::client_script))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        // The handler enforces its own cap, so every oversize body gets drakon's JSON error, not axum's plain 413.
        .route("/api/publish", post(http::publish).layer(DefaultBodyLimit::disable()))
        .route("/auth/login", post(users::login))
        .route("/auth/logout", post(users::logout))
        .route("/auth/me", get(users::me))
        .route("/admin", get(admin::page))
        .route("/admin/admin.js", get(admin::script))
        .route("/admin/admin.css", get(admin::style))
        .route("/admin/login", get(admin::login_link).post(admin::login_form))
        .route("/admin/logout", post(admin::logout))
        .route("/admin/api/schema", get(admin::schema))
        .route("/admin/api/connected", get(admin::connected))
        .route("/admin/api/presence", get(admin::presence))
        .with_state(state);
    match static_dir {
        Some(dir) => router.fallback_service(static_files::router(dir)),
        None => router,
    }
}

/// Serves until `shutdown` resolves, then stops accepting, closes every connection with 1001 after its in-flight
/// request completes, and returns.
///
/// drakon runs its own accept loop (hyper's HTTP/1 connection, with upgrades) rather than `axum::serve`, so that an
/// upgraded WebSocket is still a plain `TcpStream` underneath: its queue can then write to it directly (see
/// `outbox::Direct`). [`router`] embedded in another server still works, through the generic upgraded stream.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let connections = Arc::<Connections>::default();
    let (head_timeout, max_pending) = (options.request_head_timeout, options.max_pending_per_address);
    let app = router_with(engine, options, rx.clone(), connections.clone());
    let service = hyper_util::service::TowerToHyperService::new(app);
    // Every HTTP connection task holds a receiver; shutdown waits until all are gone.
    let (open_tx, open_rx) = watch::channel(());
    let pending = Arc::<Pending>::default();
    let mut accept_errors = AcceptErrors::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_errors.failed(e, &pending).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((waiting, shed)) = pending.admit(peer.ip(), max_pending) else {
            // Dropped at once: the address already has as many connections waiting for their first request.
            tracing::debug!(%peer, "too many connections from this address without a request; closed");
            continue;
        };
        // Nagle's algorithm stays on: at low rates it holds nothing back (no data is unacknowledged), and under load
        // it merges a connection's direct writes into fewer segments, which halves the CPU per delivery at 300,000
        // deliveries/s (measured with `drakon-bench fanout`; with TCP_NODELAY the fan-out fell behind there).
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(head_timeout)
            .serve_connection(
                hyper_util::rt::TokioIo::new(strict::StrictHeads::new(stream)),
                FirstRequest { inner: service.clone(), waiting: std::sync::Mutex::new(Some(waiting)), peer },
            )
            .with_upgrades();
        let (mut stopping, open) = (rx.clone(), open_rx.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                // Still silent when the server ran out of descriptors: closed to make room.
                () = shed.notified() => Ok(()),
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    // Finishes the request in flight, if any, then closes; an upgrade already done is unaffected.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "http connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    let _ = tx.send(true);
    let grace = drakon_core::limits::SHUTDOWN_GRACE;
    if tokio::time::timeout(grace, open_tx.closed()).await.is_err() {
        tracing::warn!("some HTTP requests did not finish within {grace:?}");
    }
    // Upgraded connections live outside hyper's tracking: wait until each has sent its close frame.
    if tokio::time::timeout(grace, connections.all_closed()).await.is_err() {
        tracing::warn!("some connections did not close within {grace:?}");
    }
    Ok(())
}

/// The connections that have not yet sent a whole request head: how many per client address, and each one's way to
/// be closed, oldest first, for when the server runs out of file descriptors.
#[derive(Debug, Default)]
struct Pending {
    inner: std::sync::Mutex<PendingInner>,
}

#[derive(Debug, Default)]
struct PendingInner {
    by_address: std::collections::HashMap<std::net::IpAddr, usize>,
    /// By admission order.
    shed: std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>,
    admitted: u64,
}

/// One connection counted in [`Pending`] until its first request head arrives or it closes.
#[derive(Debug)]
struct Waiting {
    pending: Arc<Pending>,
    address: std::net::IpAddr,
    number: u64,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `address`, unless `max` from there are waiting already. The `Notify` fires
    /// when the connection is to be closed to free its descriptor.
    fn admit(self: &Arc<Self>, address: std::net::IpAddr, max: usize) -> Option<(Waiting, Arc<tokio::sync::Notify>)> {
        let mut inner = self.lock();
        let count = inner.by_address.entry(address).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        inner.admitted += 1;
        let (number, shed) = (inner.admitted, Arc::<tokio::sync::Notify>::default());
        inner.shed.insert(number, shed.clone());
        Some((Waiting { pending: self.clone(), address, number }, shed))
    }

    /// Closes up to `count` of the longest-waiting connections; how many.
    fn shed_oldest(&self, count: usize) -> usize {
        let mut inner = self.lock();
        let mut shed = 0;
        while shed < count {
            let Some((_, connection)) = inner.shed.pop_first() else { break };
            connection.notify_one();
            shed += 1;
        }
        shed
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut inner = self.pending.lock();
        inner.shed.remove(&self.number);
        if let Some(count) = inner.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                inner.by_address.remove(&self.address);
            }
        }
    }
}

/// A connection's service: the app's, and the first request it sees ends the connection's wait.
#[derive(Debug)]
struct FirstRequest<S> {
    inner: S,
    waiting: std::sync::Mutex<Option<Waiting>>,
    /// The client's address, given to every request as a [`PeerAddress`] extension.
    peer: std::net::SocketAddr,
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for FirstRequest<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: hyper::Request<B>) -> Self::Future {
        drop(self.waiting.lock().unwrap_or_else(|e| e.into_inner()).take());
        request.extensions_mut().insert(PeerAddress(self.peer));
        self.inner.call(request)
    }
}

/// Failed `accept`s since the last log line.
#[derive(Debug, Default)]
struct AcceptErrors {
    since_logged: u64,
    shed_since_logged: usize,
    logged: Option<std::time::Instant>,
}

impl AcceptErrors {
    /// A peer that gave up in the backlog is nothing. Out of file descriptors, the longest-waiting silent
    /// connections are closed to make room (see [`limits::PENDING_SHED_AT_FILE_LIMIT`]) and `accept` is tried again
    /// as soon as they are gone, so health checks and new clients keep being served; with nothing to close, or on
    /// any other error, the next try is 100 ms later. Failures are logged once per interval with a count.
    async fn failed(&mut self, e: std::io::Error, pending: &Pending) {
        use std::io::ErrorKind;
        if matches!(e.kind(), ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused)
        {
            return;
        }
        // EMFILE and ENFILE: this process's descriptors, or the whole system's.
        let out_of_files = matches!(e.raw_os_error(), Some(24 | 23));
        let shed = if out_of_files { pending.shed_oldest(limits::PENDING_SHED_AT_FILE_LIMIT) } else { 0 };
        self.since_logged += 1;
        self.shed_since_logged += shed;
        let now = std::time::Instant::now();
        if self.logged.is_none_or(|at| now.duration_since(at) >= limits::ACCEPT_ERROR_LOG_INTERVAL) {
            tracing::error!(
                error = %e,
                failed = self.since_logged,
                closed_silent = self.shed_since_logged,
                "accept failed; closing connections that sent nothing and retrying"
            );
            (self.since_logged, self.shed_since_logged) = (0, 0);
            self.logged = Some(now);
        }
        let pause = if shed > 0 { std::time::Duration::from_millis(5) } else { std::time::Duration::from_millis(100) };
        tokio::time::sleep(pause).await;
    }
}
