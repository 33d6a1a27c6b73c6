//! A session's bounded outbound queue, with conflation for subscribers that fall behind.
//!
//! The hub pushes typed [`Event`]s without waiting; the queue turns them into bytes with its session's protocol
//! ([`Encoding`]) only when they leave, and the event keeps those bytes for every other recipient of that protocol.
//! While the queue has room every event is kept. When it is full, a new `updated` event for a row that already has a
//! pending `updated` on the same channel replaces it: the two are merged (later fields win) into one event at the
//! back of the queue, carrying the later offset, so the subscriber skips an intermediate state but loses nothing,
//! and offsets in the queue stay in order. When nothing can be conflated the push fails and the hub closes the
//! session with a resumable close: memory per session never grows past the capacity.
//!
//! A connection whose socket can be written without waiting gives its queue a [`Direct`] writer. A push that finds
//! the queue empty and the connection task not writing hands the frame straight to the socket, under the queue's
//! lock, and wakes nobody: fan-out to an idle subscriber costs one non-blocking write. Whenever the task has bytes
//! of its own in flight (a reply, a pong, a batch it took, the rest of a frame the socket took only part of) it
//! *holds* the queue, and pushes queue up behind it, so that frames never interleave on the wire and a reply always
//! precedes the events published while its request was handled.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use crate::event::{Action, Encoding, Event, EventBody};
use crate::limits::DIRECT_MIN_INTERVAL;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Arc<Event>>,
    conflated: u64,
    /// The connection task, while it waits for frames. The push that wakes it takes it, so a burst of pushes wakes
    /// the task once, and a queue nobody waits on costs no wake-ups.
    waiting: Option<Waker>,
    /// Set once the hub has given up on the connection: later pushes are refused.
    closed: bool,
    /// Why, when it is not the usual full queue (see [`Outbox::close_because`]).
    reason: Option<&'static str>,
    /// The connection task holds the socket: it has output of its own or took frames it has not finished writing.
    /// Pushes queue up instead of writing straight to the socket.
    held: bool,
    /// The transport's writer, while one is attached that can write without waiting.
    direct: Option<Box<dyn Direct>>,
    /// The rest of a frame that a direct write put on the socket only in part; it goes before anything else.
    rest: Vec<u8>,
    /// When the hub last pushed a frame: a connection that gets frames more often than [`DIRECT_MIN_INTERVAL`] has
    /// them queued, so that its task writes several at a time.
    last_push: Option<Instant>,
}

/// Writes a frame to a connection's socket without waiting: the fast path of a push to a connection that has nothing
/// queued and nothing in flight (see the module docs). A transport that can write without waiting offers one; the
/// frame's payload comes encoded by the session's protocol, the transport frames it.
pub trait Direct: Send + Sync + std::fmt::Debug {
    /// Tries to put the whole frame on the socket now.
    fn try_send(&self, payload: &Bytes) -> Sent;
}

/// What became of a direct write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// All of it.
    All,
    /// Only the start: these are the rest of the encoded frame, which must go before any other byte.
    Part(Vec<u8>),
    /// Nothing (the socket is full, or failed): the frame is queued for the task, which finds out which.
    Nothing,
}

/// What the connection task finds when it polls its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Frames were moved out, to be written.
    Frames,
    /// The hub gave up on the connection (its queue overflowed): close it with the slow-consumer code.
    Closed,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Written straight to the socket.
    Sent,
    Queued,
    /// Merged into a pending update of the same row.
    Conflated,
    /// No room and nothing to merge with: the connection cannot keep up.
    Full,
    /// The hub already gave up on this connection (see [`Outbox::close`]).
    Closed,
}

/// The outbound queue of one session.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    capacity: usize,
    /// The session's protocol, which makes the bytes of what leaves the queue.
    encoding: &'static dyn Encoding,
}

fn register(waiting: &mut Option<Waker>, cx: &Context<'_>) {
    match waiting {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        waiting => *waiting = Some(cx.waker().clone()),
    }
}

/// Wakes the connection task, outside the queue's lock.
fn wake(waiting: Option<Waker>) {
    if let Some(waker) = waiting {
        waker.wake();
    }
}

impl Outbox {
    /// A queue of at most `capacity` events, which leave it encoded by `encoding`.
    pub fn new(capacity: usize, encoding: &'static dyn Encoding) -> Arc<Outbox> {
        Arc::new(Outbox { state: Mutex::default(), capacity, encoding })
    }

    /// A queue whose pushes may write straight to the socket through `direct`.
    pub fn with_direct(capacity: usize, encoding: &'static dyn Encoding, direct: Box<dyn Direct>) -> Arc<Outbox> {
        let outbox = Outbox::new(capacity, encoding);
        outbox.attach(direct);
        outbox
    }

    /// Lets pushes write straight to a transport's socket through `direct` from now on.
    pub fn attach(&self, direct: Box<dyn Direct>) {
        self.lock().direct = Some(direct);
    }

    /// For a transport that lets go of the queue while its session lives on (parked until the next connection):
    /// no more direct writes, and `rest` gets the rest of a frame a direct write left, for that transport to finish
    /// or drop with its socket. Queued events stay for whoever takes the queue next.
    pub fn detach(&self, rest: &mut Vec<u8>) {
        let mut state = self.lock();
        state.direct = None;
        state.held = false;
        rest.append(&mut state.rest);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event`, or writes it straight to the socket: when `now` is given (the hub is not backlogged), nothing
    /// is queued or held, and the previous event came at least [`DIRECT_MIN_INTERVAL`] before. A full queue merges
    /// an `updated` event into the pending update of its row (see the module docs) or refuses it.
    pub fn push(&self, event: &Arc<Event>, now: Option<Instant>) -> Push {
        let mut state = self.lock();
        if state.closed {
            return Push::Closed;
        }
        // How long since this connection's previous frame, whichever way it went.
        let quiet = now.is_some_and(|now| {
            let last = state.last_push.replace(now);
            last.is_none_or(|last| now.saturating_duration_since(last) >= DIRECT_MIN_INTERVAL)
        });
        if let Some(socket) = &state.direct
            && quiet
            && !state.held
            && state.queue.is_empty()
        {
            match socket.try_send(&event.bytes(self.encoding)) {
                Sent::All => return Push::Sent,
                Sent::Part(rest) => {
                    state.rest = rest;
                    state.held = true;
                    let waiting = state.waiting.take();
                    drop(state);
                    wake(waiting);
                    return Push::Sent;
                }
                Sent::Nothing => {}
            }
        }
        if state.queue.len() < self.capacity {
            state.queue.push_back(event.clone());
            let waiting = state.waiting.take();
            drop(state);
            wake(waiting);
            return Push::Queued;
        }
        let EventBody::Row { action: Action::Updated, .. } = event.body else { return Push::Full };
        let row = event.row_key();
        // Only the latest pending event of this row may absorb the new one; merging past a `deleted` or `created`
        // would reorder them.
        let Some(at) = state.queue.iter().rposition(|e| e.row_key() == row) else { return Push::Full };
        let Some(merged) = state.queue[at].merge_update(event) else { return Push::Full };
        state.queue.remove(at);
        state.queue.push_back(Arc::new(merged));
        state.conflated += 1;
        let waiting = state.waiting.take();
        drop(state);
        wake(waiting);
        Push::Conflated
    }

    /// For a connection task with nothing left to write: moves every queued frame into `out` (and into `rest` the rest
    /// of a frame a direct write left), holding the queue until the task comes back for more; or tells that the queue
    /// is closed; or, when there is neither, releases the queue to direct writes and registers the task to be woken
    /// by the next queued push or by [`Outbox::close`]. A poll function rather than a future, so that the connection
    /// task's loop keeps no future per wake-up, and the one check covers the hub giving up too.
    pub fn poll_batch(&self, cx: &mut Context<'_>, out: &mut Vec<Bytes>, rest: &mut Vec<u8>) -> Poll<Batch> {
        let mut state = self.lock();
        if state.closed {
            // Even then the rest of a torn frame must go out, or the close frame would land inside it.
            rest.append(&mut state.rest);
            return Poll::Ready(Batch::Closed);
        }
        if state.queue.is_empty() && state.rest.is_empty() {
            state.held = false;
            register(&mut state.waiting, cx);
            return Poll::Pending;
        }
        state.held = true;
        rest.append(&mut state.rest);
        out.extend(state.queue.drain(..).map(|e| e.bytes(self.encoding)));
        Poll::Ready(Batch::Frames)
    }

    /// For a connection task that is ending: refuses every later push (so nothing more is written to the socket,
    /// directly or not) and moves into `rest` the rest of a frame a direct write left, which must precede the close
    /// frame.
    pub fn close_for_writer(&self, rest: &mut Vec<u8>) {
        let mut state = self.lock();
        state.closed = true;
        rest.append(&mut state.rest);
    }

    /// Holds the queue for the connection task, which is about to write bytes of its own: later pushes queue up
    /// until its next [`Outbox::poll_batch`].
    pub fn hold(&self) {
        self.lock().held = true;
    }

    /// Ready once the queue is closed; for a task that is busy writing and not draining.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.closed {
            return Poll::Ready(());
        }
        register(&mut state.waiting, cx);
        Poll::Pending
    }

    /// Refuses every later push (they return [`Push::Closed`]) and wakes the connection task, which then closes
    /// the socket: the hub calls this when it gives up on the connection or forgets it, so deliveries that still
    /// list the connection skip it.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let waiting = state.waiting.take();
        drop(state);
        wake(waiting);
    }

    /// Like [`Outbox::close`], with the reason the connection's close frame gives instead of the full queue's.
    pub fn close_because(&self, reason: &'static str) {
        self.lock().reason = Some(reason);
        self.close();
    }

    /// The reason given to [`Outbox::close_because`], if any.
    pub fn close_reason(&self) -> Option<&'static str> {
        self.lock().reason
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Every queued event, encoded, without waiting.
    pub fn try_drain(&self) -> Vec<Bytes> {
        self.lock().queue.drain(..).map(|e| e.bytes(self.encoding)).collect()
    }

    /// How many updates were merged away so far.
    pub fn conflated(&self) -> u64 {
        self.lock().conflated
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use serde_json::{Value as Json, json};

    use super::*;

    /// A clock that moves on past the direct-write interval at every push, so that each may write directly.
    fn now() -> Option<Instant> {
        use std::sync::atomic::AtomicU64;
        static TICKS: AtomicU64 = AtomicU64::new(1);
        let base = *BASE.get_or_init(Instant::now);
        Some(base + DIRECT_MIN_INTERVAL * TICKS.fetch_add(1, Ordering::Relaxed) as u32)
    }

    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    impl Outbox {
        fn new_plain(capacity: usize) -> Arc<Outbox> {
            Outbox::new(capacity, &Plain)
        }

        fn with_direct_plain(capacity: usize, direct: Box<dyn Direct>) -> Arc<Outbox> {
            Outbox::with_direct(capacity, &Plain, direct)
        }
    }

    /// Row events as the native protocol's JSON; a message whose data is a string as that string's bytes, so that
    /// what a socket took reads as the frames pushed.
    #[derive(Debug)]
    struct Plain;

    impl Encoding for Plain {
        fn slot(&self) -> usize {
            0
        }

        fn encode(&self, event: &Event) -> Bytes {
            match &event.body {
                EventBody::Message { data } => Bytes::from(data.as_str().unwrap_or_default().to_owned()),
                EventBody::Row { .. } | EventBody::Presence { .. } => crate::event::TestEncoding.encode(event),
            }
        }
    }

    fn update(outbox: &Outbox, id: i64, data: Json, offset: u64) -> Push {
        let data = data.as_object().unwrap().clone();
        outbox.push(&Arc::new(Event::row(Arc::from("c"), Action::Updated, id, data, offset)), now())
    }

    /// A plain message whose frame is `text`.
    fn frame(text: &str) -> Arc<Event> {
        Arc::new(Event::message(Arc::from("c"), Arc::new(Json::String(text.to_owned()))))
    }

    fn drained(outbox: &Outbox) -> Vec<Json> {
        outbox.try_drain().iter().map(|f| serde_json::from_slice::<Json>(f).unwrap()).collect()
    }

    #[test]
    fn a_full_queue_merges_updates_of_one_row_and_keeps_offsets_in_order() {
        let outbox = Outbox::new_plain(3);
        assert_eq!(update(&outbox, 1, json!({"id": 1, "text": "a"}), 1), Push::Queued);
        assert_eq!(update(&outbox, 2, json!({"id": 2, "done": true}), 2), Push::Queued);
        assert_eq!(update(&outbox, 1, json!({"id": 1, "done": true}), 3), Push::Queued);
        // Full now: the next update of row 1 merges with its latest pending update and moves to the back.
        assert_eq!(update(&outbox, 1, json!({"id": 1, "text": "b"}), 4), Push::Conflated);
        // Row 3 has nothing pending to merge with.
        assert_eq!(update(&outbox, 3, json!({"id": 3, "text": "x"}), 5), Push::Full);
        let frames = drained(&outbox);
        let summary: Vec<(i64, u64)> =
            frames.iter().map(|f| (f["data"]["id"].as_i64().unwrap(), f["offset"].as_u64().unwrap())).collect();
        assert_eq!(summary, vec![(1, 1), (2, 2), (1, 4)]);
        assert_eq!(frames[2]["data"], json!({"id": 1, "done": true, "text": "b"}));
        assert_eq!(outbox.conflated(), 1);
    }

    /// Counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_task_is_woken_once_per_burst_and_by_close() {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let outbox = Outbox::new_plain(8);
        let mut out = Vec::new();
        let mut rest = Vec::new();
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Pending);
        for _ in 0..3 {
            assert_eq!(outbox.push(&frame("{}"), now()), Push::Queued);
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the first push wakes the task, the others find it awake");
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Ready(Batch::Frames));
        assert_eq!(out.len(), 3);
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Pending);
        outbox.close();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "closing wakes the waiting task");
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Ready(Batch::Closed));
        assert_eq!(outbox.poll_closed(&mut cx), Poll::Ready(()));
        assert_eq!(outbox.push(&frame("{}"), now()), Push::Closed);
    }

    #[test]
    fn an_update_never_merges_past_a_pending_create_or_delete_of_its_row() {
        let outbox = Outbox::new_plain(2);
        assert_eq!(update(&outbox, 1, json!({"id": 1, "text": "a"}), 1), Push::Queued);
        let deleted = Event::row(Arc::from("c"), Action::Deleted, 1, json!({"id": 1}).as_object().unwrap().clone(), 2);
        assert_eq!(outbox.push(&Arc::new(deleted), now()), Push::Queued);
        assert_eq!(update(&outbox, 1, json!({"id": 1, "text": "b"}), 3), Push::Full);
    }

    /// A socket in memory: takes `room` bytes in all, then nothing more.
    #[derive(Debug)]
    struct Socket {
        room: Mutex<usize>,
        written: Mutex<Vec<u8>>,
    }

    impl Direct for Arc<Socket> {
        fn try_send(&self, frame: &Bytes) -> Sent {
            let mut room = self.room.lock().unwrap();
            let n = frame.len().min(*room);
            *room -= n;
            self.written.lock().unwrap().extend_from_slice(&frame[..n]);
            match n {
                0 => Sent::Nothing,
                n if n == frame.len() => Sent::All,
                n => Sent::Part(frame[n..].to_vec()),
            }
        }
    }

    fn socket(room: usize) -> Arc<Socket> {
        Arc::new(Socket { room: Mutex::new(room), written: Mutex::default() })
    }

    #[test]
    fn an_idle_connection_gets_frames_straight_on_its_socket_and_a_holding_task_gets_them_queued() {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let sock = socket(1000);
        let outbox = Outbox::with_direct_plain(8, Box::new(sock.clone()));
        let (mut out, mut rest) = (Vec::new(), Vec::new());
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Pending);
        assert_eq!(outbox.push(&frame("a"), now()), Push::Sent);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "a direct write wakes nobody");
        // The task is about to write a reply: pushes queue up behind it, in order.
        outbox.hold();
        assert_eq!(outbox.push(&frame("b"), now()), Push::Queued);
        assert_eq!(outbox.push(&frame("c"), now()), Push::Queued);
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Ready(Batch::Frames));
        assert_eq!(out, [Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        // Until the task has written the batch and comes back, the queue stays held.
        assert_eq!(outbox.push(&frame("d"), now()), Push::Queued);
        out.clear();
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Ready(Batch::Frames));
        out.clear();
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Pending);
        assert_eq!(outbox.push(&frame("e"), now()), Push::Sent);
        assert_eq!(*sock.written.lock().unwrap(), b"ae");
        outbox.close();
        assert_eq!(outbox.push(&frame("f"), now()), Push::Closed);
        assert_eq!(*sock.written.lock().unwrap(), b"ae", "nothing is written once the queue is closed");
    }

    #[test]
    fn a_detached_queue_keeps_its_events_for_the_next_transport() {
        let mut cx = Context::from_waker(Waker::noop());
        let first = socket(1000);
        let outbox = Outbox::with_direct_plain(8, Box::new(first.clone()));
        assert_eq!(outbox.poll_batch(&mut cx, &mut Vec::new(), &mut Vec::new()), Poll::Pending);
        assert_eq!(outbox.push(&frame("a"), now()), Push::Sent);
        let mut rest = Vec::new();
        outbox.detach(&mut rest);
        assert!(rest.is_empty());
        // Between transports, events wait in the queue.
        assert_eq!(outbox.push(&frame("b"), now()), Push::Queued);
        let second = socket(1000);
        outbox.attach(Box::new(second.clone()));
        let mut out = Vec::new();
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut Vec::new()), Poll::Ready(Batch::Frames));
        assert_eq!(out, [Bytes::from_static(b"b")]);
        assert_eq!(outbox.poll_batch(&mut cx, &mut Vec::new(), &mut Vec::new()), Poll::Pending);
        assert_eq!(outbox.push(&frame("c"), now()), Push::Sent);
        assert_eq!((&first.written.lock().unwrap()[..], &second.written.lock().unwrap()[..]), (&b"a"[..], &b"c"[..]));
    }

    #[test]
    fn the_rest_of_a_frame_the_socket_took_in_part_goes_before_anything_queued_after_it() {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let sock = socket(4);
        let outbox = Outbox::with_direct_plain(8, Box::new(sock.clone()));
        let (mut out, mut rest) = (Vec::new(), Vec::new());
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Pending);
        assert_eq!(outbox.push(&frame("abcdef"), now()), Push::Sent);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task is woken to write the rest");
        // The socket is full now and the queue is held: the next frame waits behind the rest.
        assert_eq!(outbox.push(&frame("gh"), now()), Push::Queued);
        assert_eq!(outbox.poll_batch(&mut cx, &mut out, &mut rest), Poll::Ready(Batch::Frames));
        assert_eq!((rest.as_slice(), out.as_slice()), (&b"ef"[..], &[Bytes::from_static(b"gh")][..]));
        // A socket with no room at all: the frame is queued and the task woken to wait for the socket.
        let full = Outbox::with_direct_plain(8, Box::new(socket(0)));
        assert_eq!(full.poll_batch(&mut cx, &mut Vec::new(), &mut Vec::new()), Poll::Pending);
        assert_eq!(full.push(&frame("x"), now()), Push::Queued);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        // When the hub gives up on a connection whose socket took a frame in part, the rest still reaches the
        // task: its close frame must not land inside the torn frame.
        let torn = Outbox::with_direct_plain(1, Box::new(socket(2)));
        assert_eq!(torn.poll_batch(&mut cx, &mut Vec::new(), &mut Vec::new()), Poll::Pending);
        assert_eq!(torn.push(&frame("abc"), now()), Push::Sent);
        torn.close();
        let mut rest = Vec::new();
        assert_eq!(torn.poll_batch(&mut cx, &mut Vec::new(), &mut rest), Poll::Ready(Batch::Closed));
        assert_eq!(rest, b"c");
        let ending = Outbox::with_direct_plain(1, Box::new(socket(2)));
        assert_eq!(ending.poll_batch(&mut cx, &mut Vec::new(), &mut Vec::new()), Poll::Pending);
        assert_eq!(ending.push(&frame("xyz"), now()), Push::Sent);
        let mut rest = Vec::new();
        ending.close_for_writer(&mut rest);
        assert_eq!((rest.as_slice(), ending.push(&frame("!"), now())), (&b"z"[..], Push::Closed));
    }
}
