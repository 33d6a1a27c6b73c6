//! One WebSocket connection's bytes: the opening handshake, then frames read and written with
//! [`drakon_protocol::websocket`] over the upgraded stream.
//!
//! Writing is shaped for fan-out: a queued publication is the hub's shared payload, written behind a header made on
//! the spot, up to [`FRAMES_PER_WRITE`] frames per `writev`. What the socket does not take at once waits in a small
//! spill buffer; nothing else is kept per connection between writes, and an idle connection holds no read or write
//! buffer at all.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use drakon_core::limits::{WS_FRAMES_PER_WRITE as FRAMES_PER_WRITE, WS_READ_CHUNK_BYTES as READ_CHUNK};
use drakon_core::outbox::{Batch, Direct, Outbox, Sent};
use drakon_protocol::websocket::{self, Decoder, Header, Message, Opcode, WsError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The answer to a request that is not a WebSocket handshake drakon accepts.
pub fn refuse((status, message): Refusal) -> Response {
    let mut response = (status, message).into_response();
    if status == StatusCode::UPGRADE_REQUIRED {
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    response
}

/// Why a handshake was refused: the status and what to tell the client.
pub type Refusal = (StatusCode, &'static str);

/// Checks an opening handshake (RFC 6455 §4.2.1) and answers it: `Ok` holds the `101 Switching Protocols` response
/// and the future that yields the upgraded stream once it has been sent.
pub fn accept(request: &mut Request) -> Result<(Response, hyper::upgrade::OnUpgrade), Refusal> {
    let headers = request.headers();
    if !has_token(headers, header::UPGRADE, "websocket") || !has_token(headers, header::CONNECTION, "upgrade") {
        return Err((StatusCode::UPGRADE_REQUIRED, "this endpoint speaks WebSocket: send an upgrade request"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return Err((StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported"));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|k| websocket::is_valid_key(k.as_bytes())) else {
        return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Key must be 16 bytes in base64"));
    };
    let accept = websocket::accept_key(key.as_bytes());
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "this connection cannot be upgraded"));
    };
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    Ok((response, on_upgrade))
}

/// Appends to `into` what is left of a frame (`header`, then `payload`) after its first `written` bytes.
fn unwritten(header: &[u8], payload: &[u8], written: usize, into: &mut Vec<u8>) {
    if written < header.len() {
        into.extend_from_slice(&header[written..]);
        into.extend_from_slice(payload);
    } else {
        into.extend_from_slice(&payload[written - header.len()..]);
    }
}

/// What a poll for the next inbound message found.
#[derive(Debug)]
pub enum Inbound {
    Message(Message),
    /// The client broke the framing rules: close with the code the error names.
    Invalid(WsError),
    /// The stream ended or failed.
    Gone,
}

/// An upgraded stream and what is in flight on it.
#[derive(Debug)]
pub struct Wire<S> {
    io: S,
    decoder: Decoder,
    /// The start of a frame that has not fully arrived. Empty, with no allocation, between messages.
    inbound: BytesMut,
    /// Text frames to send: publications and replies, each the shared payload of the frame.
    pub outbound: Vec<Bytes>,
    /// Bytes that go before `outbound`: control frames, and the rest of a frame the socket took only part of.
    spill: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// `max_message` is the largest message read; a larger one ends the connection with 1009. `read_ahead` is what
    /// the HTTP server read past the handshake: the start of the first frames.
    pub fn new(io: S, max_message: usize, read_ahead: Bytes) -> Wire<S> {
        Wire {
            io,
            decoder: Decoder::new(max_message),
            inbound: BytesMut::from(&read_ahead[..]),
            outbound: Vec::new(),
            spill: Vec::new(),
        }
    }

    /// Takes what the connection's queue holds, for a connection with nothing left to write (see
    /// [`Outbox::poll_batch`]).
    pub fn poll_batch(&mut self, cx: &mut Context<'_>, outbox: &Outbox) -> Poll<Batch> {
        outbox.poll_batch(cx, &mut self.outbound, &mut self.spill)
    }

    /// Ends the connection's queue (see [`Outbox::close_for_writer`]): from now on only this task writes.
    pub fn close_queue(&mut self, outbox: &Outbox) {
        outbox.close_for_writer(&mut self.spill);
    }

    /// Whether frames are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.spill.is_empty() || !self.outbound.is_empty()
    }

    /// Queues a control frame (ping, pong, close); it leaves before queued text frames.
    pub fn push_control(&mut self, opcode: Opcode, payload: &[u8]) {
        self.spill.extend_from_slice(websocket::Header::new(opcode, payload.len()).as_bytes());
        self.spill.extend_from_slice(payload);
    }

    fn push_raw(&mut self, frame: &[u8]) {
        self.spill.extend_from_slice(frame);
    }

    /// Writes what is queued, as far as the socket takes it. `Ready(Ok)` once everything has been written.
    pub fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.spill.is_empty() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.spill))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.spill.drain(..n);
                if self.spill.is_empty() {
                    self.spill = Vec::new();
                }
                continue;
            }
            if self.outbound.is_empty() {
                // A burst's queue is not kept around once it has gone out.
                if self.outbound.capacity() > FRAMES_PER_WRITE {
                    self.outbound = Vec::new();
                }
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            let count = self.outbound.len().min(FRAMES_PER_WRITE);
            let mut headers = [Header::new(Opcode::Text, 0); FRAMES_PER_WRITE];
            for (header, payload) in headers.iter_mut().zip(&self.outbound[..count]) {
                *header = Header::new(Opcode::Text, payload.len());
            }
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            for (i, payload) in self.outbound[..count].iter().enumerate() {
                slices[2 * i] = IoSlice::new(headers[i].as_bytes());
                slices[2 * i + 1] = IoSlice::new(payload);
            }
            let mut left = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..2 * count]))?;
            if left == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let mut done = 0;
            for (header, payload) in headers.iter().zip(&self.outbound[..count]) {
                let header = header.as_bytes();
                let len = header.len() + payload.len();
                if left >= len {
                    left -= len;
                    done += 1;
                    continue;
                }
                if left > 0 {
                    // The socket took part of this frame: its rest goes first next time.
                    unwritten(header, payload, left, &mut self.spill);
                    done += 1;
                }
                break;
            }
            self.outbound.drain(..done);
        }
    }

    /// The next complete message: from what is buffered, else from the socket.
    pub fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Inbound> {
        loop {
            if !self.inbound.is_empty() {
                match self.decoder.decode(&mut self.inbound) {
                    Ok(Some(message)) => {
                        self.release_inbound();
                        return Poll::Ready(Inbound::Message(message));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Inbound::Invalid(e)),
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut read)) {
                Ok(()) if read.filled().is_empty() => return Poll::Ready(Inbound::Gone),
                Ok(()) => self.inbound.extend_from_slice(read.filled()),
                Err(_) => return Poll::Ready(Inbound::Gone),
            }
        }
    }

    fn release_inbound(&mut self) {
        if self.inbound.is_empty() && self.inbound.capacity() > 0 {
            self.inbound = BytesMut::new();
        }
    }

    /// Writes everything queued.
    pub async fn write_all_out(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// The closing handshake from our side: what is queued (unless `drop_queued`: a client too slow to read it
    /// resumes from its offsets anyway), then our close frame, then whatever the client sends until its close
    /// frame. Reading to the end matters: dropping a socket with unread data makes the kernel send a reset, which can
    /// destroy the close frame before the client reads it.
    pub async fn close(&mut self, code: u16, reason: &str, drop_queued: bool) {
        if drop_queued {
            self.outbound.clear();
        }
        if self.write_all_out().await.is_err() {
            return;
        }
        self.push_raw(&websocket::encode_close(code, reason));
        if self.write_all_out().await.is_err() {
            return;
        }
        while let Inbound::Message(message) = std::future::poll_fn(|cx| self.poll_message(cx)).await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        let _ = std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
    }

    /// Answers a client's close frame with the same code, as the RFC asks, and ends the stream.
    pub async fn answer_close(&mut self, code: Option<u16>) {
        self.outbound.clear();
        self.push_raw(&websocket::encode_close(code.unwrap_or(websocket::CLOSE_NORMAL), ""));
        if self.write_all_out().await.is_ok() {
            let _ = std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
        }
    }
}

/// A WebSocket's TCP stream, shared by its connection task (which reads, and writes while it holds the queue) and its
/// queue's direct writes (see [`drakon_core::outbox`]). Every operation is non-blocking on `&TcpStream`.
#[derive(Debug, Clone)]
pub struct SharedTcp(pub Arc<TcpStream>);

impl Direct for SharedTcp {
    fn try_send(&self, frame: &Bytes) -> Sent {
        let header = Header::new(Opcode::Text, frame.len());
        let header = header.as_bytes();
        // `sendmsg` on the socket itself, past tokio's readiness bookkeeping: a fan-out makes thousands of these in a
        // row, each to a different socket. A full socket only means the task takes over, and its own writes wait on
        // readiness the usual way (a stale "writable" costs it one `EAGAIN`).
        match socket2::SockRef::from(&*self.0).send_vectored(&[IoSlice::new(header), IoSlice::new(frame)]) {
            Ok(n) if n == header.len() + frame.len() => Sent::All,
            Ok(0) | Err(_) => Sent::Nothing,
            Ok(n) => {
                let mut rest = Vec::new();
                unwritten(header, frame, n, &mut rest);
                Sent::Part(rest)
            }
        }
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}
