//! What only the PostgreSQL store does, against a real server: notifications rather than the fallback tick, a
//! required field relaxed in place, the node registry, and connection errors. The behaviour every store shares is
//! the conformance suite in `drakon_testkit::store_suite`, run against PostgreSQL by `store_suite.rs`.

mod harness;

use std::time::{Duration, Instant};

use drakon_core::Value;
use drakon_core::schema::Field;
use drakon_core::store::LogRetention;
use drakon_postgres::PgStore;
use drakon_testkit::PATIENCE;
use drakon_testkit::store_suite::{StoreHarness, create, open, receive, text, todo_schema};
use harness::PgHarness;
use tokio::sync::mpsc;

#[tokio::test]
async fn outside_writes_arrive_by_notification_not_by_the_fallback_tick() {
    let h = PgHarness::start();
    let (store, mut bus) = open(&h, &todo_schema()).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();
    let other = h.outside().await;

    // The notification carries the sequence number reached, never row data.
    let (listener, mut connection) =
        tokio_postgres::connect(&h.url().await, tokio_postgres::NoTls).await.expect("connect");
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = notes_tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("LISTEN drakon_changes").await.unwrap();
    other.execute("UPDATE todo_list SET name = 'b'").await;
    let note = tokio::time::timeout(PATIENCE, notes.recv()).await.unwrap().unwrap();
    assert_eq!(note, ("drakon_changes".to_owned(), "2".to_owned()), "seq 2: the create was 1");
    let _ = receive(&mut bus, 1).await;

    // With only the one-second tick, a write would wait half a second on average; notified, a few milliseconds.
    let mut latencies = Vec::new();
    for i in 0..7 {
        let start = Instant::now();
        other.execute(&format!("UPDATE todo_list SET name = 'n{i}'")).await;
        let changes = receive(&mut bus, 1).await;
        latencies.push(start.elapsed());
        assert_eq!(changes[0].new.as_ref().unwrap()[1], text(&format!("n{i}")));
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    latencies.sort();
    assert!(latencies[3] < Duration::from_millis(300), "median latency {:?}: {latencies:?}", latencies[3]);
}

/// Safe in PostgreSQL, unlike SQLite: a required field becomes optional in place.
#[tokio::test]
async fn a_required_field_becomes_optional_in_place() {
    let h = PgHarness::start();
    let (store, _bus) = open(&h, &todo_schema()).await;
    let mut relaxed = todo_schema();
    relaxed.models[1].fields[1] = Field::text("text").optional();
    assert_eq!(store.migrate(&relaxed).await.unwrap(), Default::default(), "no table or column added");
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let item = store.write(create("todo_item", vec![(3, Value::Int(1))])).await.unwrap();
    assert_eq!(item[0].new.as_ref().unwrap()[1], Value::Null);
    assert_eq!(item[0].new.as_ref().unwrap()[2], Value::Bool(false));
}

/// Each node keeps a row in `_drakon_nodes` (its cursor and heartbeat), so trimming waits for the slowest.
#[tokio::test]
async fn every_node_registers_itself() {
    let h = PgHarness::start();
    let (_a, _bus_a) = open(&h, &todo_schema()).await;
    let (_b, _bus_b) = open(&h, &todo_schema()).await;
    assert_eq!(h.outside().await.ints("SELECT count(*) FROM _drakon_nodes").await, [2]);
}

#[tokio::test]
async fn a_bad_url_or_a_missing_server_is_a_clear_error() {
    let (tx, _bus) = mpsc::channel(1);
    let err = PgStore::connect("postgres://nobody:secret@127.0.0.1:1/none", tx.clone(), LogRetention::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL at 127.0.0.1 port 1"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    let err = PgStore::connect("postgres://[", tx, LogRetention::default()).await.unwrap_err().to_string();
    assert!(err.contains("bad database URL"), "{err}");
}

/// `TRUNCATE` (which fires no row triggers) is logged too: every row it removes, in each table it names, goes out
/// as a deletion with its last image, numbered like any other change, once. (drakon declares no foreign keys, so
/// CASCADE reaches no other table: referring rows stay, their reference dangling, as after any outside delete.)
#[tokio::test]
async fn truncate_is_logged_as_the_deletion_of_every_row_it_removes() {
    let h = PgHarness::start();
    let (store, mut bus) = open(&h, &todo_schema()).await;
    let outside = h.outside().await;
    let list = store.write(create("todo_list", vec![(1, text("groceries"))])).await.unwrap()[0].id;
    let mut items = Vec::new();
    for item in ["milk", "eggs"] {
        items.push(store.write(create("todo_item", vec![(1, text(item)), (3, Value::Int(list))])).await.unwrap()[0].id);
    }
    let _ = receive(&mut bus, 3).await;
    // Twice in one transaction: the second finds the tables empty and logs nothing more.
    outside.execute("BEGIN; TRUNCATE todo_item, todo_list; TRUNCATE todo_list CASCADE; COMMIT").await;
    let deleted = receive(&mut bus, 3).await;
    let mut seen: Vec<(String, i64, u64)> = deleted
        .iter()
        .map(|c| {
            assert_eq!(c.action, drakon_protocol::Action::Deleted, "{c:?}");
            assert!(c.old.is_some(), "the last image goes with the deletion: {c:?}");
            (c.model.to_string(), c.id, c.offset)
        })
        .collect();
    seen.sort();
    let expected = vec![
        ("todo_item".to_owned(), items[0], 3),
        ("todo_item".to_owned(), items[1], 4),
        ("todo_list".to_owned(), list, 2),
    ];
    assert_eq!(seen, expected);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(bus.try_recv().is_err(), "nothing is logged twice");
}
