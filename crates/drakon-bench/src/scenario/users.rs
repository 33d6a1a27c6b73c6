//! `users`: U connections, each signed in as its own user (a token in the upgrade URL), each subscribed to "my items"
//! (route `mine`: rule `owner = $user.id`) and to one list shared by everybody (route `list`, `{"grp": 1}`, under
//! the rule "own rows or shared ones"). Two kinds of write are measured on the same connections:
//!
//! - **own**: updates of one user's rows, which concern that user alone. With per-user rules every user has
//!   channels of their own, and the hub finds the one concerned through its filter index, so the server CPU per
//!   write should stay flat from 1,000 to 10,000 users (the shape of `selective`).
//! - **shared**: updates of the shared list's rows, which every user receives. Under the rule each user's
//!   subscription is a channel of its own, so a write is matched and encoded once per user; the baseline step
//!   subscribes the same number of anonymous connections to the same rows on the rule-less route `item` (one shared
//!   channel), and the report compares the server CPU per delivery of the two.

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Name, measure_writes};
use crate::fleet::Fleet;
use crate::report::{self, Step, Table, fmt, ms};
use crate::svg::Scale;
use crate::target::{JWT_SECRET, Kind, Target};
use crate::verbs::{self, Planned};
use crate::wire::{Subscribe, user_of};

const DEFAULT_USERS: [usize; 2] = [1_000, 10_000];
const DEFAULT_OWN_RATE: f64 = 500.0;
/// Shared writes a second: each reaches every user, so 5 a second to 10,000 users is 50,000 deliveries a second.
const DEFAULT_SHARED_RATE: f64 = 5.0;
const DEFAULT_SECS: f64 = 10.0;
/// Rows each kind of write cycles through.
const ROWS: usize = 16;
/// The `grp` of the shared list's rows.
const SHARED_GROUP: usize = 1;
/// The `grp` of the users' own rows.
const OWN_GROUP: usize = 2;

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.connections.clone().unwrap_or_else(|| DEFAULT_USERS.to_vec());
    let rates = ctx.common.rate.clone().unwrap_or_default();
    let own_rate = rates.first().copied().unwrap_or(DEFAULT_OWN_RATE);
    let shared_rate = rates.get(1).copied().unwrap_or(DEFAULT_SHARED_RATE);
    let duration = ctx.duration(DEFAULT_SECS);
    let mut steps = Vec::new();
    for &users in &sizes {
        steps.extend(with_rules(ctx, users, own_rate, shared_rate, duration).await?);
    }
    let largest = sizes.iter().copied().max().unwrap_or(DEFAULT_USERS[1]);
    steps.push(without_rules(ctx, largest, shared_rate, duration).await?);

    let mut table = Table::new(
        "users: per-user rules, writes that concern one user and writes to a list every user shares",
        &[
            "step",
            "users",
            "writes/s done",
            "failed",
            "deliveries/s",
            "srv µs/write",
            "srv µs/delivery",
            "p50 ms",
            "p99 ms",
            "losses",
            "RSS MiB",
            "other CPU s",
        ],
    );
    for s in &steps {
        let l = s.latency.as_ref();
        table.row(vec![
            s.target.clone(),
            s.connected.to_string(),
            fmt(s.writes_per_sec, 0),
            s.writes_failed.unwrap_or(0).to_string(),
            fmt(s.deliveries_per_sec, 0),
            fmt(s.server_cpu_us_per_write, 1),
            fmt(s.server_cpu_us_per_delivery, 2),
            ms(l.map(|l| l.p50_us)),
            ms(l.map(|l| l.p99_us)),
            s.losses.unwrap_or(0).to_string(),
            fmt(s.rss_after_bytes.map(|b| b as f64 / 1048576.0), 1),
            fmt(s.other_cpu_secs, 2),
        ]);
    }
    let shared = |name: &str| steps.iter().find(|s| s.target == name && s.connected == largest);
    let mut ratio =
        Table::new("shared list: server CPU per delivery, with per-user rules ÷ without", &["users", "ratio"]);
    if let (Some(ruled), Some(plain)) = (shared("shared (rules)"), shared("shared (no rules)"))
        && let (Some(a), Some(b)) = (ruled.server_cpu_us_per_delivery, plain.server_cpu_us_per_delivery)
    {
        ratio.row(vec![largest.to_string(), fmt(Some(a / b), 2)]);
    }
    let charts = [report::per_target_chart(
        "server CPU per write that concerns one user, against connected users",
        "users (log)",
        "µs of server CPU per write",
        &steps.iter().filter(|s| s.target == "own (rules)").cloned().collect::<Vec<_>>(),
        |s| s.target.clone(),
        |s| s.connected as f64,
        |s| s.server_cpu_us_per_write,
        Scale::Log,
    )];
    let settings = json!({
        "users": sizes, "own_rate": own_rate, "shared_rate": shared_rate, "duration_secs": duration.as_secs_f64(),
        "writers": ctx.common.writers,
        "subscriptions": "each user: `mine` (rule owner = $user.id) and `list` {grp: 1} (rule: own or shared rows)",
    });
    ctx.finish(Name::Users, settings, steps, Vec::new(), vec![table, ratio], &charts)
}

/// `count` rows of `grp` owned by `owner`, shared or not; their ids.
async fn rows(target: &Target, grp: usize, owner: &str, shared: bool) -> Result<Vec<i64>> {
    let fields = format!(r#""grp":{grp},"owner":"{owner}","shared":{shared}"#);
    verbs::create_rows_with(target.addr, &vec![fields; ROWS]).await
}

/// An update of `ids[k % ROWS]` that `deliveries` subscribers receive.
fn updates(ids: &[i64], deliveries: u64) -> impl Fn(u64, u64) -> Planned + Sync + '_ {
    move |k, ts| Planned {
        frame: format!(
            r#"{{"route":"item","verb":"update","args":{{"id":{},"ts":{ts},"seq":{k}}},"callbackname":"w{k}"}}"#,
            ids[k as usize % ROWS]
        ),
        deliveries,
    }
}

async fn with_rules(
    ctx: &Context,
    users: usize,
    own_rate: f64,
    shared_rate: f64,
    duration: Duration,
) -> Result<Vec<Step>> {
    let bar = ctx.bar("drakon");
    let mut target = Target::start(Kind::Drakon, &ctx.launch, 8).await?;
    let own = rows(&target, OWN_GROUP, &user_of(0), false).await?;
    let shared = rows(&target, SHARED_GROUP, "nobody", true).await?;
    let rss_before = target.rss()?;
    let subscribe = Subscribe::Users { jwt_secret: JWT_SECRET.into(), list_group: SHARED_GROUP };
    let (mut fleet, ready) = Fleet::connect(&ctx.layout(), target.addr, users, subscribe, false, &bar).await?;
    if ready.failed > 0 {
        bail!("{} of {users} users failed to connect: {:?}", ready.failed, ready.first_error);
    }
    let rss_after = target.rss()?;
    let mut steps = Vec::new();
    for (name, ids, rate, deliveries) in
        [("own (rules)", &own, own_rate, 1), ("shared (rules)", &shared, shared_rate, ready.connected as u64)]
    {
        let measured = measure_writes(
            ctx.common.writers,
            &mut target,
            &mut fleet,
            &updates(ids, deliveries),
            rate,
            duration,
            &bar,
        )
        .await?;
        let step = Step {
            rss_before_bytes: Some(rss_before),
            rss_after_bytes: Some(rss_after),
            ..measured.step(rate, ready.step(name, users))
        };
        print_step(&step);
        steps.push(step);
    }
    bar.finish_and_clear();
    fleet.shutdown().await;
    target.stop().await;
    Ok(steps)
}

/// The same shared rows and writes, subscribed by anonymous connections on the route without rules.
async fn without_rules(ctx: &Context, users: usize, rate: f64, duration: Duration) -> Result<Step> {
    let bar = ctx.bar("drakon");
    let mut target = Target::start(Kind::Drakon, &ctx.launch, 8).await?;
    let shared = rows(&target, SHARED_GROUP, "nobody", true).await?;
    let rss_before = target.rss()?;
    // One group: every connection subscribes to `{"grp": 1}` on `item`.
    let subscribe = Subscribe::Groups { route: "item".into(), groups: 1, per_conn: 1 };
    let (mut fleet, ready) = Fleet::connect(&ctx.layout(), target.addr, users, subscribe, false, &bar).await?;
    if ready.failed > 0 {
        bail!("{} of {users} connections failed: {:?}", ready.failed, ready.first_error);
    }
    let rss_after = target.rss()?;
    let plan = updates(&shared, ready.connected as u64);
    let measured = measure_writes(ctx.common.writers, &mut target, &mut fleet, &plan, rate, duration, &bar).await?;
    bar.finish_and_clear();
    let step = Step {
        rss_before_bytes: Some(rss_before),
        rss_after_bytes: Some(rss_after),
        ..measured.step(rate, ready.step("shared (no rules)", users))
    };
    print_step(&step);
    fleet.shutdown().await;
    target.stop().await;
    Ok(step)
}

fn print_step(s: &Step) {
    println!(
        "  {:>18} {:>6} users: {} writes, {} delivered, p99 {:.2} ms, server {:.1} µs/write, {:.2} µs/delivery",
        s.target,
        s.connected,
        s.writes_ok.unwrap_or(0),
        s.delivered.unwrap_or(0),
        s.latency.as_ref().map_or(0, |l| l.p99_us) as f64 / 1000.0,
        s.server_cpu_us_per_write.unwrap_or(0.0),
        s.server_cpu_us_per_delivery.unwrap_or(0.0),
    );
}
