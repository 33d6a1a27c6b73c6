//! `nodes`: several drakon nodes behind one Redis, N connections spread over them, each subscribed to one plain
//! channel; messages published with `POST /api/publish` on the first node reach every node through Redis. Shows
//! that connections scale past one process's open-file cap: how many connected, the handshake + subscribe rate,
//! memory per connection over all nodes, and for the broadcast: deliveries per second, latency and losses.
//!
//! Each node keeps its own SQLite file (plain pub/sub needs no shared store); with PostgreSQL the broadcast path
//! is the same. There is no baseline: a lone Node `ws` server has no multi-node equivalent.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::{Context, Name, own_cpu};
use crate::fleet::{DEFAULT_PER_WORKER, Fleet};
use crate::publish::Publisher;
use crate::redis::Redis;
use crate::report::{Step, Table, fmt, ms};
use crate::target::{Kind, Target};
use crate::wire::Subscribe;

const DEFAULT_CONNECTIONS: usize = 100_000;
/// Connections per node when `--nodes` is not given: well under a process's ~20,000 open files.
const PER_NODE: usize = 16_000;
const DEFAULT_RATE: f64 = 1.0;
const DEFAULT_SECS: f64 = 10.0;
const QUIET: Duration = Duration::from_secs(3);
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.connections.clone().unwrap_or_else(|| vec![DEFAULT_CONNECTIONS]);
    let rate = ctx.common.rate.as_ref().and_then(|r| r.first().copied()).unwrap_or(DEFAULT_RATE);
    let duration = ctx.duration(DEFAULT_SECS);
    let mut steps = Vec::new();
    for &n in &sizes {
        let nodes = ctx.common.nodes.unwrap_or_else(|| n.div_ceil(PER_NODE)).max(1);
        steps.push(step(ctx, n, nodes, rate, duration).await?);
    }
    let mut table = Table::new(
        format!(
            "nodes: drakon nodes behind one Redis, one channel, {:.0} msg/s for {:.0}s",
            rate,
            duration.as_secs_f64()
        ),
        &[
            "nodes",
            "conns",
            "connected",
            "failed",
            "conn+sub/s",
            "KiB/conn",
            "deliv/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "losses",
            "srv µs/deliv",
            "gen µs/deliv",
        ],
    );
    for s in &steps {
        let l = s.latency.as_ref();
        table.row(vec![
            s.nodes.unwrap_or(0).to_string(),
            s.connections.to_string(),
            s.connected.to_string(),
            s.failed_connections.to_string(),
            format!("{:.0}", s.connects_per_sec),
            fmt(s.rss_per_connection_bytes.map(|b| b / 1024.0), 2),
            fmt(s.deliveries_per_sec, 0),
            ms(l.map(|l| l.p50_us)),
            ms(l.map(|l| l.p99_us)),
            ms(l.map(|l| l.max_us)),
            s.losses.unwrap_or(0).to_string(),
            fmt(s.server_cpu_us_per_delivery, 2),
            fmt(s.generator_cpu_us_per_delivery, 2),
        ]);
    }
    let charts = [crate::report::latency_chart("publish → receive latency, all nodes", &steps, |s: &Step| {
        format!("{} conns on {} nodes", s.connected, s.nodes.unwrap_or(0))
    })];
    let settings = json!({
        "connections": sizes, "nodes": ctx.common.nodes, "rate": rate, "duration_secs": duration.as_secs_f64(),
        "payload_bytes": ctx.common.payload, "bus": "one redis-server; each node its own SQLite file",
        "publish": "POST /api/publish on the first node",
    });
    ctx.finish(Name::Nodes, settings, steps, Vec::new(), vec![table], &charts)
}

async fn step(ctx: &Context, n: usize, nodes: usize, rate: f64, duration: Duration) -> Result<Step> {
    let bar = ctx.bar("drakon");
    bar.set_message(format!("starting Redis and {nodes} nodes"));
    let redis = Redis::start().await?;
    let url = redis.url();
    let mut targets = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        targets.push(Target::start_with(Kind::Drakon, &ctx.launch, 16, &[("DRAKON_REDIS_URL", &url)]).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before: u64 = targets.iter().map(Target::rss).sum::<Result<u64>>()?;
    let cpu = |targets: &[Target]| -> Result<f64> {
        Ok(targets.iter().map(Target::cpu).collect::<Result<Vec<_>>>()?.iter().map(Duration::as_secs_f64).sum())
    };
    // As many workers per node as its share needs, so that every node gets the same number of workers.
    let per_node = n.div_ceil(nodes);
    let mut layout = ctx.layout();
    layout.processes = Some(nodes * per_node.div_ceil(DEFAULT_PER_WORKER).max(1));
    let channel = "bench.nodes";
    let subscribe = Subscribe::Channel { route: "bench".into(), name: channel.into() };
    let servers: Vec<_> = targets.iter().map(|t| t.addr).collect();
    let (mut fleet, ready) = Fleet::connect_to(&layout, &servers, n, subscribe, false, &bar).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after: u64 = targets.iter().map(Target::rss).sum::<Result<u64>>()?;

    let mut publisher = Publisher::connect(servers[0]).await?;
    publisher.publish(channel, r#"{"warmup":true}"#).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.start().await?;
    let server_cpu0 = cpu(&targets)?;
    let own0 = own_cpu()?;
    let published =
        super::publish_counting(&bar, &mut publisher, &mut fleet, channel, rate, duration, ctx.common.payload).await?;
    let expected = published.ok * ready.connected as u64;
    bar.set_message(format!("draining, {expected} expected"));
    fleet.drain(expected, QUIET, DRAIN_LIMIT).await?;
    let server_cpu = cpu(&targets)? - server_cpu0;
    let own = own_cpu()? - own0;
    let counted = fleet.report().await?;
    for target in &mut targets {
        target.check_alive()?;
    }
    bar.finish_and_clear();

    let delivered = counted.stamped;
    let generator_cpu = counted.cpu_secs + own;
    let step = Step {
        nodes: Some(nodes),
        rss_before_bytes: Some(rss_before),
        rss_after_bytes: Some(rss_after),
        rss_per_connection_bytes: (ready.connected > 0)
            .then(|| rss_after.saturating_sub(rss_before) as f64 / ready.connected as f64),
        ..super::broadcast_step("drakon", n, &ready, rate, &published, &counted, server_cpu, generator_cpu)
    };
    let l = step.latency.clone().unwrap_or_default();
    println!(
        "  {} nodes, {} of {} connected in {:.1}s: {} delivered of {}, p50 {:.1} ms, p99 {:.1} ms",
        nodes,
        ready.connected,
        n,
        ready.secs,
        delivered,
        expected,
        l.p50_us as f64 / 1000.0,
        l.p99_us as f64 / 1000.0,
    );
    fleet.shutdown().await;
    for target in targets {
        target.stop().await;
    }
    drop(redis);
    Ok(step)
}
