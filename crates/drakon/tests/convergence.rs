//! Convergence (DESIGN §6): every client's live mirror equals what the database says its filter selects, after
//! random writes through verbs and straight into the SQLite file, disconnects and resumes, a stalled client that
//! the server closes with 4008, and a server restart in the middle.
//!
//! Rust mirrors ([`drakon_testkit::mirror::LiveMirror`]), one per filter (an id, an `in` list, a range, each bool
//! value, a related field alone and with a local condition, no filter, the lists themselves, and one that stalls),
//! and the JS client in Node (`convergence/node/mirror.mjs`) follow the server while a writer changes rows at
//! random. At the end the writer stops and a few *barrier* rows are created that, between them, every mirror's
//! filter selects: changes reach the bus in commit order and each connection is FIFO, so a mirror that holds its
//! barrier rows has been sent everything before them. Then each mirror must equal a `SELECT` of its filter, written
//! by hand in SQL and run with rusqlite on the database file, row for row and field for field.
//!
//! The run is random but seeded: it prints its seed, and `DRAKON_SEED=<seed>` replays the same choices (timing
//! still varies, as it does for real clients). `DRAKON_CONVERGENCE_SECS` sets the length (default 60).
//! `convergence/related.rs` holds small deterministic cases of divergences the random run found.

// The test's own modules; a test crate's root resolves `mod` beside it, so the paths are spelled out.
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
use drakon_testkit::{Client, Closed, TestServer};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

use mirrors::{Cmd, MirrorHandle};
use world::{DATABASE, Gate, Spec};

const BIN: &str = env!("CARGO_BIN_EXE_drakon");

/// The drakon close code for a connection whose outbound queue filled.
const SLOW_CONSUMER: u16 = 4008;
/// The close code of a server going away.
const GOING_AWAY: u16 = 1001;
/// Text of each item of the stall's burst. The sockets' buffers hold a few MB on loopback; large frames fill them
/// with a few hundred events, so that the server's queue of 512 frames fills soon after.
const BURST_TEXT_BYTES: usize = 16 * 1024;

/// Prints the seed when the test fails, wherever it fails.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("convergence FAILED with seed {0}; replay with DRAKON_SEED={0}", self.0);
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_converge_to_the_database() {
    let seed = env_u64("DRAKON_SEED").unwrap_or_else(|| RandomState::new().hash_one(std::process::id()));
    let secs = env_u64("DRAKON_CONVERGENCE_SECS").unwrap_or(60).max(20);
    println!("convergence: seed {seed} (replay with DRAKON_SEED={seed}), about {secs} s");
    let _guard = SeedOnPanic(seed);
    // A bound on the whole run: a hang fails with the seed instead of holding CI.
    let budget = Duration::from_secs(secs * 2 + 60);
    tokio::time::timeout(budget, run(seed, secs))
        .await
        .unwrap_or_else(|_| panic!("the run did not finish within {budget:?} (seed {seed})"));
}

/// The `todo_item` head offset: the last one the change log assigned.
fn item_head(db: &Connection) -> u64 {
    db.query_row("SELECT last FROM _drakon_offsets WHERE model = 'todo_item'", [], |r| r.get::<_, i64>(0))
        .expect("head offset") as u64
}

async fn run(seed: u64, secs: u64) {
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A short log makes long absences end in reloads; a long one keeps more history for a failure's story.
    let retention = if rng.random_bool(0.35) { rng.random_range(2000..6000) } else { rng.random_range(20_000..60_000) };
    let mut server = Some(TestServer::spawn(BIN, &world::config(retention)).await);
    let db_path = server.as_ref().expect("server").dir_path().join(DATABASE);
    let db = world::open_db(&db_path);
    let (p1, p2) = seed_rows(&db, &mut rng);
    let gate: Gate = Arc::new(tokio::sync::RwLock::new(server.as_ref().expect("server").ws_url()));
    println!("convergence: log retention {retention} changes per model; protected lists {p1} and {p2}");

    let specs = world::specs(p1, p2);
    let stalled = specs.len() - 1;
    let mut handles: Vec<MirrorHandle> = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ (0x100 + i as u64));
        handles.push(mirrors::spawn(spec, &format!("mirror{i}"), gate.clone(), rng, start).await);
    }
    let fast = handles.iter().position(|h| h.spec.label == "all items").expect("an all-items mirror");

    // The JS client, in Node, through a relay whose port survives the restart.
    let proxy = node::Proxy::start(gate.clone()).await;
    let node_spec =
        Spec::item("JS client: n < 50, not done", json!({"n__lt": 50, "done": false}), "n < 50 AND done = 0");
    let mut node_mirror = node::NodeMirror::start(&proxy.ws_url(), node_spec.route, &node_spec.filter).await;
    println!("convergence: Node mirror started: {}", node_mirror.dump().await.summary);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = writer::Writer::new(ChaCha8Rng::seed_from_u64(seed ^ 0xfeed), &db_path, gate.clone(), vec![p1, p2]);
    let writer = tokio::spawn(writer.run(stop.clone()));

    // The timeline: random disconnects throughout, the stall at 30 %, the restart at 55 %, then quiescence.
    let writing = Duration::from_secs(secs.saturating_sub(20).max(10));
    let write_end = start + writing;
    let stall_at = start + writing.mul_f64(0.3);
    let restart_at = start + writing.mul_f64(0.55);
    // A disconnected mirror is away for up to 6 s; none is away when the stall starts, so the all-items mirror
    // can tell when the burst has been fanned out.
    let calm = stall_at.checked_sub(Duration::from_secs(7)).unwrap_or(start).max(start);
    let mut stall_report = None;
    let mut restarted = false;
    let mut next_disconnect = start + Duration::from_millis(rng.random_range(200..1200));
    let mut disconnects = 0;
    loop {
        let now = Instant::now();
        // The stall may run late; the write phase lasts until both it and the restart have happened.
        if now >= write_end && stall_report.is_some() && restarted {
            break;
        }
        if stall_report.is_none() && now >= stall_at {
            stall_report = Some(stall(&handles[stalled], &handles[fast], &db, p2).await);
            continue;
        }
        if !restarted && now >= restart_at {
            restart(&gate, &mut server, &mut rng, start).await;
            restarted = true;
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
        if stall_report.is_none() {
            wake = wake.min(stall_at);
        }
        if !restarted {
            wake = wake.min(restart_at);
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
        item_head(&db)
    );
    for (what, n) in &report.ops {
        println!("  {n:6} {what}");
    }

    // Quiescence: barrier rows after every other write; each mirror waits for the ones its filter selects.
    let barriers = {
        let url = gate.read().await;
        write_barriers(&url, p1).await
    };
    let server = server.expect("server");
    let mut expected = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut finishing = Vec::new();
    for handle in &handles {
        let want = world::select(&db, &handle.spec);
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
    for ((handle, answer), want) in handles.into_iter().zip(finishing).zip(&expected) {
        let (mirror, journal) = match answer.await {
            Ok(done) => done,
            Err(_) => {
                let err = handle.task.await.expect_err("a mirror task that dropped its reply panicked");
                std::panic::resume_unwind(err.into_panic());
            }
        };
        closes_1001 += mirror.closes().iter().filter(|c| c.code == Some(GOING_AWAY)).count();
        let diff = world::diff(mirror.rows(), want);
        let stats = mirror.stats();
        println!(
            "  {:28} {:4} rows, offset {:6}; {:6} applied, {:5} skipped, {:2} replays ({} events), {:2} reloads, {:2} closes{}",
            handle.spec.label,
            mirror.rows().len(),
            mirror.last_offset(),
            stats.applied,
            stats.skipped,
            stats.replays,
            stats.replayed,
            stats.reloads,
            mirror.closes().len(),
            if diff.is_empty() { String::new() } else { format!(", {} DIFFERENCES", diff.len()) },
        );
        if let Some(first) = mirror.anomalies().first() {
            println!("      {} anomalies, the first: {first}", mirror.anomaly_count());
        }
        if !diff.is_empty() {
            failures.push(describe_failure(&db, &handle.spec, &mirror, &journal, &diff, want));
        }
    }

    if let Some(failure) = check_node_mirror(node_mirror, &node_spec, &db, &barriers, deadline).await {
        failures.push(failure);
    }

    let (status, _dir) = server.terminate().await;
    assert!(status.success(), "drakon exited with {status} after the run");

    let stall_report = stall_report.expect("the run reaches the stall");
    println!("convergence: stall: {}", stall_report.summary);
    if !stall_report.saw_slow_consumer_close {
        failures.push(format!("the stalled mirror was never closed with {SLOW_CONSUMER}: {}", stall_report.summary));
    }
    if closes_1001 == 0 {
        failures.push(format!("no mirror saw the restart's {GOING_AWAY} close"));
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
        "convergence failed (seed {seed}, replay with DRAKON_SEED={seed}):\n{}",
        failures.join("\n\n")
    );
    println!("convergence: every mirror equals the database (seed {seed}, {:.1} s)", start.elapsed().as_secs_f64());
}

/// Waits until the Node mirror holds the barrier rows its filter selects, compares it with the database and
/// stops it; returns what differs.
async fn check_node_mirror(
    mut mirror: node::NodeMirror,
    spec: &Spec,
    db: &Connection,
    barriers: &[i64],
    deadline: Instant,
) -> Option<String> {
    let want = world::select(db, spec);
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

/// Two protected lists (`alpha` and `beta`), a few others, and items spread over them, all in one transaction from
/// outside drakon. Returns the protected lists' ids.
fn seed_rows(db: &Connection, rng: &mut ChaCha8Rng) -> (i64, i64) {
    let tx = db.unchecked_transaction().expect("begin");
    let mut lists = Vec::new();
    for name in ["alpha", "beta", "gamma", "Alpha", "alpha"] {
        tx.execute("INSERT INTO todo_list (name, rank) VALUES (?1, ?2)", params![name, rng.random_range(0..10)])
            .expect("seed list");
        lists.push(tx.last_insert_rowid());
    }
    for i in 0..150 {
        let list = *lists.choose(rng).expect("lists");
        tx.execute(
            "INSERT INTO todo_item (text, done, n, todo_list) VALUES (?1, ?2, ?3, ?4)",
            params![format!("seed {i}"), rng.random_bool(0.5), rng.random_range(0..100), list],
        )
        .expect("seed item");
    }
    tx.commit().expect("commit");
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
/// lost to a connection reset is tried again too (the report says so).
async fn stall(stalled: &MirrorHandle, fast: &MirrorHandle, db: &Connection, list: i64) -> StallReport {
    let mut summary = Vec::new();
    for attempt in 0..4u32 {
        let (ack, acked) = oneshot::channel();
        stalled.tx.send(Cmd::Stall(ack)).expect("stalled mirror task alive");
        acked.await.expect("the mirror stalls");
        let count = (800i64 << attempt).min(3200);
        let began = Instant::now();
        let text = format!("burst {attempt} {}", "x".repeat(BURST_TEXT_BYTES));
        // One statement, so the new ids are consecutive.
        db.execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
             INSERT INTO todo_item (text, done, n, todo_list) SELECT ?2 || ' #' || i, i % 2, i % 100, ?3 FROM s",
            params![count, text, list],
        )
        .expect("burst insert");
        let last = db.last_insert_rowid();
        db.execute("DELETE FROM todo_item WHERE id BETWEEN ?1 AND ?2", [last - count + 1, last]).expect("burst delete");
        let end = item_head(db);
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

/// Restarts the server on the same directory (config and database survive; the port changes) while the writer
/// goes on writing SQL, then lets everyone reconnect to the new URL.
async fn restart(gate: &Gate, server: &mut Option<TestServer>, rng: &mut ChaCha8Rng, start: Instant) {
    println!("convergence: restarting at {:.1} s", start.elapsed().as_secs_f64());
    let mut url = gate.write().await;
    let old = server.take().expect("a running server");
    let (status, dir) = old.terminate().await;
    assert!(status.success(), "drakon exited with {status} on SIGTERM");
    // Stay down a moment: outside writes land in the file while no server is there to publish them.
    tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
    // The writer's SQL goes on meanwhile: the new server must start (and migrate) beside another writer.
    let new = TestServer::spawn_in(BIN, dir, &[]).await;
    *url = new.ws_url();
    println!("convergence: restarted at {:.1} s, now at {}", start.elapsed().as_secs_f64(), new.addr);
    *server = Some(new);
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

fn describe_failure(
    db: &Connection,
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
    let table = if spec.route == "todo-list" { "todo_list" } else { "todo_item" };
    let ids = diff.iter().filter_map(|line| line.split_whitespace().nth(1)?.split(['.', ':']).next()?.parse().ok());
    let mut seen = std::collections::BTreeSet::new();
    for id in ids.filter(|id: &i64| seen.insert(*id)).take(3) {
        out.push_str(&format!("\n  row {id}, as the mirror applied it:"));
        for line in mirror.trail(id) {
            out.push_str(&format!("\n    {line}"));
        }
        out.push_str(&format!("\n  row {id} in the change log (latest entries still kept):"));
        for line in world::log_of(db, table, id, 8) {
            out.push_str(&format!("\n    {line}"));
        }
        // For items, the lists they point to now and in the mirror: a rename or delete there moves them in or out.
        let lists: std::collections::BTreeSet<i64> = [
            mirror.rows().get(&id).and_then(|r| r.get("todo_list")).and_then(Value::as_i64),
            db.query_row("SELECT todo_list FROM todo_item WHERE id = ?1", [id], |r| r.get(0)).ok(),
        ]
        .into_iter()
        .flatten()
        .filter(|_| table == "todo_item")
        .collect();
        for list in lists {
            let now: Option<String> =
                db.query_row("SELECT name FROM todo_list WHERE id = ?1", [list], |r| r.get(0)).ok();
            out.push_str(&format!("\n  list {list} (now {now:?}) in the change log:"));
            for line in world::log_of(db, "todo_list", list, 6) {
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
