//! Encoding one model event, done once per channel per change and shared by every subscriber of the channel.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drakon_protocol::{Action, encode_publication};
use serde_json::json;

fn bench(c: &mut Criterion) {
    // A `created` todo item as the hub publishes it: about 100 bytes of `data`.
    let data = json!({
        "id": 4711,
        "_type": "todo_item",
        "text": "buy milk and bread on the way home",
        "done": false,
        "todo_list": 1,
    });
    let channel = "todo-item|todo_list__id:1";
    let data_len = serde_json::to_vec(&data).expect("encode").len();
    assert!((90..=110).contains(&data_len), "payload is {data_len} bytes, meant to be about 100");
    let frame_len = encode_publication(channel, Action::Created, &data, 42).len() as u64;

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Bytes(frame_len));
    group.bench_function("publication_100b", |b| {
        b.iter(|| encode_publication(black_box(channel), Action::Created, black_box(&data), black_box(42)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
