//! Writes through drakon's verbs: the setup rows, and the measured stream of `create` / `update` requests.
//!
//! Writers are open-loop: each connection sends on a fixed schedule and does not wait for the reply before the next
//! request (drakon answers a connection's requests in order, so replies are matched by position). A server that
//! falls behind therefore shows up as growing latency, not as a politely slower writer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::stamp::now_micros;
use crate::worker::{MAX_LATENCY_US, client_config, new_histogram};

type Ws = WebSocketStream<TcpStream>;

/// How long writers wait for the replies still due once the schedule is over.
const REPLY_GRACE: Duration = Duration::from_secs(10);

async fn connect(server: SocketAddr) -> Result<Ws> {
    let stream = TcpStream::connect(server).await.with_context(|| format!("connecting to {server}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{server}/data/websocket");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(client_config())).await?;
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Creates one row of `item` per entry of `groups` (its `grp`), pipelined over one connection; returns their ids.
pub async fn create_rows(server: SocketAddr, groups: &[usize]) -> Result<Vec<i64>> {
    let rows: Vec<String> = groups.iter().map(|g| format!(r#""grp":{g}"#)).collect();
    create_rows_with(server, &rows).await
}

/// Creates one row per entry of `fields` (more `"name":value` pairs of an `item`, such as an owner); their ids.
pub async fn create_rows_with(server: SocketAddr, fields: &[String]) -> Result<Vec<i64>> {
    let mut ws = connect(server).await?;
    let mut ids = Vec::with_capacity(fields.len());
    for chunk in fields.chunks(256) {
        for (i, f) in chunk.iter().enumerate() {
            let frame = format!(
                r#"{{"route":"item","verb":"create","args":{{{f},"ts":0,"seq":0,"pad":"setup"}},"callbackname":"c{i}"}}"#
            );
            ws.feed(Message::text(frame)).await?;
        }
        ws.flush().await?;
        for _ in chunk {
            let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await?)?;
            match reply["data"]["id"].as_i64() {
                Some(id) if reply["context"]["state"] == "success" => ids.push(id),
                _ => bail!("create failed: {reply}"),
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(ids)
}

/// What a run of writes did.
#[derive(Debug)]
pub struct Written {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// Deliveries the successful writes should cause, by the plan's reckoning.
    pub expected_deliveries: u64,
    /// Request → reply, in microseconds.
    pub reply_latency: Histogram<u64>,
    /// From the first request to the end of the schedule.
    pub secs: f64,
}

/// One write of the schedule: the request frame and how many deliveries it should cause if it succeeds.
pub struct Planned {
    pub frame: String,
    pub deliveries: u64,
}

/// Sends `rate` writes a second for `duration` over `connections` connections; `plan(k, ts)` makes write `k`,
/// stamped `ts`. `on_tick` sees the number of writes sent so far.
pub async fn run_writes(
    server: SocketAddr,
    connections: usize,
    rate: f64,
    duration: Duration,
    plan: &(dyn Fn(u64, u64) -> Planned + Sync),
    on_tick: &(dyn Fn(u64) + Sync),
) -> Result<Written> {
    let connections = connections.max(1);
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        sockets.push(connect(server).await?);
    }
    let started = Instant::now();
    let sent_counter = std::sync::atomic::AtomicU64::new(0);
    let runs = sockets.into_iter().enumerate().map(|(c, ws)| {
        let sent_counter = &sent_counter;
        async move {
            // Connection c sends writes c, c + connections, c + 2·connections, …
            let mine: Vec<u64> = (c as u64..total).step_by(connections).collect();
            writer(ws, rate / connections as f64, mine, plan, &|| {
                let n = sent_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                on_tick(n);
            })
            .await
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut out = Written {
        sent: 0,
        ok: 0,
        failed: 0,
        first_error: None,
        expected_deliveries: 0,
        reply_latency: new_histogram(),
        secs: started.elapsed().as_secs_f64(),
    };
    for r in results {
        let r = r?;
        out.sent += r.sent;
        out.ok += r.ok;
        out.failed += r.failed;
        out.expected_deliveries += r.expected_deliveries;
        out.secs = out.secs.max(r.secs);
        if out.first_error.is_none() {
            out.first_error = r.first_error;
        }
        out.reply_latency.add(&r.reply_latency).context("merging histograms")?;
    }
    Ok(out)
}

async fn writer(
    mut ws: Ws,
    rate: f64,
    writes: Vec<u64>,
    plan: &(dyn Fn(u64, u64) -> Planned + Sync),
    sent_one: &(dyn Fn() + Sync),
) -> Result<Written> {
    let period = 1.0 / rate.max(0.001);
    let mut every = tokio::time::interval(Duration::from_secs_f64(period));
    // Open loop: ticks missed while the socket was busy fire at once, so the offered rate holds. Each write is
    // stamped, and its reply timed, from when it was due rather than when it went out (no coordinated omission).
    every.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let t0 = now_micros();
    let mut nth = 0u64;
    let mut due: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut out = Written {
        sent: 0,
        ok: 0,
        failed: 0,
        first_error: None,
        expected_deliveries: 0,
        reply_latency: new_histogram(),
        secs: 0.0,
    };
    let mut next = writes.into_iter();
    let mut sending = true;
    let mut grace = None;
    loop {
        if !sending && due.is_empty() {
            break;
        }
        tokio::select! {
            _ = every.tick(), if sending => {
                match next.next() {
                    Some(k) => {
                        let offset = nth as f64 * period;
                        nth += 1;
                        let planned = plan(k, t0 + (offset * 1e6) as u64);
                        due.push_back((started + Duration::from_secs_f64(offset), planned.deliveries));
                        ws.send(Message::text(planned.frame)).await?;
                        out.sent += 1;
                        sent_one();
                    }
                    None => {
                        sending = false;
                        out.secs = started.elapsed().as_secs_f64();
                        grace = Some(tokio::time::Instant::now() + REPLY_GRACE);
                    }
                }
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => bail!("writer connection closed: {f:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("writer connection ended"),
                };
                let t = text.as_str();
                if !t.contains("\"client_callback_name\"") {
                    continue;
                }
                let Some((at, deliveries)) = due.pop_front() else { bail!("a reply nobody asked for: {t}") };
                let us = (at.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
                out.reply_latency.saturating_record(us);
                if t.contains("\"state\":\"success\"") {
                    out.ok += 1;
                    out.expected_deliveries += deliveries;
                } else {
                    out.failed += 1;
                    if out.first_error.is_none() {
                        out.first_error = Some(t.chars().take(300).collect());
                    }
                }
            }
            () = async { tokio::time::sleep_until(grace.expect("guarded")).await }, if grace.is_some() => {
                out.failed += due.len() as u64;
                out.first_error.get_or_insert_with(|| format!("{} replies still missing after {REPLY_GRACE:?}", due.len()));
                break;
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(out)
}
