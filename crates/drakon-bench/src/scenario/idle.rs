//! `idle`: N connections, each subscribed to a plain channel, held open and silent. The server's resident memory is
//! read before the first connection and again once all are subscribed and have settled; the difference divided by
//! N is what one idle subscribed connection costs. The connecting phase also gives the handshake + subscribe rate.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::{Context, Name};
use crate::fleet::Fleet;
use crate::report::{self, Step, Table, fmt, ms};
use crate::svg::Scale;
use crate::target::{Kind, Target};
use crate::wire::Subscribe;

const DEFAULT_CONNECTIONS: [usize; 3] = [5_000, 10_000, 15_000];

/// Time for the server to finish its per-connection setup and for the allocator to settle before RSS is read.
const DEFAULT_HOLD_SECS: f64 = 3.0;

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.connections.clone().unwrap_or_else(|| DEFAULT_CONNECTIONS.to_vec());
    let hold = ctx.duration(DEFAULT_HOLD_SECS);
    let mut steps = Vec::new();
    for &n in &sizes {
        for kind in ctx.targets() {
            steps.push(step(ctx, kind, n, hold).await?);
        }
    }

    let mut table = Table::new(
        "idle: subscribed connections held open",
        &[
            "server",
            "conns",
            "connected",
            "failed",
            "conn+sub/s",
            "p50 ms",
            "p99 ms",
            "SYN drops",
            "srv µs/conn",
            "RSS before MiB",
            "RSS after MiB",
            "KiB/conn",
            "other CPU s",
        ],
    );
    for s in &steps {
        table.row(vec![
            s.target.clone(),
            s.connections.to_string(),
            s.connected.to_string(),
            s.failed_connections.to_string(),
            format!("{:.0}", s.connects_per_sec),
            ms(s.connect_latency.as_ref().map(|l| l.p50_us)),
            ms(s.connect_latency.as_ref().map(|l| l.p99_us)),
            fmt(s.listen_overflows.map(|n| n as f64), 0),
            fmt(s.server_cpu_us_per_connection, 1),
            fmt(s.rss_before_bytes.map(|b| b as f64 / 1048576.0), 1),
            fmt(s.rss_after_bytes.map(|b| b as f64 / 1048576.0), 1),
            fmt(s.rss_per_connection_bytes.map(|b| b / 1024.0), 2),
            fmt(s.other_cpu_secs, 2),
        ]);
    }
    let comparison = report::compare(
        &steps,
        &[
            ("KiB per idle connection", "lower", |s| s.rss_per_connection_bytes.map(|b| b / 1024.0)),
            ("handshake+subscribe per second", "higher", |s| Some(s.connects_per_sec)),
        ],
    );
    let charts = [
        report::per_target_chart(
            "server memory per idle subscribed connection",
            "connections",
            "KiB per connection",
            &steps,
            |s| s.target.clone(),
            |s| s.connections as f64,
            |s| s.rss_per_connection_bytes.map(|b| b / 1024.0),
            Scale::Linear,
        ),
        report::per_target_chart(
            "handshake + subscribe rate",
            "connections",
            "connections per second",
            &steps,
            |s| s.target.clone(),
            |s| s.connections as f64,
            |s| Some(s.connects_per_sec),
            Scale::Linear,
        ),
    ];
    let settings = json!({"connections": sizes, "hold_secs": hold.as_secs_f64(), "subscription": "one plain channel per connection"});
    ctx.finish(Name::Idle, settings, steps, comparison, vec![table], &charts)
}

async fn step(ctx: &Context, kind: Kind, n: usize, hold: Duration) -> Result<Step> {
    let bar = ctx.bar(kind.name());
    let mut target = Target::start(kind, &ctx.launch, 16).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = target.rss()?;
    let server_cpu0 = target.cpu()?;
    let own0 = super::own_cpu()?;
    let machine0 = super::machine_cpu()?;
    let overflows0 = crate::procfs::tcp_ext("ListenOverflows");
    let window = std::time::Instant::now();
    let subscribe = Subscribe::Channel { route: "bench".into(), name: "bench.idle".into() };
    let (fleet, ready) = Fleet::connect(&ctx.layout(), target.addr, n, subscribe, false, &bar).await?;
    let server_cpu = target.cpu()?.saturating_sub(server_cpu0).as_secs_f64();
    let generator_cpu = fleet.cpu_secs() + super::own_cpu()? - own0;
    let machine = super::machine_cpu()? - machine0;
    let overflows = crate::procfs::tcp_ext("ListenOverflows").zip(overflows0).map(|(b, a)| b.saturating_sub(a));
    let window = window.elapsed().as_secs_f64();
    bar.set_style(indicatif::ProgressStyle::with_template("  {prefix:>8} {msg}").expect("valid template"));
    bar.set_message(format!("{} connected in {:.2}s; holding {:.0}s", ready.connected, ready.secs, hold.as_secs_f64()));
    tokio::time::sleep(hold).await;
    target.check_alive()?;
    let rss_after = target.rss()?;
    bar.finish_and_clear();
    let mut notes = Vec::new();
    let (other, disturbed) = super::other_cpu(machine, server_cpu, generator_cpu, window);
    notes.extend(disturbed);
    if let Some(e) = &ready.first_error {
        notes.push(format!("first connection error: {e}"));
    }
    let step = Step {
        duration_secs: Some(hold.as_secs_f64()),
        rss_before_bytes: Some(rss_before),
        rss_after_bytes: Some(rss_after),
        rss_per_connection_bytes: (ready.connected > 0)
            .then(|| rss_after.saturating_sub(rss_before) as f64 / ready.connected as f64),
        server_cpu_secs: Some(server_cpu),
        server_cpu_us_per_connection: super::per(server_cpu, ready.connected as u64),
        generator_cpu_secs: Some(generator_cpu),
        other_cpu_secs: Some(other),
        listen_overflows: overflows,
        notes,
        ..ready.step(kind.name(), n)
    };
    println!(
        "  {:>8} {:>6} conns: {} connected ({} failed) in {:.2}s, {:.2} KiB/conn",
        kind.name(),
        n,
        ready.connected,
        ready.failed,
        ready.secs,
        step.rss_per_connection_bytes.unwrap_or(0.0) / 1024.0
    );
    fleet.shutdown().await;
    target.stop().await;
    Ok(step)
}
