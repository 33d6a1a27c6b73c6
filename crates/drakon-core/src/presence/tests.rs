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
