//! What the controller and its worker processes say to each other.
//!
//! The controller starts each worker with a [`Plan`] (one JSON argument) and then writes [`Command`]s to its stdin,
//! one per line. The worker answers on stdout with [`Event`]s, one JSON object per line. Nothing else is written to
//! a worker's stdout, so a line that does not parse is a bug worth reporting.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Everything a worker needs: where to connect from and to, how many connections, what each subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub server: SocketAddr,
    pub source: IpAddr,
    pub connections: usize,
    /// The fleet-wide index of this worker's first connection; subscriptions are a function of that index.
    pub first_index: usize,
    pub subscribe: Subscribe,
    /// The connection with fleet-wide index 0 also subscribes to group 0, the group selective writes hit.
    pub probe: bool,
    /// Handshakes in flight at once, so that the server's listen backlog never overflows.
    pub concurrency: usize,
    /// The worker exits by itself after this long, whatever happens to the controller.
    pub deadline_secs: u64,
    /// Count frames from the first connection on (the frames a storm of joins causes), not only once started.
    #[serde(default)]
    pub count_from_start: bool,
}

/// What each connection subscribes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subscribe {
    /// One plain channel of a channel route (drakon) or of the baseline.
    Channel { route: String, name: String },
    /// `per_conn` model subscriptions `{"grp": g}` per connection on distinct groups: connection `i` takes
    /// groups `1 + (i * per_conn + j) % groups` for `j` in `0..per_conn`.
    Groups { route: String, groups: usize, per_conn: usize },
    /// Connection `i` signs in as user `u<i>` (a token in the upgrade URL, signed with `jwt_secret`) and subscribes
    /// to "my items" (`mine`, no filter: its rule keeps the user's own rows) and to the shared list (`list`,
    /// `{"grp": list_group}`, under a rule that admits the user's own rows and shared ones).
    Users { jwt_secret: String, list_group: usize },
    /// Connection `i` signs in as user `u<i>` (as with `Users`) and, when `room` is given, joins the presence of that
    /// channel of route `room`.
    Presence { jwt_secret: String, room: Option<String> },
}

impl Subscribe {
    /// The groups connection `index` subscribes to.
    pub fn groups_of(&self, index: usize) -> Vec<usize> {
        match self {
            Subscribe::Channel { .. } | Subscribe::Users { .. } | Subscribe::Presence { .. } => Vec::new(),
            Subscribe::Groups { groups, per_conn, .. } => {
                (0..*per_conn).map(|j| 1 + (index * per_conn + j) % groups).collect()
            }
        }
    }

    /// The subscribe frames of connection `index`.
    pub fn frames(&self, index: usize, probe: bool) -> Vec<String> {
        let mut out = match self {
            Subscribe::Channel { route, name } => vec![format!(
                r#"{{"route":{},"verb":"subscribe","args":{{"channel":"c","name":{}}},"callbackname":"s0"}}"#,
                json_str(route),
                json_str(name)
            )],
            Subscribe::Groups { route, .. } => {
                self.groups_of(index).into_iter().map(|g| group_frame(route, g)).collect()
            }
            Subscribe::Presence { room, .. } => {
                room.iter().map(|room| presence_join(room, r#"{"editing":false}"#, "p")).collect()
            }
            Subscribe::Users { list_group, .. } => vec![
                r#"{"route":"mine","verb":"subscribe","args":{"channel":"m"},"callbackname":"m"}"#.to_owned(),
                format!(
                    r#"{{"route":"list","verb":"subscribe","args":{{"channel":"l","grp":{list_group}}},"callbackname":"l"}}"#
                ),
            ],
        };
        if probe
            && index == 0
            && let Subscribe::Groups { route, .. } = self
        {
            out.push(group_frame(route, 0));
        }
        out
    }

    /// The upgrade path of connection `index`: with users, it carries the user's token.
    pub fn path(&self, index: usize, base: &str) -> String {
        match self {
            Subscribe::Users { jwt_secret, .. } | Subscribe::Presence { jwt_secret, .. } => {
                format!("{base}?token={}", user_token(jwt_secret, &user_of(index)))
            }
            _ => base.to_owned(),
        }
    }
}

/// The user connection `index` signs in as under [`Subscribe::Users`].
pub fn user_of(index: usize) -> String {
    format!("u{index}")
}

/// An HS256 JWT for `user`, valid for a day (longer than any run).
fn user_token(secret: &str, user: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("an HMAC key takes any bytes");
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 86_400;
    let claims = serde_json::json!({"sub": user, "exp": exp});
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("encoding a token of JSON claims")
}

/// A `join_presence` of channel `room` of route `room`, with `state` (JSON), answered under `callback`.
pub fn presence_join(room: &str, state: &str, callback: &str) -> String {
    format!(
        r#"{{"route":"room","verb":"join_presence","args":{{"name":{},"channel":"p","state":{state}}},"callbackname":{}}}"#,
        json_str(room),
        json_str(callback)
    )
}

fn group_frame(route: &str, group: usize) -> String {
    format!(
        r#"{{"route":{},"verb":"subscribe","args":{{"channel":"g{group}","grp":{group}}},"callbackname":"s{group}"}}"#,
        json_str(route)
    )
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Controller → worker, one per stdin line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Forget what was counted so far and count from now on; answered with [`Event::Started`].
    Start,
    /// Send the counts and the latency histogram since `Start`; answered with [`Event::Report`].
    Report,
    /// Close everything and exit.
    Exit,
}

/// Worker → controller, one per stdout line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// While connecting: connections up and subscribed so far, and those that failed.
    Progress {
        connected: usize,
        failed: usize,
    },
    /// Every connection is either subscribed or failed.
    Ready {
        connected: usize,
        failed: usize,
        subscriptions: usize,
        connect_secs: f64,
        first_error: Option<String>,
        /// Connect → every subscribe answered, per connection: (microseconds, count) pairs of a histogram.
        connect_latency_us: Vec<(u64, u64)>,
    },
    Started,
    /// While measuring, a few times a second.
    Tick {
        frames: u64,
        stamped: u64,
    },
    Report(Report),
}

/// What one worker counted since `Start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Text frames received.
    pub frames: u64,
    /// Frames that carried a send timestamp: the deliveries.
    pub stamped: u64,
    /// Connections that ended (closed by the server, or an error) since they subscribed.
    pub closed: u64,
    /// The first close code or error seen, if any.
    pub first_close: Option<String>,
    /// Latency histogram in microseconds, as (value, count) pairs of its non-empty buckets.
    pub latency_us: Vec<(u64, u64)>,
    /// The worker's own CPU time (user + system) since `Start`, from `/proc/self/stat`.
    pub cpu_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_distinct_across_connections() {
        let s = Subscribe::Groups { route: "item".into(), groups: 12, per_conn: 3 };
        let all: Vec<usize> = (0..4).flat_map(|i| s.groups_of(i)).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=12).collect::<Vec<_>>());
        // More connections than groups: they wrap around.
        let s = Subscribe::Groups { route: "item".into(), groups: 2, per_conn: 1 };
        assert_eq!((0..4).map(|i| s.groups_of(i)[0]).collect::<Vec<_>>(), vec![1, 2, 1, 2]);
    }

    #[test]
    fn subscribe_frames_are_json_requests() {
        let s = Subscribe::Groups { route: "item".into(), groups: 10, per_conn: 2 };
        let frames = s.frames(0, true);
        assert_eq!(frames.len(), 3);
        let last: serde_json::Value = serde_json::from_str(&frames[2]).unwrap();
        assert_eq!(last["args"]["grp"], 0);
        assert_eq!(last["verb"], "subscribe");
        let c = Subscribe::Channel { route: "bench".into(), name: "bench.fan".into() };
        let f: serde_json::Value = serde_json::from_str(&c.frames(5, true)[0]).unwrap();
        assert_eq!(f["args"]["name"], "bench.fan");
    }

    #[test]
    fn events_round_trip_as_tagged_lines() {
        let line = serde_json::to_string(&Event::Tick { frames: 3, stamped: 2 }).unwrap();
        assert_eq!(line, r#"{"ev":"tick","frames":3,"stamped":2}"#);
        assert!(matches!(serde_json::from_str::<Event>(&line).unwrap(), Event::Tick { frames: 3, stamped: 2 }));
        assert_eq!(serde_json::to_string(&Command::Start).unwrap(), r#""start""#);
    }
}
