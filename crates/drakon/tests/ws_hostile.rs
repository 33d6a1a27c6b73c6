//! No client input is the server's fault: ten thousand random requests to every route and verb of the todo app
//! (random argument names, random values of every JSON type, integers past 2^63, long lists, nested objects), all
//! under the frame size limit, each get exactly one reply, success or an error with a client code, never
//! `internal`, and the connection stays up.
//! A store error caused by client input is a bug: the values must be checked before they reach the store.

mod common;

use common::BIN;
use drakon_testkit::TestServer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value as Json, json};

/// Real routes and verbs mostly, so that most requests get past the envelope to the verbs' own checks.
const ROUTES: &[&str] = &[
    "todo-item",
    "todo-item",
    "todo-item",
    "todo-item",
    "todo-list",
    "todo-list",
    "todo-list",
    "chat",
    "admin:todo_item",
    "nope",
];
const VERBS: &[&str] = &[
    "get_list",
    "get_list",
    "get_single",
    "create",
    "create",
    "update",
    "update",
    "delete",
    "subscribe",
    "subscribe",
    "unsubscribe",
    "clear_done",
    "",
];
const KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "text",
    "done",
    "todo_list",
    "list_id",
    "todo_list__name",
    "todo_list__id__in",
    "text__icontains",
    "done__isnull",
    "id__gte",
    "_page",
    "_order",
    "_type",
    "channel",
    "snapshot",
    "since",
    "secret",
    "todo_list__description__startswith",
];

fn value(rng: &mut ChaCha8Rng, depth: u32) -> Json {
    match rng.random_range(0..14) {
        0 => Json::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random_range(-3i64..10)),
        3 => json!(rng.random::<i64>()),
        4 => json!(rng.random::<u64>()),
        5 => json!([i64::MAX as u64, u64::MAX, 1u64 << 63, 92_233_720_368_547_760u64][rng.random_range(0..4)]),
        6 => json!(rng.random::<f64>() * 1e300),
        7 => json!(
            ["", "milk", "-text", "id", "-id", "done", "room.a|b", "' OR 1=1 --", "92233720368547760"]
                [rng.random_range(0..9)]
        ),
        8 => json!("x".repeat(rng.random_range(0..300))),
        9 => json!("2026-12-07T10:00:00Z"),
        10 if depth < 2 => Json::Array((0..rng.random_range(0..6)).map(|_| value(rng, depth + 1)).collect()),
        // Lists longer than any bound: `in` values, `_order` terms.
        12 => Json::Array((0..[20, 1500, 2500][rng.random_range(0..3)]).map(|n| json!(n)).collect()),
        11 if depth < 2 => Json::Object(args(rng, depth + 1)),
        _ => json!(["-done", "text"].repeat(rng.random_range(1..1200))),
    }
}

fn args(rng: &mut ChaCha8Rng, depth: u32) -> Map<String, Json> {
    (0..rng.random_range(0..4)).map(|_| (KEYS[rng.random_range(0..KEYS.len())].to_owned(), value(rng, depth))).collect()
}

#[tokio::test]
async fn random_requests_get_client_errors_never_internal_ones() {
    // The rate limit would answer most of these `rate_limited`; they are here to reach the verbs.
    let server = TestServer::spawn(BIN, &common::todo_with_server("max_requests_per_second = 1000000")).await;
    let mut client = server.client().await;
    // Rows to find, update and delete.
    let list = client.ok("todo-list", "create", json!({"name": "groceries"})).await;
    for text in ["milk", "eggs", "bread"] {
        client.ok("todo-item", "create", json!({"text": text, "todo_list": list["id"]})).await;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(20261207);
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..10_000 {
        let route = ROUTES[rng.random_range(0..ROUTES.len())];
        let verb = VERBS[rng.random_range(0..VERBS.len())];
        let args = Json::Object(args(&mut rng, 0));
        let reply = client.call(route, verb, args.clone()).await;
        let outcome = match reply["context"]["state"].as_str() {
            Some("success") => "success".to_owned(),
            _ => reply["data"]["code"].as_str().unwrap_or("no code").to_owned(),
        };
        assert!(outcome != "internal" && outcome != "no code", "request {i}: {route} {verb} {args} → {reply}");
        *codes.entry(outcome).or_default() += 1;
    }
    // The run reached the verbs, not only the envelope checks.
    assert!(codes.get("success").copied().unwrap_or(0) > 100, "{codes:?}");
    assert!(codes.len() > 10, "{codes:?}");
    common::assert_alive(&mut client, "10,000 random requests").await;
}
