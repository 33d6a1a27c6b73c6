//! The PostgreSQL store against a real server: migrations, writes, cascades, refusals, the change log, writes from
//! other connections and other nodes, concurrent writers, touches and retention.

mod common;

use std::time::{Duration, Instant};

use common::TestPg;
use drakon_core::schema::{Field, Model, Schema};
use drakon_core::store::{BusMessage, Change, LogRead, LogRetention, OrderBy, Store, StoreError, WriteOp};
use drakon_core::{Filter, OnDelete, Value};
use drakon_postgres::PgStore;
use drakon_protocol::Action;
use serde_json::json;
use tokio::sync::mpsc;

/// Long enough for a loaded machine; the store's own bound for outside writes is a second.
const ARRIVAL: Duration = Duration::from_secs(10);

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

async fn open_with(url: &str, retention: LogRetention) -> (PgStore, mpsc::Receiver<BusMessage>) {
    let (tx, rx) = mpsc::channel(1024);
    let store = PgStore::connect(url, tx, retention).await.unwrap();
    store.migrate(&schema()).await.unwrap();
    (store, rx)
}

async fn open(pg: &TestPg) -> (PgStore, mpsc::Receiver<BusMessage>, String) {
    let url = pg.create_database("t").await;
    let (store, rx) = open_with(&url, LogRetention::default()).await;
    (store, rx, url)
}

fn create(model: &str, values: Vec<(usize, Value)>) -> WriteOp {
    WriteOp::Create { model: model.into(), values, guard: Filter::default() }
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Changes from the bus until `n` have arrived (or the time is up).
async fn receive(bus: &mut mpsc::Receiver<BusMessage>, n: usize) -> Vec<Change> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let msg = tokio::time::timeout(ARRIVAL, bus.recv()).await.unwrap_or_else(|_| {
            panic!("only {} of {n} changes were published: {seen:?}", seen.len());
        });
        let Some(BusMessage::Changes(batch)) = msg else { panic!("bus closed") };
        seen.extend(batch.iter().cloned());
    }
    seen
}

/// What is on the bus right now, without waiting.
fn drain(bus: &mut mpsc::Receiver<BusMessage>) -> Vec<Change> {
    let mut seen = Vec::new();
    while let Ok(BusMessage::Changes(batch)) = bus.try_recv() {
        seen.extend(batch.iter().cloned());
    }
    seen
}

#[tokio::test]
async fn writes_log_gap_free_offsets_and_cascade() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    let list = store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    assert_eq!((list[0].id, list[0].offset), (1, 1));
    for i in 0..3 {
        let item =
            store.write(create("todo_item", vec![(1, text(&format!("i{i}"))), (3, Value::Int(1))])).await.unwrap();
        assert_eq!(item[0].offset, i + 1);
        assert_eq!(item[0].new.as_ref().unwrap()[2], Value::Bool(false), "default filled");
    }
    store.write(create("note", vec![(1, Value::Int(2))])).await.unwrap();
    let items = store.log_since(&schema().models[1], 0, 10).await.unwrap();
    let LogRead::Changes { changes, head: 3 } = items else { panic!("{items:?}") };
    // Each image records the rows it refers to, as they were at commit.
    let list = changes[0].referenced(false, "todo_list").flatten().expect("the list was recorded");
    assert_eq!(list[1], text("a"));
    assert_eq!(changes[0].referenced(true, "todo_list"), None, "a create has no old image");
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
    assert_eq!(deleted[1].new.as_ref().unwrap()[1], Value::Null, "set_null logged with the new image");
    assert_eq!(deleted[1].referenced(false, "item"), Some(None), "a null reference is recorded as such");
    // Every batch reached the bus before its write returned, in commit order, and exactly once.
    let offsets: Vec<u64> = drain(&mut bus).iter().filter(|c| &*c.model == "todo_item").map(|c| c.offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4, 5, 6]);
    // The listener's notifications for the same entries publish nothing again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(drain(&mut bus), vec![]);
}

#[tokio::test]
async fn refusals_leave_nothing_behind() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let dup = store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap_err();
    assert!(matches!(dup, StoreError::Unique { ref field, .. } if field == "name"), "{dup:?}");
    let missing = store.write(create("todo_item", vec![(1, text("x")), (3, Value::Int(9))])).await.unwrap_err();
    assert!(matches!(missing, StoreError::MissingRef { ref field, .. } if field == "todo_list"), "{missing:?}");
    // The failed writes consumed no offsets: the next list gets offset 2.
    let next = store.write(create("todo_list", vec![(1, text("b"))])).await.unwrap();
    assert_eq!(next[0].offset, 2);
    assert_eq!(next[0].id, 3, "unlike offsets, ids are not reused: the refused insert took id 2");
    let renamed = store
        .write(WriteOp::Update {
            model: "todo_list".into(),
            id: 3,
            values: vec![(1, text("a"))],
            guard: Filter::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(renamed, StoreError::Unique { ref field, .. } if field == "name"), "{renamed:?}");
    let published: Vec<u64> = drain(&mut bus).iter().map(|c| c.offset).collect();
    assert_eq!(published, vec![1, 2], "only the committed writes were published");
}

#[tokio::test]
async fn refusals_have_the_same_kinds_as_sqlite() {
    let pg = TestPg::start();
    let url = pg.create_database("t").await;
    let schema = Schema::new().model(Model::new("owner").field(Field::text("name"))).model(
        Model::new("pet").field(Field::text("name")).field(Field::bool("public")).field(Field::reference(
            "owner",
            "owner",
            OnDelete::Restrict,
        )),
    );
    let (tx, _bus) = mpsc::channel(64);
    let store = PgStore::connect(&url, tx, LogRetention::default()).await.unwrap();
    store.migrate(&schema).await.unwrap();
    let pets = schema.get_model("pet").unwrap();
    let public = Filter::parse(&schema, pets, json!({"public": true}).as_object().unwrap()).unwrap();
    store.write(create("owner", vec![(1, text("ann"))])).await.unwrap();

    let hidden = WriteOp::Create {
        model: "pet".into(),
        values: vec![(1, text("rex")), (2, Value::Bool(false)), (3, Value::Int(1))],
        guard: public.clone(),
    };
    assert!(matches!(store.write(hidden).await, Err(StoreError::OutsideRoute)));
    let pet = WriteOp::Create {
        model: "pet".into(),
        values: vec![(1, text("rex")), (2, Value::Bool(true)), (3, Value::Int(1))],
        guard: public.clone(),
    };
    let pet = store.write(pet).await.unwrap();
    assert_eq!((pet[0].id, pet[0].offset), (2, 1), "the refused create used an id but no offset");
    let hide = WriteOp::Update { model: "pet".into(), id: 2, values: vec![(2, Value::Bool(false))], guard: public };
    assert!(matches!(store.write(hide).await, Err(StoreError::OutsideRoute)));
    let gone = WriteOp::Update { model: "pet".into(), id: 7, values: vec![], guard: Filter::default() };
    assert!(matches!(store.write(gone).await, Err(StoreError::NotFound { id: 7, .. })));
    let owner = WriteOp::Delete { model: "owner".into(), id: 1, guard: Filter::default() };
    let err = store.write(owner).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Restricted { ref referrer, ref field, id: 1, .. } if referrer == "pet" && field == "owner"),
        "{err:?}"
    );
    let unchanged =
        WriteOp::Update { model: "pet".into(), id: 2, values: vec![(1, text("rex"))], guard: Filter::default() };
    assert_eq!(store.write(unchanged).await.unwrap(), vec![], "an update that changes nothing logs nothing");
    let page = store.list(pets, &Filter::default(), &[], 10, 0).await.unwrap();
    assert_eq!((page.total, page.offset), (1, 1));
    assert_eq!(page.rows[0][2], Value::Bool(true));
}

#[tokio::test]
async fn unsafe_migrations_are_refused_with_advice() {
    let pg = TestPg::start();
    let (store, _bus, _) = open(&pg).await;
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
    let mut required = schema();
    required.models[2].fields[1] = Field::reference("item", "todo_item", OnDelete::SetNull);
    let err = store.migrate(&required).await.unwrap_err().to_string();
    assert!(err.contains("note.item became required"), "{err}");
    added.models[0].fields[2] = Field::int("rank").default(Value::Int(0));
    let report = store.migrate(&added).await.unwrap();
    assert_eq!(report.added_columns, vec!["todo_list.rank".to_owned()]);
    assert_eq!(report.created_tables, Vec::<String>::new());
    // Safe in PostgreSQL: a required field becomes optional in place.
    added.models[1].fields[1] = Field::text("text").optional();
    store.migrate(&added).await.unwrap();
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let item = store.write(create("todo_item", vec![(3, Value::Int(1))])).await.unwrap();
    assert_eq!(item[0].new.as_ref().unwrap()[1], Value::Null);
    assert_eq!(item[0].new.as_ref().unwrap()[2], Value::Bool(false));
}

#[tokio::test]
async fn writes_from_another_connection_reach_the_bus_through_the_log() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();

    // Another connection, as psql would be: one insert, then one UPDATE touching many rows.
    let other = pg.client("t").await;
    other
        .batch_execute(
            "INSERT INTO todo_item (text, todo_list) VALUES ('x', 1), ('y', 1), ('z', 1);
             UPDATE todo_item SET done = true;
             UPDATE todo_item SET done = true;
             DELETE FROM todo_item WHERE text = 'z';",
        )
        .await
        .unwrap();

    let seen: Vec<_> = receive(&mut bus, 7)
        .await
        .into_iter()
        .map(|c| (c.id, c.action, c.offset, c.new.as_ref().map(|r| r[2].clone())))
        .collect();
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
async fn outside_writes_arrive_by_notification_not_by_the_fallback_tick() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();
    let other = pg.client("t").await;

    // The notification carries the sequence number reached, never row data.
    let (listener, mut connection) =
        tokio_postgres::connect(&pg.url("t"), tokio_postgres::NoTls).await.expect("connect");
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                let _ = notes_tx.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    listener.batch_execute("LISTEN drakon_changes").await.unwrap();
    other.batch_execute("UPDATE todo_list SET name = 'b'").await.unwrap();
    let note = tokio::time::timeout(ARRIVAL, notes.recv()).await.unwrap().unwrap();
    assert_eq!(note, ("drakon_changes".to_owned(), "2".to_owned()), "seq 2: the create was 1");
    let _ = receive(&mut bus, 1).await;

    // With only the one-second tick, a write would wait half a second on average; notified, a few milliseconds.
    let mut latencies = Vec::new();
    for i in 0..7 {
        let start = Instant::now();
        other.execute("UPDATE todo_list SET name = $1", &[&format!("n{i}")]).await.unwrap();
        let changes = receive(&mut bus, 1).await;
        latencies.push(start.elapsed());
        assert_eq!(changes[0].new.as_ref().unwrap()[1], text(&format!("n{i}")));
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    latencies.sort();
    assert!(latencies[3] < Duration::from_millis(300), "median latency {:?}: {latencies:?}", latencies[3]);
}

#[tokio::test]
async fn a_bulk_update_reaches_the_bus_in_order_in_bounded_batches() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();
    let other = pg.client("t").await;
    other
        .batch_execute(
            "INSERT INTO todo_item (text, todo_list) SELECT 'item ' || n, 1 FROM generate_series(1, 1500) AS n;
             UPDATE todo_item SET done = true;",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut largest = 0;
    while seen.len() < 3000 {
        let msg = tokio::time::timeout(ARRIVAL, bus.recv()).await.expect("published in time");
        let Some(BusMessage::Changes(batch)) = msg else { panic!("bus closed") };
        largest = largest.max(batch.len());
        seen.extend(batch.iter().map(|c| (c.offset, c.action)));
    }
    assert!(largest <= 1000, "a batch of {largest}");
    let offsets: Vec<u64> = seen.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=3000).collect::<Vec<_>>());
    assert!(seen[..1500].iter().all(|(_, a)| *a == Action::Created));
    assert!(seen[1500..].iter().all(|(_, a)| *a == Action::Updated));

    // The same session, one small statement at a time in one transaction: numbered on from the bulk statement's
    // entries, each once, published when the transaction commits and not before.
    other.batch_execute("BEGIN").await.unwrap();
    for id in 1..=300i64 {
        other.execute("UPDATE todo_item SET text = 'one by one' WHERE id = $1", &[&id]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(drain(&mut bus), vec![], "nothing uncommitted is published");
    other.batch_execute("COMMIT").await.unwrap();
    let offsets: Vec<u64> = receive(&mut bus, 300).await.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, (3001..=3300).collect::<Vec<_>>());
}

#[tokio::test]
async fn concurrent_writers_keep_offsets_gap_free_and_in_order() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();
    let store = std::sync::Arc::new(store);
    const PER_WRITER: usize = 30;

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..PER_WRITER {
                let op = create("todo_item", vec![(1, text(&format!("w{w} {i}"))), (3, Value::Int(1))]);
                offsets.push(store.write(op).await.unwrap()[0].offset);
            }
            offsets
        });
    }
    // Two outside connections, one committing row by row, one in small transactions that roll back every third.
    let outside = [pg.client("t").await, pg.client("t").await];
    let mut committed_outside = 0;
    for (n, client) in outside.into_iter().enumerate() {
        committed_outside += if n == 0 { PER_WRITER } else { PER_WRITER / 3 * 2 };
        tasks.spawn(async move {
            for i in 0..PER_WRITER {
                let insert = format!("INSERT INTO todo_item (text, todo_list) VALUES ('o{n} {i}', 1)");
                if n == 0 {
                    client.batch_execute(&insert).await.unwrap();
                } else {
                    let end = if i % 3 == 2 { "ROLLBACK" } else { "COMMIT" };
                    client.batch_execute(&format!("BEGIN; {insert}; {end}")).await.unwrap();
                }
            }
            Vec::new()
        });
    }
    let mut from_writes = Vec::new();
    while let Some(offsets) = tasks.join_next().await {
        from_writes.extend(offsets.unwrap());
    }
    let total = 4 * PER_WRITER + committed_outside;
    let seen = receive(&mut bus, total).await;
    let offsets: Vec<u64> = seen.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, (1..=total as u64).collect::<Vec<_>>(), "gap-free, in order, each once");
    from_writes.sort();
    from_writes.dedup();
    assert_eq!(from_writes.len(), 4 * PER_WRITER, "each write got its own offset back");

    // In the log, offset order is global sequence order (commit order).
    let check = pg.client("t").await;
    let rows = check
        .query("SELECT seq FROM _drakon_changes WHERE model = 'todo_item' ORDER BY \"offset\"", &[])
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs.len(), total);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "offsets follow the global sequence");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(drain(&mut bus), vec![], "nothing published twice");
}

#[tokio::test]
async fn every_node_publishes_every_change_once() {
    let pg = TestPg::start();
    let (a, mut bus_a, url) = open(&pg).await;
    let (b, mut bus_b) = open_with(&url, LogRetention::default()).await;
    a.write(create("todo_list", vec![(1, text("from a"))])).await.unwrap();
    b.write(create("todo_list", vec![(1, text("from b"))])).await.unwrap();
    pg.client("t").await.batch_execute("INSERT INTO todo_list (name) VALUES ('from psql')").await.unwrap();
    for bus in [&mut bus_a, &mut bus_b] {
        let names: Vec<Value> = receive(bus, 3).await.iter().map(|c| c.new.as_ref().unwrap()[1].clone()).collect();
        assert_eq!(names, vec![text("from a"), text("from b"), text("from psql")]);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!((drain(&mut bus_a), drain(&mut bus_b)), (vec![], vec![]), "nothing twice");
    let nodes: i64 = pg.client("t").await.query_one("SELECT count(*) FROM _drakon_nodes", &[]).await.unwrap().get(0);
    assert_eq!(nodes, 2);
}

#[tokio::test]
async fn watched_references_log_touches_of_referring_rows() {
    let pg = TestPg::start();
    let (store, mut bus, _) = open(&pg).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    for name in ["x", "y"] {
        store.write(create("todo_item", vec![(1, text(name)), (3, Value::Int(1))])).await.unwrap();
    }
    let rename = |name: &str| WriteOp::Update {
        model: "todo_list".into(),
        id: 1,
        values: vec![(1, text(name))],
        guard: Filter::default(),
    };
    assert_eq!(store.write(rename("b")).await.unwrap().len(), 1, "nobody watches: no touches");
    store.watch_reference("todo_item", "todo_list").await.unwrap();
    store.watch_reference("todo_item", "todo_list").await.unwrap();
    let changes = store.write(rename("c")).await.unwrap();
    let summary: Vec<(&str, i64, u64, bool)> =
        changes.iter().map(|c| (&*c.model, c.id, c.offset, c.old == c.new)).collect();
    assert_eq!(summary, vec![("todo_list", 1, 3, false), ("todo_item", 1, 3, true), ("todo_item", 2, 4, true)]);
    // A touch records the referenced row before and after, so it can be judged (and replayed) on its own.
    let name_of = |row: Option<Option<&Vec<Value>>>| row.flatten().map(|r| r[1].clone());
    assert_eq!(name_of(changes[1].referenced(true, "todo_list")), Some(text("b")));
    assert_eq!(name_of(changes[1].referenced(false, "todo_list")), Some(text("c")));
    // Outside writes touch the same way.
    pg.client("t").await.batch_execute("UPDATE todo_list SET name = 'd'").await.unwrap();
    let outside = receive(&mut bus, 3 + 1 + 3 + 3).await;
    let last: Vec<(&str, u64)> = outside[outside.len() - 3..].iter().map(|c| (&*c.model, c.offset)).collect();
    assert_eq!(last, vec![("todo_list", 4), ("todo_item", 5), ("todo_item", 6)]);
}

#[tokio::test]
async fn log_since_replays_and_retention_trims() {
    let pg = TestPg::start();
    let url = pg.create_database("t").await;
    let retention = LogRetention { count: 3, age: Duration::from_secs(3600) };
    let (store, _bus) = open_with(&url, retention).await;
    let lists = schema().models[0].clone();
    for i in 0..8 {
        store.write(create("todo_list", vec![(1, text(&format!("l{i}")))])).await.unwrap();
    }
    let deadline = Instant::now() + ARRIVAL;
    loop {
        match store.log_since(&lists, 0, 100).await.unwrap() {
            LogRead::Gone { head } => {
                assert_eq!(head, 8);
                break;
            }
            LogRead::Changes { .. } => {
                assert!(Instant::now() < deadline, "the log was never trimmed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let LogRead::Changes { changes, head } = store.log_since(&lists, 5, 100).await.unwrap() else {
        panic!("the last three are kept")
    };
    assert_eq!(head, 8);
    assert_eq!(changes.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![6, 7, 8]);
    assert_eq!(changes[0].new.as_ref().unwrap()[1], text("l5"));
    assert_eq!(store.log_since(&lists, 8, 100).await.unwrap(), LogRead::Changes { changes: vec![], head: 8 });
    assert_eq!(store.log_since(&lists, 6, 1).await.unwrap(), LogRead::Gone { head: 8 }, "more than the limit");
    assert_eq!(store.log_since(&lists, 9, 100).await.unwrap(), LogRead::Gone { head: 8 }, "ahead of the log");
}

#[tokio::test]
async fn list_reads_one_snapshot_with_typed_values() {
    let pg = TestPg::start();
    let url = pg.create_database("t").await;
    let schema = Schema::new().model(
        Model::new("thing")
            .field(Field::text("name"))
            .field(Field::int("n").optional())
            .field(Field::float("score").optional())
            .field(Field::datetime("at").optional())
            .field(Field::json("data").optional())
            .field(Field::json("tags").default(Value::Json(json!(["new"])))),
    );
    let (tx, mut bus) = mpsc::channel(64);
    let store = PgStore::connect(&url, tx, LogRetention::default()).await.unwrap();
    assert_eq!(store.migrate(&schema).await.unwrap().created_tables, vec!["thing".to_owned()]);
    store.migrate(&schema).await.unwrap();
    store.ping().await.unwrap();
    let things = schema.get_model("thing").unwrap();
    let values = vec![
        (1, text("Ünïcode 'quoted'")),
        (2, Value::Int(i64::MAX)),
        (3, Value::Float(0.1)),
        (4, Value::DateTime("2026-11-27T10:00:00.000000Z".into())),
        (5, Value::Json(json!({"b": [1, 2.5, null], "a": "x"}))),
    ];
    let created =
        store.write(WriteOp::Create { model: "thing".into(), values, guard: Filter::default() }).await.unwrap();
    store.write(create("thing", vec![(1, text("second"))])).await.unwrap();
    let page = store.list(things, &Filter::default(), &[OrderBy { field: 1, descending: true }], 1, 0).await.unwrap();
    assert_eq!((page.total, page.offset, page.rows.len()), (2, 2, 1));
    assert_eq!(page.rows[0], created[0].new.clone().unwrap(), "the logged image equals the stored row");
    assert_eq!(page.rows[0][6], Value::Json(json!(["new"])), "json default");
    let published = drain(&mut bus);
    assert_eq!(published[0], created[0]);
    let filter =
        Filter::parse(&schema, things, json!({"n__gte": 5, "at__lt": "2027-01-01T00:00:00Z"}).as_object().unwrap())
            .unwrap();
    let page = store.list(things, &filter, &[], 10, 0).await.unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.rows[0][1], text("Ünïcode 'quoted'"));
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
