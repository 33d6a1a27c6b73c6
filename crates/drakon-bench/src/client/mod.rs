//! The lean WebSocket client of the worker's connections: a hand-written opening handshake and frame reader over
//! the raw TCP stream, so that receiving a frame costs a header parse and a slice, not tokio-tungstenite's
//! per-message copies, UTF-8 validation and allocation. Other scenarios' writers keep using tokio-tungstenite.

pub mod frame;
pub mod handshake;

use std::io::{self, ErrorKind};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;

use frame::{BINARY, CLOSE, Frame, Reader, TEXT, describe_close, encode_masked};

/// One upgraded connection: the socket, the bytes read and not yet taken, and the frames queued to send.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    reader: Reader,
    /// Client frames (requests, pongs) waiting for [`Connection::flush`]; empty, and unallocated, most of the time.
    out: Vec<u8>,
}

impl Connection {
    /// Performs the opening handshake for `path` on `stream`. Whatever the server sent after its response stays
    /// in the reader, as the first frames.
    pub async fn handshake(stream: TcpStream, host: &str, path: &str) -> Result<Connection> {
        let key = generate_key();
        let mut conn = Connection { stream, reader: Reader::default(), out: Vec::new() };
        conn.stream.write_all(handshake::request(host, path, &key).as_bytes()).await?;
        loop {
            conn.fill().await.context("reading the upgrade response")?;
            match handshake::check_response(conn.reader.held(), &key) {
                Ok(Some(head)) => {
                    conn.reader.consume(head);
                    return Ok(conn);
                }
                Ok(None) => {}
                Err(e) => bail!(e),
            }
        }
    }

    /// Queues a text frame for the next [`Connection::flush`].
    pub fn queue_text(&mut self, text: &str) {
        encode_masked(TEXT, text.as_bytes(), &mut self.out);
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads what the socket has into the reader; an orderly end of the stream is an `UnexpectedEof` error.
    pub async fn fill(&mut self) -> io::Result<()> {
        match self.stream.read(self.reader.spare()).await? {
            0 => Err(io::Error::new(ErrorKind::UnexpectedEof, "connection ended")),
            n => {
                self.reader.filled(n);
                Ok(())
            }
        }
    }

    /// The next frame already read, other than a ping (whose pong is queued); `Ok(None)` when more must be read.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, &'static str> {
        self.reader.next_frame(&mut self.out)
    }

    /// Hands every text and binary payload to `on_data` until the connection ends, and says how it ended: `close
    /// <code> <reason>` for a close frame (which is answered), otherwise the error.
    pub async fn receive(&mut self, mut on_data: impl FnMut(&[u8])) -> String {
        loop {
            loop {
                match self.reader.next_frame(&mut self.out) {
                    Ok(Some(f)) if f.opcode == TEXT || f.opcode == BINARY => on_data(f.payload),
                    Ok(Some(f)) if f.opcode == CLOSE => {
                        let why = describe_close(f.payload);
                        // Echo the code, as RFC 6455 §5.5.1 asks; the server may already be gone.
                        encode_masked(CLOSE, f.payload.get(..2).unwrap_or_default(), &mut self.out);
                        let _ = self.flush().await;
                        return why;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return e.to_owned(),
                }
            }
            if let Err(e) = self.flush().await {
                return e.to_string();
            }
            if let Err(e) = self.fill().await {
                return e.to_string();
            }
        }
    }
}
