//! Convergence with users: several users, staff and an anonymous visitor each keep a live mirror of the notes
//! route while notes are created, made public and private, handed from one user to another and deleted at random
//! (seeded). At every moment, not only at the end, each mirror holds only rows its user may read (their own notes,
//! public ones; staff everything); once the writes stop, each mirror equals the database's notes under its user's
//! rule, field for field.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{BIN, NOTES, user_token};
use drakon_testkit::mirror::{LiveMirror, MirrorRow, SyncEnd};
use drakon_testkit::{Client, TestServer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const OPERATIONS: usize = 400;

/// Who a mirror belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Viewer {
    User(&'static str),
    Staff,
    Anonymous,
}

impl Viewer {
    /// The read rule of `notes`, as the test states it: staff read every note, others their own and public ones.
    fn may_read(self, owner: &str, public: bool) -> bool {
        match self {
            Viewer::Staff => true,
            Viewer::User(me) => owner == me || public,
            Viewer::Anonymous => public,
        }
    }

    fn may_read_row(self, row: &MirrorRow) -> bool {
        let fields: Vec<&str> = row.keys().map(String::as_str).collect();
        let known = fields.iter().all(|f| ["id", "_type", "text", "owner", "public"].contains(f));
        known && self.may_read(row["owner"].as_str().unwrap_or_default(), row["public"].as_bool().unwrap_or(false))
    }
}

/// Applies what each mirror has been sent, checking after every event that it holds only readable rows.
async fn sync(mirrors: &mut [(Viewer, LiveMirror)], quiet: Duration) {
    for (viewer, mirror) in mirrors.iter_mut() {
        let viewer = *viewer;
        let deadline = Instant::now() + quiet;
        let end = mirror.sync_while(deadline, |m| m.rows().values().all(|row| viewer.may_read_row(row))).await;
        assert_eq!(end, SyncEnd::Open, "{viewer:?}'s mirror was closed");
        if let Some(row) = mirror.rows().values().find(|row| !viewer.may_read_row(row)) {
            panic!(
                "{viewer:?}'s mirror holds a row it may not read: {row:?}; trail {:?}",
                mirror.trail(row["id"].as_i64().unwrap())
            );
        }
    }
}

#[tokio::test]
async fn every_mirror_holds_only_what_its_user_may_read_and_ends_equal_to_the_database() {
    let seed = std::env::var("DRAKON_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("seed {seed} (DRAKON_SEED={seed} replays it)");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let server =
        TestServer::spawn(BIN, &NOTES.replace("[auth]", "[server]\nmax_requests_per_second = 100000\n\n[auth]")).await;
    let url = |token: Option<String>| match token {
        Some(token) => format!("{}?token={token}", server.ws_url()),
        None => server.ws_url(),
    };

    let mut mirrors = Vec::new();
    for user in USERS {
        let mirror = LiveMirror::connect(&url(Some(user_token(user, &[]))), "notes", "notes", json!({})).await;
        mirrors.push((Viewer::User(user), mirror));
    }
    mirrors.push((
        Viewer::Staff,
        LiveMirror::connect(&url(Some(user_token("carol", &["staff"]))), "notes", "notes", json!({})).await,
    ));
    mirrors.push((Viewer::Anonymous, LiveMirror::connect(&url(None), "notes", "notes", json!({})).await));

    let mut writers = Vec::new();
    for user in USERS {
        let mut client = server.client().await;
        client.ok("drakon", "auth", json!({"token": user_token(user, &[])})).await;
        writers.push(client);
    }
    let mut staff = server.client().await;
    staff.ok("drakon", "auth", json!({"token": user_token("carol", &["staff"])})).await;

    // What the test knows of each note: its owner (an index into USERS).
    let mut notes: BTreeMap<i64, usize> = BTreeMap::new();
    for step in 0..OPERATIONS {
        let who = rng.random_range(0..USERS.len());
        let mine: Vec<i64> = notes.iter().filter(|&(_, &o)| o == who).map(|(&id, _)| id).collect();
        match rng.random_range(0..10) {
            0..=2 => {
                let public = rng.random_bool(0.3);
                let note =
                    writers[who].ok("notes", "create", json!({"text": format!("n{step}"), "public": public})).await;
                notes.insert(note["id"].as_i64().unwrap(), who);
            }
            3..=5 if !mine.is_empty() => {
                let id = mine[rng.random_range(0..mine.len())];
                let args = json!({"id": id, "public": rng.random_bool(0.5), "text": format!("e{step}")});
                writers[who].ok("notes", "update", args).await;
            }
            6..=7 if !notes.is_empty() => {
                let ids: Vec<i64> = notes.keys().copied().collect();
                let id = ids[rng.random_range(0..ids.len())];
                let to = rng.random_range(0..USERS.len());
                staff.ok("handover", "update", json!({"id": id, "owner": USERS[to]})).await;
                notes.insert(id, to);
            }
            8 if !mine.is_empty() => {
                let id = mine[rng.random_range(0..mine.len())];
                writers[who].ok("notes", "delete", json!({"id": id})).await;
                notes.remove(&id);
            }
            9 if !notes.is_empty() => {
                // Another user's note: not theirs to change, whether they can read it or not.
                let ids: Vec<i64> = notes.iter().filter(|&(_, &o)| o != who).map(|(&id, _)| id).collect();
                if let Some(&id) = ids.first() {
                    let reply = writers[who].call("notes", "update", json!({"id": id, "text": "not mine"})).await;
                    let code = reply["data"]["code"].as_str().unwrap_or("success");
                    assert!(["not_found", "permission_denied"].contains(&code), "{reply}");
                }
            }
            _ => {}
        }
        if step % 25 == 0 {
            sync(&mut mirrors, Duration::from_millis(20)).await;
        }
    }
    // Quiescence: every mirror drains what it was sent.
    for (_, mirror) in mirrors.iter_mut() {
        mirror.sync_quiet(Duration::from_millis(500), Instant::now() + Duration::from_secs(20)).await;
    }
    sync(&mut mirrors, Duration::from_millis(10)).await;

    let db = rusqlite::Connection::open(server.database()).expect("open the database");
    let mut select = db.prepare("SELECT id, text, owner, public FROM note ORDER BY id").unwrap();
    let rows: Vec<(i64, String, String, bool)> = select
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() > 10, "the run made too few notes: {}", rows.len());
    for (viewer, mirror) in &mirrors {
        let want: BTreeMap<i64, Value> = rows
            .iter()
            .filter(|(_, _, owner, public)| viewer.may_read(owner, *public))
            .map(|(id, text, owner, public)| (*id, json!({"text": text, "owner": owner, "public": public})))
            .collect();
        let have: BTreeMap<i64, Value> = mirror
            .rows()
            .iter()
            .map(|(id, row)| (*id, json!({"text": row["text"], "owner": row["owner"], "public": row["public"]})))
            .collect();
        assert_eq!(have, want, "{viewer:?}'s mirror against the database; stats {:?}", mirror.stats());
        assert_eq!(mirror.anomaly_count(), 0, "{viewer:?}: {:?}", mirror.anomalies());
    }
    let _ = Client::connect(&server.ws_url()).await;
}
