//! A small, deterministic case of what the three-node run found: a node that starts while others write must start.
//!
//! A node's start-up migration used to take its locks even when the schema was already in place: for each model a
//! SHARE lock on the table (`CREATE INDEX IF NOT EXISTS` locks before it finds the index) and then an ACCESS
//! EXCLUSIVE one (`DROP TRIGGER IF EXISTS`). A writer that had read a row `FOR UPDATE` and then updated it (drakon's
//! own update verb does exactly this, as does many an application) deadlocked with it, and PostgreSQL aborted one of
//! the two: the node exited ("the database does not fit the config: … deadlock detected"), or the writer's
//! transaction failed. Now the migration leaves an unchanged model's table alone (`_drakon_ddl` records what is
//! installed), and a deadlock during a real change is retried.

use std::time::Duration;

use drakon_testkit::TestServer;
use drakon_testkit::postgres::TestPg;
use tokio::time::Instant;

use super::BIN;
use super::world;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_while_a_transaction_updates_a_row_it_locked() {
    let pg = tokio::task::block_in_place(TestPg::start);
    let url = pg.create_database("joining").await;
    let config = world::config(1000);
    let env = [("DRAKON_DATABASE_URL", url.as_str())];
    // The first node creates the schema; then it stops, so that nothing else takes locks.
    let first = TestServer::spawn_with(BIN, &config, &env).await;
    let (status, _dir) = first.terminate().await;
    assert!(status.success(), "the first node exited with {status}");

    let admin = pg.client("joining").await;
    let writer = pg.client("joining").await;
    writer
        .batch_execute(
            "INSERT INTO todo_list (name) VALUES ('alpha');
             INSERT INTO todo_item (text, done, n, todo_list) VALUES ('watched', FALSE, 0, 1);",
        )
        .await
        .expect("the writer's rows");
    // (A query string of several statements is one transaction: BEGIN goes on its own.)
    writer
        .batch_execute("BEGIN; SELECT id FROM todo_item WHERE id = 1 FOR UPDATE")
        .await
        .expect("the writer reads the row for update");

    let joining = tokio::spawn({
        let (config, url) = (config.clone(), url.clone());
        async move { TestServer::spawn_with(BIN, &config, &[("DRAKON_DATABASE_URL", &url)]).await }
    });
    // Wait until the joining node's migration waits for the writer's lock on todo_item (or, once fixed, has
    // started without needing it).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !joining.is_finished() {
        let waiting: i64 = admin
            .query_one("SELECT count(*) FROM pg_locks WHERE relation = 'todo_item'::regclass AND NOT granted", &[])
            .await
            .expect("read pg_locks")
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the joining node neither started nor waited for the writer's lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The write the writer read the row for. Before the fix it needed a lock the waiting migration held: PostgreSQL
    // found the deadlock after a second and aborted one of the two, the writer's transaction or the node's start.
    let wrote = writer.batch_execute("UPDATE todo_item SET n = n + 1 WHERE id = 1; COMMIT").await;
    let joined = joining.await;
    assert!(
        wrote.is_ok() && joined.is_ok(),
        "a node started while a transaction updated a row it had locked: the update {}, the node {}",
        match &wrote {
            Ok(()) => "committed".to_owned(),
            Err(e) => format!("failed ({e}: {:?})", e.as_db_error().and_then(|d| d.detail())),
        },
        if joined.is_ok() { "started" } else { "did not start (its error is above)" },
    );
}
