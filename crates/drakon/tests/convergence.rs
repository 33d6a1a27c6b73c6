//! Convergence: every client's live mirror equals what the database says its filter selects, after
//! random writes through verbs and straight into the database, disconnects and resumes, a stalled client that the
//! server closes with 4008, and failures in the middle. One scenario, run on two deployments
//! (`convergence/deployment.rs`):
//!
//! - `mirrors_converge_to_the_database`: one `drakon serve` on SQLite; the writer's SQL goes into the file, and the
//!   server is restarted (SIGTERM, then a new process on the same file) mid-run.
//! - `mirrors_converge_across_three_nodes`: three `drakon serve` on one throwaway PostgreSQL with a throwaway Redis
//!   between them. Mirrors are spread over the nodes and each reconnect goes to a random live node, so resumes with
//!   `since` land on other nodes than the one a mirror left; the writer's verbs go to random nodes and its SQL goes
//!   to PostgreSQL through tokio-postgres, as `psql` would write. Mid-run one node is killed (SIGKILL; its clients
//!   go elsewhere) and a replacement joins, and Redis is killed and started again, losing what was published
//!   meanwhile.
//!
//! Rust mirrors ([`drakon_testkit::mirror::LiveMirror`]), one per filter (an id, an `in` list, a range, each bool
//! value, a related field alone and with a local condition, no filter, the lists themselves, and one that stalls),
//! and the JS client in Node (`convergence/node/mirror.mjs`, behind a round-robin TCP relay) follow the nodes while
//! a writer changes rows at random. At the end the writer stops and a few *barrier* rows are created that, between
//! them, every mirror's filter selects: every node delivers each model's changes in offset order (repairing gaps
//! from the change log) and each connection is FIFO, so a mirror that holds its barrier rows has been sent
//! everything before them. Then each mirror must equal a `SELECT` of its filter, written by hand in SQL that SQLite
//! and PostgreSQL read alike and run on the database by the test's own connection (`convergence/db.rs`), row for
//! row and field for field.
//!
//! The run is random but seeded: it prints its seed, and `DRAKON_SEED=<seed>` replays the same choices (timing
//! still varies, as it does for real clients). `DRAKON_CONVERGENCE_SECS` sets the length (default 60 on one node,
//! 65 on three); a bound on the whole run fails a hang with the seed. `convergence/related.rs` holds small
//! deterministic cases of divergences the random run found, `convergence/joining.rs` one of a node failing to
//! start that the three-node run found.

// The test's own modules; a test crate's root resolves `mod` beside it, so the paths are spelled out.
#[path = "convergence/db.rs"]
mod db;
#[path = "convergence/deployment.rs"]
mod deployment;
#[path = "convergence/joining.rs"]
mod joining;
#[path = "convergence/mirrors.rs"]
mod mirrors;
#[path = "convergence/node.rs"]
mod node;
#[path = "convergence/related.rs"]
mod related;
#[path = "convergence/world.rs"]
mod world;
#[path = "convergence/writer.rs"]
mod writer;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drakon_testkit::mirror::{LiveMirror, MirrorRow};
use drakon_testkit::{Client, Closed};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use db::Db;
use deployment::{Cluster, Deployment, Disruption};
use mirrors::{Cmd, Finished, MirrorHandle};
use world::{Gate, Spec};
use writer::{sql_bool, sql_text};

const BIN: &str = env!("CARGO_BIN_EXE_drakon");

/// The drakon close code for a connection whose outbound queue filled.
const SLOW_CONSUMER: u16 = 4008;
/// The close code of a server going away.
const GOING_AWAY: u16 = 1001;
/// Text of each item of the stall's burst. The sockets' buffers hold a few MB on loopback; large frames fill them
/// with a few hundred events, so that the server's queue of 512 frames fills soon after.
const BURST_TEXT_BYTES: usize = 16 * 1024;

/// Prints the seed when the test fails, wherever it fails.
struct SeedOnPanic(u64, Deployment);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("convergence ({}) FAILED with seed {1}; replay with DRAKON_SEED={1}", self.1.name(), self.0);
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_converge_to_the_database() {
    converge(Deployment::OneSqliteNode, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_converge_across_three_nodes() {
    converge(Deployment::ThreePostgresNodes, 65).await;
}

async fn converge(deployment: Deployment, default_secs: u64) {
    let seed = env_u64("DRAKON_SEED").unwrap_or_else(|| RandomState::new().hash_one(std::process::id()));
    let secs = env_u64("DRAKON_CONVERGENCE_SECS").unwrap_or(default_secs).max(20);
    println!("convergence ({}): seed {seed} (replay with DRAKON_SEED={seed}), about {secs} s", deployment.name());
    let _guard = SeedOnPanic(seed, deployment);
    // A bound on the whole run: a hang fails with the seed instead of holding CI.
    let budget = Duration::from_secs(secs * 2 + 60);
    tokio::time::timeout(budget, run(seed, secs, deployment))
        .await
        .unwrap_or_else(|_| panic!("the run did not finish within {budget:?} (seed {seed})"));
}

async fn run(seed: u64, secs: u64, deployment: Deployment) {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A short log makes long absences end in reloads; a long one keeps more history for a failure's story.
    let retention = if rng.random_bool(0.35) { rng.random_range(2000..6000) } else { rng.random_range(20_000..60_000) };
    let mut cluster = Cluster::start(deployment, world::config(retention)).await;
    let db = cluster.db().await;
    let (p1, p2) = seed_rows(&db, &mut rng).await;
    let gate: Gate = cluster.gate.clone();
    println!(
        "convergence: {} up in {:.1} s ({}); log retention {retention} changes per model; protected lists {p1} and {p2}",
        deployment.name(),
        start.elapsed().as_secs_f64(),
        cluster.nodes().iter().map(|(name, url)| format!("{name} at {url}")).collect::<Vec<_>>().join(", ")
    );

    let specs = world::specs(p1, p2);
    let stalled = specs.len() - 1;
    let mut handles: Vec<MirrorHandle> = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ (0x100 + i as u64));
        handles.push(mirrors::spawn(spec, &format!("mirror{i}"), gate.clone(), i, rng, start).await);
    }
    let fast = handles.iter().position(|h| h.spec.label == "all items").expect("an all-items mirror");

    // The JS client, in Node, through a relay whose port survives restarts and kills.
    let proxy = node::Proxy::start(gate.clone()).await;
    let node_spec =
        Spec::item("JS client: n < 50, not done", json!({"n__lt": 50, "done": false}), "n < 50 AND NOT done");
    let mut node_mirror = node::NodeMirror::start(&proxy.ws_url(), node_spec.route, &node_spec.filter).await;
    println!("convergence: Node mirror started: {}", node_mirror.dump().await.summary);

    let stop = Arc::new(AtomicBool::new(false));
    let writer =
        writer::Writer::new(ChaCha8Rng::seed_from_u64(seed ^ 0xfeed), cluster.db().await, gate.clone(), vec![p1, p2]);
    let writer = tokio::spawn(writer.run(stop.clone()));

    // The timeline: random disconnects throughout, the deployment's disruptions at their moments, then quiescence.
    let writing = Duration::from_secs(secs.saturating_sub(20).max(10));
    let write_end = start + writing;
    let mut pending: Vec<(Instant, Disruption)> =
        deployment.timeline().into_iter().map(|(at, what)| (start + writing.mul_f64(at), what)).collect();
    let stall_at = pending.iter().find(|(_, what)| *what == Disruption::Stall).expect("a stall").0;
    // A disconnected mirror is away for up to 6 s; none is away when the stall starts, so the all-items mirror
    // can tell when the burst has been fanned out.
    let calm = stall_at.checked_sub(Duration::from_secs(7)).unwrap_or(start).max(start);
    let mut stall_report = None;
    let mut next_disconnect = start + Duration::from_millis(rng.random_range(200..1200));
    let mut disconnects = 0;
    loop {
        let now = Instant::now();
        // A disruption may run late; the write phase lasts until all of them have happened.
        if now >= write_end && pending.is_empty() {
            break;
        }
        if let Some(&(at, what)) = pending.first()
            && now >= at
        {
            pending.remove(0);
            match what {
                Disruption::Stall => {
                    stall_report = Some(stall(&handles[stalled], &handles[fast], &db, &gate, p2).await)
                }
                Disruption::RestartNode => {
                    println!("convergence: restarting the node at {:.1} s", start.elapsed().as_secs_f64());
                    cluster.restart_node(&mut rng, start).await;
                }
                Disruption::KillAndReplaceNode => {
                    let nodes = cluster.nodes();
                    // Half the time the first node, which relays the change log to Redis: another takes over.
                    let victim = if rng.random_bool(0.5) { 0 } else { rng.random_range(1..nodes.len()) };
                    let (name, url) = &nodes[victim];
                    let there = handles.iter().filter(|h| h.node().as_ref() == Some(url)).count();
                    println!(
                        "convergence: killing {name}{} at {:.1} s, with {there} mirrors connected to it",
                        if victim == 0 { " (the relay)" } else { "" },
                        start.elapsed().as_secs_f64()
                    );
                    cluster.kill_and_replace(victim, &mut rng, start).await;
                }
                Disruption::RestartRedis => {
                    println!("convergence: restarting Redis at {:.1} s", start.elapsed().as_secs_f64());
                    cluster.restart_redis(&mut rng, start).await;
                }
            }
            continue;
        }
        if now >= next_disconnect {
            if !(calm..stall_at).contains(&now) || stall_report.is_some() {
                // One more target than Rust mirrors: the Node mirror, whose connection the relay cuts.
                let target = rng.random_range(0..=handles.len());
                let pause = match rng.random_range(0..20) {
                    0 => Duration::from_millis(rng.random_range(3000..6000)),
                    1..6 => Duration::from_millis(rng.random_range(800..3000)),
                    _ => Duration::from_millis(rng.random_range(0..800)),
                };
                let graceful = rng.random_bool(0.5);
                match handles.get(target) {
                    Some(handle) => handle.tx.send(Cmd::Disconnect { pause, graceful }).expect("mirror task alive"),
                    None => proxy.cut(),
                }
                disconnects += 1;
            }
            next_disconnect = now + Duration::from_millis(rng.random_range(200..1200));
        }
        let mut wake = next_disconnect.min(write_end);
        if let Some(&(at, _)) = pending.first() {
            wake = wake.min(at);
        }
        tokio::time::sleep_until(wake).await;
    }

    stop.store(true, Ordering::Relaxed);
    let report = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer stops")
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    println!(
        "convergence: {:.1} s of writing, {} changes to items, {disconnects} disconnects ordered",
        start.elapsed().as_secs_f64(),
        db.head("todo_item").await
    );
    for (what, n) in &report.ops {
        println!("  {n:6} {what}");
    }
    for event in &cluster.events {
        println!("convergence: {event}");
    }

    // Quiescence: barrier rows after every other write; each mirror waits for the ones its filter selects.
    let barriers = {
        let urls = gate.read().await;
        write_barriers(&world::pick(&urls, &mut rng), p1).await
    };
    let mut expected = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut finishing = Vec::new();
    for handle in &handles {
        let want = db.select(&handle.spec).await;
        let ids: Vec<i64> = barriers.iter().copied().filter(|id| want.contains_key(id)).collect();
        assert!(
            !ids.is_empty(),
            "{}: no barrier row matches this mirror's filter; the test must add one",
            handle.spec.label
        );
        let (reply, answer) = oneshot::channel();
        handle.tx.send(Cmd::Finish { ids, deadline, reply }).expect("mirror task alive");
        finishing.push(answer);
        expected.push(want);
    }
    let mut failures = Vec::new();
    let mut closes_1001 = 0;
    let mut moves = 0;
    for ((handle, answer), want) in handles.into_iter().zip(finishing).zip(&expected) {
        let Finished { mirror, journal, moves: moved } = match answer.await {
            Ok(done) => done,
            Err(_) => {
                let err = handle.task.await.expect_err("a mirror task that dropped its reply panicked");
                std::panic::resume_unwind(err.into_panic());
            }
        };
        closes_1001 += mirror.closes().iter().filter(|c| c.code == Some(GOING_AWAY)).count();
        moves += moved;
        let diff = world::diff(mirror.rows(), want);
        let stats = mirror.stats();
        println!(
            "  {:28} {:4} rows, offset {:6}; {:6} applied, {:5} skipped, {:2} replays ({} events), {:2} reloads, {:2} closes, {:2} moves{}",
            handle.spec.label,
            mirror.rows().len(),
            mirror.last_offset(),
            stats.applied,
            stats.skipped,
            stats.replays,
            stats.replayed,
            stats.reloads,
            mirror.closes().len(),
            moved,
            if diff.is_empty() { String::new() } else { format!(", {} DIFFERENCES", diff.len()) },
        );
        if let Some(first) = mirror.anomalies().first() {
            println!("      {} anomalies, the first: {first}", mirror.anomaly_count());
        }
        if !diff.is_empty() {
            failures.push(describe_failure(&db, &handle.spec, &mirror, &journal, &diff, want).await);
        }
    }

    if let Some(failure) = check_node_mirror(node_mirror, &node_spec, &db, &barriers, deadline).await {
        failures.push(failure);
    }

    failures.extend(cluster.stop().await);

    let stall_report = stall_report.expect("the run reaches the stall");
    println!("convergence: stall: {}", stall_report.summary);
    if !stall_report.saw_slow_consumer_close {
        failures.push(format!("the stalled mirror was never closed with {SLOW_CONSUMER}: {}", stall_report.summary));
    }
    match deployment {
        Deployment::OneSqliteNode if closes_1001 == 0 => {
            failures.push(format!("no mirror saw the restart's {GOING_AWAY} close"))
        }
        Deployment::OneSqliteNode => {}
        Deployment::ThreePostgresNodes => println!("convergence: {moves} resumes went to another node"),
    }
    let internal: Vec<&String> = report.verb_errors.iter().filter(|e| e.contains("\"internal\"")).collect();
    if !internal.is_empty() {
        failures.push(format!("verbs failed with internal errors: {internal:?}"));
    }
    if !report.verb_errors.is_empty() {
        println!("convergence: {} verb errors, first: {}", report.verb_errors.len(), report.verb_errors[0]);
    }
    assert!(
        failures.is_empty(),
        "convergence ({}) failed (seed {seed}, replay with DRAKON_SEED={seed}):\n{}",
        deployment.name(),
        failures.join("\n\n")
    );
    println!(
        "convergence: every mirror equals the database ({}, seed {seed}, {:.1} s)",
        deployment.name(),
        start.elapsed().as_secs_f64()
    );
}

/// Waits until the Node mirror holds the barrier rows its filter selects, compares it with the database and
/// stops it; returns what differs.
async fn check_node_mirror(
    mut mirror: node::NodeMirror,
    spec: &Spec,
    db: &Db,
    barriers: &[i64],
    deadline: Instant,
) -> Option<String> {
    let want = db.select(spec).await;
    let ids: Vec<i64> = barriers.iter().copied().filter(|id| want.contains_key(id)).collect();
    assert!(!ids.is_empty(), "{}: no barrier row matches this mirror's filter; the test must add one", spec.label);
    let dump = mirror.until_holds(&ids, deadline).await;
    mirror.quit().await;
    let diff = world::diff(&dump.rows, &want);
    let differences = if diff.is_empty() { String::new() } else { format!(", {} DIFFERENCES", diff.len()) };
    println!("  {:28} {:4} rows; {}{differences}", spec.label, dump.rows.len(), dump.summary);
    if diff.is_empty() {
        return None;
    }
    let mut out = format!(
        "the Node mirror ({} {}): {} rows, the database selects {}; {} differences ({}):",
        spec.route,
        spec.filter,
        dump.rows.len(),
        want.len(),
        diff.len(),
        dump.summary
    );
    for line in diff.iter().take(40) {
        out.push_str(&format!("\n    {line}"));
    }
    Some(out)
}

/// Two protected lists (`alpha` and `beta`), a few others, and items spread over them, written from outside
/// drakon. Returns the protected lists' ids.
async fn seed_rows(db: &Db, rng: &mut ChaCha8Rng) -> (i64, i64) {
    let names = ["alpha", "beta", "gamma", "Alpha", "alpha"];
    let lists: Vec<String> =
        names.iter().map(|name| format!("({}, {})", sql_text(name), rng.random_range(0..10))).collect();
    db.execute(&format!("INSERT INTO todo_list (name, rank) VALUES {}", lists.join(", "))).await;
    // A fresh database: these are the lists just written, in order.
    let lists = db.ids("todo_list").await;
    assert_eq!(lists.len(), names.len(), "the database was fresh");
    let items: Vec<String> = (0..150)
        .map(|i| {
            let list = *lists.choose(rng).expect("lists");
            format!(
                "({}, {}, {}, {list})",
                sql_text(&format!("seed {i}")),
                sql_bool(rng.random_bool(0.5)),
                rng.random_range(0..100)
            )
        })
        .collect();
    db.execute(&format!("INSERT INTO todo_item (text, done, n, todo_list) VALUES {}", items.join(", "))).await;
    (lists[0], lists[1])
}

/// What the stall showed.
struct StallReport {
    saw_slow_consumer_close: bool,
    summary: String,
}

/// Stops the stalled mirror reading, then writes a burst of large new items (each a `created` event, which the
/// server cannot conflate as it can merge updates of one row) and deletes them again, until the server gives up on
/// the mirror; then lets it read again, see the 4008 close, reconnect and resume. A burst that the socket buffers
/// and the queue absorb leaves the mirror open: the next attempt writes twice as much. An attempt whose close is
/// lost to a connection reset is tried again too (the report says so). The stalled mirror connects to the node the
/// all-items mirror is on, whose progress tells when that node has fanned the burst out.
async fn stall(stalled: &MirrorHandle, fast: &MirrorHandle, db: &Db, gate: &Gate, list: i64) -> StallReport {
    let mut summary = Vec::new();
    for attempt in 0..4u32 {
        let at = match fast.node() {
            Some(url) => url,
            None => gate.read().await[0].clone(),
        };
        let (ack, acked) = oneshot::channel();
        stalled.tx.send(Cmd::Stall { at, ack }).expect("stalled mirror task alive");
        acked.await.expect("the mirror stalls");
        let count = (800i64 << attempt).min(3200);
        let began = Instant::now();
        let text = format!("burst {attempt} {}", "x".repeat(BURST_TEXT_BYTES));
        db.burst(count, &text, list).await;
        let end = db.head("todo_item").await;
        // The all-items mirror reads everything: once it has applied `end`, the fan-out has queued the whole
        // burst for the stalled connection too (or given up on it).
        let deadline = Instant::now() + Duration::from_secs(30);
        while fast.progress.load(Ordering::Relaxed) < end && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fanned_out = began.elapsed();
        let (reply, outcome) = oneshot::channel();
        stalled.tx.send(Cmd::Resume { until: end, reply }).expect("stalled mirror task alive");
        let outcome: Option<Closed> = outcome.await.expect("the mirror reads again");
        let line = format!(
            "attempt {attempt}: {} changes up to offset {end}, fanned out in {:.2} s, then {}",
            count * 2,
            fanned_out.as_secs_f64(),
            match &outcome {
                Some(c) if c.code.is_none() && c.reason.contains("reset") => format!(
                    "the connection was reset before the close frame could be read ({:?}): the server dropped its \
                     socket with unread input from the client",
                    c.reason
                ),
                Some(c) => format!("closed with {:?} {:?}", c.code, c.reason),
                None => "the mirror read it all and stayed open".into(),
            }
        );
        println!("convergence: stall {line}");
        summary.push(line);
        if outcome.is_some_and(|c| c.code == Some(SLOW_CONSUMER)) {
            return StallReport { saw_slow_consumer_close: true, summary: summary.join("; ") };
        }
    }
    StallReport { saw_slow_consumer_close: false, summary: summary.join("; ") }
}

/// Rows that, between them, every mirror's filter selects: an item in list P1 that is done with `n` in range,
/// and items that are not done in new lists named `alpha` (with a small `n`) and `beta`. Returns their ids and the
/// lists'.
async fn write_barriers(url: &str, p1: i64) -> Vec<i64> {
    let mut client = Client::connect(url).await;
    let mut ids = Vec::new();
    let one =
        client.ok("todo-item", "create", json!({"text": "barrier one", "done": true, "n": 20, "todo_list": p1})).await;
    ids.push(id_of(&one));
    for (name, n) in [("alpha", 5), ("beta", 70)] {
        let list = client.ok("todo-list", "create", json!({"name": name})).await;
        ids.push(id_of(&list));
        let item = client
            .ok(
                "todo-item",
                "create",
                json!({"text": format!("barrier {name}"), "done": false, "n": n, "todo_list": list["id"]}),
            )
            .await;
        ids.push(id_of(&item));
    }
    ids
}

fn id_of(row: &Value) -> i64 {
    row["id"].as_i64().unwrap_or_else(|| panic!("no id in {row}"))
}

async fn describe_failure(
    db: &Db,
    spec: &Spec,
    mirror: &LiveMirror,
    journal: &[String],
    diff: &[String],
    want: &BTreeMap<i64, MirrorRow>,
) -> String {
    let mut out = format!(
        "mirror {:?} ({} {}): {} rows, the database selects {}; {} differences:",
        spec.label,
        spec.route,
        spec.filter,
        mirror.rows().len(),
        want.len(),
        diff.len()
    );
    for line in diff.iter().take(40) {
        out.push_str(&format!("\n    {line}"));
    }
    if diff.len() > 40 {
        out.push_str(&format!("\n    … and {} more", diff.len() - 40));
    }
    // The story of the first few diverging rows: what the mirror applied, and what the change log holds.
    let table = spec.table();
    let ids = diff.iter().filter_map(|line| line.split_whitespace().nth(1)?.split(['.', ':']).next()?.parse().ok());
    let mut seen = std::collections::BTreeSet::new();
    let ids: Vec<i64> = ids.filter(|id: &i64| seen.insert(*id)).take(3).collect();
    for id in ids {
        out.push_str(&format!("\n  row {id}, as the mirror applied it:"));
        for line in mirror.trail(id) {
            out.push_str(&format!("\n    {line}"));
        }
        out.push_str(&format!("\n  row {id} in the change log (latest entries still kept):"));
        for line in db.log_of(table, id, 8).await {
            out.push_str(&format!("\n    {line}"));
        }
        if table != "todo_item" {
            continue;
        }
        // For items, the lists they point to now and in the mirror: a rename or delete there moves them in or out.
        let now = db.select(&Spec::item("", json!({}), format!("id = {id}"))).await;
        let lists: std::collections::BTreeSet<i64> = [mirror.rows().get(&id), now.get(&id)]
            .into_iter()
            .flatten()
            .filter_map(|row| row.get("todo_list").and_then(Value::as_i64))
            .collect();
        for list in lists {
            let now = db.select(&Spec::list("", format!("id = {list}"))).await;
            let name = now.get(&list).and_then(|row| row.get("name")).cloned();
            out.push_str(&format!("\n  list {list} (now {name:?}) in the change log:"));
            for line in db.log_of("todo_list", list, 6).await {
                out.push_str(&format!("\n    {line}"));
            }
        }
    }
    out.push_str(&format!("\n  anomalies ({}, the first few):", mirror.anomaly_count()));
    for line in mirror.anomalies().iter().take(10) {
        out.push_str(&format!("\n    {line}"));
    }
    out.push_str("\n  journal:");
    for line in journal {
        out.push_str(&format!("\n    {line}"));
    }
    out
}
