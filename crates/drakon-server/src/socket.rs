//! The native protocol over WebSocket: one task per connection owns its socket.
//!
//! The task `select!`s over inbound frames, its bounded outbound queue (fed by the hub), the hub's kill signal,
//! the ping/idle timer, the optional app heartbeat and shutdown. Requests are handled one at a time, in order, so a
//! client's replies keep the order of its requests. Every client mistake gets an error reply; only an idle timeout,
//! a frame past the hard cap, a full queue or shutdown closes the socket, each with its own close code.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use drakon_core::limits::{CLOSE_GRACE, OUTBOUND_QUEUE_FRAMES, WRITE_STALL_TIMEOUT, WS_READ_BUFFER_BYTES};
use drakon_core::outbox::Outbox;
use drakon_core::{CLOSE_GOING_AWAY, CLOSE_IDLE_TIMEOUT, CLOSE_TOO_BIG, SLOW_CONSUMER_CLOSE_CODE};
use drakon_protocol::{ClientFrame, ErrorBody, ErrorCode, encode_error, encode_heartbeat, parse_frame};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::sync::Notify;
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
        // Each queued batch is fed and flushed at once, so the library needs no write buffer of its own.
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(socket, state, admin))
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

async fn run(socket: WebSocket, state: AppState, admin: bool) {
    let _open = state.connections.enter();
    let (mut sink, mut stream) = socket.split();
    let outbox = Outbox::new(OUTBOUND_QUEUE_FRAMES);
    let mut batch = Vec::new();
    let kill = Arc::new(Notify::new());
    let engine = state.engine.clone();
    let conn = engine.hub().register(outbox.clone(), kill.clone());
    let mut session = engine.open_session(conn, admin);
    let options = state.options.clone();
    let mut shutdown = state.shutdown.clone();
    let mut ping = ticker(options.ping_interval);
    let mut heartbeat = options.heartbeat_interval.map(ticker);
    let mut last_seen = Instant::now();
    tracing::debug!(conn, "connection opened");

    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            inbound = stream.next() => {
                let message = match inbound {
                    None => break None,
                    Some(Err(e)) => {
                        let too_big = e.to_string().to_lowercase().contains("too long") || e.to_string().contains("Space limit");
                        tracing::debug!(conn, error = %e, "websocket read failed");
                        break too_big.then_some((CLOSE_TOO_BIG, "frame too large"));
                    }
                    Some(Ok(m)) => m,
                };
                last_seen = Instant::now();
                let reply = match message {
                    Message::Text(t) if t.len() > options.max_frame_bytes => Some(encode_error(
                        &ErrorBody::new(ErrorCode::FrameTooLarge, format!("frames may be at most {} bytes", options.max_frame_bytes)),
                        None,
                        "",
                    )),
                    Message::Text(t) => match parse_frame(t.as_str()) {
                        Ok(ClientFrame::Heartbeat) => None,
                        Ok(ClientFrame::Request(request)) => Some(engine.handle(&mut session, request).await),
                        Err(e) => Some(encode_error(&ErrorBody::from(&e), e.callbackname(), e.verb().unwrap_or(""))),
                    },
                    Message::Binary(_) => Some(encode_error(
                        &ErrorBody::new(ErrorCode::BadJson, "binary frames are not supported; send JSON as text frames"),
                        None,
                        "",
                    )),
                    Message::Close(_) => break None,
                    // The library queues the pong; flushing sends it now rather than with the next event.
                    Message::Ping(_) => {
                        if sink.flush().await.is_err() {
                            break None;
                        }
                        None
                    }
                    Message::Pong(_) => None,
                };
                if let Some(reply) = reply
                    && sink.send(text(reply)).await.is_err()
                {
                    break None;
                }
            }
            () = outbox.next_batch(&mut batch) => {
                // Everything queued goes out in one flush. A client that stops reading blocks this write once its
                // socket buffers fill; the hub's kill signal and a stall timeout still end it, so a stalled
                // connection is closed rather than kept forever.
                let write = async {
                    for frame in batch.drain(..) {
                        sink.feed(text(frame)).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    written = tokio::time::timeout(WRITE_STALL_TIMEOUT, write) => match written {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some((SLOW_CONSUMER_CLOSE_CODE, "slow consumer: reconnect and subscribe again")),
                    },
                    () = kill.notified() => break Some((SLOW_CONSUMER_CLOSE_CODE, "slow consumer: reconnect and subscribe again")),
                }
            }
            () = kill.notified() => break Some((SLOW_CONSUMER_CLOSE_CODE, "slow consumer: reconnect and subscribe again")),
            _ = ping.tick() => {
                if last_seen.elapsed() >= options.idle_timeout {
                    break Some((CLOSE_IDLE_TIMEOUT, "idle timeout"));
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
            _ = async { heartbeat.as_mut().expect("guarded").tick().await }, if heartbeat.is_some() => {
                if sink.send(text(encode_heartbeat())).await.is_err() {
                    break None;
                }
            }
            _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => break Some((CLOSE_GOING_AWAY, "server shutting down")),
        }
    };
    engine.close_session(session);
    if let Some((code, reason)) = close {
        tracing::debug!(conn, code, reason, "closing connection");
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        // Complete the closing handshake: read until the client's close (or the grace runs out). Dropping the
        // socket with unread data (a pong, say) makes the kernel send a reset, which can destroy our close frame
        // before the client reads it.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if sink.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            }
        })
        .await;
    }
    tracing::debug!(conn, "connection closed");
}
