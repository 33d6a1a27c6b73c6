//! The todo demo on three nodes in real browsers, set up as docs/deployment.md describes: a throwaway PostgreSQL
//! and Redis, and three `drakon serve` processes of the unchanged example config, each in a directory holding a copy
//! of `examples/todo` (config and `public/`), given the shared services by `DRAKON_DATABASE_URL` and
//! `DRAKON_REDIS_URL`. `tests/e2e/nodes.e2e.mjs` (Debian's Chromium through playwright-core) then puts one page on
//! each node: changes in any page reach the pages on the other nodes within a second; when node 3, the relay, is
//! killed, the other two stay live, and page 3 reconnects through a stand-in for nginx to node 1 and catches up.
//! Screenshots land in `tests/e2e/artifacts/nodes/`.
//!
//! The script drives only the browsers; this test owns every process. Node 3 is started alone and first, and the
//! others only once it holds the relay lock, so the node the script asks this test to kill (`E2E-CONTROL kill node
//! 3` on its stdout, answered with `node 3 killed` on its stdin once the node's port refuses connections) is the
//! relay. It is killed with SIGKILL, as in a crash.
//!
//! Needs `/usr/bin/chromium`, `npm ci` in `tests/e2e`, `redis-server` and PostgreSQL; `scripts/test.sh` installs
//! them. The test fails, never skips, when they are missing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use drakon_testkit::TestServer;
use drakon_testkit::postgres::TestPg;
use drakon_testkit::redis::TestRedis;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

mod common;

use common::BIN;

/// The whole browser run, as a last resort: the script stops itself after 120 s.
const RUN: Duration = Duration::from_secs(180);

/// The session advisory lock the relaying node holds: `RELAY_LOCK` ("drakonRL") in
/// crates/drakon-postgres/src/migrate.rs, as `pg_locks` shows a bigint key (high and low 32 bits).
const RELAY_LOCK_CLASSID: i64 = 0x6472_616b;
const RELAY_LOCK_OBJID: i64 = 0x6f6e_524c;

/// A fresh directory holding the todo example as shipped: `drakon.toml` and `public/`.
fn todo_example(root: &Path) -> tempfile::TempDir {
    let example = root.join("examples/todo");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(example.join("drakon.toml"), dir.path().join("drakon.toml")).expect("copy drakon.toml");
    let public = dir.path().join("public");
    std::fs::create_dir(&public).expect("create public/");
    for entry in std::fs::read_dir(example.join("public")).expect("read examples/todo/public") {
        let entry = entry.expect("read examples/todo/public");
        assert!(entry.file_type().expect("file type").is_file(), "examples/todo/public holds only files");
        std::fs::copy(entry.path(), public.join(entry.file_name())).expect("copy a static file");
    }
    dir
}

/// Waits until some session holds the relay lock.
async fn relay_elected(pg: &TestPg) {
    let client = pg.client("todo").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid::bigint = $1 AND objid::bigint = $2",
                &[&RELAY_LOCK_CLASSID, &RELAY_LOCK_OBJID],
            )
            .await
            .expect("query pg_locks");
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no node took the relay lock within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until nothing listens on `addr` any more.
async fn refuses(addr: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "{addr} still accepts connections 10 s after SIGKILL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn todo_demo_is_live_across_three_nodes_in_three_browsers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e2e = common::e2e_dir();

    let pg = TestPg::start();
    let database = pg.create_database("todo").await;
    let redis = TestRedis::start();
    let redis_url = redis.url();
    let env = [("DRAKON_DATABASE_URL", database.as_str()), ("DRAKON_REDIS_URL", redis_url.as_str())];
    let node3 = TestServer::spawn_in(BIN, todo_example(&root), &env).await;
    relay_elected(&pg).await;
    let node1 = TestServer::spawn_in(BIN, todo_example(&root), &env).await;
    let node2 = TestServer::spawn_in(BIN, todo_example(&root), &env).await;
    let nodes = [&node1, &node2, &node3].map(|node| node.http_url("")).join(",");
    let node3_addr = node3.addr.clone();
    let mut node3 = Some(node3);

    let mut script = Command::new("node")
        .arg(e2e.join("nodes.e2e.mjs"))
        .env("DRAKON_NODES", &nodes)
        .env("E2E_ARTIFACTS", e2e.join("artifacts/nodes"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (Node.js 20 is needed for the browser test)");
    let mut stdin = script.stdin.take().expect("stdin");
    let mut lines = BufReader::new(script.stdout.take().expect("stdout")).lines();
    let mut stderr = script.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let mut stdout = String::new();
    let finished = tokio::time::timeout(RUN, async {
        while let Some(line) = lines.next_line().await.expect("read the script's output") {
            stdout.push_str(&line);
            stdout.push('\n');
            if line == "E2E-CONTROL kill node 3" {
                drop(node3.take().expect("node 3 is killed once")); // SIGKILL (kill_on_drop)
                refuses(&node3_addr).await;
                stdin.write_all(b"node 3 killed\n").await.expect("answer the script");
                stdin.flush().await.expect("answer the script");
            }
        }
        script.wait().await.expect("wait for node")
    })
    .await;
    let stderr = match &finished {
        Ok(_) => stderr.await.expect("stderr reader"),
        Err(_) => String::from("(the script was killed)"),
    };
    let status = finished.unwrap_or_else(|_| panic!("the browser test did not finish within {RUN:?}:\n{stdout}"));
    assert!(status.success(), "browser test failed ({status}):\n{stdout}\n{stderr}");
    // Node 3 is gone, so the relay the survivors kept delivering through is one of them.
    relay_elected(&pg).await;
    println!("{stdout}");
}
