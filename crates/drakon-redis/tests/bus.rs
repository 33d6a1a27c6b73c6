//! The Redis bus against a real `redis-server`: what a node publishes reaches every node's inbox, typed by the
//! receiver's schema; a message of a version the node does not know is skipped without stopping the bus.

use std::sync::Arc;
use std::time::Duration;

use drakon_core::bus::{Bus, Inbox, LocalBus};
use drakon_core::store::{BusMessage, Change};
use drakon_core::{Schema, Value};
use drakon_protocol::Action;
use drakon_redis::{Options, RedisBus};
use drakon_testkit::redis::TestRedis;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(5);

fn schema() -> Arc<Schema> {
    let config = drakon_core::config::parse(
        "[models.list.fields]\nname = { type = \"text\" }\n",
        std::path::Path::new("drakon.toml"),
    )
    .expect("valid config");
    Arc::new(config.schema)
}

async fn node(redis: &TestRedis) -> (Arc<RedisBus>, Inbox) {
    let (local, inbox) = LocalBus::new(16);
    let bus = drakon_redis::start(&redis.url(), Options::default(), local.sink(), schema()).await.expect("bus starts");
    (bus, inbox)
}

async fn next(inbox: &mut Inbox) -> BusMessage {
    tokio::time::timeout(PATIENCE, inbox.recv()).await.expect("a message in time").expect("the inbox is open")
}

#[tokio::test]
async fn published_messages_reach_every_node_typed() {
    let redis = TestRedis::start();
    let (a, mut a_inbox) = node(&redis).await;
    let (_b, mut b_inbox) = node(&redis).await;
    assert!(a.ready().is_ok());
    let change = Change {
        model: Arc::from("list"),
        id: 4,
        action: Action::Created,
        old: None,
        new: Some(vec![Value::Int(4), Value::Text("Chores".into())]),
        offset: 9,
        old_refs: Vec::new(),
        new_refs: Vec::new(),
    };
    a.publish(BusMessage::Changes(Arc::new(vec![change.clone()]))).await.expect("Redis takes it");
    a.publish(BusMessage::Channel { name: Arc::from("chat"), data: Arc::new(json!({"hi": 1})) })
        .await
        .expect("Redis takes it");
    for inbox in [&mut a_inbox, &mut b_inbox] {
        let BusMessage::Changes(changes) = next(inbox).await else { panic!("changes first") };
        assert_eq!(*changes, vec![change.clone()]);
        let BusMessage::Channel { name, data } = next(inbox).await else { panic!("then the plain message") };
        assert_eq!((&*name, &*data), ("chat", &json!({"hi": 1})));
    }
}

#[tokio::test]
async fn a_message_of_an_unknown_version_is_skipped_and_the_bus_goes_on() {
    let redis = TestRedis::start();
    let (bus, mut inbox) = node(&redis).await;
    // As a node of a later release would send it.
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut raw = client.get_multiplexed_async_connection().await.expect("connect");
    for payload in [json!({"v": 2, "msg": {"presence": {"node": "x"}}}), json!({"v": 2, "msg": {"heads": []}})] {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg("drakon:publish")
            .arg(payload.to_string())
            .query_async(&mut raw)
            .await
            .expect("publish");
        assert_eq!(receivers, 1, "the node is subscribed");
    }
    bus.publish(BusMessage::Channel { name: Arc::from("after"), data: Arc::new(json!(1)) }).await.expect("sent");
    let BusMessage::Channel { name, .. } = next(&mut inbox).await else { panic!("only the known message arrives") };
    assert_eq!(&*name, "after");
    assert!(bus.ready().is_ok(), "still subscribed");
}
