//! Presence across three drakon nodes on one Redis: a seeded random schedule of users joining rooms on any node with
//! one or more tabs, setting states, leaving and disconnecting, with one node killed (SIGKILL) in the middle. After
//! it, every live node lists, in every room, exactly the users who still have a connection in it on a live node,
//! each with the state their latest still-joined connection set. Real processes: a throwaway Redis and three
//! `drakon serve` processes on loopback.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{BIN, SECRET, user_token};
use drakon_testkit::redis::TestRedis;
use drakon_testkit::{Client, TestServer};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const ROOMS: [&str; 3] = ["room.a", "room.b", "room.c"];
const USERS: [&str; 5] = ["ann", "ben", "cat", "dov", "eve"];

fn config() -> String {
    format!(
        r#"
[auth]
jwt_secret = "{SECRET}"

[routes.room]
kind = "channel"
channels = ["room.*"]

[routes.room.presence]
"#
    )
}

async fn node(redis: &TestRedis) -> TestServer {
    TestServer::spawn_with(BIN, &config(), &[("DRAKON_REDIS_URL", &redis.url())]).await
}

/// One connection of the schedule: whose, on which node, and what it holds in each room (its state, and when the
/// schedule set it).
struct Tab {
    client: Client,
    user: &'static str,
    node: usize,
    rooms: HashMap<&'static str, (Value, u64)>,
}

async fn tab(server: &TestServer, user: &'static str, node: usize) -> Tab {
    let client = Client::connect(&format!("{}?token={}", server.ws_url(), user_token(user, &[]))).await;
    Tab { client, user, node, rooms: HashMap::new() }
}

/// What every node must list: per room, each user with a tab in it, and the state their latest still-joined tab set.
fn expected(tabs: &[Tab]) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    let mut rooms: BTreeMap<&'static str, BTreeMap<String, (Value, u64)>> = BTreeMap::new();
    for tab in tabs {
        for (room, (state, at)) in &tab.rooms {
            let members = rooms.entry(room).or_default();
            let shown = members.entry(tab.user.to_owned()).or_insert((json!({}), 0));
            if *at > shown.1 {
                *shown = (state.clone(), *at);
            }
        }
    }
    rooms.into_iter().map(|(room, m)| (room, m.into_iter().map(|(u, (s, _))| (u, s)).collect())).collect()
}

/// What node `server` lists, room by room.
async fn listed(observer: &mut Client) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    let mut rooms = BTreeMap::new();
    for room in ROOMS {
        let page = observer.ok("room", "get_presence", json!({"name": room, "limit": 100})).await;
        let members: BTreeMap<String, Value> = page["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_str().unwrap().to_owned(), m["state"].clone()))
            .collect();
        if !members.is_empty() {
            rooms.insert(room, members);
        }
    }
    rooms
}

#[tokio::test]
async fn every_node_ends_listing_exactly_the_members_still_connected_after_churn_and_a_node_killed() {
    let redis = TestRedis::start();
    let mut nodes: Vec<Option<TestServer>> = Vec::new();
    for _ in 0..3 {
        nodes.push(Some(node(&redis).await));
    }
    let seed: u64 = std::env::var("PRESENCE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tabs: Vec<Tab> = Vec::new();
    let mut clock = 0u64;
    let mut log = Vec::new();

    for step in 0..160 {
        clock += 1;
        // States set in the same millisecond on two nodes are ordered by node id, not by the schedule.
        tokio::time::sleep(Duration::from_millis(2)).await;
        if step == 80 {
            // Node 2 dies without a word: its tabs are gone, and so must their members be, everywhere.
            nodes[2] = None;
            tabs.retain(|t| t.node != 2);
            log.push("kill node 2".to_owned());
            continue;
        }
        let live: Vec<usize> = (0..3).filter(|n| nodes[*n].is_some()).collect();
        match rng.random_range(0..12) {
            // A new tab on some node.
            0..=2 if tabs.len() < 24 => {
                let n = live[rng.random_range(0..live.len())];
                let user = USERS[rng.random_range(0..USERS.len())];
                tabs.push(tab(nodes[n].as_ref().unwrap(), user, n).await);
                log.push(format!("open {user} on {n}"));
            }
            // A tab joins a room, perhaps with a state.
            3..=6 if !tabs.is_empty() => {
                let i = rng.random_range(0..tabs.len());
                let room = ROOMS[rng.random_range(0..ROOMS.len())];
                let tab = &mut tabs[i];
                let mut args = json!({"name": room, "channel": room});
                let state = if rng.random_bool(0.5) { Some(json!({"editing": clock})) } else { None };
                if let Some(state) = &state {
                    args["state"] = state.clone();
                }
                tab.client.ok("room", "join_presence", args).await;
                // A rejoin without a state keeps the tab's own; with one, it is the latest.
                let entry = tab.rooms.entry(room).or_insert((json!({}), 0));
                if let Some(state) = state {
                    *entry = (state, clock);
                }
                log.push(format!("{} on {} joins {room}", tab.user, tab.node));
            }
            // A tab sets its state in a room it is in.
            7 | 8 if !tabs.is_empty() => {
                let i = rng.random_range(0..tabs.len());
                let tab = &mut tabs[i];
                let Some(&room) = tab.rooms.keys().next() else { continue };
                let state = json!({"editing": clock});
                tab.client.ok("room", "set_presence", json!({"name": room, "state": state})).await;
                tab.rooms.insert(room, (state, clock));
                log.push(format!("{} on {} sets in {room}", tab.user, tab.node));
            }
            // A tab leaves a room.
            9 if !tabs.is_empty() => {
                let i = rng.random_range(0..tabs.len());
                let tab = &mut tabs[i];
                let Some(&room) = tab.rooms.keys().next() else { continue };
                tab.client.ok("room", "leave_presence", json!({"name": room, "channel": room})).await;
                tab.rooms.remove(room);
                log.push(format!("{} on {} leaves {room}", tab.user, tab.node));
            }
            // A tab closes.
            10 if !tabs.is_empty() => {
                let i = rng.random_range(0..tabs.len());
                let tab = tabs.swap_remove(i);
                log.push(format!("close {} on {}", tab.user, tab.node));
            }
            _ => {}
        }
    }

    // A killed node is seen dead within the liveness TTL and a heartbeat (12 s); everything else within a second.
    let want = expected(&tabs);
    let mut observers = Vec::new();
    for server in nodes.iter().flatten() {
        let mut observer = Client::connect(&format!("{}?token={}", server.ws_url(), user_token("observer", &[]))).await;
        observer.ok("room", "get_presence", json!({"name": "room.a"})).await;
        observers.push(observer);
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    for (n, observer) in observers.iter_mut().enumerate() {
        loop {
            let got = listed(observer).await;
            if got == want {
                break;
            }
            // Tabs answer the server's pings only while read: a tab nobody reads counts as vanished (within 20 s).
            for tab in &mut tabs {
                tab.client.drain_publications(Duration::from_millis(1)).await;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: live node #{n} lists\n{got:#?}\nbut these are connected\n{want:#?}\nschedule:\n{}",
                log.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(!want.is_empty(), "the schedule should leave someone in a room: {}", log.join("\n"));
}
