//! The WebSocket transport: one task per connection owns its socket's reading and every write that can wait, and
//! carries its session's protocol (today the native one, see `protocol`). Pings, the idle timeout and the close
//! codes below are the transport's own; what the frames say is the protocol's.
//!
//! The task waits on inbound frames, its bounded outbound queue (fed by the hub, which closes it when the client
//! cannot keep up), the ping/idle timer, the optional app heartbeat and shutdown, polling each from one loop that
//! keeps its futures across wake-ups. Requests are handled one at a time, in order, so a client's replies keep the
//! order of its requests. While the task has nothing of its own to write, the hub may put a frame straight onto the
//! socket (see `drakon_core::outbox`). Every client mistake gets an error reply; only an idle timeout, a frame past
//! the hard cap or against the framing rules, a full queue or shutdown closes the socket, each with its own close
//! code.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::{Request as HttpRequest, State};
use axum::response::Response;
use bytes::Bytes;
use drakon_core::engine::Principal;
use drakon_core::limits::{self, CLOSE_GRACE, OUTBOUND_QUEUE_FRAMES, WRITE_STALL_TIMEOUT};
use drakon_core::outbox::{Batch, Outbox};
use drakon_protocol::ErrorCode;
use drakon_protocol::websocket::{Message, Opcode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior, Sleep, interval_at};

use crate::AppState;
use crate::protocol::{Gate, NATIVE, Protocol, answer, clock_ms};
use crate::strict::StrictHeads;
use crate::wire::{Inbound, SharedTcp, Wire, accept, refuse};

/// Close code when the server shuts down (RFC 6455 "going away"); clients reconnect elsewhere or later.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code when a connection sent nothing, not even a pong, for the idle timeout.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4000;
/// Close code for a subscriber whose outbound queue stayed full, or that must reload what it missed; it may
/// reconnect and subscribe again (resuming with `since`).
pub const SLOW_CONSUMER_CLOSE_CODE: u16 = 4008;
/// Close code for a session whose token expired without a fresh one (`auth` again, or reconnect with a new token).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Messages beyond this size are not even buffered: the connection closes with 1009. Between the configured limit
/// and this cap a frame is read and answered with `frame_too_large`, so an honest mistake does not cost the
/// connection.
fn hard_cap(max_frame_bytes: usize) -> usize {
    (max_frame_bytes * 4).max(1 << 20)
}

pub async fn upgrade(State(state): State<AppState>, mut request: HttpRequest) -> Response {
    let (response, on_upgrade) = match accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refusal) => return refuse(refusal),
    };
    if !crate::origin::origin_allowed(&state.options, request.headers()) {
        return refuse((
            axum::http::StatusCode::FORBIDDEN,
            "this page's origin may not open WebSockets here: add it to allowed_origins",
        ));
    }
    // Who the session acts for, as a user and a flag rather than a `Principal`: eight bytes less in every
    // connection's task, which keeps it within a smaller allocation.
    let (user, admin) = match who(&state, request.uri(), request.headers()).await {
        Ok(who) => who,
        Err(response) => return response,
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
        };
        let cap = hard_cap(state.options.max_frame_bytes);
        // Served by drakon's own accept loop, the stream is a `TcpStream` that the queue can write to directly;
        // embedded in another server, it is whatever that server upgraded.
        match upgraded.downcast::<TokioIo<StrictHeads<TcpStream>>>() {
            Ok(parts) => {
                let tcp = SharedTcp(Arc::new(parts.io.into_inner().into_inner()));
                let outbox = Outbox::with_direct(OUTBOUND_QUEUE_FRAMES, &NATIVE, Box::new(tcp.clone()));
                run(Box::new(Wire::new(tcp, cap, parts.read_buf)), outbox, state, user, admin).await;
            }
            Err(upgraded) => {
                let outbox = Outbox::new(OUTBOUND_QUEUE_FRAMES, &NATIVE);
                let wire = Box::new(Wire::new(TokioIo::new(upgraded), cap, Bytes::new()));
                run(wire, outbox, state, user, admin).await;
            }
        }
    });
    response
}

/// The principal of [`who`]'s answer.
pub(crate) fn principal(user: Option<Arc<drakon_core::User>>, admin: bool) -> Principal {
    match (user, admin) {
        (Some(user), _) => Principal::User(user),
        (None, true) => Principal::Admin,
        (None, false) => Principal::Anonymous,
    }
}

/// Whom an upgrade request signs in as, in this order: a token (`?token=`, or `Authorization: Bearer` when the
/// server takes tokens); the admin login cookie; a built-in user's session cookie; the app's own login (`auth_url`),
/// asked with the request's cookies and `Authorization`. With none of them the session is anonymous, and may still
/// sign in with the `auth` request. A credential that is presented and refused refuses the upgrade.
pub(crate) async fn who(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> Result<(Option<Arc<drakon_core::User>>, bool), Response> {
    let identity = state.options.identity.as_deref();
    if let Some(token) = presented_token(uri, headers, identity.is_some_and(|i| i.takes_tokens())) {
        return sign_in(state, &token).map(|user| (Some(user), false)).map_err(refuse_with);
    }
    if crate::admin::has_admin_login(state, headers) {
        return Ok((None, true));
    }
    if let Some(user) = crate::users::session_user(state, headers).await.map_err(crate::users::store_error)? {
        return Ok((Some(user), false));
    }
    if let Some(app) = identity.and_then(|i| i.app_login()) {
        return app.user(headers).await.map(|user| (user, false)).map_err(refuse_with);
    }
    Ok((None, false))
}

/// The token an upgrade request carries: `?token=`, or `Authorization: Bearer` if `bearer` (otherwise that header
/// is the app's, for `auth_url`).
fn presented_token(uri: &axum::http::Uri, headers: &axum::http::HeaderMap, bearer: bool) -> Option<String> {
    let from_query = uri.query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(|token| percent_encoding::percent_decode_str(token).decode_utf8_lossy().into_owned())
    });
    let from_header = || crate::http::bearer(headers).filter(|_| bearer).map(|t| t.trim().to_owned());
    from_query.or_else(from_header)
}

/// The user a token names, with this server's `[auth]`.
pub(crate) fn sign_in(state: &AppState, token: &str) -> Result<Arc<drakon_core::User>, crate::identity::Refused> {
    let Some(identity) = &state.options.identity else {
        return Err(crate::identity::Refused {
            code: drakon_protocol::ErrorCode::PermissionDenied,
            message: "this server takes no tokens: configure [auth]".into(),
        });
    };
    identity.verify(token)
}

/// An upgrade refused for its credentials, with their error code so a client can tell why: 401, or 503 when the
/// app's login endpoint could not say.
fn refuse_with(refused: crate::identity::Refused) -> Response {
    let status = match refused.code {
        ErrorCode::AuthUnavailable => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        _ => axum::http::StatusCode::UNAUTHORIZED,
    };
    let body = serde_json::json!({"code": refused.code.as_str(), "message": refused.message});
    axum::response::IntoResponse::into_response((status, axum::Json(body)))
}

/// Ticks every `period`, the first time one period from now (a fresh connection needs no ping).
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// When a session's token runs out: a timer for the notice asking for a fresh one, then for the close.
struct Expiry {
    expires: u64,
    noticed: bool,
    timer: Pin<Box<Sleep>>,
}

impl Expiry {
    fn arm(expires: u64) -> Expiry {
        let notice = Instant::now() + until_unix(expires).saturating_sub(drakon_core::limits::TOKEN_REFRESH_NOTICE);
        Expiry { expires, noticed: false, timer: Box::pin(tokio::time::sleep_until(notice)) }
    }

    /// The timer fired: the first time, the expiry to announce (and the timer now runs to the close); then `None`.
    fn next(&mut self) -> Option<u64> {
        if self.noticed {
            return None;
        }
        self.noticed = true;
        let close = Instant::now() + until_unix(self.expires) + drakon_core::limits::TOKEN_EXPIRY_GRACE;
        self.timer.as_mut().reset(close);
        Some(self.expires)
    }
}

/// How long until `unix` seconds since the epoch; zero if that has passed.
fn until_unix(unix: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(unix).saturating_sub(now)
}

/// What woke the connection task.
enum Wake {
    Inbound(Inbound),
    /// The hub gave up on the connection (its queue overflowed, or its model's log no longer reaches back).
    Dropped,
    /// A write has not finished for [`WRITE_STALL_TIMEOUT`].
    Stalled,
    /// Writing failed: the peer is gone.
    WriteFailed,
    Ping,
    Heartbeat,
    /// The session's token is about to expire, or has.
    Expiry,
    Shutdown,
}

/// How the connection ends.
enum End {
    /// The stream is gone: nothing more to send.
    Gone,
    /// The client sent its close frame: answer it.
    Answer(Option<u16>),
    /// We close, with this code and reason; `true` drops what is still queued.
    Close(u16, &'static str, bool),
}

const SLOW_CONSUMER: &str = "slow consumer: reconnect and subscribe again";

/// The connection task. `wire` comes boxed: the task lives as long as the connection, and an argument of an
/// `async fn` is kept twice in its future.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut wire: Box<Wire<S>>,
    outbox: Arc<Outbox>,
    mut state: AppState,
    user: Option<Arc<drakon_core::User>>,
    admin: bool,
) {
    // Every local here that lives across an await sits in every idle connection's task, so `state`'s fields are used
    // in place rather than cloned, and the protocol is the native one by name.
    let _open = state.connections.enter();
    let mut session = state.engine.open_session(outbox.clone(), principal(user, admin));
    // A session the upgrade signed in learns as whom before anything else, as an `auth` reply would tell it.
    if let Some(user) = session.principal.user() {
        outbox.hold();
        wire.outbound.push(NATIVE.signed_in(user));
    }
    let mut rate = crate::protocol::RateLimit::new(state.options.max_requests_per_second);
    // Armed only for a session whose token expires: first the notice asking for a fresh one, then the close. Boxed,
    // to keep it out of every other connection's task.
    let mut expiry = session.expires().map(|e| Box::new(Expiry::arm(e)));
    let mut ping = ticker(state.options.ping_interval);
    // Whether the session is in a presence room, and `ping` ticks at the presence pace.
    let mut watching = false;
    let mut heartbeat = state.options.heartbeat_interval.map(ticker);
    let mut last_seen = clock_ms();
    // Armed (and boxed, to keep it out of every idle task) only while a write waits on the socket.
    let mut stall: Option<Pin<Box<Sleep>>> = None;
    // Made once and kept: a wake-up of this task polls what it waits on, it does not rebuild futures or re-register.
    let mut stopping = pin!(state.shutdown.wait_for(|stop| *stop));
    tracing::debug!(conn = session.conn, "connection opened");

    let end = loop {
        // Shutdown first; then writing what is queued; then, only once it is all written, the hub's queue and the
        // socket. A client that does not read stops being read from, and its queue fills until the hub gives up on
        // it; the stall timer ends it even if nothing more is published.
        let wake = poll_fn(|cx| {
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            loop {
                if wire.has_output() {
                    match wire.poll_write_out(cx) {
                        Poll::Ready(Ok(())) => stall = None,
                        Poll::Ready(Err(_)) => return Poll::Ready(Wake::WriteFailed),
                        Poll::Pending => {
                            let timer = stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
                            if timer.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(Wake::Stalled);
                            }
                            if outbox.poll_closed(cx).is_ready() {
                                return Poll::Ready(Wake::Dropped);
                            }
                            return Poll::Pending;
                        }
                    }
                }
                match wire.poll_batch(cx, &outbox) {
                    Poll::Ready(Batch::Frames) => continue,
                    Poll::Ready(Batch::Closed) => return Poll::Ready(Wake::Dropped),
                    Poll::Pending => break,
                }
            }
            if let Poll::Ready(inbound) = wire.poll_message(cx) {
                return Poll::Ready(Wake::Inbound(inbound));
            }
            if ping.poll_tick(cx).is_ready() {
                return Poll::Ready(Wake::Ping);
            }
            if let Some(heartbeat) = &mut heartbeat
                && heartbeat.poll_tick(cx).is_ready()
            {
                return Poll::Ready(Wake::Heartbeat);
            }
            if let Some(expiry) = &mut expiry
                && expiry.timer.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Wake::Expiry);
            }
            Poll::Pending
        })
        .await;
        let message = match wake {
            Wake::Inbound(Inbound::Message(message)) => message,
            Wake::Inbound(Inbound::Invalid(e)) => {
                tracing::debug!(conn = session.conn, error = %e, "websocket protocol error");
                break End::Close(e.close_code(), e.reason(), true);
            }
            Wake::Inbound(Inbound::Gone) | Wake::WriteFailed => break End::Gone,
            Wake::Dropped => {
                break End::Close(SLOW_CONSUMER_CLOSE_CODE, outbox.close_reason().unwrap_or(SLOW_CONSUMER), true);
            }
            Wake::Stalled => break End::Close(SLOW_CONSUMER_CLOSE_CODE, SLOW_CONSUMER, true),
            Wake::Ping => {
                let idle = match watching {
                    true => state.options.idle_timeout.min(limits::PRESENCE_IDLE_TIMEOUT),
                    false => state.options.idle_timeout,
                };
                if u128::from(clock_ms().wrapping_sub(last_seen)) >= idle.as_millis() {
                    break End::Close(CLOSE_IDLE_TIMEOUT, "idle timeout", false);
                }
                outbox.hold();
                wire.push_control(Opcode::Ping, b"");
                continue;
            }
            Wake::Heartbeat => {
                outbox.hold();
                wire.outbound.push(NATIVE.heartbeat());
                continue;
            }
            Wake::Expiry => match expiry.as_mut().map(|e| e.next()) {
                Some(Some(expires)) => {
                    outbox.hold();
                    wire.outbound.push(NATIVE.token_expiring(expires));
                    continue;
                }
                _ => break End::Close(CLOSE_TOKEN_EXPIRED, "token expired: sign in again", false),
            },
            Wake::Shutdown => break End::Close(CLOSE_GOING_AWAY, "server shutting down", false),
        };
        last_seen = clock_ms();
        // From here until this task has written its answer, events queue up: a reply goes before the events
        // published while its request was handled (a subscription's first events follow its snapshot).
        outbox.hold();
        let reply = match message {
            // Boxed: a request's future is large, and inline it would sit in every idle connection's task.
            Message::Text(t) => {
                let gate = Gate {
                    identity: state.options.identity.as_deref(),
                    budget: &mut rate,
                    per_second: state.options.max_requests_per_second,
                    max_bytes: state.options.max_frame_bytes,
                };
                Box::pin(answer(&NATIVE, &state.engine, &mut session, gate, &t)).await
            }
            Message::Binary(_) => {
                Some(NATIVE.refusal(ErrorCode::BadJson, "binary frames are not supported; send JSON as text frames"))
            }
            Message::Ping(payload) => {
                wire.push_control(Opcode::Pong, &payload);
                None
            }
            Message::Pong(_) => None,
            Message::Close(close) => break End::Answer(close.map(|(code, _)| code)),
        };
        if let Some(reply) = reply {
            wire.outbound.push(reply);
        }
        // A fresh token (`auth` again) moves the deadline.
        if session.expires() != expiry.as_ref().map(|e| e.expires) {
            expiry = session.expires().map(|e| Box::new(Expiry::arm(e)));
        }
        // A member of a presence room must be seen to vanish quickly, so it is pinged more often.
        if session.in_presence() != watching {
            watching = session.in_presence();
            ping = ticker(match watching {
                true => state.options.ping_interval.min(limits::PRESENCE_PING_INTERVAL),
                false => state.options.ping_interval,
            });
        }
    };
    // No more direct writes: the close frame must be the last frame on the wire.
    wire.close_queue(&outbox);
    let conn = session.conn;
    state.engine.close_session(session);
    // A client that fell behind has a full socket: our close frame leaves only once it reads again, so it gets as long
    // as a stalled write does. Any other close is quick, or not worth waiting for.
    let grace = match end {
        End::Close(SLOW_CONSUMER_CLOSE_CODE, ..) => WRITE_STALL_TIMEOUT,
        _ => CLOSE_GRACE,
    };
    let _ = tokio::time::timeout(grace, async {
        match end {
            End::Gone => {}
            End::Answer(code) => wire.answer_close(code).await,
            End::Close(code, reason, drop_queued) => {
                tracing::debug!(conn, code, reason, "closing connection");
                wire.close(code, reason, drop_queued).await;
            }
        }
    })
    .await;
    tracing::debug!(conn, "connection closed");
}
