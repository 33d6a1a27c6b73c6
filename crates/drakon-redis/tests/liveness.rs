//! Node liveness against a real `redis-server`: nodes see each other alive; one that stops heartbeating is seen dead
//! within `NODE_TTL + NODE_HEARTBEAT`, one that leaves at the next look; and a Redis restart, which forgets every
//! key, kills nobody.

use std::collections::BTreeSet;
use std::time::Duration;

use drakon_core::limits::{NODE_HEARTBEAT, NODE_TTL};
use drakon_core::node::{Deaths, Liveness, NodeId};
use drakon_redis::{Options, RedisLiveness};
use drakon_testkit::redis::TestRedis;
use tokio::time::{Instant, timeout};

/// Room for a loaded test machine on top of a bound.
const SLACK: Duration = Duration::from_secs(2);

async fn node(redis: &TestRedis, id: &str) -> RedisLiveness {
    RedisLiveness::start(&redis.url(), &Options::default(), NodeId::new(id)).await.expect("liveness starts on Redis")
}

fn ids(names: &[&str]) -> BTreeSet<NodeId> {
    names.iter().map(|n| NodeId::new(*n)).collect()
}

fn seen(liveness: &RedisLiveness) -> BTreeSet<NodeId> {
    (**liveness.alive().borrow()).clone()
}

/// Waits until `liveness` sees exactly `want` alive.
async fn sees(liveness: &RedisLiveness, want: &[&str], within: Duration) {
    let mut alive = liveness.alive();
    let want = ids(want);
    // Only whether it came: the watch's read guard must not outlive this line.
    let waited = timeout(within, alive.wait_for(|now| **now == want)).await.map(|seen| seen.is_ok());
    assert!(
        matches!(waited, Ok(true)),
        "{} sees {:?}, not {want:?}, after {within:?}",
        liveness.node(),
        seen(liveness)
    );
}

#[tokio::test]
async fn a_node_that_stops_heartbeating_is_seen_dead_within_the_bound() {
    let redis = TestRedis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    assert_eq!(seen(&b), ids(&["a", "b"]), "a node sees the live ones from its start");
    sees(&a, &["a", "b"], NODE_HEARTBEAT + SLACK).await;

    let mut deaths = Deaths::new(&a);
    let stopped = Instant::now();
    // As a crash would: no more heartbeats, and the key is left to expire.
    drop(b);
    tokio::time::sleep(NODE_HEARTBEAT).await;
    assert_eq!(seen(&a), ids(&["a", "b"]), "a silent node is alive until its key expires");
    let dead = timeout(NODE_TTL + NODE_HEARTBEAT + SLACK, deaths.next()).await.expect("b is seen dead in time");
    assert_eq!(dead, Some(vec![NodeId::new("b")]));
    let after = stopped.elapsed();
    assert!(after <= NODE_TTL + NODE_HEARTBEAT + SLACK, "seen dead {after:?} after it stopped");
    assert!(after >= NODE_TTL - NODE_HEARTBEAT, "seen dead {after:?} after it stopped, before its key could expire");
    assert_eq!(seen(&a), ids(&["a"]));
}

#[tokio::test]
async fn a_node_that_leaves_is_seen_dead_at_the_next_look() {
    let redis = TestRedis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    sees(&a, &["a", "b"], NODE_HEARTBEAT + SLACK).await;
    let mut deaths = Deaths::new(&a);
    b.leave().await;
    let dead = timeout(NODE_HEARTBEAT + SLACK, deaths.next()).await.expect("b is seen gone at a's next look");
    assert_eq!(dead, Some(vec![NodeId::new("b")]));
    // A new node of the same cluster sees only the one left.
    let c = node(&redis, "c").await;
    assert_eq!(seen(&c), ids(&["a", "c"]));
}

#[tokio::test]
async fn a_redis_restart_forgets_every_key_but_kills_no_node() {
    let mut redis = TestRedis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    sees(&a, &["a", "b"], NODE_HEARTBEAT + SLACK).await;
    let mut deaths = Deaths::new(&a);
    redis.restart();
    // Long enough for both to reconnect, rewrite their keys and leave the grace that follows a lost Redis.
    let quiet = timeout(NODE_TTL + 3 * NODE_HEARTBEAT, deaths.next()).await;
    assert!(quiet.is_err(), "a node was taken for dead after a Redis restart: {quiet:?}");
    assert_eq!(seen(&a), ids(&["a", "b"]));
    assert_eq!(seen(&b), ids(&["a", "b"]));
    // And deaths are seen again afterwards.
    drop(b);
    let dead = timeout(NODE_TTL + NODE_HEARTBEAT + SLACK, deaths.next()).await.expect("b is seen dead in time");
    assert_eq!(dead, Some(vec![NodeId::new("b")]));
}
