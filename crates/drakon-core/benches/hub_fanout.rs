//! Hub fan-out without sockets: one change delivered to many subscribers of one channel, and to the one matching
//! channel among many indexed ones (which must cost about the same as with one channel, ARCHITECTURE.md's fan-out cost invariant).
//!
//! Outboxes are drained between timed batches, outside the measurement, so that every delivery queues an event
//! instead of hitting a full queue and dropping the subscriber. Events are encoded (once per channel) when a queue
//! first hands them out, so draining is where the encoding happens, outside the measurement too; the `encode` bench
//! measures it.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drakon_core::hub::{Delivery, Hub, Remote, RouteView};
use drakon_core::limits::OUTBOUND_QUEUE_FRAMES;
use drakon_core::outbox::Outbox;
use drakon_core::schema::{Field, Model, OnDelete, Schema};
use drakon_core::store::Change;
use drakon_core::value::Value;
use drakon_core::{Encoding, Event, EventBody, Filter, hub::ConnId};
use drakon_protocol::{Action, Args};
use serde_json::{Value as Json, json};

/// The native protocol's event encoding, as the server has it.
#[derive(Debug)]
struct Native;

impl Encoding for Native {
    fn slot(&self) -> usize {
        0
    }

    fn encode(&self, event: &Event) -> bytes::Bytes {
        match &event.body {
            EventBody::Row { action, data, offset, .. } => {
                drakon_protocol::encode_publication(&event.channel, *action, data, *offset)
            }
            EventBody::Message { data } => drakon_protocol::encode_channel_message(&event.channel, data),
            EventBody::Presence { action, data } => {
                drakon_protocol::encode_presence_event(&event.channel, action.as_str(), data)
            }
        }
    }
}

fn schema() -> Schema {
    Schema::new().model(Model::new("todo_list").field(Field::text("name"))).model(
        Model::new("todo_item")
            .field(Field::text("text"))
            .field(Field::bool("done"))
            .field(Field::text("secret"))
            .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
    )
}

struct Fixture {
    hub: Hub,
    schema: Schema,
    route: Arc<RouteView>,
    outboxes: Vec<Arc<Outbox>>,
    // Kept alive: the hub holds them too, but the benchmark owns the connections.
}

impl Fixture {
    fn new() -> Fixture {
        let schema = schema();
        let model = Arc::new(schema.get_model("todo_item").expect("model").clone());
        // `secret` (index 3) is not published, as in the hub's own tests.
        let route = Arc::new(RouteView { name: "todo-item".into(), model, publish: vec![1, 2, 4] });
        Fixture { hub: Hub::new(), schema, route, outboxes: Vec::new() }
    }

    fn connect(&mut self) -> ConnId {
        let outbox = Outbox::new(OUTBOUND_QUEUE_FRAMES, &Native);
        self.outboxes.push(outbox.clone());
        self.hub.register(outbox)
    }

    fn subscribe(&self, conn: ConnId, filter: Json) {
        let args: Args = filter.as_object().expect("object").clone();
        let filter = Filter::parse(&self.schema, &self.route.model, &args).expect("valid filter");
        let name = drakon_protocol::model_channel_name("todo-item", &args);
        self.hub.subscribe_model(conn, &self.route, &name, &name, &filter);
    }

    fn deliver(&self, change: &Change) -> Delivery {
        self.hub.deliver_change(change, &self.route.model, &Remote::new(), &Remote::new())
    }

    fn drain(&self) {
        for outbox in &self.outboxes {
            outbox.try_drain();
        }
    }

    /// Times `iters` deliveries of `change`, draining every outbox between batches that fit in one queue.
    fn time(&self, change: &Change, iters: u64) -> Duration {
        let batch = (OUTBOUND_QUEUE_FRAMES / 2) as u64;
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(batch);
            let start = Instant::now();
            for _ in 0..n {
                black_box(self.deliver(black_box(change)));
            }
            total += start.elapsed();
            self.drain();
            left -= n;
        }
        total
    }
}

/// A new open item in list `list`: a `created` event with about 100 bytes of data.
fn created(list: i64) -> Change {
    let row = vec![
        Value::Int(4711),
        Value::Text("buy milk and bread on the way home".into()),
        Value::Bool(false),
        Value::Text("s3cr3t".into()),
        Value::Int(list),
    ];
    Change {
        model: Arc::from("todo_item"),
        id: 4711,
        action: Action::Created,
        old: None,
        new: Some(row),
        offset: 7,
        old_refs: Vec::new(),
        new_refs: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub_fanout");

    // 1,000 connections on one channel: one match, one encoding, 1,000 queued frames.
    let mut one_channel = Fixture::new();
    for _ in 0..1_000 {
        let conn = one_channel.connect();
        one_channel.subscribe(conn, json!({"todo_list": 1, "done": false}));
    }
    let change = created(1);
    let delivered = one_channel.deliver(&change);
    assert_eq!(delivered, Delivery { candidates: 1, queued: 1_000 });
    one_channel.drain();
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1_channel_1000_subscribers", |b| b.iter_custom(|iters| one_channel.time(&change, iters)));

    // 10,000 channels indexed by list, one subscriber each; the change concerns one of them.
    let mut many_channels = Fixture::new();
    for list in 1..=10_000 {
        let conn = many_channels.connect();
        many_channels.subscribe(conn, json!({"todo_list": list, "done": false}));
    }
    let change = created(4_242);
    let delivered = many_channels.deliver(&change);
    assert_eq!(delivered, Delivery { candidates: 1, queued: 1 }, "only the list-4242 channel is a candidate");
    many_channels.drain();
    group.throughput(Throughput::Elements(1));
    group.bench_function("1_of_10000_channels", |b| b.iter_custom(|iters| many_channels.time(&change, iters)));

    // 1,000 users on one shared list under a per-user rule ("your own items, or done ones"): a channel each, one
    // visible name. The change reaches all of them through one event; the cost over `1_channel_1000_subscribers` is
    // the per-channel matching that rules add.
    let mut ruled = Fixture::new();
    for user in 0..1_000 {
        let conn = ruled.connect();
        let parse = |f: Json| Filter::parse(&ruled.schema, &ruled.route.model, f.as_object().expect("object"));
        let rule = Filter::either(vec![
            parse(json!({"text": format!("user {user}")})).expect("valid"),
            parse(json!({"done": false})).expect("valid"),
        ]);
        let filter = parse(json!({"todo_list": 1})).expect("valid").and(rule);
        let name = format!("todo-item|todo_list:1|@rule:{user}");
        ruled.hub.subscribe_model(conn, &ruled.route, &name, "todo-item|todo_list:1", &filter);
    }
    let change = created(1);
    assert_eq!(ruled.deliver(&change), Delivery { candidates: 1_000, queued: 1_000 });
    ruled.drain();
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("1000_users_ruled_channels", |b| b.iter_custom(|iters| ruled.time(&change, iters)));

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
