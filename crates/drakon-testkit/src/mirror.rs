//! A live mirror for tests: one filtered subscription kept as rows, the way a real client keeps its view.
//!
//! [`LiveMirror`] subscribes with `"snapshot": true`, applies every publication whose offset is past the last one
//! it applied (which also drops duplicates), and on [`LiveMirror::reconnect`] resumes with `"since"`, applying the
//! replayed events or replacing its rows when the server answers with a reload. Rows are kept as the JSON objects
//! the server sent, keyed by id, so a test can compare them field for field with what the database holds.
//!
//! It reads the socket itself rather than through [`Client::next_frame`], because a mirror must tell a close (and
//! its code: 4008 for a slow consumer, 1001 for a server going away) from a quiet moment.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::{Client, Closed, PATIENCE};

/// One row as the server published it: `id`, `_type` and the route's publish fields.
pub type MirrorRow = Map<String, Value>;

/// How many of a row's latest events [`LiveMirror::trail`] keeps.
const TRAIL: usize = 8;

/// Rows with a trail, past which the trails of rows the mirror no longer holds are dropped (long runs).
const TRAILS: usize = 20_000;

/// Anomalies kept for printing; [`LiveMirror::anomaly_count`] counts them all.
const ANOMALIES: usize = 200;

/// What a mirror has done so far; tests print it so a failure shows how the mirror got where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Publications applied (created, updated or deleted).
    pub applied: u64,
    /// Publications at or below the last applied offset, dropped as already known.
    pub skipped: u64,
    /// Subscriptions with a snapshot (the first one, and any fresh start).
    pub snapshots: u64,
    /// Resumes answered with the missed events.
    pub replays: u64,
    /// Events applied from replays.
    pub replayed: u64,
    /// Resumes answered with a reload (the change log no longer reached back).
    pub reloads: u64,
}

/// How a [`LiveMirror::sync_until`] (or one of its relatives) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEnd {
    /// The deadline passed, or the condition held, with the connection still open.
    Open,
    /// The server closed the connection (or it broke); the mirror keeps its rows and offset for a resume.
    Closed(Closed),
}

/// A filtered subscription kept as rows. See the module docs.
#[derive(Debug)]
pub struct LiveMirror {
    route: String,
    local: String,
    filter: Map<String, Value>,
    client: Option<Client>,
    /// The server's name of the subscription, from the subscribe reply; every publication must carry it.
    remote: String,
    rows: BTreeMap<i64, MirrorRow>,
    last: u64,
    next_callback: u64,
    stats: MirrorStats,
    closes: Vec<Closed>,
    anomalies: Vec<String>,
    anomaly_count: u64,
    /// Per row, its latest events and snapshots, for explaining a divergence.
    trails: BTreeMap<i64, VecDeque<String>>,
}

impl LiveMirror {
    /// Connects to `url` and subscribes `local` on `route` with `filter` (a JSON object) and a snapshot.
    pub async fn connect(url: &str, route: &str, local: &str, filter: Value) -> LiveMirror {
        let filter = match filter {
            Value::Object(map) => map,
            other => panic!("a mirror's filter is a JSON object, got {other}"),
        };
        let mut mirror = LiveMirror {
            route: route.to_owned(),
            local: local.to_owned(),
            filter,
            client: None,
            remote: String::new(),
            rows: BTreeMap::new(),
            last: 0,
            next_callback: 0,
            stats: MirrorStats::default(),
            closes: Vec::new(),
            anomalies: Vec::new(),
            anomaly_count: 0,
            trails: BTreeMap::new(),
        };
        if let Err(closed) = mirror.start_fresh(url).await {
            panic!("{}: the server closed the connection during the first subscribe: {closed:?}", mirror.label());
        }
        mirror
    }

    /// `route filter`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.route, Value::Object(self.filter.clone()))
    }

    /// The rows the mirror holds, by id.
    pub fn rows(&self) -> &BTreeMap<i64, MirrorRow> {
        &self.rows
    }

    /// The last offset applied: of the last publication, or of the latest snapshot or replay.
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// The server's name of the subscription.
    pub fn remote_channel(&self) -> &str {
        &self.remote
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    pub fn stats(&self) -> &MirrorStats {
        &self.stats
    }

    /// Every close the server sent (or the connection breaking, with no code), oldest first.
    pub fn closes(&self) -> &[Closed] {
        &self.closes
    }

    /// Things a correct server never sends: an `updated` for a row the mirror does not hold, a publication for
    /// another channel, a replay that ends before the mirror's offset. The first few, for the test to print.
    pub fn anomalies(&self) -> &[String] {
        &self.anomalies
    }

    /// How many anomalies there were in all.
    pub fn anomaly_count(&self) -> u64 {
        self.anomaly_count
    }

    fn anomaly(&mut self, what: String) {
        self.anomaly_count += 1;
        if self.anomalies.len() < ANOMALIES {
            self.anomalies.push(what);
        }
    }

    /// The latest events (and snapshots) that concerned row `id`, oldest first: `offset action data` lines.
    pub fn trail(&self, id: i64) -> Vec<String> {
        self.trails.get(&id).map(|t| t.iter().cloned().collect()).unwrap_or_default()
    }

    fn remember(&mut self, id: i64, what: String) {
        if self.trails.len() >= TRAILS && !self.trails.contains_key(&id) {
            let rows = &self.rows;
            self.trails.retain(|id, _| rows.contains_key(id));
        }
        let trail = self.trails.entry(id).or_default();
        if trail.len() == TRAIL {
            trail.pop_front();
        }
        trail.push_back(what);
    }

    /// Ends the connection: with a close handshake when `graceful`, else by dropping the socket. Rows and offset
    /// stay for [`LiveMirror::reconnect`].
    pub async fn disconnect(&mut self, graceful: bool) {
        if let Some(mut client) = self.client.take()
            && graceful
        {
            let socket = client.socket();
            let _ = tokio::time::timeout(PATIENCE, async {
                let _ = socket.close(None).await;
                // Read until the server's close arrives, so the handshake completes.
                while let Some(Ok(_)) = socket.next().await {}
            })
            .await;
        }
    }

    /// Connects to `url` (the same server, or the same database behind a restarted one) and resumes with
    /// `"since": last_offset`, applying the missed events or the reload. On a close during the resume the mirror
    /// is left disconnected, with its rows and offset intact, and the close is returned.
    pub async fn reconnect(&mut self, url: &str) -> Result<(), Closed> {
        self.client = None;
        self.open(url).await;
        let mut args = self.filter.clone();
        args.insert("since".into(), json!(self.last));
        let (data, early) = self.subscribe(args).await?;
        let offset =
            data["offset"].as_u64().unwrap_or_else(|| panic!("{}: resume reply without offset: {data}", self.label()));
        if data["reload"] == true {
            self.stats.reloads += 1;
            self.replace(&data, offset);
        } else {
            let events = data["events"]
                .as_array()
                .unwrap_or_else(|| panic!("{}: resume reply with neither events nor reload: {data}", self.label()));
            if offset < self.last {
                self.anomaly(format!(
                    "resume since {} answered with a log that ends at {offset}; starting afresh",
                    self.last
                ));
                return self.start_fresh(url).await;
            }
            self.stats.replays += 1;
            for event in events {
                if self.apply(event) {
                    self.stats.replayed += 1;
                }
            }
            self.last = self.last.max(offset);
        }
        for p in early {
            self.apply(&p);
        }
        Ok(())
    }

    /// Applies every publication that arrives before `deadline`.
    pub async fn sync_until(&mut self, deadline: Instant) -> SyncEnd {
        self.sync_while(deadline, |_| true).await
    }

    /// Applies publications until none arrives for `quiet`, or `deadline` passes.
    pub async fn sync_quiet(&mut self, quiet: Duration, deadline: Instant) -> SyncEnd {
        loop {
            let until = (Instant::now() + quiet).min(deadline);
            match self.next_publication(until).await {
                Ok(Some(p)) => {
                    self.apply(&p);
                }
                Ok(None) => return SyncEnd::Open,
                Err(closed) => return SyncEnd::Closed(closed),
            }
            if Instant::now() >= deadline {
                return SyncEnd::Open;
            }
        }
    }

    /// Applies publications while `go_on(self)` holds and `deadline` has not passed.
    pub async fn sync_while(&mut self, deadline: Instant, go_on: impl Fn(&LiveMirror) -> bool) -> SyncEnd {
        while go_on(self) {
            match self.next_publication(deadline).await {
                Ok(Some(p)) => {
                    self.apply(&p);
                }
                Ok(None) => return SyncEnd::Open,
                Err(closed) => return SyncEnd::Closed(closed),
            }
        }
        SyncEnd::Open
    }

    /// Applies one publication (`{"channel", "action", "data", "offset"}`); false when it was skipped as already
    /// known. Public so that tests can feed a mirror by hand.
    pub fn apply(&mut self, p: &Value) -> bool {
        let offset =
            p["offset"].as_u64().unwrap_or_else(|| panic!("{}: publication without offset: {p}", self.label()));
        if p["channel"] != self.remote.as_str() {
            self.anomaly(format!("publication for another channel (this is {:?}): {}", self.remote, short(p)));
            return false;
        }
        if offset <= self.last {
            self.stats.skipped += 1;
            return false;
        }
        let data = p["data"].as_object().unwrap_or_else(|| panic!("{}: publication without data: {p}", self.label()));
        let id =
            data.get("id").and_then(Value::as_i64).unwrap_or_else(|| panic!("{}: data without id: {p}", self.label()));
        let action = p["action"].as_str().unwrap_or_default();
        self.remember(id, format!("{offset} {action} {}", short(&p["data"])));
        match p["action"].as_str() {
            Some("created") => {
                self.rows.insert(id, data.clone());
            }
            Some("updated") => match self.rows.get_mut(&id) {
                Some(row) => row.extend(data.iter().map(|(k, v)| (k.clone(), v.clone()))),
                None => self.anomaly(format!("updated for row {id}, which the mirror does not hold: {}", short(p))),
            },
            Some("deleted") => {
                // A replayed touch may delete a row the mirror never held (see the engine's replay); not an error.
                self.rows.remove(&id);
            }
            _ => panic!("{}: unknown action: {p}", self.label()),
        }
        self.last = offset;
        self.stats.applied += 1;
        true
    }

    async fn open(&mut self, url: &str) {
        self.client = Some(Client::connect(url).await);
    }

    /// A new connection and a subscription with a snapshot, replacing rows and offset.
    async fn start_fresh(&mut self, url: &str) -> Result<(), Closed> {
        self.open(url).await;
        let mut args = self.filter.clone();
        args.insert("snapshot".into(), json!(true));
        let (data, early) = self.subscribe(args).await?;
        let offset = data["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: snapshot reply without offset: {data}", self.label()));
        self.stats.snapshots += 1;
        self.replace(&data, offset);
        for p in early {
            self.apply(&p);
        }
        Ok(())
    }

    fn replace(&mut self, data: &Value, offset: u64) {
        let rows = data["rows"].as_array().unwrap_or_else(|| panic!("{}: snapshot without rows: {data}", self.label()));
        self.rows = rows
            .iter()
            .map(|row| {
                let row = row.as_object().unwrap_or_else(|| panic!("{}: a row is not an object: {row}", self.label()));
                let id = row.get("id").and_then(Value::as_i64).unwrap_or_else(|| panic!("row without id: {row:?}"));
                (id, row.clone())
            })
            .collect();
        self.last = offset;
        let ids: Vec<i64> = self.rows.keys().copied().collect();
        for id in ids {
            let what = format!("{offset} in a snapshot {}", short(&Value::Object(self.rows[&id].clone())));
            self.remember(id, what);
        }
    }

    /// Sends `subscribe` with `args` and waits for its reply; returns the reply's data and the publications that
    /// arrived before it (to apply after the baseline the reply sets).
    async fn subscribe(&mut self, mut args: Map<String, Value>) -> Result<(Value, Vec<Value>), Closed> {
        self.next_callback += 1;
        let callback = format!("mirror_{}", self.next_callback);
        args.insert("channel".into(), json!(self.local));
        let frame = json!({"route": self.route, "verb": "subscribe", "args": args, "callbackname": callback});
        let client = self.client.as_mut().expect("connected");
        if client.socket().send(Message::text(frame.to_string())).await.is_err() {
            return Err(self.lost(Closed { code: None, reason: "send failed".into() }));
        }
        let deadline = Instant::now() + PATIENCE;
        let mut early = Vec::new();
        loop {
            let frame = match self.next_frame(deadline).await {
                Ok(Some(frame)) => frame,
                Ok(None) => panic!("{}: no reply to subscribe within {PATIENCE:?}", self.label()),
                Err(closed) => return Err(closed),
            };
            if frame["context"]["client_callback_name"] == callback.as_str() {
                assert_eq!(frame["context"]["state"], "success", "{}: subscribe failed: {frame}", self.label());
                let remotes = frame["channel_data"]["remote_channels"].as_array().cloned().unwrap_or_default();
                assert_eq!(remotes.len(), 1, "{}: one server channel per subscription: {frame}", self.label());
                self.remote = remotes[0].as_str().expect("channel name").to_owned();
                return Ok((frame["data"].clone(), early));
            }
            if frame.get("channel").is_some() {
                early.push(frame);
            }
        }
    }

    /// The next publication before `deadline`: `Ok(None)` when none came, `Err` when the connection ended.
    async fn next_publication(&mut self, deadline: Instant) -> Result<Option<Value>, Closed> {
        loop {
            match self.next_frame(deadline).await? {
                Some(frame) if frame.get("channel").is_some() => return Ok(Some(frame)),
                Some(frame) if frame.get("heartbeat").is_some() => continue,
                Some(frame) => self.anomaly(format!("unexpected frame: {}", short(&frame))),
                None => return Ok(None),
            }
        }
    }

    /// The next JSON text frame before `deadline`; a close (or a broken connection) drops the client.
    async fn next_frame(&mut self, deadline: Instant) -> Result<Option<Value>, Closed> {
        let Some(client) = self.client.as_mut() else {
            return Err(Closed { code: None, reason: "not connected".into() });
        };
        loop {
            let read = match tokio::time::timeout_at(deadline, client.socket().next()).await {
                Err(_) => return Ok(None),
                Ok(read) => read,
            };
            let closed = match read {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("the server sent a frame that is not JSON ({e}): {text}"));
                    return Ok(Some(frame));
                }
                Some(Ok(Message::Close(frame))) => Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => Closed { code: None, reason: e.to_string() },
                None => Closed { code: None, reason: "connection ended".into() },
            };
            return Err(self.lost(closed));
        }
    }

    fn lost(&mut self, closed: Closed) -> Closed {
        self.client = None;
        self.closes.push(closed.clone());
        closed
    }
}

/// `value` as JSON with long strings cut, for messages.
pub fn short(value: &Value) -> String {
    fn cut(value: &Value) -> Value {
        match value {
            Value::String(s) if s.chars().count() > 40 => {
                Value::String(format!("{}… ({} chars)", s.chars().take(30).collect::<String>(), s.chars().count()))
            }
            Value::Array(items) => Value::Array(items.iter().map(cut).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), cut(v))).collect()),
            other => other.clone(),
        }
    }
    cut(value).to_string()
}
