//! Presence against the real binary, on the todo demo with users: who has a list open, who is editing an item,
//! counted once per user, cleared when the connection that set it goes, and only for those who may read the object.

mod common;

use std::time::{Duration, Instant};

use common::{BIN, OP_TEXT, RawWs, client_with_cookie, logged_in, todo_users_config};
use drakon_testkit::{Client, TestServer};
use serde_json::{Value, json};

/// Long enough for an event that is coming; the tests wait this long only to show that nothing comes.
const QUIET: Duration = Duration::from_millis(300);
const SOON: Duration = Duration::from_secs(1);

async fn event(client: &mut Client, within: Duration) -> Value {
    let started = Instant::now();
    let event = client.next_publication(within).await.unwrap_or_else(|| panic!("no presence event within {within:?}"));
    assert!(started.elapsed() <= within, "took {:?}", started.elapsed());
    event
}

fn shown(event: &Value) -> String {
    format!("{} {}", event["action"].as_str().unwrap_or("?"), event["data"])
}

async fn join(client: &mut Client, route: &str, args: Value) -> Value {
    let reply = client.call(route, "join_presence", args.clone()).await;
    assert_eq!(reply["context"]["state"], "success", "join {route} {args}: {reply}");
    reply
}

#[tokio::test]
async fn members_are_users_counted_once_whose_state_goes_with_the_connection_that_set_it() {
    let server = TestServer::spawn(BIN, &todo_users_config()).await;
    let alice_cookie = logged_in(&server, "alice", "alice-demo-pass").await;
    let bob_cookie = logged_in(&server, "bob", "bob-demo-pass").await;
    let mut alice = client_with_cookie(&server, &alice_cookie).await;
    let shared = alice.ok("todo-list", "create", json!({"name": "groceries", "shared": true})).await["id"].clone();
    let private = alice.ok("todo-list", "create", json!({"name": "diary"})).await["id"].clone();

    let reply = join(&mut alice, "todo-list", json!({"id": shared, "channel": "here"})).await;
    let room = format!("presence:todo-list:{shared}");
    assert_eq!(reply["channel_data"]["remote_channels"], json!([room]));
    assert_eq!(
        reply["data"],
        json!({"room": room, "members": [{"id": "alice", "info": {}, "state": {}}], "count": 1, "large": false, "next": null})
    );

    // Bob opens the list: Alice sees him. His second tab changes nothing for her, and its list holds him once.
    let mut bob = client_with_cookie(&server, &bob_cookie).await;
    let reply = join(&mut bob, "todo-list", json!({"id": shared, "channel": "here"})).await;
    assert_eq!(reply["data"]["count"], 2);
    assert_eq!(shown(&event(&mut alice, SOON).await), r#"member_joined {"id":"bob","info":{},"state":{}}"#);
    let mut bob_tab = client_with_cookie(&server, &bob_cookie).await;
    let reply = join(&mut bob_tab, "todo-list", json!({"id": shared, "channel": "here"})).await;
    assert_eq!(reply["data"]["members"].as_array().map(Vec::len), Some(2));
    assert_eq!(alice.next_publication(QUIET).await, None, "a second tab is no news");

    // Bob starts editing in his second tab; every connection in the room hears it, his first tab too.
    bob_tab.ok("todo-list", "set_presence", json!({"id": shared, "state": {"editing": 7}})).await;
    let editing = r#"member_updated {"id":"bob","info":{},"state":{"editing":7}}"#;
    assert_eq!(shown(&event(&mut alice, SOON).await), editing);
    assert_eq!(shown(&event(&mut bob, SOON).await), editing);

    // He closes that tab: what it set goes with it, and he stays.
    drop(bob_tab);
    let cleared = r#"member_updated {"id":"bob","info":{},"state":{}}"#;
    assert_eq!(shown(&event(&mut alice, SOON).await), cleared);
    // He leaves on purpose from the other: gone.
    let left = bob.call("todo-list", "leave_presence", json!({"id": shared, "channel": "here"})).await;
    assert_eq!(left["channel_data"]["action"], "unsubscribe", "{left}");
    assert_eq!(shown(&event(&mut alice, SOON).await), r#"member_left {"id":"bob"}"#);
    bob.err("todo-list", "set_presence", json!({"id": shared, "state": {}}), "not_subscribed").await;
    bob.err("todo-list", "leave_presence", json!({"id": shared, "channel": "here"}), "not_subscribed").await;

    // Reading decides joining: Bob cannot learn whether Alice's diary exists, nor who is in it; a visitor may not
    // join a list at all (the route is for users), while anyone may join a chat room.
    bob.err("todo-list", "join_presence", json!({"id": private, "channel": "x"}), "not_found").await;
    bob.err("todo-list", "get_presence", json!({"id": private}), "not_found").await;
    bob.err("todo-list", "join_presence", json!({"id": 999_999, "channel": "x"}), "not_found").await;
    let listed = bob.ok("todo-list", "get_presence", json!({"id": shared})).await;
    assert_eq!(listed["members"], json!([{"id": "alice", "info": {}, "state": {}}]));
    let mut visitor = server.client().await;
    visitor.err("todo-list", "join_presence", json!({"id": shared, "channel": "x"}), "not_found").await;
    let public = alice.ok("todo-list", "create", json!({"name": "menu", "public": true})).await["id"].clone();
    visitor.err("todo-list", "join_presence", json!({"id": public, "channel": "x"}), "permission_denied").await;
    let lobby = join(&mut visitor, "chat", json!({"name": "room.lobby", "channel": "lobby"})).await;
    let me = lobby["data"]["members"][0]["id"].as_str().unwrap().to_owned();
    assert!(me.starts_with("anonymous:"), "{lobby}");
    join(&mut alice, "chat", json!({"name": "room.lobby", "channel": "lobby"})).await;
    assert_eq!(shown(&event(&mut visitor, SOON).await), r#"member_joined {"id":"alice","info":{},"state":{}}"#);

    // Bad arguments get their codes.
    alice.err("todo-list", "set_presence", json!({"id": shared, "state": "editing"}), "invalid_args").await;
    let big = "x".repeat(2000);
    alice.err("todo-list", "set_presence", json!({"id": shared, "state": {"note": big}}), "invalid_args").await;
    alice.err("todo-list", "join_presence", json!({"id": shared}), "invalid_args").await;
    alice.err("todo-list", "join_presence", json!({"id": shared, "channel": "y", "extra": 1}), "invalid_args").await;
    alice.err("todo-list", "wave", json!({}), "unknown_verb").await;
}

#[tokio::test]
async fn a_member_whose_connection_vanishes_leaves_within_the_bound() {
    // Pings every second, and a peer that answers nothing for three is gone.
    let config = todo_users_config().replace("[server]\n", "[server]\nping_interval_secs = 1\nidle_timeout_secs = 3\n");
    let server = TestServer::spawn(BIN, &config).await;
    let alice_cookie = logged_in(&server, "alice", "alice-demo-pass").await;
    let bob_cookie = logged_in(&server, "bob", "bob-demo-pass").await;
    let mut alice = client_with_cookie(&server, &alice_cookie).await;
    let list = alice.ok("todo-list", "create", json!({"name": "shared", "shared": true})).await["id"].clone();
    join(&mut alice, "todo-list", json!({"id": list, "channel": "here"})).await;

    // Bob's browser stops answering (a cut network): his socket stays open, and never reads or pongs again.
    let origin = format!("http://{}", server.addr);
    let mut bob = RawWs::connect_with(&server.addr, &[("Cookie", &bob_cookie), ("Origin", &origin)]).await.unwrap();
    let request = json!({"route": "todo-list", "verb": "join_presence", "args": {"id": list, "channel": "here"}, "callbackname": "cb"});
    bob.send(OP_TEXT, request.to_string().as_bytes()).await.unwrap();
    assert_eq!(shown(&event(&mut alice, SOON).await), r#"member_joined {"id":"bob","info":{},"state":{}}"#);
    let vanished = Instant::now();
    let left = event(&mut alice, Duration::from_secs(6)).await;
    assert_eq!(shown(&left), r#"member_left {"id":"bob"}"#);
    assert!(vanished.elapsed() >= Duration::from_secs(2), "he left after the idle timeout, not before");
}
