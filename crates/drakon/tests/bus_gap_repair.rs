//! A lossy bus loses nothing: the fan-out notices the skipped offsets and reads those changes from the change log.
//!
//! The store's committed batches go through a relay that drops every third one on purpose before they reach the
//! engine, as a Redis blip between nodes would. The subscriber must still see every change, in offset order, once.

use std::sync::Arc;
use std::time::Duration;

use drakon_core::config;
use drakon_core::store::BusMessage;
use drakon_core::{Bus, Engine, EngineLimits, LocalBus, Store};
use drakon_server::ServerOptions;
use drakon_sqlite::SqliteStore;
use drakon_testkit::{Client, PATIENCE};
use serde_json::json;
use tokio::sync::mpsc;

const TODO: &str = include_str!("../../../examples/todo/drakon.toml");

#[tokio::test]
async fn dropped_bus_batches_are_repaired_from_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = config::parse(TODO, &dir.path().join("drakon.toml")).unwrap();
    let checked = config.schema.check().unwrap();

    // store → (lossy relay) → bus → engine
    let (store_sink, mut from_store) = mpsc::channel(64);
    let (bus, inbox) = LocalBus::new(64);
    let to_engine = bus.clone();
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(msg) = from_store.recv().await {
            n += 1;
            if matches!(msg, BusMessage::Changes(_)) && n % 3 == 0 {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                continue;
            }
            if to_engine.publish(msg).await.is_err() {
                return;
            }
        }
    });
    let store = SqliteStore::open(dir.path().join("drakon.db"), store_sink).unwrap();
    store.migrate(checked.schema()).await.unwrap();
    let (engine, _fan_out) = Engine::start(
        drakon_core::node::NodeId::new("test"),
        checked,
        Arc::new(store),
        Arc::new(bus),
        inbox,
        EngineLimits::default(),
    );
    engine.ready().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(drakon_server::serve(listener, engine, ServerOptions::default(), async {
        let _ = stopped.await;
    }));

    let url = format!("ws://{addr}/data/websocket");
    let mut writer = Client::connect(&url).await;
    let mut watcher = Client::connect(&url).await;
    let list = writer.ok("todo-list", "create", json!({"name": "groceries"})).await;
    let snapshot = watcher
        .ok("todo-item", "subscribe", json!({"channel": "items", "list_id": list["id"], "snapshot": true}))
        .await;
    let mut last = snapshot["offset"].as_u64().unwrap();

    let mut created = Vec::new();
    for i in 0..30 {
        let item =
            writer.ok("todo-item", "create", json!({"text": format!("item {i}"), "todo_list": list["id"]})).await;
        created.push(item["id"].clone());
    }
    // One more change after the last one, so that a drop of the last batch is noticed too.
    let marker = writer.ok("todo-item", "create", json!({"text": "marker", "todo_list": list["id"]})).await;
    created.push(marker["id"].clone());

    let mut seen = Vec::new();
    while seen.len() < created.len() {
        let p = watcher.next_publication(PATIENCE).await.expect("every change arrives");
        let offset = p["offset"].as_u64().unwrap();
        assert_eq!(offset, last + 1, "offsets arrive in order, none missing, none twice: {p}");
        last = offset;
        assert_eq!(p["action"], "created");
        seen.push(p["data"]["id"].clone());
    }
    assert_eq!(seen, created);
    assert!(watcher.next_publication(Duration::from_millis(300)).await.is_none(), "nothing twice");
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst) >= 9, "the relay really dropped batches");
    let _ = stop.send(());
    let _ = server.await;
}
