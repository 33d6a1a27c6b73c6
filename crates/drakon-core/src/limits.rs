//! Every bound drakon places on memory, time and input, in one place.
//!
//! Each constant says why it has its size; config may override the ones marked as defaults.

use std::time::Duration;

/// Default cap on one inbound WebSocket frame: a generous JSON write, yet small enough that a flood of maximal
/// frames from one client cannot hold much memory.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Outbound frames queued per connection before it counts as slow: a burst of a few hundred events fits, while a
/// stalled client holds at most this many shared `Bytes` handles.
pub const OUTBOUND_QUEUE_FRAMES: usize = 512;

/// Subscriptions one connection may hold: a UI with many live views stays far below it, a runaway loop does not.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 256;

/// Default idle timeout: a connection that sends nothing (not even a pong) for this long is closed, so dead peers
/// behind NATs do not hold slots forever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Default period of WebSocket pings and of the app heartbeat; well under the idle timeout so that a live client
/// always answers in time.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Default page size of `get_list` when a route does not set one.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Largest page size a route may declare: a bigger page is one huge frame and one long read.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Values an `in` filter may list: each is one bound parameter, and SQLite allows 32,766 per statement.
pub const MAX_IN_VALUES: usize = 1000;

/// Conditions in one filter: enough for any real view, and it caps the cost of matching one event.
pub const MAX_FILTER_CONDITIONS: usize = 32;

/// Committed change batches queued between the store and the hub. The writer waits when the hub falls this far
/// behind, which keeps memory bounded and the event order intact.
pub const BUS_QUEUE_BATCHES: usize = 1024;

/// How long shutdown waits for in-flight writes and for connections to flush their close frames.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest JSON body accepted by `POST /api/publish`.
pub const MAX_PUBLISH_BODY_BYTES: usize = 256 * 1024;

/// Rows a `subscribe` with a snapshot may return: a live mirror larger than this belongs in pages, not one frame.
pub const MAX_SNAPSHOT_ROWS: usize = 10_000;

/// Page size of the admin's model lists.
pub const ADMIN_PAGE_SIZE: u32 = 50;

/// Missed changes a resuming subscription may replay; beyond that a fresh snapshot is cheaper than the replay.
pub const MAX_REPLAY_CHANGES: usize = 10_000;

/// Change-log entries kept per model by default: a day of a busy model's writes, a few MB of disk.
pub const DEFAULT_LOG_RETENTION_COUNT: u64 = 100_000;

/// Default age after which change-log entries go: a client away longer than a week reloads.
pub const DEFAULT_LOG_RETENTION_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Fields one `_order` may name: more than a model's fields is pointless, and databases refuse an `ORDER BY` of
/// thousands of terms (SQLite: 2,000), which must be the client's error, not the server's.
pub const MAX_ORDER_TERMS: usize = 16;

/// Change-log entries removed per model per trimming pass, so trimming never holds the writer for long.
pub const LOG_TRIM_BATCH: u64 = 10_000;

/// How often the engine closes parked sessions (between two transport connections) whose time ran out: the most a
/// session outlives its deadline, and one lock of an almost always empty map per second.
pub const PARKED_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Protocols whose bytes an event keeps once encoded (native, SwampDragon over SockJS, Pusher, and one spare): each
/// protocol on a node encodes a channel's event once and its recipients share the bytes. A slot costs 40 bytes per
/// event and channel, never per connection.
pub const EVENT_ENCODINGS: usize = 4;

/// Bytes read from a WebSocket at a time, into a buffer on the stack: what a read leaves unparsed (the start of a
/// frame) is all the inbound data a connection keeps between reads, so an idle connection holds no read buffer.
pub const WS_READ_CHUNK_BYTES: usize = 4096;

/// A connection's frames go straight onto its socket (one `sendmsg` each, no wake-up of its task) unless they come
/// more often than this: then they are queued, and its task writes several with one syscall. Most subscribers get an
/// event now and then and take the direct path; a chatty one costs less batched, and so does a server under load
/// (measured with `drakon-bench fanout`: 2.5–3.3 µs per delivery at 300,000–400,000/s batched, against 4.5 µs direct
/// at 200,000/s).
pub const DIRECT_MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Frames gathered into one `writev` when a connection has several queued: a backlog leaves in a few syscalls, not
/// one per event, and the frames are the hub's shared payloads behind headers made on the spot, never copied.
pub const WS_FRAMES_PER_WRITE: usize = 32;

/// How long one flush to a client may block before the connection counts as stalled and is closed (4008): long
/// enough for a slow mobile link to drain a batch, short enough that a dead reader does not hold its slot.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server waits for the client's side of the closing handshake before dropping the socket.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long a client has to send a whole request head, and on a kept-alive connection the next one: a connection
/// that sends nothing, or its headers a byte at a time (slowloris), is closed after this instead of holding a file
/// descriptor for good. Browsers reopen idle connections as they need them.
pub const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a request body may take to arrive once its head has (`POST /api/publish`); a stalled body gets 408.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(15);

/// Connections one client address may hold open that have not yet sent a whole request head (a WebSocket handshake
/// included). An honest client sends its head within milliseconds of connecting, but a reconnect storm after a
/// restart keeps hundreds waiting at once on a busy server (the load generator's 512 handshakes in flight from one
/// address lost 13% of them at 256); a flood of silent connections from one address is closed at accept instead of
/// using up the server's file descriptors.
pub const DEFAULT_MAX_PENDING_PER_ADDRESS: usize = 1024;

/// How long an admin login lasts before the admin logs in again; logging out ends it at once.
pub const ADMIN_LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);

/// How many requests one connection may send per second, on average; a burst of as many again is let through. A
/// request beyond that is answered `rate_limited` without being run, and the connection stays open. Generous for
/// any page (the demo sends a handful a second at most) and for a bulk importer, it keeps one client from
/// monopolising the server.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: u32 = 200;

/// How long before a session's token expires the client is asked for a fresh one (`{"auth":"expiring"}`).
pub const TOKEN_REFRESH_NOTICE: Duration = Duration::from_secs(30);

/// How long past its token's expiry a session that sent no fresh one is kept before it is closed (4001): the clock
/// leeway tokens get when they are checked.
pub const TOKEN_EXPIRY_GRACE: Duration = Duration::from_secs(5);

/// How many of the connections still waiting for their first request head, oldest first, are closed each time
/// `accept` fails for want of file descriptors. Those are the connections a flood of silent ones is made of; closing
/// them frees descriptors for the clients and health checks queued behind, while every connection that has sent a
/// request (a WebSocket among them) is left alone.
pub const PENDING_SHED_AT_FILE_LIMIT: usize = 64;

/// How often a failing `accept` (say, out of file descriptors) is logged, with how many failed since the last line:
/// often enough to see, rarely enough not to fill the log.
pub const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accept queue of the listening socket; the kernel caps it at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: u32 = 4096;

/// How long `POST /api/publish` waits for the bus between nodes to take a message before answering 503.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a node's liveness key outlives its last heartbeat: a node silent this long (crashed, frozen, cut off
/// from Redis) is dead, and with [`NODE_HEARTBEAT`] to notice it, its state elsewhere goes within 12 s, well
/// inside the 30 s in which a dead node's presence members must leave.
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// How often a node refreshes its liveness key and looks which nodes are alive: a fifth of [`NODE_TTL`], so a
/// live node survives a few lost heartbeats or a short Redis blip.
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a built-in user's login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// Failed logins one client address may make within [`LOGIN_FAILURE_WINDOW`] before its logins are refused unchecked.
pub const LOGIN_FAILURES_PER_ADDRESS: u32 = 30;

/// Failed logins one user name may take within [`LOGIN_FAILURE_WINDOW`], from anywhere, before its logins are
/// refused unchecked.
pub const LOGIN_FAILURES_PER_USER: u32 = 10;

/// The window over which failed logins are counted.
pub const LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The largest `POST /auth/login` body read.
pub const MAX_LOGIN_BODY_BYTES: usize = 4096;

/// How long a large presence room's changes wait to go out together: a burst of joins costs each watcher one frame
/// per window, and a join still reaches the others well within 50 ms.
pub const PRESENCE_BATCH: Duration = Duration::from_millis(20);

/// Most changes one `presence_batch` lists; a window with more sends the count alone (`"truncated": true`), and
/// clients that want the names page through `get_presence`.
pub const PRESENCE_BATCH_CHANGES: usize = 100;

/// Default size above which a presence room sends counts and batches instead of each change (Pusher's cap on
/// presence channels).
pub const DEFAULT_PRESENCE_LARGE_ROOM: usize = 100;

/// Largest presence state a connection may set, in bytes of JSON: a flag or a cursor, not a document.
pub const PRESENCE_STATE_BYTES: usize = 1024;

/// Most presence rooms one connection may join.
pub const MAX_PRESENCE_ROOMS_PER_CONNECTION: usize = 32;

/// While a connection is in a presence room, it is pinged this often and closed after
/// [`PRESENCE_IDLE_TIMEOUT`] without a frame, so a vanished browser leaves its rooms within
/// [`PRESENCE_LEAVE_BOUND`].
pub const PRESENCE_PING_INTERVAL: Duration = Duration::from_secs(5);

/// See [`PRESENCE_PING_INTERVAL`]: two missed pings and most of a third.
pub const PRESENCE_IDLE_TIMEOUT: Duration = Duration::from_secs(14);

/// The documented bound: a member whose connection vanished without closing leaves within this long.
pub const PRESENCE_LEAVE_BOUND: Duration = Duration::from_secs(20);

/// How often a node that shares presence tells the others how many changes it made, so that one that lost some
/// asks for all of its entries; also the least time between two such asks.
pub const PRESENCE_HEAD_INTERVAL: Duration = Duration::from_secs(1);
