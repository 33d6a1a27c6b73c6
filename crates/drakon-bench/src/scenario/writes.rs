//! `writes`: N subscribers spread over many filters (`{"grp": g}`, one per connection), and writes through the
//! verbs at a set rate — half `create` of a new row in some group, half `update` of an existing row of a group.
//! Every write goes the whole way: verb → SQLite transaction with its change-log entry → commit → hub → the
//! subscribers of that group. Reports write → delivery latency, request → reply latency, writes per second, losses,
//! and CPU per write. There is no baseline here: the Node server has no store.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Name, measure_writes};
use crate::fleet::Fleet;
use crate::report::{self, Step, Table, fmt, ms};
use crate::target::{Kind, Target};
use crate::verbs::{self, Planned};
use crate::wire::Subscribe;

const DEFAULT_CONNECTIONS: [usize; 1] = [1_000];
const DEFAULT_RATE: f64 = 500.0;
const DEFAULT_SECS: f64 = 10.0;

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
    let measured = measure_writes(ctx.common.writers, &mut target, &mut fleet, &plan, rate, duration, &bar).await?;
    bar.finish_and_clear();
    let (written, delivered) = (&measured.written, measured.counted.stamped);
    let step = Step { filters: Some(filters), ..measured.step(rate, ready.step("drakon", n)) };
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
