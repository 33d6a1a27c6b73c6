//! The native protocol over WebSocket: one task per connection owns its socket.
//!
//! The task waits on inbound frames, its bounded outbound queue (fed by the hub, which closes it when the client
//! cannot keep up), the ping/idle timer, the optional app heartbeat and shutdown, polling each from one loop that
//! keeps its futures across wake-ups. Requests are handled one at a time, in order, so a
//! client's replies keep the order of its requests. Every client mistake gets an error reply; only an idle timeout,
//! a frame past the hard cap, a full queue or shutdown closes the socket, each with its own close code.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use drakon_core::limits::{
    CLOSE_GRACE, OUTBOUND_QUEUE_FRAMES, WRITE_STALL_TIMEOUT, WS_READ_BUFFER_BYTES, WS_WRITE_BATCH_BYTES,
};
use drakon_core::outbox::{Batch, Outbox};
use drakon_core::{CLOSE_GOING_AWAY, CLOSE_IDLE_TIMEOUT, CLOSE_TOO_BIG, SLOW_CONSUMER_CLOSE_CODE};
use drakon_protocol::{ClientFrame, ErrorBody, ErrorCode, encode_error, encode_heartbeat, parse_frame};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::AppState;

/// Frames beyond this size are not even buffered: the connection closes with 1009. Between the configured limit and
/// this cap a frame is read and answered with `frame_too_large`, so an honest mistake does not cost the connection.
fn hard_cap(max_frame_bytes: usize) -> usize {
    (max_frame_bytes * 4).max(1 << 20)
}

pub async fn upgrade(State(state): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let cap = hard_cap(state.options.max_frame_bytes);
    let admin = crate::admin::is_admin(&state.options, &headers);
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        // Frames fed from one queued batch gather here and leave with the flush, in one syscall.
        .write_buffer_size(WS_WRITE_BATCH_BYTES)
        .on_upgrade(move |socket| run(Box::new(socket), state, admin))
}

fn text(bytes: Bytes) -> Message {
    // Frames come from serde_json, which only writes UTF-8; the check is cheap insurance.
    Message::Text(Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from_static("{}")))
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// What woke the connection task.
enum Wake {
    Inbound(Option<Result<Message, axum::Error>>),
    Outbound(Batch),
    Ping,
    Heartbeat,
    Shutdown,
}

const SLOW_CONSUMER: (u16, &str) = (SLOW_CONSUMER_CLOSE_CODE, "slow consumer: reconnect and subscribe again");

/// `socket` comes boxed: an argument of an `async fn` is kept twice in its future (as the argument and as the local
/// it moves into), and the future lives as long as the connection.
async fn run(mut socket: Box<WebSocket>, state: AppState, admin: bool) {
    let _open = state.connections.enter();
    let outbox = Outbox::new(OUTBOUND_QUEUE_FRAMES);
    let mut batch = Vec::new();
    let engine = state.engine.clone();
    let conn = engine.hub().register(outbox.clone());
    let mut session = engine.open_session(conn, admin);
    let options = state.options.clone();
    let mut shutdown = state.shutdown.clone();
    let mut ping = ticker(options.ping_interval);
    let mut heartbeat = options.heartbeat_interval.map(ticker);
    let mut last_seen = Instant::now();
    // Made once and kept: a wake-up of this task polls what it waits on, it does not rebuild futures or re-register.
    let mut stopping = pin!(shutdown.wait_for(|stop| *stop));
    tracing::debug!(conn, "connection opened");

    let close: Option<(u16, &'static str)> = loop {
        // Shutdown first; then the queue (or its closing) before the socket, so that a chatty client still drains
        // its queue (the queue is taken whole, so the socket is polled again right after).
        let wake = poll_fn(|cx| {
            if stopping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wake::Shutdown);
            }
            if let Poll::Ready(batch) = outbox.poll_batch(cx, &mut batch) {
                return Poll::Ready(Wake::Outbound(batch));
            }
            if let Poll::Ready(inbound) = socket.poll_next_unpin(cx) {
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
            Poll::Pending
        })
        .await;
        match wake {
            Wake::Inbound(inbound) => {
                let message = match inbound {
                    None => break None,
                    Some(Err(e)) => {
                        let too_big =
                            e.to_string().to_lowercase().contains("too long") || e.to_string().contains("Space limit");
                        tracing::debug!(conn, error = %e, "websocket read failed");
                        break too_big.then_some((CLOSE_TOO_BIG, "frame too large"));
                    }
                    Some(Ok(m)) => m,
                };
                last_seen = Instant::now();
                let reply = match message {
                    Message::Text(t) if t.len() > options.max_frame_bytes => Some(encode_error(
                        &ErrorBody::new(
                            ErrorCode::FrameTooLarge,
                            format!("frames may be at most {} bytes", options.max_frame_bytes),
                        ),
                        None,
                        "",
                    )),
                    Message::Text(t) => match parse_frame(t.as_str()) {
                        Ok(ClientFrame::Heartbeat) => None,
                        // Boxed: a request's future is large, and inline it would sit in every idle connection's task.
                        Ok(ClientFrame::Request(request)) => Some(Box::pin(engine.handle(&mut session, request)).await),
                        Err(e) => Some(encode_error(&ErrorBody::from(&e), e.callbackname(), e.verb().unwrap_or(""))),
                    },
                    Message::Binary(_) => Some(encode_error(
                        &ErrorBody::new(
                            ErrorCode::BadJson,
                            "binary frames are not supported; send JSON as text frames",
                        ),
                        None,
                        "",
                    )),
                    Message::Close(_) => break None,
                    // The library queues the pong; flushing sends it now rather than with the next event.
                    Message::Ping(_) => {
                        if socket.flush().await.is_err() {
                            break None;
                        }
                        None
                    }
                    Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && socket.send(text(reply)).await.is_err()
                {
                    break None;
                }
            }
            Wake::Outbound(Batch::Closed) => {
                break Some((SLOW_CONSUMER.0, outbox.close_reason().unwrap_or(SLOW_CONSUMER.1)));
            }
            Wake::Outbound(Batch::Frames) => {
                // Everything queued goes out in one write: the frames gather in the library's write buffer
                // (`WS_WRITE_BATCH_BYTES`) and the flush sends them with one syscall. A client that stops reading
                // blocks this write once its socket buffers fill; the hub closing the queue and a stall timeout still
                // end it, so a stalled connection is closed rather than kept forever.
                let mut write = pin!(async {
                    for frame in batch.drain(..) {
                        socket.feed(text(frame)).await?;
                    }
                    socket.flush().await
                });
                // Most batches are written at once; the stall timer is only armed (and boxed, to keep it out of every
                // idle task) for one that is not.
                let written = match poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                    Poll::Ready(written) => Some(written),
                    Poll::Pending => tokio::select! {
                        written = Box::pin(tokio::time::timeout(WRITE_STALL_TIMEOUT, write)) => written.ok(),
                        () = poll_fn(|cx| outbox.poll_closed(cx)) => break Some(SLOW_CONSUMER),
                    },
                };
                match written {
                    Some(Ok(())) => {}
                    Some(Err(_)) => break None,
                    None => break Some(SLOW_CONSUMER),
                }
            }
            Wake::Ping => {
                if last_seen.elapsed() >= options.idle_timeout {
                    break Some((CLOSE_IDLE_TIMEOUT, "idle timeout"));
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
            Wake::Heartbeat => {
                if socket.send(text(encode_heartbeat())).await.is_err() {
                    break None;
                }
            }
            Wake::Shutdown => break Some((CLOSE_GOING_AWAY, "server shutting down")),
        }
    };
    engine.close_session(session);
    if let Some((code, reason)) = close {
        tracing::debug!(conn, code, reason, "closing connection");
        Box::pin(close_handshake(socket, code, reason)).await;
    }
    tracing::debug!(conn, "connection closed");
}

/// Sends our close frame and completes the closing handshake: reads until the client's close (or the grace runs
/// out). Dropping the socket with unread data (a pong, say) makes the kernel send a reset, which can destroy our close
/// frame before the client reads it.
async fn close_handshake(mut socket: Box<WebSocket>, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(message)) = socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
    })
    .await;
}
