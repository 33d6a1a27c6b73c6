//! `presence`: rooms of 10 to 10,000 members (the sizes are `--connections`), each member its own signed-in user on a
//! connection of its own, all joining one presence room (a channel of the channel route `room`).
//!
//! - **Filling the room**: the S − 1 connections connect, sign in and join as fast as they are let in. Measured: the
//!   server CPU per connection, every frame the members receive meanwhile (the messages the joins cost: a small room
//!   tells each join to everyone, a room above 100 members sends one batch per 20 ms window), and the server's
//!   memory. Next to the largest room, the same connections signed in without joining tell what a join itself
//!   costs in CPU and memory.
//! - **One member joining**: one more connection joins the room of S − 1 (making S) and leaves again, over and over
//!   (`--rate` requests a second, joins and leaves alternating), its state carrying the send time. Measured: the
//!   server CPU per join and leave, the frames per join, and join → event latency at the other members (the event
//!   that names the joiner, whether a `member_joined` or a batch).

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Context, Name, measure_writes};
use crate::fleet::Fleet;
use crate::report::{Step, Table, fmt, ms};
use crate::target::{JWT_SECRET, Kind, Target};
use crate::verbs::Planned;
use crate::wire::{Subscribe, presence_join};

const DEFAULT_SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Join and leave requests a second, alternating: 5 joins a second, each reaching every member of the room.
const DEFAULT_RATE: f64 = 10.0;
const DEFAULT_SECS: f64 = 10.0;
/// How long a storm of joins is given to send its last batch before the frames are counted.
const SETTLE: Duration = Duration::from_millis(500);

pub async fn run(ctx: &Context) -> Result<String> {
    let sizes = ctx.common.connections.clone().unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    if sizes.iter().any(|&s| s < 2) {
        bail!("presence rooms need at least 2 members (the joiner and someone to tell)");
    }
    let rate = ctx.common.rate.as_ref().and_then(|r| r.first().copied()).unwrap_or(DEFAULT_RATE);
    let duration = ctx.duration(DEFAULT_SECS);
    let largest = sizes.iter().copied().max().unwrap_or(DEFAULT_SIZES[3]);

    let signed_in = filling(ctx, largest, false).await?;
    let mut fills = Vec::new();
    let mut probes = Vec::new();
    for &size in &sizes {
        let (fill, probe) = room(ctx, size, rate, duration).await?;
        fills.push(fill);
        probes.push(probe);
    }

    let mut fill_table = Table::new(
        "presence: a room filling up (each member connects, signs in and joins)",
        &["members", "joined/s", "srv µs/member", "frames received", "frames/member", "RSS KiB/member"],
    );
    for s in fills.iter().chain([&signed_in]) {
        fill_table.row(vec![
            if s.target == "signed in" {
                format!("{} (no join)", s.connected + 1)
            } else {
                (s.connected + 1).to_string()
            },
            fmt(Some(s.connects_per_sec), 0),
            fmt(per_member(s.server_cpu_secs, s.connected).map(|s| s * 1e6), 1),
            s.frames.map_or("—".into(), |d| d.to_string()),
            fmt(s.frames.map(|d| d as f64 / s.connected.max(1) as f64), 2),
            fmt(rss_per_member(s).map(|b| b / 1024.0), 2),
        ]);
    }
    let mut join_cost = Table::new(
        "presence: what a join adds, in the largest room (filling ÷ member − signed in without joining ÷ member)",
        &["members", "srv µs/join", "RSS bytes/membership"],
    );
    if let Some(full) = fills.iter().find(|s| s.connected + 1 == largest) {
        let cpu = per_member(full.server_cpu_secs, full.connected)
            .zip(per_member(signed_in.server_cpu_secs, signed_in.connected))
            .map(|(a, b)| (a - b) * 1e6);
        let rss = rss_per_member(full).zip(rss_per_member(&signed_in)).map(|(a, b)| a - b);
        join_cost.row(vec![largest.to_string(), fmt(cpu, 1), fmt(rss, 0)]);
    }
    let mut probe_table = Table::new(
        "presence: one member joining and leaving a room, over and over",
        &[
            "members",
            "joins",
            "failed",
            "srv µs/join+leave",
            "frames/join+leave",
            "join→event p50 ms",
            "p99 ms",
            "losses",
        ],
    );
    for s in &probes {
        let joins = s.writes_ok.unwrap_or(0) / 2;
        probe_table.row(vec![
            s.connected.saturating_add(1).to_string(),
            joins.to_string(),
            s.writes_failed.unwrap_or(0).to_string(),
            fmt(per_member(s.server_cpu_secs, joins as usize).map(|s| s * 1e6), 1),
            fmt(s.frames.map(|frames| frames as f64 / joins.max(1) as f64), 1),
            ms(s.latency.as_ref().map(|l| l.p50_us)),
            ms(s.latency.as_ref().map(|l| l.p99_us)),
            s.losses.unwrap_or(0).to_string(),
        ]);
    }
    let settings = json!({
        "sizes": sizes, "rate": rate, "duration_secs": duration.as_secs_f64(), "writers": 1,
        "large_room": 100, "batch_window_ms": 20,
        "members": "each its own user, signed in with a token on the upgrade; the joiner is anonymous",
    });
    let mut steps = fills;
    steps.push(signed_in);
    steps.extend(probes);
    ctx.finish(Name::Presence, settings, steps, Vec::new(), vec![fill_table, join_cost, probe_table], &[])
}

fn per_member(cpu_secs: Option<f64>, members: usize) -> Option<f64> {
    cpu_secs.filter(|_| members > 0).map(|cpu| cpu / members as f64)
}

fn rss_per_member(s: &Step) -> Option<f64> {
    let (before, after) = (s.rss_before_bytes?, s.rss_after_bytes?);
    (s.connected > 0).then(|| after.saturating_sub(before) as f64 / s.connected as f64)
}

fn room_name(size: usize) -> String {
    format!("room.s{size}")
}

/// Connects `size − 1` members to a fresh server; with `join`, each joins the room as it connects. The step holds
/// the connection figures, the server's CPU and memory over the connecting, and (`delivered`) every frame the
/// members received meanwhile.
async fn filling(ctx: &Context, size: usize, join: bool) -> Result<Step> {
    let (step, fleet, target) = fill(ctx, size, join).await?;
    fleet.shutdown().await;
    target.stop().await;
    Ok(step)
}

async fn fill(ctx: &Context, size: usize, join: bool) -> Result<(Step, Fleet, Target)> {
    let bar = ctx.bar("drakon");
    let target = Target::start(Kind::Drakon, &ctx.launch, 8).await?;
    let members = size - 1;
    let subscribe = Subscribe::Presence { jwt_secret: JWT_SECRET.into(), room: join.then(|| room_name(size)) };
    let rss_before = target.rss()?;
    let cpu_before = target.cpu()?;
    let (mut fleet, ready) = Fleet::connect_counting(&ctx.layout(), target.addr, members, subscribe, &bar).await?;
    if ready.failed > 0 {
        bail!("{} of {members} members failed to connect: {:?}", ready.failed, ready.first_error);
    }
    tokio::time::sleep(SETTLE).await;
    let cpu = target.cpu()?.saturating_sub(cpu_before).as_secs_f64();
    let rss_after = target.rss()?;
    let counted = fleet.report().await?;
    bar.finish_and_clear();
    let name = if join { "filling" } else { "signed in" };
    let step = Step {
        rss_before_bytes: Some(rss_before),
        rss_after_bytes: Some(rss_after),
        server_cpu_secs: Some(cpu),
        frames: join.then_some(counted.frames),
        ..ready.step(name, members)
    };
    println!(
        "  {name:>10} {:>6} members: {:.0} connected/s, server {:.1} µs/member, {} frames received",
        size,
        step.connects_per_sec,
        cpu / members as f64 * 1e6,
        counted.frames
    );
    Ok((step, fleet, target))
}

/// Fills a room of `size − 1` members, then has one more connection join and leave it at `rate` requests a second.
async fn room(ctx: &Context, size: usize, rate: f64, duration: Duration) -> Result<(Step, Step)> {
    let (fill_step, mut fleet, mut target) = fill(ctx, size, true).await?;
    let bar = ctx.bar("drakon");
    let room = room_name(size);
    let others = (size - 1) as u64;
    let plan = |k: u64, ts: u64| {
        if k.is_multiple_of(2) {
            Planned { frame: presence_join(&room, &format!(r#"{{"ts":{ts}}}"#), &format!("w{k}")), deliveries: others }
        } else {
            let frame = format!(
                r#"{{"route":"room","verb":"leave_presence","args":{{"name":"{room}","channel":"p"}},"callbackname":"w{k}"}}"#
            );
            Planned { frame, deliveries: 0 }
        }
    };
    // One writer: its joins and leaves must alternate in order on one connection.
    let measured = measure_writes(1, &mut target, &mut fleet, &plan, rate, duration, &bar).await?;
    bar.finish_and_clear();
    let step = Step {
        // Every frame the members received, joins' and leaves' alike.
        frames: Some(measured.counted.frames),
        ..measured.step(rate, fill_step.clone())
    };
    let step = Step { target: "joining".into(), ..step };
    let joins = step.writes_ok.unwrap_or(0) / 2;
    println!(
        "  {:>10} {:>6} members: {} joins, server {:.1} µs/join+leave, {:.1} frames/join+leave, p99 {:.2} ms",
        "joining",
        size,
        joins,
        measured.server_cpu / joins.max(1) as f64 * 1e6,
        measured.counted.frames as f64 / joins.max(1) as f64,
        step.latency.as_ref().map_or(0, |l| l.p99_us) as f64 / 1000.0,
    );
    fleet.shutdown().await;
    target.stop().await;
    Ok((fill_step, step))
}
