//! SockJS 0.3 under `/data`: the HTTP transports, for clients that cannot open a WebSocket (a proxy that blocks
//! upgrades), over the same sessions as the WebSocket.
//!
//! Built so far: the greeting (`GET /data`), `/data/info`, and per session `/data/<server>/<session>/` `xhr`
//! (polling), `xhr_streaming` and `xhr_send`, with CORS as the SockJS protocol asks. `info` says `websocket: false`
//! until the SockJS-framed WebSocket transport exists; clients use the HTTP transports meanwhile.
//!
//! A SockJS session is a drakon [`Session`] kept in this module's registry between requests: subscribed, its queue
//! filling while no request is open. A *receiving* request (`xhr`, `xhr_streaming`) hands out what waits (`a[...]`,
//! each message a JSON string holding one native frame), or holds on until something comes or the heartbeat is due
//! (`h`); a second receiving request while one is open gets `c[2010,"Another connection still open"]`. A *sending*
//! request (`xhr_send`, a JSON array of strings) answers each message with [`crate::protocol::answer`] and queues the
//! replies for the receiver, ahead of the events published meanwhile (the receiver drains under the same lock the
//! sender answers under). A session with no receiving request for [`DISCONNECT_DELAY`] is closed, and its
//! subscriptions and presence go with it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes as BodyBytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use drakon_core::engine::Session;
use drakon_core::limits::OUTBOUND_QUEUE_FRAMES;
use drakon_core::outbox::{Batch, Outbox};
use tokio::sync::Notify;

use crate::AppState;
use crate::protocol::{Gate, NATIVE, Protocol, RateLimit, answer};

/// How long a session waits for its next receiving request before it is closed.
pub const DISCONNECT_DELAY: Duration = Duration::from_secs(5);

/// How long a receiving request waits with nothing to send before it answers a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(25);

/// How many bytes one streaming response carries before it ends, so that the client opens a fresh one (browsers
/// keep a streaming response's whole body).
pub const RESPONSE_LIMIT: usize = 128 * 1024;

/// Most SockJS sessions a node holds at once: each is a drakon session, kept 5 s after its last request, so a client
/// that opens sessions in a loop would otherwise grow memory with its request rate.
pub const MAX_SESSIONS: usize = 50_000;

/// The streaming prelude: 2 KiB of `h` and a newline, which makes old browsers start handing out the body.
const PRELUDE: usize = 2048;

/// SockJS sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<SockSession>>>,
    sweeping: AtomicBool,
}

#[derive(Debug)]
struct SockSession {
    outbox: Arc<Outbox>,
    /// The drakon session and its request budget; `None` once closed. Senders answer under this lock and receivers
    /// drain under it.
    session: tokio::sync::Mutex<Option<Answering>>,
    /// Replies waiting for the receiver, in order.
    replies: Mutex<VecDeque<Bytes>>,
    replied: Notify,
    /// A receiving request is open.
    receiving: AtomicBool,
    /// Since when no receiving request has been open.
    idle_since: Mutex<Option<Instant>>,
}

#[derive(Debug)]
struct Answering {
    session: Session,
    rate: RateLimit,
}

impl Sessions {
    fn get(&self, id: &str) -> Option<Arc<SockSession>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

/// `GET /settings.js`: what SwampDragon's pages load before `swampdragon.js`, naming where its SockJS endpoint is:
/// `window.swampdragon_settings` (with `endpoint`) and `window.swampdragon_host`, this server's origin as the request
/// reached it (`https` behind a proxy that says so).
pub async fn settings(headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    // Only a host name and port may go into the script.
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
        return (StatusCode::BAD_REQUEST, "a Host header of a host name and port is needed").into_response();
    }
    let scheme = if crate::users::over_tls(&headers) { "https" } else { "http" };
    let body = format!(
        "window.swampdragon_settings = {{\"endpoint\": \"/data\"}};\nwindow.swampdragon_host = \"{scheme}://{host}\";\n"
    );
    let mut response = ([(header::CONTENT_TYPE, "application/javascript; charset=UTF-8")], body).into_response();
    no_cache(response.headers_mut());
    response
}

/// `GET /data`.
pub async fn greeting() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], "Welcome to SockJS!\n").into_response()
}

/// `GET` / `OPTIONS /data/info`.
pub async fn info(method: Method, headers: HeaderMap) -> Response {
    if method == Method::OPTIONS {
        return preflight(&headers, "OPTIONS, GET");
    }
    let entropy: u32 = rand_u32();
    let body = serde_json::json!({"websocket": false, "cookie_needed": false, "origins": ["*:*"], "entropy": entropy});
    let mut response = ([(header::CONTENT_TYPE, "application/json; charset=UTF-8")], body.to_string()).into_response();
    cors(&headers, response.headers_mut());
    no_cache(response.headers_mut());
    response
}

/// `POST` / `OPTIONS /data/<server>/<session>/<transport>`.
pub async fn transport(
    State(state): State<AppState>,
    Path((server, id, transport)): Path<(String, String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: BodyBytes,
) -> Response {
    if !valid_segment(&server) || !valid_segment(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if method == Method::OPTIONS && matches!(transport.as_str(), "xhr" | "xhr_send" | "xhr_streaming") {
        return preflight(&headers, "OPTIONS, POST");
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let mut response = match transport.as_str() {
        "xhr" => receive(&state, &id, &uri, &headers, false).await,
        "xhr_streaming" => receive(&state, &id, &uri, &headers, true).await,
        "xhr_send" => send(&state, &id, &body).await,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    cors(&headers, response.headers_mut());
    response
}

/// Session and server ids are non-empty and hold no dot (the SockJS spec's rule).
fn valid_segment(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains('.')
}

fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

fn cors(request: &HeaderMap, response: &mut HeaderMap) {
    let origin = request
        .get(header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null")
        .cloned()
        .unwrap_or(HeaderValue::from_static("*"));
    response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    response.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
}

fn no_cache(response: &mut HeaderMap) {
    response.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, no-transform, must-revalidate, max-age=0"),
    );
}

fn preflight(request: &HeaderMap, methods: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors(request, headers);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("31536000"));
    response
}

fn javascript(body: impl Into<Body>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/javascript; charset=UTF-8")], body.into()).into_response();
    no_cache(response.headers_mut());
    response
}

/// `a[...]`: each native frame as a JSON string.
fn messages(frames: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.len() + 8).sum::<usize>() + 4);
    out.extend_from_slice(b"a[");
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let text = String::from_utf8_lossy(frame);
        out.extend_from_slice(escape(&text).as_bytes());
    }
    out.extend_from_slice(b"]\n");
    Bytes::from(out)
}

/// A JSON string, with the characters SockJS clients need escaped (some browsers mangle them) as `\uXXXX`.
fn escape(text: &str) -> String {
    let json = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        let code = c as u32;
        if (0x200c..=0x200f).contains(&code)
            || (0x2028..=0x202f).contains(&code)
            || (0x2060..=0x206f).contains(&code)
            || (0xfff0..=0xffff).contains(&code)
            || (0xd800..=0xdfff).contains(&code)
        {
            out.push_str(&format!("\\u{code:04x}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn close_frame(code: u16, reason: &str) -> Bytes {
    Bytes::from(format!("c{}\n", serde_json::json!([code, reason])))
}

/// Opens session `id` (answering `o`), or takes it back for a receiving request.
async fn open(
    state: &AppState,
    id: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(Arc<SockSession>, bool), Response> {
    if let Some(existing) = state.http.sockjs.get(id) {
        return Ok((existing, false));
    }
    if !crate::origin::origin_allowed(&state.options, headers) {
        return Err((
            StatusCode::FORBIDDEN,
            "this page's origin may not open sessions here: add it to allowed_origins",
        )
            .into_response());
    }
    let (user, admin) = crate::socket::who(state, uri, headers).await?;
    let principal = crate::socket::principal(user, admin);
    let outbox = Outbox::new(OUTBOUND_QUEUE_FRAMES, &NATIVE);
    let session = state.engine.open_session(outbox.clone(), principal);
    // As on the WebSocket, a session its request signed in hears whom it acts for first.
    let signed_in = session.principal.user().map(|user| NATIVE.signed_in(user));
    let rate = RateLimit::new(state.options.max_requests_per_second);
    let sock = Arc::new(SockSession {
        outbox,
        session: tokio::sync::Mutex::new(Some(Answering { session, rate })),
        replies: Mutex::new(signed_in.into_iter().collect()),
        replied: Notify::new(),
        receiving: AtomicBool::new(false),
        idle_since: Mutex::new(Some(Instant::now())),
    });
    // Two requests opening one id at once: the first one wins, and the other closes what it opened; so does one
    // that finds the node full.
    enum Slot {
        Ours,
        Taken(Arc<SockSession>),
        Full,
    }
    let slot = {
        let mut sessions = state.http.sockjs.by_id.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(id) {
            Some(existing) => Slot::Taken(existing.clone()),
            None if sessions.len() >= MAX_SESSIONS => Slot::Full,
            None => {
                sessions.insert(id.to_owned(), sock.clone());
                Slot::Ours
            }
        }
    };
    if !matches!(slot, Slot::Ours)
        && let Some(answering) = sock.session.lock().await.take()
    {
        state.engine.close_session(answering.session);
    }
    match slot {
        Slot::Ours => {
            if !state.http.sockjs.sweeping.swap(true, Ordering::SeqCst) {
                tokio::spawn(sweep(state.clone()));
            }
            Ok((sock, true))
        }
        Slot::Taken(existing) => Ok((existing, false)),
        Slot::Full => {
            let body = "too many SockJS sessions on this node; try again shortly";
            Err((StatusCode::SERVICE_UNAVAILABLE, body).into_response())
        }
    }
}

/// A receiving request: polling (`streaming: false`) or streaming.
async fn receive(state: &AppState, id: &str, uri: &axum::http::Uri, headers: &HeaderMap, streaming: bool) -> Response {
    let (sock, opened) = match open(state, id, uri, headers).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if sock.receiving.swap(true, Ordering::SeqCst) {
        return javascript(close_frame(2010, "Another connection still open"));
    }
    *sock.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if !streaming {
        // Detached however the request ends: answered, or dropped because the client went away mid-poll.
        let attached = Attached(sock.clone());
        let frame = if opened { Bytes::from_static(b"o\n") } else { next_frame(&sock).await };
        drop(attached);
        if frame.starts_with(b"c") {
            forget(state, id, &sock).await;
        }
        return javascript(frame);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let (state, id) = (state.clone(), id.to_owned());
    tokio::spawn(async move {
        let _attached = Attached(sock.clone());
        let mut prelude = vec![b'h'; PRELUDE];
        prelude.push(b'\n');
        let mut sent = 0;
        let mut first = vec![Bytes::from(prelude)];
        if opened {
            first.push(Bytes::from_static(b"o\n"));
        }
        for chunk in first {
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        loop {
            let frame = tokio::select! {
                frame = next_frame(&sock) => frame,
                () = tx.closed() => return,
            };
            sent += frame.len();
            let closing = frame.starts_with(b"c");
            if tx.send(Ok(frame)).await.is_err() || closing || sent >= RESPONSE_LIMIT {
                if closing {
                    forget(&state, &id, &sock).await;
                }
                return;
            }
        }
    });
    javascript(Body::from_stream(tokio_stream_of(rx)))
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A receiving request in progress; when it ends, however it ends, the session waits [`DISCONNECT_DELAY`] for the
/// next one.
struct Attached(Arc<SockSession>);

impl Drop for Attached {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.0.receiving.store(false, Ordering::SeqCst);
    }
}

/// What the receiver sends next: the replies and events that wait (`a[...]`), the heartbeat when nothing came
/// within [`HEARTBEAT`], or the close frame when the session ended.
async fn next_frame(sock: &SockSession) -> Bytes {
    let deadline = tokio::time::sleep(HEARTBEAT);
    tokio::pin!(deadline);
    // Events the wait below took from the queue, and whether the hub gave up on the session.
    let mut taken: Vec<Bytes> = Vec::new();
    let mut closed = false;
    loop {
        let replied = sock.replied.notified();
        tokio::pin!(replied);
        replied.as_mut().enable();
        {
            // Under the senders' lock: a request being answered finishes, and its reply goes first.
            let guard = sock.session.lock().await;
            if guard.is_none() {
                return close_frame(3000, "Go away!");
            }
            let mut frames: Vec<Bytes> = sock.replies.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
            frames.append(&mut taken);
            let waker = futures_util::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            closed |=
                matches!(sock.outbox.poll_batch(&mut cx, &mut frames, &mut Vec::new()), Poll::Ready(Batch::Closed));
            if !frames.is_empty() {
                return messages(&frames);
            }
            if closed {
                return close_frame(4008, "slow consumer: reconnect and subscribe again");
            }
        }
        let queued = std::future::poll_fn(|cx| {
            let mut frames = Vec::new();
            sock.outbox.poll_batch(cx, &mut frames, &mut Vec::new()).map(|batch| (batch, frames))
        });
        tokio::select! {
            () = &mut deadline => return Bytes::from_static(b"h\n"),
            () = &mut replied => {}
            (batch, frames) = queued => {
                taken = frames;
                closed = batch == Batch::Closed;
            }
        }
    }
}

/// A sending request: a JSON array of strings, each a native frame.
async fn send(state: &AppState, id: &str, body: &[u8]) -> Response {
    let Some(sock) = state.http.sockjs.get(id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if body.is_empty() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Payload expected.").into_response();
    }
    let messages: Vec<String> = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => {
            items.into_iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect()
        }
        Ok(serde_json::Value::String(one)) => vec![one],
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, "Broken JSON encoding.").into_response(),
    };
    let mut guard = sock.session.lock().await;
    let Some(Answering { session, rate }) = guard.as_mut() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    for text in messages {
        let gate = Gate {
            identity: state.options.identity.as_deref(),
            budget: rate,
            per_second: state.options.max_requests_per_second,
            max_bytes: state.options.max_frame_bytes,
        };
        let reply = Box::pin(answer(&NATIVE, &state.engine, session, gate, &text)).await;
        if let Some(reply) = reply {
            sock.replies.lock().unwrap_or_else(|e| e.into_inner()).push_back(reply);
        }
    }
    drop(guard);
    sock.replied.notify_waiters();
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    response
}

/// Removes session `id` and closes its drakon session.
async fn forget(state: &AppState, id: &str, sock: &Arc<SockSession>) {
    {
        let mut sessions = state.http.sockjs.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(id).is_some_and(|s| Arc::ptr_eq(s, sock)) {
            sessions.remove(id);
        }
    }
    if let Some(answering) = sock.session.lock().await.take() {
        state.engine.close_session(answering.session);
    }
}

/// Closes the sessions nobody received for within [`DISCONNECT_DELAY`], every second, for as long as the server
/// runs.
async fn sweep(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let lapsed: Vec<(String, Arc<SockSession>)> = state
            .http
            .sockjs
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| {
                let idle = *s.idle_since.lock().unwrap_or_else(|e| e.into_inner());
                idle.is_some_and(|since| now.duration_since(since) >= DISCONNECT_DELAY)
            })
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        for (id, sock) in lapsed {
            forget(&state, &id, &sock).await;
        }
        if *state.shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_json_strings_with_the_risky_characters_escaped() {
        let frames = [Bytes::from_static(br#"{"a":"x"}"#), Bytes::from("line\u{2028}sep")];
        assert_eq!(&messages(&frames)[..], b"a[\"{\\\"a\\\":\\\"x\\\"}\",\"line\\u2028sep\"]\n");
        assert_eq!(
            &close_frame(2010, "Another connection still open")[..],
            b"c[2010,\"Another connection still open\"]\n"
        );
        assert!(valid_segment("000") && !valid_segment("a.b") && !valid_segment(""));
    }
}
