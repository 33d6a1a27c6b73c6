//! `writes`: N subscribers spread over many filters (`{"grp": g}`, one per connection), and writes through the
//! verbs at a set rate — half `create` of a new row in some group, half `update` of an existing row of a group.
//! Every write goes the whole way: verb → SQLite transaction with its change-log entry → commit → hub → the
//! subscribers of that group. Reports write → delivery latency, request → reply latency, writes per second, losses,
//! and CPU per write. There is no baseline here: the Node server has no store.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Name, own_cpu, per};
use crate::fleet::Fleet;
use crate::report::{self, Latency, Step, Table, fmt, ms};
use crate::target::{Kind, Target};
use crate::verbs::{self, Planned};
use crate::wire::Subscribe;

const DEFAULT_CONNECTIONS: [usize; 1] = [1_000];
const DEFAULT_RATE: f64 = 500.0;
const DEFAULT_SECS: f64 = 10.0;
const QUIET: Duration = Duration::from_secs(2);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.connections.clone().unwrap_or_else(|| DEFAULT_CONNECTIONS.to_vec());
    let rates = ctx.common.rate.clone().unwrap_or_else(|| vec![DEFAULT_RATE]);
    let duration = ctx.duration(DEFAULT_SECS);
    let mut steps = Vec::new();
    for &rate in &rates {
        for &n in &sizes {
            let filters = ctx.common.filters.unwrap_or((n / 10).max(1)).clamp(1, n.max(1));
            steps.push(step(ctx, n, filters, rate, duration).await?);
        }
    }
    let mut table = Table::new(
        "writes: create/update verbs through the store, subscribers spread over filters",
        &[
            "server",
            "subs",
            "filters",
            "writes/s asked",
            "writes/s done",
            "failed",
            "reply p99 ms",
            "deliv/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "losses",
            "srv µs/write",
            "gen µs/deliv",
            "other CPU s",
        ],
    );
    for s in &steps {
        let l = s.latency.as_ref();
        table.row(vec![
            s.target.clone(),
            s.connected.to_string(),
            fmt(s.filters.map(|f| f as f64), 0),
            fmt(s.rate, 0),
            fmt(s.writes_per_sec, 0),
            s.writes_failed.unwrap_or(0).to_string(),
            ms(s.reply_latency.as_ref().map(|l| l.p99_us)),
            fmt(s.deliveries_per_sec, 0),
            ms(l.map(|l| l.p50_us)),
            ms(l.map(|l| l.p99_us)),
            ms(l.map(|l| l.max_us)),
            s.losses.unwrap_or(0).to_string(),
            fmt(s.server_cpu_us_per_write, 1),
            fmt(s.generator_cpu_us_per_delivery, 2),
            fmt(s.other_cpu_secs, 2),
        ]);
    }
    let charts = [
        report::latency_chart("write → delivery latency distribution", &steps, |s| {
            format!("{} subs / {} filters, {:.0} writes/s", s.connected, s.filters.unwrap_or(0), s.rate.unwrap_or(0.0))
        }),
        report::per_target_chart(
            "writes per second done against asked",
            "writes per second asked",
            "writes per second done",
            &steps,
            |s| s.target.clone(),
            |s| s.rate.unwrap_or(0.0),
            |s| s.writes_per_sec,
            crate::svg::Scale::Linear,
        ),
    ];
    let settings = json!({
        "connections": sizes, "rates": rates, "duration_secs": duration.as_secs_f64(), "writers": ctx.common.writers,
        "mix": "half create (new row in a group), half update (an existing row of a group)",
    });
    ctx.finish(Name::Writes, settings, steps, Vec::new(), vec![table], &charts)
}

async fn step(ctx: &Context, n: usize, filters: usize, rate: f64, duration: Duration) -> Result<Step> {
    let bar = ctx.bar("drakon");
    let mut target = Target::start(Kind::Drakon, &ctx.launch, 16).await?;
    // One row per group for the updates, made before anyone subscribes so that it publishes nothing.
    let groups: Vec<usize> = (1..=filters).collect();
    let ids = verbs::create_rows(target.addr, &groups).await?;
    let subscribe = Subscribe::Groups { route: "item".into(), groups: filters, per_conn: 1 };
    let mut per_group = vec![0u64; filters + 1];
    for i in 0..n {
        for g in subscribe.groups_of(i) {
            per_group[g] += 1;
        }
    }
    let (mut fleet, ready) = Fleet::connect(&ctx.layout(), target.addr, n, subscribe, false, &bar).await?;
    if ready.failed > 0 {
        bail!("{} of {n} subscribers failed to connect: {:?}", ready.failed, ready.first_error);
    }
    fleet.start().await?;
    let server_cpu0 = target.cpu()?;
    let own0 = own_cpu()?;
    let machine0 = super::machine_cpu()?;
    let window = std::time::Instant::now();
    let pad = "p".repeat(32);
    let plan = |k: u64, ts: u64| {
        let g = 1 + (k / 2) as usize % filters;
        let frame = if k.is_multiple_of(2) {
            format!(
                r#"{{"route":"item","verb":"create","args":{{"grp":{g},"ts":{ts},"seq":{k},"pad":"{pad}"}},"callbackname":"w{k}"}}"#
            )
        } else {
            format!(
                r#"{{"route":"item","verb":"update","args":{{"id":{},"ts":{ts},"seq":{k}}},"callbackname":"w{k}"}}"#,
                ids[g - 1]
            )
        };
        Planned { frame, deliveries: per_group[g] }
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
    if let Some(c) = &counted.first_close {
        notes.push(format!("first close during the run: {c}"));
    }
    let step = Step {
        filters: Some(filters),
        rate: Some(rate),
        duration_secs: Some(written.secs),
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
        server_cpu_us_per_delivery: per(server_cpu, delivered),
        generator_cpu_us_per_delivery: per(generator_cpu, delivered),
        server_cpu_us_per_write: per(server_cpu, written.ok),
        other_cpu_secs: Some(other),
        notes,
        ..ready.step("drakon", n)
    };
    let l = step.latency.clone().unwrap_or_default();
    println!(
        "  {:>8} {:>6} subs / {} filters × {:.0} writes/s: {} ok, {} delivered of {}, p50 {:.2} ms, p99 {:.2} ms, server {:.1} µs/write",
        "drakon",
        ready.connected,
        filters,
        rate,
        written.ok,
        delivered,
        written.expected_deliveries,
        l.p50_us as f64 / 1000.0,
        l.p99_us as f64 / 1000.0,
        step.server_cpu_us_per_write.unwrap_or(0.0),
    );
    fleet.shutdown().await;
    target.stop().await;
    Ok(step)
}
