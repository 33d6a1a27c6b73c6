//! `selective`: S subscriptions on S distinct filters (`{"grp": 1..=S}`, many per connection), plus one probe
//! subscription on group 0, and updates of group-0 rows at a set rate. Every write matches exactly one subscription;
//! drakon indexes subscriptions by their equality filter, so the server CPU per write should stay flat as S grows
//! (ARCHITECTURE.md: fan-out cost follows the matching channels). One node holds ~19,000 connections, so large S uses many subscriptions per connection
//! (`max_subscriptions` is raised in the generated config).

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Name, measure_writes};
use crate::fleet::Fleet;
use crate::report::{self, Step, Table, fmt, ms};
use crate::svg::Scale;
use crate::target::{Kind, Target};
use crate::verbs::{self, Planned};
use crate::wire::Subscribe;

const DEFAULT_SUBSCRIPTIONS: [usize; 3] = [1_000, 10_000, 100_000];
const DEFAULT_CONNECTIONS: usize = 1_000;
const DEFAULT_RATE: f64 = 500.0;
const DEFAULT_SECS: f64 = 10.0;
/// Group-0 rows the writes cycle through.
const PROBE_ROWS: usize = 16;

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.subscriptions.clone().unwrap_or_else(|| DEFAULT_SUBSCRIPTIONS.to_vec());
    let connections = ctx.common.connections.as_ref().and_then(|c| c.first().copied()).unwrap_or(DEFAULT_CONNECTIONS);
    let rates = ctx.common.rate.clone().unwrap_or_else(|| vec![DEFAULT_RATE]);
    let duration = ctx.duration(DEFAULT_SECS);
    let mut steps = Vec::new();
    for &rate in &rates {
        for &s in &sizes {
            steps.push(step(ctx, s, connections.min(s).max(1), rate, duration).await?);
        }
    }
    let mut table = Table::new(
        "selective: writes that match one subscription among many on other filters",
        &[
            "subscriptions",
            "conns",
            "per conn",
            "writes/s done",
            "failed",
            "srv µs/write",
            "srv CPU s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "reply p99 ms",
            "losses",
            "RSS MiB",
            "bytes/sub",
            "other CPU s",
        ],
    );
    for s in &steps {
        let l = s.latency.as_ref();
        let per_sub = match (s.rss_before_bytes, s.rss_after_bytes) {
            (Some(a), Some(b)) if s.subscriptions > 0 => Some(b.saturating_sub(a) as f64 / s.subscriptions as f64),
            _ => None,
        };
        table.row(vec![
            s.subscriptions.to_string(),
            s.connected.to_string(),
            (s.subscriptions / s.connected.max(1)).to_string(),
            fmt(s.writes_per_sec, 0),
            s.writes_failed.unwrap_or(0).to_string(),
            fmt(s.server_cpu_us_per_write, 1),
            fmt(s.server_cpu_secs, 2),
            ms(l.map(|l| l.p50_us)),
            ms(l.map(|l| l.p99_us)),
            ms(l.map(|l| l.max_us)),
            ms(s.reply_latency.as_ref().map(|l| l.p99_us)),
            s.losses.unwrap_or(0).to_string(),
            fmt(s.rss_after_bytes.map(|b| b as f64 / 1048576.0), 1),
            fmt(per_sub, 0),
            fmt(s.other_cpu_secs, 2),
        ]);
    }
    let charts = [
        report::per_target_chart(
            "server CPU per write against subscriptions on other filters",
            "subscriptions (log)",
            "µs of server CPU per write",
            &steps,
            |s| s.target.clone(),
            |s| s.subscriptions as f64,
            |s| s.server_cpu_us_per_write,
            Scale::Log,
        ),
        report::latency_chart("write → delivery latency distribution", &steps, |s| {
            format!("{} subscriptions", s.subscriptions)
        }),
    ];
    let settings = json!({
        "subscriptions": sizes, "connections": connections, "rates": rates, "duration_secs": duration.as_secs_f64(),
        "writers": ctx.common.writers, "writes": "update of a group-0 row, which exactly one subscription matches",
    });
    ctx.finish(Name::Selective, settings, steps, Vec::new(), vec![table], &charts)
}

async fn step(ctx: &Context, subscriptions: usize, conns: usize, rate: f64, duration: Duration) -> Result<Step> {
    let bar = ctx.bar("drakon");
    let per_conn = subscriptions.div_ceil(conns);
    let mut target = Target::start(Kind::Drakon, &ctx.launch, per_conn + 8).await?;
    let probe_ids = verbs::create_rows(target.addr, &[0; PROBE_ROWS]).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = target.rss()?;
    let subscribe = Subscribe::Groups { route: "item".into(), groups: subscriptions, per_conn };
    let (mut fleet, ready) = Fleet::connect(&ctx.layout(), target.addr, conns, subscribe, true, &bar).await?;
    if ready.failed > 0 {
        bail!("{} of {conns} connections failed: {:?}", ready.failed, ready.first_error);
    }
    let rss_after = target.rss()?;
    let plan = |k: u64, ts: u64| Planned {
        frame: format!(
            r#"{{"route":"item","verb":"update","args":{{"id":{},"ts":{ts},"seq":{k}}},"callbackname":"w{k}"}}"#,
            probe_ids[k as usize % PROBE_ROWS]
        ),
        deliveries: 1,
    };
    let measured = measure_writes(ctx.common.writers, &mut target, &mut fleet, &plan, rate, duration, &bar).await?;
    bar.finish_and_clear();
    let (written, delivered) = (&measured.written, measured.counted.stamped);
    let step = Step {
        filters: Some(subscriptions + 1),
        rss_before_bytes: Some(rss_before),
        rss_after_bytes: Some(rss_after),
        ..measured.step(rate, ready.step("drakon", conns))
    };
    let l = step.latency.clone().unwrap_or_default();
    println!(
        "  {:>8} {:>7} subscriptions on {} conns × {:.0} writes/s: {} ok, {} delivered, p99 {:.2} ms, server {:.1} µs/write",
        "drakon",
        ready.subscriptions,
        ready.connected,
        rate,
        written.ok,
        delivered,
        l.p99_us as f64 / 1000.0,
        step.server_cpu_us_per_write.unwrap_or(0.0),
    );
    fleet.shutdown().await;
    target.stop().await;
    Ok(step)
}
