//! The fan-out publisher: `POST /api/publish` over one keep-alive HTTP/1.1 connection, at a set rate.
//!
//! A hand-written client, because the requests are always the same shape and the benchmark should not carry an
//! HTTP stack it does not need. Both servers answer with a `content-length`, which is all it reads.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

use crate::stamp::{now_micros, payload};
use crate::target::API_KEY;

#[derive(Debug)]
pub struct Publisher {
    stream: BufReader<TcpStream>,
    server: SocketAddr,
    host: String,
}

/// What a publishing run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    pub ok: u64,
    pub failed: u64,
    /// Seconds from the first request to the last reply.
    pub secs: f64,
}

impl Publisher {
    pub async fn connect(server: SocketAddr) -> Result<Publisher> {
        let stream = TcpStream::connect(server).await.with_context(|| format!("connecting to {server}"))?;
        stream.set_nodelay(true)?;
        Ok(Publisher { stream: BufReader::new(stream), server, host: server.to_string() })
    }

    /// Publishes `data` (a JSON text) to `channel` and waits for the reply.
    pub async fn publish(&mut self, channel: &str, data: &str) -> Result<()> {
        let body = format!("{{\"channel\":\"{channel}\",\"data\":{data}}}");
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut status = String::new();
        self.stream.read_line(&mut status).await?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("the server closed the publish connection");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().context("content-length")?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        if status.split_whitespace().nth(1) != Some("200") {
            bail!("publish answered {}: {}", status.trim_end(), String::from_utf8_lossy(&body));
        }
        Ok(())
    }

    /// Publishes `rate` messages a second of `size` bytes for `duration`. `on_tick` is called after each message
    /// with the count so far.
    ///
    /// Each message is stamped with the time it was *due*, not the time it went out: a server that answers
    /// `POST /api/publish` only after its fan-out (as the Node baseline does) holds the publisher back, and stamping
    /// the late send time would hide that wait from the latency (coordinated omission). A publisher that fell
    /// behind catches up at once.
    pub async fn run(
        &mut self,
        channel: &str,
        rate: f64,
        duration: Duration,
        size: usize,
        mut on_tick: impl FnMut(u64),
    ) -> Result<Published> {
        let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
        let period = 1.0 / rate.max(0.001);
        let mut every = tokio::time::interval(Duration::from_secs_f64(period));
        every.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let started = std::time::Instant::now();
        let t0 = now_micros();
        let mut out = Published::default();
        for seq in 0..total {
            every.tick().await;
            let due = t0 + (seq as f64 * period * 1e6) as u64;
            match self.publish(channel, &payload(due, seq, size)).await {
                Ok(()) => out.ok += 1,
                Err(e) => {
                    out.failed += 1;
                    if out.failed == 1 {
                        eprintln!("publish failed: {e:#}");
                    }
                    // The connection is in an unknown state: start a fresh one for the next message.
                    if let Ok(fresh) = Publisher::connect(self.server).await {
                        *self = fresh;
                    }
                }
            }
            on_tick(seq + 1);
        }
        out.secs = started.elapsed().as_secs_f64();
        Ok(out)
    }
}
