//! Small, deterministic cases of what the random run found: a mirror on a related-field filter
//! (`todo_list__name`) must follow its rows in and out when lists are renamed, deleted or left, live and on resume.
//! Each one sets up a list `alpha` with an item, subscribes a mirror, changes things, and checks the mirror against
//! the database.

use std::time::Duration;

use drakon_testkit::mirror::LiveMirror;
use drakon_testkit::{Client, TestServer};
use serde_json::json;
use tokio::time::Instant;

use super::BIN;
use super::db::Db;
use super::world::{self, DATABASE, Spec};

/// A server with list 1 `alpha` holding item 1, `extra` SQL run after that, and a mirror on `todo_list__name: alpha`.
async fn setup(extra: &str) -> (TestServer, Db, LiveMirror) {
    let server = TestServer::spawn(BIN, &world::config(100_000)).await;
    let db = Db::sqlite(&server.dir_path().join(DATABASE));
    db.sqlite_connection()
        .execute_batch(
            "INSERT INTO todo_list (id, name) VALUES (1, 'alpha'), (2, 'gamma');
             INSERT INTO todo_item (id, text, done, n, todo_list) VALUES (1, 'watched', 0, 0, 1);",
        )
        .expect("setup rows");
    db.sqlite_connection().execute_batch(extra).expect("extra setup");
    let mirror = LiveMirror::connect(&server.ws_url(), "todo-item", "m", json!({"todo_list__name": "alpha"})).await;
    assert!(mirror.rows().contains_key(&1), "the snapshot holds item 1: {:?}", mirror.rows());
    (server, db, mirror)
}

/// Applies what arrives until a quiet second, then compares the mirror with the database.
async fn check(mut mirror: LiveMirror, db: &Db, what: &str) {
    mirror.sync_quiet(Duration::from_secs(1), Instant::now() + Duration::from_secs(20)).await;
    let spec = Spec {
        label: "alpha".into(),
        route: "todo-item",
        filter: json!({"todo_list__name": "alpha"}),
        sql_where: "todo_list IN (SELECT id FROM todo_list WHERE name = 'alpha')".into(),
    };
    let diff = world::diff(mirror.rows(), &db.select(&spec).await);
    assert!(
        diff.is_empty(),
        "{what}: the mirror differs from the database: {diff:?}\n  item 1 as the mirror applied it: {:?}\n  anomalies: {:?}",
        mirror.trail(1),
        mirror.anomalies()
    );
}

/// One outside transaction whose log entries straddle the store's publishing batches (1000 entries): the list's
/// rename is the 1000th entry, the touch of its item the 1001st. The touch is judged without the list's old name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_rename_in_a_transaction_larger_than_a_publish_batch() {
    let (server, db, mirror) = setup(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1200)
               INSERT INTO todo_item (text, done, n, todo_list) SELECT 'filler', 0, 0, 2 FROM s;",
    )
    .await;
    // A verb's write publishes everything pending before it replies: after it, the log is published up to here.
    let mut writer = Client::connect(&server.ws_url()).await;
    writer.ok("todo-list", "create", json!({"name": "sync"})).await;
    let head = db.head("todo_item").await;
    db.transaction(&[
        "UPDATE todo_item SET n = n + 1 WHERE id IN (SELECT id FROM todo_item WHERE todo_list = 2 LIMIT 999)".into(),
        "UPDATE todo_list SET name = 'beta' WHERE id = 1".into(),
    ])
    .await;
    assert_eq!(db.head("todo_item").await, head + 1000, "999 updates and one touch");
    check(mirror, &db, "list 1 renamed from alpha to beta in a transaction of 1001 log entries").await;
}

/// The change log is watched for touches again only when a related subscription is made after a restart: a rename
/// in between logs no touch, so a mirror that resumes with `since` never hears that its row left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_rename_after_a_restart_before_the_mirror_is_back() {
    let (server, db, mut mirror) = setup("").await;
    let (status, dir) = server.terminate().await;
    assert!(status.success(), "drakon exited with {status}");
    let server = TestServer::spawn_in(BIN, dir, &[]).await;
    let mut writer = Client::connect(&server.ws_url()).await;
    writer.ok("todo-list", "update", json!({"id": 1, "name": "beta"})).await;
    mirror.reconnect(&server.ws_url()).await.expect("resume");
    check(mirror, &db, "list 1 renamed after the restart, then the mirror resumed").await;
}

/// A replay judges a deleted item by its list as the store has it now; a list deleted with its items is gone, so
/// the items seem never to have matched and the resuming mirror keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_list_deleted_while_the_mirror_was_away() {
    let (server, db, mut mirror) = setup("").await;
    mirror.disconnect(true).await;
    let mut writer = Client::connect(&server.ws_url()).await;
    writer.ok("todo-list", "delete", json!({"id": 1})).await;
    mirror.reconnect(&server.ws_url()).await.expect("resume");
    check(mirror, &db, "list 1 and its item deleted while the mirror was away").await;
}

/// The same in a replay with a move: item 1 leaves list 1 for list 2 (`gamma`), then list 1 is renamed. Judged
/// by list 1's name now (`beta`), the move seems to start outside the filter, and no `deleted` is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn related_move_then_rename_while_the_mirror_was_away() {
    let (server, db, mut mirror) = setup("").await;
    mirror.disconnect(true).await;
    let mut writer = Client::connect(&server.ws_url()).await;
    writer.ok("todo-item", "update", json!({"id": 1, "todo_list": 2})).await;
    writer.ok("todo-list", "update", json!({"id": 1, "name": "beta"})).await;
    mirror.reconnect(&server.ws_url()).await.expect("resume");
    check(mirror, &db, "item 1 moved out of alpha, then its old list renamed, while the mirror was away").await;
}
