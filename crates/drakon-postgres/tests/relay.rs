//! Relay mode (`PgStore::connect_relay`): with a bus shared by every node, exactly one node publishes the change
//! log to it, announces the heads, and hands over to another node when it goes away, continuing from where it
//! stopped. Against a real PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestPg;
use drakon_core::schema::{Field, Model, Schema};
use drakon_core::store::{BusMessage, LogRetention, Store, WriteOp};
use drakon_core::{Filter, Value};
use drakon_postgres::PgStore;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn schema() -> Schema {
    Schema::new().model(Model::new("todo_list").field(Field::text("name")))
}

async fn relay_node(url: &str) -> (PgStore, mpsc::Receiver<BusMessage>) {
    relay_node_with(url, Arc::new(AtomicBool::new(true))).await
}

/// A node whose bus is healthy while `healthy` is true.
async fn relay_node_with(url: &str, healthy: Arc<AtomicBool>) -> (PgStore, mpsc::Receiver<BusMessage>) {
    let (tx, rx) = mpsc::channel(1024);
    let health = Arc::new(move || healthy.load(Ordering::Relaxed));
    let store = PgStore::connect_relay(url, tx, LogRetention::default(), health).await.unwrap();
    store.migrate(&schema()).await.unwrap();
    (store, rx)
}

async fn create(store: &PgStore, name: &str) {
    let values = vec![(1, Value::Text(name.into()))];
    store.write(WriteOp::Create { model: "todo_list".into(), values, guard: Filter::default() }).await.unwrap();
}

/// What one node's bus carried during `wait`: the offsets of the changes, and the last heads announced.
#[derive(Debug, Default)]
struct Seen {
    offsets: Vec<u64>,
    heads: Option<Vec<(String, u64)>>,
}

async fn collect(bus: &mut mpsc::Receiver<BusMessage>, wait: Duration) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + wait;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, bus.recv()).await {
        match msg {
            BusMessage::Changes(changes) => seen.offsets.extend(changes.iter().map(|c| c.offset)),
            BusMessage::Heads(heads) => seen.heads = Some(heads.iter().map(|(m, o)| (m.to_string(), *o)).collect()),
            BusMessage::Channel { .. } | BusMessage::Presence(_) => panic!("a store never sends plain messages"),
        }
    }
    seen
}

#[tokio::test]
async fn one_node_relays_each_change_once_and_another_takes_over_when_it_goes() {
    let pg = TestPg::start();
    let url = pg.create_database("t").await;
    let (a, mut bus_a) = relay_node(&url).await;
    let (b, mut bus_b) = relay_node(&url).await;
    create(&a, "from a").await;
    create(&b, "from b").await;
    pg.client("t").await.batch_execute("INSERT INTO todo_list (name) VALUES ('from psql')").await.unwrap();

    // Over a couple of ticks: the three changes went out once, through one node, which also announced the heads.
    let wait = Duration::from_millis(2500);
    let (seen_a, seen_b) = tokio::join!(collect(&mut bus_a, wait), collect(&mut bus_b, wait));
    let (relay, relay_bus, other, mut other_bus, seen, idle) = if seen_a.offsets.is_empty() {
        (b, bus_b, a, bus_a, seen_b, seen_a)
    } else {
        (a, bus_a, b, bus_b, seen_a, seen_b)
    };
    assert_eq!(seen.offsets, vec![1, 2, 3], "{seen:?}");
    assert_eq!(seen.heads, Some(vec![("todo_list".to_owned(), 3)]));
    assert!(idle.offsets.is_empty() && idle.heads.is_none(), "the other node must not publish: {idle:?}");

    // The relay goes away; the other node takes over from the recorded cursor and publishes what follows.
    drop((relay, relay_bus));
    create(&other, "after").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut offsets = Vec::new();
    while !offsets.contains(&4) {
        assert!(Instant::now() < deadline, "no node took over the relay: {offsets:?}");
        offsets.extend(collect(&mut other_bus, Duration::from_millis(500)).await.offsets);
    }
    // At least once: the new relay may repeat entries up to the old relay's last recorded cursor, never skip one.
    assert!(offsets.iter().all(|o| (2..=4).contains(o)), "{offsets:?}");
}

#[tokio::test]
async fn a_relay_that_cannot_reach_the_bus_hands_over() {
    let pg = TestPg::start();
    let url = pg.create_database("t").await;
    let a_healthy = Arc::new(AtomicBool::new(true));
    let (a, mut bus_a) = relay_node_with(&url, a_healthy.clone()).await;
    // A starts alone, so it relays.
    let first = collect(&mut bus_a, Duration::from_millis(1500)).await;
    assert!(first.heads.is_some(), "the first node relays: {first:?}");
    let (_b, mut bus_b) = relay_node(&url).await;

    // A's bus starts refusing its messages: within a few seconds A hands over, and B relays what follows.
    a_healthy.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the relay was not handed over");
        if collect(&mut bus_b, Duration::from_millis(500)).await.heads.is_some() {
            break;
        }
    }
    create(&a, "written on a").await;
    let mut offsets = Vec::new();
    while !offsets.contains(&1) {
        assert!(Instant::now() < deadline, "b does not relay a's write: {offsets:?}");
        offsets.extend(collect(&mut bus_b, Duration::from_millis(500)).await.offsets);
    }
    // And A, out of the election for a while, publishes nothing (once what it sent before handing over is read).
    while bus_a.try_recv().is_ok() {}
    let idle = collect(&mut bus_a, Duration::from_millis(1500)).await;
    assert!(idle.offsets.is_empty() && idle.heads.is_none(), "{idle:?}");
}
