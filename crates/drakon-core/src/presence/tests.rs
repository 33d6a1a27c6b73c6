use serde_json::json;

use super::*;
use crate::event::TestEncoding;

const SMALL: PresenceLimits = PresenceLimits { large_room: 3 };

fn frames(outbox: &Outbox) -> Vec<Json> {
    outbox.try_drain().iter().map(|b| serde_json::from_slice(b).unwrap()).collect()
}

fn events(outbox: &Outbox) -> Vec<String> {
    frames(outbox).iter().map(|f| format!("{} {}", f["action"].as_str().unwrap(), f["data"])).collect()
}

struct Fixture {
    presence: Presence,
    room: Arc<str>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { presence: Presence::new(NodeId::new("n1")), room: Arc::from("presence:todo-item:7") }
    }

    fn join(&self, conn: ConnId, user: &str) -> (Arc<Outbox>, Snapshot) {
        let outbox = Outbox::new(64, &TestEncoding);
        let info = Arc::new(json!({"name": user}));
        let joining = Joining { user: Arc::from(user), info, state: None };
        let snapshot = self.presence.join(&self.room, SMALL, conn, &outbox, joining);
        (outbox, snapshot)
    }
}

#[test]
fn joiners_get_the_members_and_the_others_hear_of_first_joins_only() {
    let f = Fixture::new();
    let (alice, first) = f.join(1, "alice");
    assert_eq!(first.to_json(&f.room)["members"], json!([{"id": "alice", "info": {"name": "alice"}, "state": {}}]));
    let (bob, second) = f.join(2, "bob");
    assert_eq!(second.count, 2);
    assert!(bob.is_empty(), "the joiner hears nothing of its own join");
    assert_eq!(events(&alice), [r#"member_joined {"id":"bob","info":{"name":"bob"},"state":{}}"#]);

    // Bob's second tab: nobody hears of it; its list has him once.
    let (bob_again, third) = f.join(3, "bob");
    assert_eq!((third.count, third.members.len()), (2, 2));
    assert!(alice.is_empty() && bob.is_empty());

    f.presence.set(&f.room, 3, Arc::new(json!({"editing": true}))).unwrap();
    let updated = r#"member_updated {"id":"bob","info":{"name":"bob"},"state":{"editing":true}}"#;
    assert_eq!(events(&alice), [updated]);
    assert_eq!(events(&bob), [updated], "his other tabs hear it too");
    assert!(bob_again.is_empty(), "the tab that set it knows");
    // Joining again (another local channel) keeps it.
    let joining = Joining { user: Arc::from("bob"), info: Arc::new(json!({"name": "bob"})), state: None };
    f.presence.join(&f.room, SMALL, 3, &bob_again, joining);
    assert!(alice.is_empty(), "nothing changed");

    // The editing tab closes: the state goes with it, and Bob stays.
    f.presence.leave(&f.room, 3).unwrap();
    let cleared = r#"member_updated {"id":"bob","info":{"name":"bob"},"state":{}}"#;
    assert_eq!(events(&alice), [cleared]);
    assert_eq!(events(&bob), [cleared]);
    f.presence.leave(&f.room, 2).unwrap();
    assert_eq!(events(&alice), [r#"member_left {"id":"bob"}"#]);
    assert!(bob.is_empty(), "a connection that left hears nothing more");

    assert_eq!(f.presence.leave(&f.room, 2), Err(PresenceError::NotJoined));
    assert_eq!(f.presence.set(&f.room, 2, Arc::new(json!({}))), Err(PresenceError::NotJoined));
    f.presence.leave(&f.room, 1).unwrap();
    assert_eq!(f.presence.stats(), (0, 0), "an empty room is gone");
}

#[test]
fn a_large_room_sends_one_batch_per_window_with_the_count() {
    let f = Fixture::new();
    let (first, _) = f.join(1, "u00");
    for n in 1..3 {
        f.join(n + 1, &format!("u{n:02}"));
    }
    assert_eq!(events(&first).len(), 2, "a small room tells each join at once");

    // The fourth member makes the room large: from then on changes wait for the batch.
    let (fourth, snapshot) = f.join(4, "u03");
    assert!(snapshot.large);
    assert_eq!((snapshot.members.len(), snapshot.count), (3, 4), "a large room's list is paged");
    assert_eq!(snapshot.to_json(&f.room)["next"], "u02");
    for n in 4..8 {
        f.join(n + 1, &format!("u{n:02}"));
    }
    f.presence.leave(&f.room, 2).unwrap();
    assert!(first.is_empty(), "nothing before the batch");
    assert_eq!(f.presence.flush(), 1);
    let batch = frames(&first).remove(0);
    assert_eq!(batch["action"], "presence_batch");
    assert_eq!(batch["data"]["count"], 7);
    let joined: Vec<&str> =
        batch["data"]["joined"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(joined, ["u03", "u04", "u05", "u06", "u07"]);
    assert_eq!(batch["data"]["left"], json!(["u01"]));
    assert_eq!(frames(&fourth).len(), 1, "the newest member gets the batch too");
    assert_eq!(f.presence.flush(), 0, "nothing waits any more");

    let page = f.presence.members(&f.room, Some("u03"), 2).unwrap();
    assert_eq!(page.members.iter().map(|m| &*m.id).collect::<Vec<_>>(), ["u04", "u05"]);
}

#[test]
fn a_batch_with_too_many_changes_says_the_count_alone() {
    let f = Fixture::new();
    let (first, _) = f.join(0, "first");
    for n in 1..4 {
        f.join(n, &format!("early{n}"));
    }
    frames(&first);
    for n in 0..=limits::PRESENCE_BATCH_CHANGES {
        f.join(100 + n as ConnId, &format!("late{n:03}"));
    }
    f.presence.flush();
    let batch = frames(&first).remove(0);
    assert_eq!(batch["data"], json!({"count": 4 + limits::PRESENCE_BATCH_CHANGES + 1, "truncated": true}));
}

#[test]
fn a_watcher_that_cannot_keep_up_is_closed_and_dropped() {
    let f = Fixture::new();
    let slow = Outbox::new(1, &TestEncoding);
    let joining = Joining { user: Arc::from("slow"), info: Arc::new(json!({})), state: None };
    f.presence.join(&f.room, SMALL, 1, &slow, joining);
    f.join(2, "a");
    f.join(3, "b");
    assert!(slow.is_closed());
    assert_eq!(f.presence.rooms(10)[0].connections, 3, "a member until its session leaves");
    f.presence.leave(&f.room, 1).expect("its session leaves when its transport closes");
    assert_eq!(f.presence.rooms(10)[0].connections, 2);
}

/// Two nodes' presences, and the messages each sent that the other has not received yet.
struct Pair {
    a: Presence,
    b: Presence,
    from_a: tokio::sync::mpsc::UnboundedReceiver<PresenceMessage>,
    from_b: tokio::sync::mpsc::UnboundedReceiver<PresenceMessage>,
}

impl Pair {
    fn new() -> Pair {
        let (a, b) = (Presence::new(NodeId::new("a")), Presence::new(NodeId::new("b")));
        let (tx_a, from_a) = tokio::sync::mpsc::unbounded_channel();
        let (tx_b, from_b) = tokio::sync::mpsc::unbounded_channel();
        a.share(tx_a);
        b.share(tx_b);
        Pair { a, b, from_a, from_b }
    }

    /// Carries every message both ways (each node also hears its own, as on the bus) until none is left; `lose`
    /// says which of a's messages are lost on the way to b.
    fn settle(&mut self, lose: impl Fn(&PresenceMessage) -> bool) {
        loop {
            let mut moved = false;
            while let Ok(m) = self.from_a.try_recv() {
                moved = true;
                self.a.receive(&m);
                if !lose(&m) {
                    self.b.receive(&m);
                }
            }
            while let Ok(m) = self.from_b.try_recv() {
                moved = true;
                self.b.receive(&m);
                self.a.receive(&m);
            }
            if !moved {
                return;
            }
        }
    }

    fn ids(presence: &Presence, room: &str) -> Vec<String> {
        presence.members(room, None, 100).map_or(Vec::new(), |s| s.members.iter().map(|m| m.id.to_string()).collect())
    }
}

fn joining(user: &str) -> Joining {
    Joining { user: Arc::from(user), info: Arc::new(json!({})), state: None }
}

const ROOM: &str = "presence:todo-item:7";

#[test]
fn members_joined_on_one_node_are_listed_on_the_other_and_leave_with_their_node() {
    let mut pair = Pair::new();
    let room: Arc<str> = Arc::from(ROOM);
    let alice = Outbox::new(64, &TestEncoding);
    let bob = Outbox::new(64, &TestEncoding);
    pair.a.join(&room, SMALL, 1, &alice, joining("alice"));
    pair.settle(|_| false);
    let snapshot = pair.b.join(&room, SMALL, 1, &bob, joining("bob"));
    assert_eq!(snapshot.count, 2, "bob's node knew alice was there");
    pair.settle(|_| false);
    assert_eq!(events(&alice), [r#"member_joined {"id":"bob","info":{},"state":{}}"#]);

    // Bob on a's node too, and editing there: one member, his state shown on both nodes.
    let bob_too = Outbox::new(64, &TestEncoding);
    pair.a.join(&room, SMALL, 2, &bob_too, joining("bob"));
    pair.a.set(ROOM, 2, Arc::new(json!({"editing": true}))).unwrap();
    pair.settle(|_| false);
    assert_eq!(events(&bob), [r#"member_updated {"id":"bob","info":{},"state":{"editing":true}}"#]);
    assert_eq!(Pair::ids(&pair.a, ROOM), Pair::ids(&pair.b, ROOM));

    // Node a dies: on b, Alice leaves and Bob's state from a goes; Bob stays, joined on b.
    pair.b.drop_node(&NodeId::new("a"));
    assert_eq!(events(&bob), [r#"member_left {"id":"alice"}"#, r#"member_updated {"id":"bob","info":{},"state":{}}"#]);
    assert_eq!(Pair::ids(&pair.b, ROOM), ["bob"]);
}

#[test]
fn a_node_that_lost_changes_asks_for_a_sync_and_ends_equal() {
    let mut pair = Pair::new();
    let room: Arc<str> = Arc::from(ROOM);
    let watcher = Outbox::new(64, &TestEncoding);
    pair.b.join(&room, SMALL, 1, &watcher, joining("bob"));
    pair.settle(|_| false);
    for (conn, user) in [(1, "alice"), (2, "carol"), (3, "dan")] {
        pair.a.join(&room, SMALL, conn, &Outbox::new(64, &TestEncoding), joining(user));
    }
    pair.a.leave(ROOM, 2).unwrap();
    // Carol's join and leave never reach b; Dan's join, which comes after them, shows the gap.
    pair.settle(|m| matches!(m, PresenceMessage::Delta { seq: 2 | 3, .. }));
    assert_eq!(Pair::ids(&pair.b, ROOM), ["alice", "bob", "dan"]);
    assert_eq!(Pair::ids(&pair.a, ROOM), Pair::ids(&pair.b, ROOM));

    // The last change lost: only the head shows it.
    pair.a.leave(ROOM, 3).unwrap();
    pair.settle(|m| matches!(m, PresenceMessage::Delta { .. }));
    assert_eq!(Pair::ids(&pair.b, ROOM), ["alice", "bob", "dan"], "b does not know yet");
    std::thread::sleep(limits::PRESENCE_HEAD_INTERVAL);
    let head = pair.a.head();
    pair.b.receive(&head);
    pair.settle(|_| false);
    assert_eq!(Pair::ids(&pair.b, ROOM), ["alice", "bob"]);
    let left: Vec<String> = events(&watcher).into_iter().filter(|e| e.starts_with("member_left")).collect();
    assert_eq!(left, [r#"member_left {"id":"dan"}"#], "carol came and went unseen; dan's leave came with the sync");
}

#[test]
fn a_node_that_starts_late_learns_everything_from_the_others() {
    let a = Presence::new(NodeId::new("a"));
    let (tx_a, mut from_a) = tokio::sync::mpsc::unbounded_channel();
    a.share(tx_a);
    a.join(&Arc::from(ROOM), SMALL, 1, &Outbox::new(64, &TestEncoding), joining("alice"));
    // Published before b was there to hear it.
    while from_a.try_recv().is_ok() {}
    // b starts: it asks everyone; a answers with all it holds.
    let b = Presence::new(NodeId::new("b"));
    let (tx_b, mut from_b) = tokio::sync::mpsc::unbounded_channel();
    b.share(tx_b);
    a.join(&Arc::from(ROOM), SMALL, 2, &Outbox::new(64, &TestEncoding), joining("carol"));
    while let Ok(m) = from_a.try_recv() {
        b.receive(&m);
    }
    assert!(Pair::ids(&b, ROOM).is_empty(), "carol's join alone is not applied: a's first change was missed");
    while let Ok(m) = from_b.try_recv() {
        a.receive(&m);
    }
    while let Ok(m) = from_a.try_recv() {
        b.receive(&m);
    }
    assert_eq!(Pair::ids(&b, ROOM), ["alice", "carol"]);
}
