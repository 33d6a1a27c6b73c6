//! What only the SQLite store does, tested beside its internals, and the write algorithm both stores share
//! (`drakon_core::store::write`), tested through SQLite on a real database file. The behaviour every store shares
//! is the conformance suite in `drakon_testkit::store_suite`, run against SQLite by `tests/store_suite.rs`.

use std::time::Duration;

use drakon_core::store::{BusMessage, LogRetention, Store, StoreError, WriteOp};
use drakon_core::{Field, Filter, Model, OnDelete, Schema, Value};
use drakon_protocol::Action;
use drakon_testkit::store_suite::{create, drain, text, todo_schema};
use serde_json::json;
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

/// Lists, their items (deleted with the list), tags that keep an item alive (`restrict`) and notes that forget a
/// deleted list (`set_null`).
fn guarded_schema() -> Schema {
    Schema::new()
        .model(Model::new("list").field(Field::text("name")))
        .model(Model::new("item").field(Field::text("text")).field(Field::reference("list", "list", OnDelete::Cascade)))
        .model(Model::new("tag").field(Field::reference("item", "item", OnDelete::Restrict)))
        .model(Model::new("note").field(Field::reference("list", "list", OnDelete::SetNull).optional()))
}

async fn open_with(dir: &tempfile::TempDir, schema: &Schema) -> (SqliteStore, mpsc::Receiver<BusMessage>) {
    let (tx, rx) = mpsc::channel(64);
    let store = SqliteStore::open(dir.path().join("t.db"), tx).unwrap();
    store.migrate(schema).await.unwrap();
    (store, rx)
}

fn delete(model: &str, id: i64) -> WriteOp {
    WriteOp::Delete { model: model.into(), id, guard: Filter::default() }
}

/// A `restrict` met deep in a cascade refuses the whole write, after the cascade already deleted rows before it:
/// those deletions roll back with it, and nothing is logged or published.
#[tokio::test]
async fn a_restrict_below_a_cascade_refuses_the_whole_delete() {
    let dir = tempfile::tempdir().unwrap();
    let schema = guarded_schema();
    let (store, mut bus) = open_with(&dir, &schema).await;
    store.write(create("list", vec![(1, text("l"))])).await.unwrap();
    for name in ["free", "tagged"] {
        store.write(create("item", vec![(1, text(name)), (2, Value::Int(1))])).await.unwrap();
    }
    store.write(create("tag", vec![(1, Value::Int(2))])).await.unwrap();
    store.write(create("note", vec![(1, Value::Int(1))])).await.unwrap();
    drain(&mut bus);

    let err = store.write(delete("list", 1)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Restricted { model, id: 2, referrer, field } if model == "item" && referrer == "tag" && field == "item"),
        "the refusal names the item the tag holds: {err:?}"
    );
    let items = store.list(schema.get_model("item").unwrap(), &Filter::default(), &[], 10, 0).await.unwrap();
    assert_eq!((items.total, items.offset), (2, 2), "item 1, deleted before the refusal, is back; nothing logged");
    let notes = store.list(schema.get_model("note").unwrap(), &Filter::default(), &[], 10, 0).await.unwrap();
    assert_eq!(notes.rows[0][1], Value::Int(1), "the note still points at the list");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(drain(&mut bus), vec![], "nothing published");

    // Without the tag the same delete goes through: children before their parent, in the schema's order of
    // referring models (items, then notes), each child's own referrers before it.
    store.write(delete("tag", 1)).await.unwrap();
    let deleted = store.write(delete("list", 1)).await.unwrap();
    let summary: Vec<(&str, i64, Action)> = deleted.iter().map(|c| (&*c.model, c.id, c.action)).collect();
    assert_eq!(
        summary,
        vec![
            ("item", 1, Action::Deleted),
            ("item", 2, Action::Deleted),
            ("note", 1, Action::Updated),
            ("list", 1, Action::Deleted)
        ]
    );
}

/// A tree whose parent reference cascades, deleted in one `DeleteWhere`: a row an earlier row's cascade already
/// removed is skipped, not deleted twice nor reported missing, and every row goes after its children.
#[tokio::test]
async fn delete_where_skips_rows_an_earlier_cascade_removed() {
    let dir = tempfile::tempdir().unwrap();
    let schema =
        Schema::new().model(Model::new("node").field(Field::reference("parent", "node", OnDelete::Cascade).optional()));
    let (store, _bus) = open_with(&dir, &schema).await;
    // 1 ← 2 ← 3, and 4 alone.
    for parent in [Value::Null, Value::Int(1), Value::Int(2), Value::Null] {
        store.write(create("node", vec![(1, parent)])).await.unwrap();
    }
    let all = WriteOp::DeleteWhere { model: "node".into(), filter: Filter::default() };
    let deleted = store.write(all).await.unwrap();
    let summary: Vec<(i64, u64)> = deleted.iter().map(|c| (c.id, c.offset)).collect();
    assert_eq!(summary, vec![(3, 5), (2, 6), (1, 7), (4, 8)]);
}

/// A guard is checked before a write as well as after it: a row outside it is not found, and stays.
#[tokio::test]
async fn a_delete_outside_its_guard_finds_nothing_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let schema = guarded_schema();
    let (store, _bus) = open_with(&dir, &schema).await;
    store.write(create("list", vec![(1, text("mine"))])).await.unwrap();
    let lists = schema.get_model("list").unwrap();
    let theirs = Filter::parse(&schema, lists, json!({"name": "theirs"}).as_object().unwrap()).unwrap();
    let err = store.write(WriteOp::Delete { model: "list".into(), id: 1, guard: theirs }).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { id: 1, .. }), "{err:?}");
    assert_eq!(store.list(lists, &Filter::default(), &[], 10, 0).await.unwrap().total, 1);
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
