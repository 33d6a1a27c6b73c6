//! `fanout`: N subscribers of one plain channel; messages published with `POST /api/publish` at a set rate, each
//! stamped with its send time. Deliveries per second, publish → receive latency, losses (every subscriber should
//! receive every message), and the CPU the server and the generator spent per delivery.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::{Context, Name, own_cpu};
use crate::fleet::Fleet;
use crate::publish::Publisher;
use crate::report::{self, Step, Table, fmt, ms};
use crate::svg::Scale;
use crate::target::{Kind, Target};
use crate::wire::Subscribe;

const DEFAULT_CONNECTIONS: [usize; 3] = [1_000, 5_000, 10_000];
const DEFAULT_RATE: f64 = 10.0;
const DEFAULT_SECS: f64 = 10.0;

/// After the last publish: how long with no new delivery counts as "everything that will arrive has arrived".
const QUIET: Duration = Duration::from_secs(2);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.connections.clone().unwrap_or_else(|| DEFAULT_CONNECTIONS.to_vec());
    let rates = ctx.common.rate.clone().unwrap_or_else(|| vec![DEFAULT_RATE]);
    let duration = ctx.duration(DEFAULT_SECS);
    let mut steps = Vec::new();
    for &rate in &rates {
        for &n in &sizes {
            for kind in ctx.targets() {
                steps.push(step(ctx, kind, n, rate, duration).await?);
            }
        }
    }

    let mut table = Table::new(
        format!("fanout: one channel, {}-byte payloads, {:.0}s per step", ctx.common.payload, duration.as_secs_f64()),
        &[
            "server",
            "subs",
            "msg/s",
            "deliv/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "losses",
            "closed",
            "srv µs/deliv",
            "gen µs/deliv",
            "srv CPU s",
            "gen CPU s",
            "other CPU s",
        ],
    );
    for s in &steps {
        let l = s.latency.as_ref();
        table.row(vec![
            s.target.clone(),
            s.connected.to_string(),
            fmt(s.rate, 0),
            fmt(s.deliveries_per_sec, 0),
            ms(l.map(|l| l.p50_us)),
            ms(l.map(|l| l.p99_us)),
            ms(l.map(|l| l.max_us)),
            s.losses.unwrap_or(0).to_string(),
            s.closed_connections.unwrap_or(0).to_string(),
            fmt(s.server_cpu_us_per_delivery, 2),
            fmt(s.generator_cpu_us_per_delivery, 2),
            fmt(s.server_cpu_secs, 2),
            fmt(s.generator_cpu_secs, 2),
            fmt(s.other_cpu_secs, 2),
        ]);
    }
    let comparison = report::compare(
        &steps,
        &[
            ("deliveries per second", "higher", |s| s.deliveries_per_sec),
            ("p50 latency ms", "lower", |s| s.latency.as_ref().map(|l| l.p50_us as f64 / 1000.0)),
            ("p99 latency ms", "lower", |s| s.latency.as_ref().map(|l| l.p99_us as f64 / 1000.0)),
            ("max latency ms", "lower", |s| s.latency.as_ref().map(|l| l.max_us as f64 / 1000.0)),
            ("server CPU µs per delivery", "lower", |s| s.server_cpu_us_per_delivery),
        ],
    );
    let multi_rate = rates.len() > 1;
    let label = move |s: &Step| {
        if multi_rate {
            format!("{} {} subs {:.0}/s", s.target, s.connected, s.rate.unwrap_or(0.0))
        } else {
            format!("{} {} subs", s.target, s.connected)
        }
    };
    let series = move |s: &Step| {
        if multi_rate { format!("{} {:.0} msg/s", s.target, s.rate.unwrap_or(0.0)) } else { s.target.clone() }
    };
    let charts = [
        report::latency_chart("publish → receive latency distribution", &steps, label),
        report::per_target_chart(
            "deliveries per second against subscribers",
            "subscribers",
            "deliveries per second",
            &steps,
            series,
            |s| s.connected as f64,
            |s| s.deliveries_per_sec,
            Scale::Linear,
        ),
        report::per_target_chart(
            "p99 latency against subscribers",
            "subscribers",
            "p99 latency (ms)",
            &steps,
            series,
            |s| s.connected as f64,
            |s| s.latency.as_ref().map(|l| l.p99_us as f64 / 1000.0),
            Scale::Linear,
        ),
        report::per_target_chart(
            "server CPU per delivery",
            "subscribers",
            "µs of server CPU per delivery",
            &steps,
            series,
            |s| s.connected as f64,
            |s| s.server_cpu_us_per_delivery,
            Scale::Linear,
        ),
    ];
    let settings = json!({
        "connections": sizes, "rates": rates, "duration_secs": duration.as_secs_f64(),
        "payload_bytes": ctx.common.payload, "publish": "POST /api/publish over one keep-alive connection",
    });
    ctx.finish(Name::Fanout, settings, steps, comparison, vec![table], &charts)
}

async fn step(ctx: &Context, kind: Kind, n: usize, rate: f64, duration: Duration) -> Result<Step> {
    let bar = ctx.bar(kind.name());
    let mut target = Target::start(kind, &ctx.launch, 16).await?;
    let channel = "bench.fan";
    let subscribe = Subscribe::Channel { route: "bench".into(), name: channel.into() };
    let (mut fleet, ready) = Fleet::connect(&ctx.layout(), target.addr, n, subscribe, false, &bar).await?;
    let mut publisher = Publisher::connect(target.addr).await?;
    // One unmeasured message (without a stamp, so it can never be counted) warms both ends up.
    publisher.publish(channel, r#"{"warmup":true}"#).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    fleet.start().await?;
    let server_cpu0 = target.cpu()?;
    let own0 = own_cpu()?;
    let machine0 = super::machine_cpu()?;
    let drops0 = crate::procfs::backlog_drops();
    let window = std::time::Instant::now();
    let published =
        super::publish_counting(&bar, &mut publisher, &mut fleet, channel, rate, duration, ctx.common.payload).await?;
    let expected = published.ok * ready.connected as u64;
    bar.set_message(format!("draining, {expected} expected"));
    fleet.drain(expected, QUIET, DRAIN_LIMIT).await?;
    let server_cpu = target.cpu()?.saturating_sub(server_cpu0).as_secs_f64();
    let own = own_cpu()? - own0;
    let machine = super::machine_cpu()? - machine0;
    let drops = crate::procfs::backlog_drops().zip(drops0).map(|(b, a)| b.saturating_sub(a));
    let window = window.elapsed().as_secs_f64();
    let counted = fleet.report().await?;
    target.check_alive()?;
    bar.finish_and_clear();

    let delivered = counted.stamped;
    let generator_cpu = counted.cpu_secs + own;
    let mut step = super::broadcast_step(kind.name(), n, &ready, rate, &published, &counted, server_cpu, generator_cpu);
    let (other, disturbed) = super::other_cpu(machine, server_cpu, generator_cpu, window);
    step.other_cpu_secs = Some(other);
    step.notes.splice(0..0, disturbed);
    step.backlog_drops = drops;
    if let Some(n) = drops.filter(|&n| n > 0) {
        step.notes.push(format!(
            "the kernel dropped {n} packets at a full receive backlog (net.core.netdev_max_backlog); TCP resent \
             them at least 200 ms later, which shows in the latency tail"
        ));
    }
    if published.secs > duration.as_secs_f64() * 1.1 {
        step.notes.push(format!(
            "the publisher fell behind: {} messages took {:.1}s (each waits for the previous reply)",
            published.ok, published.secs
        ));
    }
    let l = step.latency.clone().unwrap_or_default();
    println!(
        "  {:>8} {:>6} subs × {:.0} msg/s: {} delivered of {}, p50 {:.2} ms, p99 {:.2} ms, server {:.2} µs/delivery, generator {:.2} µs/delivery",
        kind.name(),
        ready.connected,
        rate,
        delivered,
        expected,
        l.p50_us as f64 / 1000.0,
        l.p99_us as f64 / 1000.0,
        step.server_cpu_us_per_delivery.unwrap_or(0.0),
        step.generator_cpu_us_per_delivery.unwrap_or(0.0),
    );
    fleet.shutdown().await;
    target.stop().await;
    Ok(step)
}
