//! What only the SQLite store does, tested beside its internals. The behaviour every store shares is the
//! conformance suite in `drakon_testkit::store_suite`, run against SQLite by `tests/store_suite.rs`.

use std::time::Duration;

use drakon_core::Field;
use drakon_core::store::{BusMessage, LogRetention, Store, StoreError};
use drakon_testkit::store_suite::{create, text, todo_schema};
use tokio::sync::mpsc;

use super::SqliteStore;

async fn open(dir: &tempfile::TempDir) -> (SqliteStore, mpsc::Receiver<BusMessage>) {
    let (tx, rx) = mpsc::channel(64);
    let store = SqliteStore::open(dir.path().join("t.db"), tx).unwrap();
    store.migrate(&todo_schema()).await.unwrap();
    (store, rx)
}

/// PostgreSQL drops a NOT NULL constraint in place; SQLite would have to rebuild the table, so drakon refuses.
#[tokio::test]
async fn a_required_field_cannot_become_optional() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus) = open(&dir).await;
    let mut relaxed = todo_schema();
    relaxed.models[1].fields[1] = Field::text("text").optional();
    let err = store.migrate(&relaxed).await.unwrap_err().to_string();
    assert!(err.contains("todo_item.text became optional; SQLite keeps its NOT NULL constraint"), "{err}");
    assert!(err.contains("rebuild the table yourself"), "{err}");
    assert_eq!(store.migrate(&todo_schema()).await.unwrap(), Default::default(), "the refusal changed nothing");
}

/// One pass removes everything past the retention (the tailer calls it every second), but never an entry the
/// store has not published yet.
#[tokio::test]
async fn trim_keeps_the_newest_entries_and_every_unpublished_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus) = open(&dir).await;
    for i in 0..10 {
        store.write(create("todo_list", vec![(1, text(&format!("list {i}")))])).await.unwrap();
    }
    let schema = todo_schema();
    let retention = LogRetention { count: 3, age: Duration::from_secs(3600) };
    let removed = crate::log::trim(&crate::lock(&store.writer), &schema, retention).unwrap();
    assert_eq!(removed, 7, "all but the newest three entries go");

    // Three more, the newest two as if another process had just committed them: trimming to one entry keeps both.
    for i in 10..13 {
        store.write(create("todo_list", vec![(1, text(&format!("list {i}")))])).await.unwrap();
    }
    let mut writer = crate::lock(&store.writer);
    writer.published_seq = 11;
    let latest = LogRetention { count: 1, ..retention };
    let removed = crate::log::trim(&writer, &schema, latest);
    writer.published_seq = 13;
    assert_eq!(removed.unwrap(), 4, "offsets 8 to 11 go; 12 is unpublished");
    assert_eq!(crate::log::trim(&writer, &schema, latest).unwrap(), 1, "once published, 12 goes too");
}

/// Another connection holding the write lock past the busy timeout makes a write fail as a conflict (by SQLite's
/// result code), which says it may succeed if tried again, and the write leaves nothing behind.
#[tokio::test]
async fn a_write_kept_out_by_another_writer_is_a_retryable_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus) = open(&dir).await;
    let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)) && err.is_retryable(), "{err:?}");
    other.execute_batch("ROLLBACK").unwrap();
    let list = store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    assert_eq!((list[0].id, list[0].offset), (1, 1), "the refused write used nothing up");
}
