//! `selective`: S subscriptions on S distinct filters (`{"grp": 1..=S}`, many per connection), plus one probe
//! subscription on group 0, and updates of group-0 rows at a set rate. Every write matches exactly one subscription;
//! drakon indexes subscriptions by their equality filter, so the server CPU per write should stay flat as S grows
//! (ARCHITECTURE.md: fan-out cost follows the matching channels). One node holds ~19,000 connections, so large S uses many subscriptions per connection
//! (`max_subscriptions` is raised in the generated config).

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Name, own_cpu, per};
use crate::fleet::Fleet;
use crate::report::{self, Latency, Step, Table, fmt, ms};
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
const QUIET: Duration = Duration::from_secs(2);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

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
    fleet.start().await?;
    let server_cpu0 = target.cpu()?;
    let own0 = own_cpu()?;
    let machine0 = super::machine_cpu()?;
    let window = std::time::Instant::now();
    let plan = |k: u64, ts: u64| Planned {
        frame: format!(
            r#"{{"route":"item","verb":"update","args":{{"id":{},"ts":{ts},"seq":{k}}},"callbackname":"w{k}"}}"#,
            probe_ids[k as usize % PROBE_ROWS]
        ),
        deliveries: 1,
    };
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    bar.set_length(total);
    bar.set_position(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {prefix:>8} writing {bar:30} {pos:>6}/{len:6} writes")
            .expect("valid template"),
    );
    let progress = bar.clone();
    let on_tick = move |k| progress.set_position(k);
    let written = {
        let run = verbs::run_writes(target.addr, ctx.common.writers, rate, duration, &plan, &on_tick);
        tokio::pin!(run);
        loop {
            tokio::select! {
                done = &mut run => break done?,
                delivered = fleet.deliveries(Duration::from_millis(500)) => { delivered?; }
            }
        }
    };
    fleet.drain(written.expected_deliveries, QUIET, DRAIN_LIMIT).await?;
    let server_cpu = target.cpu()?.saturating_sub(server_cpu0).as_secs_f64();
    let own = own_cpu()? - own0;
    let machine = super::machine_cpu()? - machine0;
    let window = window.elapsed().as_secs_f64();
    let counted = fleet.report().await?;
    target.check_alive()?;
    bar.finish_and_clear();

    let delivered = counted.stamped;
    let generator_cpu = counted.cpu_secs + own;
    let mut notes = Vec::new();
    let (other, disturbed) = super::other_cpu(machine, server_cpu, generator_cpu, window);
    notes.extend(disturbed);
    if let Some(e) = &written.first_error {
        notes.push(format!("first failed write: {e}"));
    }
    if delivered > written.expected_deliveries {
        notes.push(format!(
            "{} deliveries beyond the one matching subscription",
            delivered - written.expected_deliveries
        ));
    }
    let step = Step {
        filters: Some(subscriptions + 1),
        rate: Some(rate),
        duration_secs: Some(written.secs),
        rss_before_bytes: Some(rss_before),
        rss_after_bytes: Some(rss_after),
        writes_ok: Some(written.ok),
        writes_failed: Some(written.failed),
        writes_per_sec: Some(written.ok as f64 / written.secs.max(1e-9)),
        expected: Some(written.expected_deliveries),
        delivered: Some(delivered),
        losses: Some(written.expected_deliveries.saturating_sub(delivered)),
        closed_connections: Some(counted.closed),
        deliveries_per_sec: Some(delivered as f64 / written.secs.max(1e-9)),
        latency: Latency::of(&counted.latency),
        reply_latency: Latency::of(&written.reply_latency),
        server_cpu_secs: Some(server_cpu),
        generator_cpu_secs: Some(generator_cpu),
        server_cpu_us_per_write: per(server_cpu, written.ok),
        generator_cpu_us_per_delivery: per(generator_cpu, delivered),
        other_cpu_secs: Some(other),
        notes,
        ..ready.step("drakon", conns)
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
