//! The store conformance suite: what the engine relies on from every [`Store`], written once and run against each
//! store on a real database: gap-free offsets in commit order with cascades, refusals that leave nothing behind
//! and say what they are, migrations that never lose data, writes from outside drakon reaching the bus, bulk and
//! concurrent writes, touches through watched references, replay and retention, typed snapshot reads, and filters
//! that select what the in-memory matcher selects (`filters`).
//!
//! A store's crate runs the whole suite with [`store_suite!`](macro@crate::store_suite), one test per function here,
//! given a [`StoreHarness`] for its database. What only one store has (PostgreSQL's notifications and node
//! registry, SQLite's NOT NULL columns, connection errors) stays in that store's own tests, which may use the
//! helpers here.

mod filters;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drakon_core::schema::{Field, Model, Schema};
use drakon_core::store::{BusMessage, Change, ChangeSink, LogRead, LogRetention, OrderBy, Store, StoreError, WriteOp};
use drakon_core::{Filter, OnDelete, Value};
use drakon_protocol::Action;
use serde_json::json;
use tokio::sync::mpsc;

pub use filters::{sql_and_memory_select_the_same_rows, text_operators_agree_on_every_tricky_text};

use crate::PATIENCE;

/// Longer than either store's fallback look at the log (SQLite's half second, PostgreSQL's second): a change not
/// published by then was not going to be.
const QUIET: Duration = Duration::from_millis(1500);

/// One store's database as the suite sees it: stores opened on it, and plain connections from outside drakon.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// A store on this harness's database delivering to `sink`, not migrated yet. The first call makes a fresh
    /// database; later calls open another store on the same one, as another node or process would.
    async fn open(&self, sink: ChangeSink, retention: LogRetention) -> Arc<dyn Store>;

    /// A connection to the same database from outside drakon, as `psql` or the `sqlite3` shell would be.
    async fn outside(&self) -> Box<dyn Outside>;

    /// Whether a refused create still uses up the id the database gave it. PostgreSQL's identity sequences do not
    /// roll back, so the next row skips it; SQLite's `AUTOINCREMENT` counter rolls back with the transaction, so
    /// the next row takes it. On both, no id of a committed row is ever given out again.
    fn refused_creates_use_up_ids(&self) -> bool;
}

/// A plain connection to a store's database. The suite only passes it SQL that means the same in SQLite and in
/// PostgreSQL.
#[async_trait]
pub trait Outside: Send + Sync {
    /// Runs one or more statements; panics if they fail.
    async fn execute(&self, sql: &str);

    /// Runs a query and returns the first column of each row, an integer.
    async fn ints(&self, sql: &str) -> Vec<i64>;
}

/// One `#[tokio::test]` per suite function, each on a fresh harness made by `$harness` (an expression whose value
/// implements [`StoreHarness`]). Needs `tokio` with its `macros` feature in the calling crate.
#[macro_export]
macro_rules! store_suite {
    ($harness:expr) => {
        $crate::store_suite!(@tests $harness;
            writes_log_gap_free_offsets_and_cascade,
            refusals_leave_nothing_behind,
            a_deleted_rows_id_is_never_given_out_again,
            refusals_say_what_they_are,
            unsafe_migrations_are_refused_with_advice,
            writes_from_outside_reach_the_bus_through_the_log,
            a_bulk_update_reaches_the_bus_in_order_in_bounded_batches,
            concurrent_writers_keep_offsets_gap_free_and_in_order,
            every_store_on_the_database_publishes_every_change_once,
            watched_references_log_touches_of_referring_rows,
            log_since_replays_and_retention_trims,
            list_reads_one_snapshot_with_typed_values,
            list_orders_nulls_first_and_breaks_ties_by_id,
            text_operators_agree_on_every_tricky_text,
            sql_and_memory_select_the_same_rows,
            accounts_keep_users_and_sessions_apart_from_the_log,
        );
    };
    (@tests $harness:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                let harness = $harness;
                $crate::store_suite::$test(&harness).await;
            }
        )+
    };
}

/// Lists and their items, and notes that point at items: a unique field, a default, a cascade and a set-null.
pub fn todo_schema() -> Schema {
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

/// A store on the harness's database migrated to `schema`, its bus roomy enough for every message a test publishes.
pub async fn open(h: &dyn StoreHarness, schema: &Schema) -> (Arc<dyn Store>, mpsc::Receiver<BusMessage>) {
    let (tx, rx) = mpsc::channel(1024);
    let store = h.open(tx, LogRetention::default()).await;
    store.migrate(schema).await.unwrap();
    (store, rx)
}

pub fn create(model: &str, values: Vec<(usize, Value)>) -> WriteOp {
    WriteOp::Create { model: model.into(), values, guard: Filter::default() }
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// Changes from the bus until `n` have arrived; panics if they take longer than [`PATIENCE`].
pub async fn receive(bus: &mut mpsc::Receiver<BusMessage>, n: usize) -> Vec<Change> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let msg = tokio::time::timeout(PATIENCE, bus.recv()).await.unwrap_or_else(|_| {
            panic!("only {} of {n} changes were published: {seen:?}", seen.len());
        });
        let Some(BusMessage::Changes(batch)) = msg else { panic!("bus closed") };
        seen.extend(batch.iter().cloned());
    }
    seen
}

/// What is on the bus right now, without waiting.
pub fn drain(bus: &mut mpsc::Receiver<BusMessage>) -> Vec<Change> {
    let mut seen = Vec::new();
    while let Ok(BusMessage::Changes(batch)) = bus.try_recv() {
        seen.extend(batch.iter().cloned());
    }
    seen
}

pub async fn writes_log_gap_free_offsets_and_cascade(h: &dyn StoreHarness) {
    let (store, mut bus) = open(h, &todo_schema()).await;
    let list = store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    assert_eq!((list[0].id, list[0].offset), (1, 1));
    for i in 0..3 {
        let item =
            store.write(create("todo_item", vec![(1, text(&format!("i{i}"))), (3, Value::Int(1))])).await.unwrap();
        assert_eq!(item[0].offset, i + 1);
        assert_eq!(item[0].new.as_ref().unwrap()[2], Value::Bool(false), "default filled");
    }
    store.write(create("note", vec![(1, Value::Int(2))])).await.unwrap();
    let items = store.log_since(&todo_schema().models[1], 0, 10).await.unwrap();
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
    // The store's own look at the log for outside writes finds these entries published already.
    tokio::time::sleep(QUIET).await;
    assert_eq!(drain(&mut bus), vec![]);
}

pub async fn refusals_leave_nothing_behind(h: &dyn StoreHarness) {
    let (store, mut bus) = open(h, &todo_schema()).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let dup = store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap_err();
    assert!(matches!(dup, StoreError::Unique { ref field, .. } if field == "name"), "{dup:?}");
    let missing = store.write(create("todo_item", vec![(1, text("x")), (3, Value::Int(9))])).await.unwrap_err();
    assert!(matches!(missing, StoreError::MissingRef { ref field, .. } if field == "todo_list"), "{missing:?}");
    // The failed writes consumed no offsets: the next list gets offset 2.
    let next = store.write(create("todo_list", vec![(1, text("b"))])).await.unwrap();
    assert_eq!(next[0].offset, 2);
    let id = if h.refused_creates_use_up_ids() { 3 } else { 2 };
    assert_eq!(next[0].id, id, "the refused insert used id 2 where the database's counter does not roll back");
    let renamed = store
        .write(WriteOp::Update {
            model: "todo_list".into(),
            id,
            values: vec![(1, text("a"))],
            guard: Filter::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(renamed, StoreError::Unique { ref field, .. } if field == "name"), "{renamed:?}");
    let published: Vec<u64> = drain(&mut bus).iter().map(|c| c.offset).collect();
    assert_eq!(published, vec![1, 2], "only the committed writes were published");
}

/// Built-in users and their sessions: saved and replaced by name, a replaced account's sessions end, sessions expire
/// and close, and none of it reaches the change log or the bus.
pub async fn accounts_keep_users_and_sessions_apart_from_the_log(h: &dyn StoreHarness) {
    use drakon_core::accounts::Account;
    let (store, mut bus) = open(h, &todo_schema()).await;
    let accounts = store.accounts().expect("the store keeps accounts");
    let alice = Account {
        name: "alice".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        roles: vec!["staff".into(), "editor".into()],
        info: serde_json::json!({"name": "Alice"}),
    };
    assert_eq!(accounts.account("alice").await.unwrap(), None);
    accounts.save_account(&alice).await.unwrap();
    accounts.save_account(&Account { name: "bob".into(), roles: vec![], ..alice.clone() }).await.unwrap();
    assert_eq!(accounts.account("alice").await.unwrap().as_ref(), Some(&alice));
    let names: Vec<String> = accounts.all_accounts().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["alice", "bob"]);

    let now = 1_900_000_000;
    accounts.open_session("k1", "alice", u64::MAX >> 2).await.unwrap();
    accounts.open_session("k2", "alice", u64::MAX >> 2).await.unwrap();
    accounts.open_session("old", "bob", now - 1).await.unwrap();
    assert_eq!(accounts.session_account("k1", now).await.unwrap().map(|a| a.name), Some("alice".into()));
    assert_eq!(accounts.session_account("old", now).await.unwrap(), None, "expired");
    assert_eq!(accounts.session_account("nope", now).await.unwrap(), None);
    accounts.close_session("k1").await.unwrap();
    assert_eq!(accounts.session_account("k1", now).await.unwrap(), None, "closed");
    assert!(accounts.session_account("k2", now).await.unwrap().is_some());
    let renewed = Account { password_hash: "$argon2id$new".into(), ..alice.clone() };
    accounts.save_account(&renewed).await.unwrap();
    assert_eq!(accounts.session_account("k2", now).await.unwrap(), None, "a replaced account's sessions end");
    assert_eq!(accounts.account("alice").await.unwrap().unwrap().password_hash, "$argon2id$new");
    assert!(drain(&mut bus).is_empty(), "accounts are not rows: nothing is published");
}

/// A client may hold an id long after the row is gone (a mirror, a URL): a new row must never take it.
pub async fn a_deleted_rows_id_is_never_given_out_again(h: &dyn StoreHarness) {
    let (store, _bus) = open(h, &todo_schema()).await;
    for name in ["a", "b"] {
        store.write(create("todo_list", vec![(1, text(name))])).await.unwrap();
    }
    store.write(WriteOp::Delete { model: "todo_list".into(), id: 2, guard: Filter::default() }).await.unwrap();
    let next = store.write(create("todo_list", vec![(1, text("c"))])).await.unwrap();
    assert_eq!((next[0].id, next[0].offset), (3, 4));
}

pub async fn refusals_say_what_they_are(h: &dyn StoreHarness) {
    let schema = Schema::new().model(Model::new("owner").field(Field::text("name"))).model(
        Model::new("pet").field(Field::text("name")).field(Field::bool("public")).field(Field::reference(
            "owner",
            "owner",
            OnDelete::Restrict,
        )),
    );
    let (tx, _bus) = mpsc::channel(64);
    let store = h.open(tx, LogRetention::default()).await;
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
    let id = if h.refused_creates_use_up_ids() { 2 } else { 1 };
    assert_eq!((pet[0].id, pet[0].offset), (id, 1), "the refused create used no offset");
    let hide = WriteOp::Update { model: "pet".into(), id, values: vec![(2, Value::Bool(false))], guard: public };
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
        WriteOp::Update { model: "pet".into(), id, values: vec![(1, text("rex"))], guard: Filter::default() };
    assert_eq!(store.write(unchanged).await.unwrap(), vec![], "an update that changes nothing logs nothing");
    let page = store.list(pets, &Filter::default(), &[], 10, 0).await.unwrap();
    assert_eq!((page.total, page.offset), (1, 1));
    assert_eq!(page.rows[0][2], Value::Bool(true));
}

/// The refusals every store makes alike (`drakon_core::migration`); whether a required field may become optional
/// depends on the database, so each store's own tests say.
pub async fn unsafe_migrations_are_refused_with_advice(h: &dyn StoreHarness) {
    let (store, _bus) = open(h, &todo_schema()).await;
    let mut changed = todo_schema();
    changed.models[0].fields[1] = Field::int("name");
    let err = store.migrate(&changed).await.unwrap_err().to_string();
    assert!(err.contains("changed type from text to int"), "{err}");
    let mut dropped = todo_schema();
    dropped.models[1].fields.truncate(2);
    dropped.models.pop();
    let err = store.migrate(&dropped).await.unwrap_err().to_string();
    assert!(err.contains("never drops data"), "{err}");
    let mut added = todo_schema();
    added.models[0].fields.push(Field::int("rank"));
    let err = store.migrate(&added).await.unwrap_err().to_string();
    assert!(err.contains("give it a default or make it optional"), "{err}");
    let mut required = todo_schema();
    required.models[2].fields[1] = Field::reference("item", "todo_item", OnDelete::SetNull);
    let err = store.migrate(&required).await.unwrap_err().to_string();
    assert!(err.contains("note.item became required"), "{err}");
    added.models[0].fields[2] = Field::int("rank").default(Value::Int(0));
    let report = store.migrate(&added).await.unwrap();
    assert_eq!(report.added_columns, vec!["todo_list.rank".to_owned()]);
    assert_eq!(report.created_tables, Vec::<String>::new());
}

pub async fn writes_from_outside_reach_the_bus_through_the_log(h: &dyn StoreHarness) {
    let (store, mut bus) = open(h, &todo_schema()).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();

    // One insert, then one UPDATE touching many rows.
    h.outside()
        .await
        .execute(
            "INSERT INTO todo_item (text, todo_list) VALUES ('x', 1), ('y', 1), ('z', 1);
             UPDATE todo_item SET done = true;
             UPDATE todo_item SET done = true;
             DELETE FROM todo_item WHERE text = 'z';",
        )
        .await;

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

pub async fn a_bulk_update_reaches_the_bus_in_order_in_bounded_batches(h: &dyn StoreHarness) {
    let (store, mut bus) = open(h, &todo_schema()).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();
    let other = h.outside().await;
    other
        .execute(
            "WITH RECURSIVE n (x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1500)
                 INSERT INTO todo_item (text, todo_list) SELECT 'item ' || x, 1 FROM n;
             UPDATE todo_item SET done = true;",
        )
        .await;
    let mut seen = Vec::new();
    let mut largest = 0;
    while seen.len() < 3000 {
        let msg = tokio::time::timeout(PATIENCE, bus.recv()).await.expect("published in time");
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
    other.execute("BEGIN").await;
    for id in 1..=300 {
        other.execute(&format!("UPDATE todo_item SET text = 'one by one' WHERE id = {id}")).await;
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(drain(&mut bus), vec![], "nothing uncommitted is published");
    other.execute("COMMIT").await;
    let offsets: Vec<u64> = receive(&mut bus, 300).await.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, (3001..=3300).collect::<Vec<_>>());
}

pub async fn concurrent_writers_keep_offsets_gap_free_and_in_order(h: &dyn StoreHarness) {
    let (store, mut bus) = open(h, &todo_schema()).await;
    store.write(create("todo_list", vec![(1, text("a"))])).await.unwrap();
    let _ = bus.recv().await.unwrap();
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
    let outside = [h.outside().await, h.outside().await];
    let mut committed_outside = 0;
    for (n, client) in outside.into_iter().enumerate() {
        committed_outside += if n == 0 { PER_WRITER } else { PER_WRITER / 3 * 2 };
        tasks.spawn(async move {
            for i in 0..PER_WRITER {
                let insert = format!("INSERT INTO todo_item (text, todo_list) VALUES ('o{n} {i}', 1)");
                if n == 0 {
                    client.execute(&insert).await;
                } else {
                    let end = if i % 3 == 2 { "ROLLBACK" } else { "COMMIT" };
                    client.execute(&format!("BEGIN; {insert}; {end}")).await;
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
    let seqs =
        h.outside().await.ints("SELECT seq FROM _drakon_changes WHERE model = 'todo_item' ORDER BY \"offset\"").await;
    assert_eq!(seqs.len(), total);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "offsets follow the global sequence");
    tokio::time::sleep(QUIET).await;
    assert_eq!(drain(&mut bus), vec![], "nothing published twice");
}

/// Two stores on one database (two nodes, or two processes on one file) and an outside writer: each store delivers
/// every change to its own bus, once, in commit order.
pub async fn every_store_on_the_database_publishes_every_change_once(h: &dyn StoreHarness) {
    let (a, mut bus_a) = open(h, &todo_schema()).await;
    let (b, mut bus_b) = open(h, &todo_schema()).await;
    a.write(create("todo_list", vec![(1, text("from a"))])).await.unwrap();
    b.write(create("todo_list", vec![(1, text("from b"))])).await.unwrap();
    h.outside().await.execute("INSERT INTO todo_list (name) VALUES ('from outside')").await;
    for bus in [&mut bus_a, &mut bus_b] {
        let names: Vec<Value> = receive(bus, 3).await.iter().map(|c| c.new.as_ref().unwrap()[1].clone()).collect();
        assert_eq!(names, vec![text("from a"), text("from b"), text("from outside")]);
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!((drain(&mut bus_a), drain(&mut bus_b)), (vec![], vec![]), "nothing twice");
}

pub async fn watched_references_log_touches_of_referring_rows(h: &dyn StoreHarness) {
    let (store, mut bus) = open(h, &todo_schema()).await;
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
    h.outside().await.execute("UPDATE todo_list SET name = 'd'").await;
    let outside = receive(&mut bus, 3 + 1 + 3 + 3).await;
    let last: Vec<(&str, u64)> = outside[outside.len() - 3..].iter().map(|c| (&*c.model, c.offset)).collect();
    assert_eq!(last, vec![("todo_list", 4), ("todo_item", 5), ("todo_item", 6)]);
}

pub async fn log_since_replays_and_retention_trims(h: &dyn StoreHarness) {
    let retention = LogRetention { count: 3, age: Duration::from_secs(3600) };
    let (tx, _bus) = mpsc::channel(1024);
    let store = h.open(tx, retention).await;
    let schema = todo_schema();
    store.migrate(&schema).await.unwrap();
    let lists = &schema.models[0];
    for i in 0..10 {
        store.write(create("todo_list", vec![(1, text(&format!("l{i}")))])).await.unwrap();
    }
    // The store trims on its own, in the background, perhaps in more than one pass.
    let outside = h.outside().await;
    let kept = || outside.ints("SELECT count(*) FROM _drakon_changes WHERE model = 'todo_list'");
    let deadline = Instant::now() + PATIENCE;
    while kept().await != [3] {
        assert!(Instant::now() < deadline, "the log was never trimmed to three entries: {:?}", kept().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(QUIET).await;
    assert_eq!(kept().await, [3], "all but the newest three entries go, and no more");
    // A client that last saw offset 7 can still resume; one that saw offset 2 (or nothing) must take a fresh
    // snapshot.
    let LogRead::Changes { changes, head } = store.log_since(lists, 7, 100).await.unwrap() else {
        panic!("the last three are kept")
    };
    assert_eq!(head, 10);
    assert_eq!(changes.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![8, 9, 10]);
    assert_eq!(changes[0].new.as_ref().unwrap()[1], text("l7"));
    assert_eq!(store.log_since(lists, 10, 100).await.unwrap(), LogRead::Changes { changes: vec![], head: 10 });
    assert_eq!(store.log_since(lists, 8, 1).await.unwrap(), LogRead::Gone { head: 10 }, "more than the limit");
    assert_eq!(store.log_since(lists, 2, 100).await.unwrap(), LogRead::Gone { head: 10 });
    assert_eq!(store.log_since(lists, 0, 100).await.unwrap(), LogRead::Gone { head: 10 });
    // An offset from another database (ahead of this log) must reload too.
    assert_eq!(store.log_since(lists, 11, 100).await.unwrap(), LogRead::Gone { head: 10 }, "ahead of the log");
    assert_eq!(store.log_since(lists, 99, 100).await.unwrap(), LogRead::Gone { head: 10 }, "far ahead of the log");
}

pub async fn list_reads_one_snapshot_with_typed_values(h: &dyn StoreHarness) {
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
    let store = h.open(tx, LogRetention::default()).await;
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

/// `list` orders the same on every store (and as the JS mirror sorts): nulls before every value, reversed by a
/// descending order, and `id` breaking ties, so that pages of rows sharing a value never skip or repeat one.
pub async fn list_orders_nulls_first_and_breaks_ties_by_id(h: &dyn StoreHarness) {
    let schema = Schema::new().model(Model::new("thing").field(Field::int("n").optional()));
    let (tx, _bus) = mpsc::channel(64);
    let store = h.open(tx, LogRetention::default()).await;
    store.migrate(&schema).await.unwrap();
    let things = schema.get_model("thing").unwrap();
    // ids 1..=6 with n = 2, null, 1, 2, null, 1
    for n in [Value::Int(2), Value::Null, Value::Int(1), Value::Int(2), Value::Null, Value::Int(1)] {
        store.write(create("thing", vec![(1, n)])).await.unwrap();
    }
    let ids = |rows: &[Vec<Value>]| rows.iter().map(|r| r[0].as_i64().unwrap()).collect::<Vec<_>>();
    let ascending = [OrderBy { field: 1, descending: false }];
    let page = store.list(things, &Filter::default(), &ascending, 10, 0).await.unwrap();
    assert_eq!(ids(&page.rows), vec![2, 5, 3, 6, 1, 4], "nulls first, then by value, ties by id");
    let descending = [OrderBy { field: 1, descending: true }];
    let page = store.list(things, &Filter::default(), &descending, 10, 0).await.unwrap();
    assert_eq!(ids(&page.rows), vec![1, 4, 3, 6, 2, 5], "descending: nulls last, ties still by ascending id");
    // Paging through rows that share a value visits each row once.
    let mut paged = Vec::new();
    for offset in 0..6 {
        paged.extend(ids(&store.list(things, &Filter::default(), &ascending, 1, offset).await.unwrap().rows));
    }
    assert_eq!(paged, vec![2, 5, 3, 6, 1, 4]);
}
