//! Store behaviour on a real SQLite file: migrations, writes, cascades and the change log.

use drakon_core::schema::{Field, Model, Schema};
use drakon_core::store::{BusMessage, Store, StoreError, WriteOp};
use drakon_core::{Filter, OnDelete, Value};
use drakon_protocol::Action;
use tokio::sync::mpsc;

use super::SqliteStore;

fn schema() -> Schema {
    Schema::new()
        .model(Model::new("todo_list").field(Field::text("name").unique()))
        .model(
            Model::new("todo_item")
                .field(Field::text("text"))
                .field(Field::bool("done").default(Value::Bool(false)))
                .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
        )
        .model(Model::new("note").field(Field::reference("item", "todo_item", OnDelete::SetNull).optional()))
}

async fn open(dir: &tempfile::TempDir) -> (SqliteStore, mpsc::Receiver<BusMessage>) {
    let (tx, rx) = mpsc::channel(64);
    let store = SqliteStore::open(dir.path().join("t.db"), tx).unwrap();
    store.migrate(&schema()).await.unwrap();
    (store, rx)
}

fn create(model: &str, values: Vec<(usize, Value)>) -> WriteOp {
    WriteOp::Create { model: model.into(), values, guard: Filter::default() }
}

#[tokio::test]
async fn writes_log_gap_free_offsets_and_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut bus) = open(&dir).await;
    let list = store.write(create("todo_list", vec![(1, Value::Text("a".into()))])).await.unwrap();
    assert_eq!((list[0].id, list[0].offset), (1, 1));
    for i in 0..3 {
        let item = store
            .write(create("todo_item", vec![(1, Value::Text(format!("i{i}"))), (3, Value::Int(1))]))
            .await
            .unwrap();
        assert_eq!(item[0].offset, i + 1);
        assert_eq!(item[0].new.as_ref().unwrap()[2], Value::Bool(false), "default filled");
    }
    store.write(create("note", vec![(1, Value::Int(2))])).await.unwrap();
    let deleted =
        store.write(WriteOp::Delete { model: "todo_list".into(), id: 1, guard: Filter::default() }).await.unwrap();
    let summary: Vec<(String, i64, Action, u64)> =
        deleted.iter().map(|c| (c.model.to_string(), c.id, c.action, c.offset)).collect();
    assert_eq!(
        summary,
        vec![
            ("todo_item".into(), 1, Action::Deleted, 4),
            ("note".into(), 1, Action::Updated, 2),
            ("todo_item".into(), 2, Action::Deleted, 5),
            ("todo_item".into(), 3, Action::Deleted, 6),
            ("todo_list".into(), 1, Action::Deleted, 2),
        ]
    );
    // Every batch reached the bus, in commit order.
    let mut offsets = Vec::new();
    while let Ok(BusMessage::Changes(batch)) = bus.try_recv() {
        offsets.extend(batch.iter().filter(|c| &*c.model == "todo_item").map(|c| c.offset));
    }
    assert_eq!(offsets, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn refusals_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus) = open(&dir).await;
    store.write(create("todo_list", vec![(1, Value::Text("a".into()))])).await.unwrap();
    let dup = store.write(create("todo_list", vec![(1, Value::Text("a".into()))])).await.unwrap_err();
    assert!(matches!(dup, StoreError::Unique { ref field, .. } if field == "name"), "{dup:?}");
    let missing =
        store.write(create("todo_item", vec![(1, Value::Text("x".into())), (3, Value::Int(9))])).await.unwrap_err();
    assert!(matches!(missing, StoreError::MissingRef { ref field, .. } if field == "todo_list"), "{missing:?}");
    // The failed writes consumed no offsets: the next list gets offset 2.
    let next = store.write(create("todo_list", vec![(1, Value::Text("b".into()))])).await.unwrap();
    assert_eq!(next[0].offset, 2);
}

#[tokio::test]
async fn unsafe_migrations_are_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus) = open(&dir).await;
    let mut changed = schema();
    changed.models[0].fields[1] = Field::int("name");
    let err = store.migrate(&changed).await.unwrap_err().to_string();
    assert!(err.contains("changed type from text to int"), "{err}");
    let mut dropped = schema();
    dropped.models[1].fields.truncate(2);
    dropped.models.pop();
    let err = store.migrate(&dropped).await.unwrap_err().to_string();
    assert!(err.contains("never drops data"), "{err}");
    let mut added = schema();
    added.models[0].fields.push(Field::int("rank"));
    let err = store.migrate(&added).await.unwrap_err().to_string();
    assert!(err.contains("give it a default or make it optional"), "{err}");
    added.models[0].fields[2] = Field::int("rank").default(Value::Int(0));
    let report = store.migrate(&added).await.unwrap();
    assert_eq!(report.added_columns, vec!["todo_list.rank".to_owned()]);
}

#[tokio::test]
async fn writes_from_another_process_reach_the_bus_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut bus) = open(&dir).await;
    store.write(create("todo_list", vec![(1, Value::Text("a".into()))])).await.unwrap();
    let _ = bus.recv().await.unwrap();

    // Another connection, as the sqlite3 shell would be: one insert, then one UPDATE touching many rows.
    let other = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    other
        .execute_batch(
            "INSERT INTO todo_item (text, todo_list) VALUES ('x', 1), ('y', 1), ('z', 1);
             UPDATE todo_item SET done = 1;
             UPDATE todo_item SET done = 1;
             DELETE FROM todo_item WHERE text = 'z';",
        )
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 7 {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), bus.recv()).await.expect("published in time");
        let Some(BusMessage::Changes(batch)) = msg else { panic!("bus closed") };
        seen.extend(batch.iter().map(|c| (c.id, c.action, c.offset, c.new.as_ref().map(|r| r[2].clone()))));
    }
    assert_eq!(
        seen,
        vec![
            (1, Action::Created, 1, Some(Value::Bool(false))),
            (2, Action::Created, 2, Some(Value::Bool(false))),
            (3, Action::Created, 3, Some(Value::Bool(false))),
            (1, Action::Updated, 4, Some(Value::Bool(true))),
            (2, Action::Updated, 5, Some(Value::Bool(true))),
            (3, Action::Updated, 6, Some(Value::Bool(true))),
            (3, Action::Deleted, 7, None),
        ],
        "the no-op second UPDATE logs nothing"
    );
}

#[tokio::test]
async fn retention_trims_the_log_and_a_resume_past_it_must_reload() {
    use drakon_core::store::{LogRead, LogRetention};
    let dir = tempfile::tempdir().unwrap();
    let (store, _bus) = open(&dir).await;
    for i in 0..10 {
        store.write(create("todo_list", vec![(1, Value::Text(format!("list {i}")))])).await.unwrap();
    }
    let schema = schema();
    let model = schema.get_model("todo_list").unwrap();
    let retention = LogRetention { count: 3, age: std::time::Duration::from_secs(3600) };
    let removed = crate::log::trim(&crate::lock(&store.writer), &schema, retention).unwrap();
    assert_eq!(removed, 7, "all but the newest three entries go");
    // A client that last saw offset 7 can still resume; one that saw offset 2 must take a fresh snapshot.
    match store.log_since(model, 7, 100).await.unwrap() {
        LogRead::Changes { changes, head } => {
            assert_eq!((changes.iter().map(|c| c.offset).collect::<Vec<_>>(), head), (vec![8, 9, 10], 10));
        }
        other => panic!("expected changes, got {other:?}"),
    }
    assert_eq!(store.log_since(model, 2, 100).await.unwrap(), LogRead::Gone { head: 10 });
    // An offset from another database (ahead of this log) must reload too.
    assert_eq!(store.log_since(model, 99, 100).await.unwrap(), LogRead::Gone { head: 10 });
}
