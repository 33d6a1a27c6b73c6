//! `drakon_server::router` embedded in someone else's server (here plain `axum::serve`): its WebSockets are whatever
//! that server upgraded, not drakon's own `TcpStream`s, so they take the queue-and-task path for every frame. Live
//! updates, replies and the closing handshake must work the same.

mod common;

use std::sync::Arc;

use drakon_core::{Engine, EngineLimits, LocalBus, Store, limits::BUS_QUEUE_BATCHES};
use drakon_server::ServerOptions;
use drakon_sqlite::SqliteStore;
use drakon_testkit::{Client, PATIENCE};
use serde_json::json;
use tokio::sync::watch;

#[tokio::test]
async fn the_router_served_by_another_server_keeps_subscribers_live() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = drakon_core::config::parse(common::TODO, &dir.path().join("drakon.toml")).expect("the todo config");
    let checked = config.schema.check().expect("the todo schema checks");
    let schema = checked.schema().clone();
    let (bus, inbox) = LocalBus::new(BUS_QUEUE_BATCHES);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("todo.db"), bus.sink()).expect("open the store"));
    store.migrate(&schema).await.expect("migrate");
    let (engine, _fan_out) = Engine::start(
        drakon_core::node::NodeId::new("test"),
        checked,
        store,
        Arc::new(bus),
        inbox,
        EngineLimits { max_subscriptions: 16 },
    );
    engine.ready().await;
    let (_stop, stopping) = watch::channel(false);
    let app = drakon_server::router(engine, ServerOptions::default(), stopping);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/data/websocket", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut watcher = Client::connect(&url).await;
    let mut writer = Client::connect(&url).await;
    watcher.subscribe("todo-list", "lists", json!({})).await;
    for name in ["groceries", "chores", "books"] {
        writer.ok("todo-list", "create", json!({"name": name})).await;
    }
    for name in ["groceries", "chores", "books"] {
        let event = watcher.next_publication(PATIENCE).await.expect("a live event");
        assert_eq!(event["action"], "created", "{event}");
        assert_eq!(event["data"]["name"], name, "{event}");
    }
}
