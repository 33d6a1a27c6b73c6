//! Request heads as RFC 9112 writes them: every line ends in CRLF, and a body is framed one way. The HTTP parser
//! drakon runs on (hyper's, through httparse) also takes a bare LF, and frames a request that carries both
//! `Content-Length` and `Transfer-Encoding` by the latter; a request whose head a proxy in front reads one way and
//! drakon another is a request smuggled past the proxy. [`StrictHeads`] watches the bytes of each request head before
//! hyper reads them, and at a bare LF or a body framed both ways it answers `400 Bad Request` itself and ends the
//! connection; hyper never sees that request.
//!
//! It follows the connection's framing only as far as it must: after a head, it skips a `Content-Length` body and
//! watches the next head; after a head with `Transfer-Encoding` or an upgrade (the bytes are WebSocket frames from
//! then on), it watches nothing more.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most of a head that is looked at for its framing headers; hyper refuses larger heads itself.
const MAX_HEAD: usize = 64 * 1024;

/// A connection's stream whose request heads must end their lines with CRLF.
#[derive(Debug)]
pub struct StrictHeads<S> {
    io: S,
    state: State,
}

#[derive(Debug)]
enum State {
    /// In a request head, or between requests.
    Head { head: Vec<u8>, line: usize, cr: bool },
    /// In a body of this many more bytes.
    Body(u64),
    /// Nothing more to watch.
    Through,
    /// Refusing the connection: writing the rest of this answer, then ending it.
    Refusing { why: &'static str, answer: Vec<u8>, sent: usize },
}

impl State {
    fn head() -> State {
        State::Head { head: Vec::new(), line: 0, cr: false }
    }
}

impl<S> StrictHeads<S> {
    pub fn new(io: S) -> StrictHeads<S> {
        StrictHeads { io, state: State::head() }
    }

    pub fn into_inner(self) -> S {
        self.io
    }

    /// Watches bytes just read; the reason when a head breaks the rules.
    fn watch(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Through | State::Refusing { .. } => return Ok(()),
                State::Body(left) => {
                    let n = bytes.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::head();
                    }
                }
                State::Head { head, line, cr } => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    if head.len() < MAX_HEAD {
                        head.push(byte);
                    }
                    let done = match byte {
                        b'\n' if !*cr => return Err("a request head line ends in a bare LF"),
                        // An empty line before any request line is tolerated (RFC 9112 §2.2); after one, it ends the head.
                        b'\n' if *line == 0 && head.len() == 2 => {
                            head.clear();
                            false
                        }
                        b'\n' if *line == 0 => true,
                        b'\n' => {
                            *line = 0;
                            false
                        }
                        b'\r' => false,
                        _ => {
                            *line += 1;
                            false
                        }
                    };
                    *cr = byte == b'\r';
                    if done {
                        let next = after(head)?;
                        self.state = next;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What follows a complete head: its `Content-Length` body, or nothing more to watch; the reason when the head
/// frames its body both ways.
fn after(head: &[u8]) -> Result<State, &'static str> {
    let (mut length, mut has_length, mut chunked, mut upgrade) = (Some(0u64), false, false, false);
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some((name, value)) = std::str::from_utf8(line).ok().and_then(|l| l.split_once(':')) else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            // A length hyper will refuse is not ours to follow.
            length = value.parse().ok();
        }
    }
    if chunked && has_length {
        return Err("a request frames its body by both Content-Length and Transfer-Encoding");
    }
    Ok(match length {
        _ if chunked || upgrade || head.len() >= MAX_HEAD => State::Through,
        None => State::Through,
        Some(0) => State::head(),
        Some(n) => State::Body(n),
    })
}

/// The whole answer to a refused request, written by [`StrictHeads`] itself.
fn refusal(why: &str) -> Vec<u8> {
    let body = format!(r#"{{"code":"bad_request","message":"{why}"}}"#);
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for StrictHeads<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !matches!(this.state, State::Refusing { .. }) {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            match this.watch(&buf.filled()[before..]) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(why) => {
                    // The refused request's bytes never reach hyper.
                    buf.set_filled(before);
                    this.state = State::Refusing { why, answer: refusal(why), sent: 0 };
                }
            }
        }
        let State::Refusing { why, answer, sent } = &mut this.state else { unreachable!("refusing") };
        while *sent < answer.len() {
            *sent += ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*sent..]))?;
        }
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, *why)))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StrictHeads<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a connection carrying `bytes`, arriving in pieces of `piece` bytes, is refused.
    fn refused(bytes: &[u8], piece: usize) -> bool {
        let mut strict = StrictHeads::new(());
        bytes.chunks(piece).any(|chunk| strict.watch(chunk).is_err())
    }

    #[test]
    fn a_body_framed_both_ways_is_refused_in_any_order_and_case() {
        let table: [(&[u8], bool); 5] = [
            (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n", true),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
            ),
            (b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", false),
        ];
        for (bytes, want) in table {
            for piece in [1, 3, bytes.len()] {
                assert_eq!(refused(bytes, piece), want, "{:?} in pieces of {piece}", String::from_utf8_lossy(bytes));
            }
        }
    }

    #[tokio::test]
    async fn a_refused_request_is_answered_400_and_never_reaches_the_reader() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(4096);
        let mut strict = StrictHeads::new(server);
        client.write_all(b"GET / HTTP/1.1\nHost: a\r\n\r\n").await.unwrap();
        let mut read = Vec::new();
        let err = strict.read_to_end(&mut read).await.expect_err("the connection is refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(read.is_empty(), "the reader saw {read:?}");
        drop(strict);
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
        assert!(
            answer.ends_with(r#"{"code":"bad_request","message":"a request head line ends in a bare LF"}"#),
            "{answer}"
        );
    }

    #[test]
    fn a_bare_lf_in_any_head_ends_the_connection_and_bodies_are_not_heads() {
        let table: [(&[u8], bool); 10] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", true),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", true),
            (b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            // A body may hold anything; the next head is watched again.
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n\n\n\nGET / HTTP/1.1\r\n\r\n", false),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\nHost: a\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\nHost: a\r\n\r\n", true),
            // After an upgrade or a chunked body, the bytes are not request heads.
            (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x85\n\n\n", false),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n", false),
        ];
        for (bytes, want) in table {
            for piece in [1, 2, 7, bytes.len()] {
                assert_eq!(refused(bytes, piece), want, "{:?} in pieces of {piece}", String::from_utf8_lossy(bytes));
            }
        }
    }
}
