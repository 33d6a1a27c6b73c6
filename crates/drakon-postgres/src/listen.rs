//! The listener: how writes made by other nodes and programs reach this node's subscribers.
//!
//! One task per store, on a connection of its own, `LISTEN`s on the channel the log triggers notify at commit.
//! Each notification carries the global sequence number its statement reached; when that is past this node's
//! cursor, or on a fallback tick in case a notification was lost (e.g. while reconnecting), the task publishes
//! every entry past the cursor, exactly as a write does after its commit. The same task keeps the node's
//! heartbeat and trims the log. It ends, removing the node's row, once the store is dropped or the sink closed.
//!
//! With a shared bus (`PgStore::connect_relay`) the task also runs the relay election: it tries the relay lock on
//! every tick, and only while it holds it does it publish (to the bus), record the relay's cursor and announce the
//! heads. A lost connection ends the term: the lock is released with the session, and this node stops
//! publishing until it wins the lock again.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use drakon_core::store::StoreError;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::migrate::{CHANNEL, RELAY_LOCK};
use crate::pool::Conn;
use crate::tls::Target;
use crate::{Health, Inner, db_error, log};

/// How often the listener looks even without a notification: notifications sent while its connection was down are
/// lost, and this bounds the delay (invariant: outside writes reach subscribers within a second).
const FALLBACK_TICK: Duration = Duration::from_secs(1);

/// How often the log is trimmed to its retention.
const TRIM_PERIOD: Duration = Duration::from_secs(1);

/// How often the node records that it is alive, well inside [`log::NODE_EXPIRY`].
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(5);

/// How long the relay keeps the lock while the bus refuses its messages before it hands the relay to another node.
const RELAY_STEP_DOWN: Duration = Duration::from_secs(5);

/// How long a node that handed the relay over stays out of the election, so that another node can win it.
const RELAY_STAY_OUT: Duration = Duration::from_secs(10);

/// Wait before connecting again after the listening connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

pub fn spawn(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(target) = inner.upgrade().map(|i| i.pool.target().clone()) else { return };
            let result = listen(&inner, &target).await;
            // Whatever ended the connection ended the relay lock with it.
            if let Some(inner) = inner.upgrade()
                && inner.relaying.swap(false, Ordering::AcqRel)
            {
                tracing::warn!("this node no longer relays the change log");
            }
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection that listens for changes; reconnecting");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
    });
}

/// Aborts the task driving the listening connection when the listener stops using it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens until the store is gone (`Ok`) or the connection fails (`Err`).
async fn listen(weak: &Weak<Inner>, target: &Target) -> Result<(), StoreError> {
    let Some(node) = weak.upgrade().map(|inner| inner.node) else { return Ok(()) };
    let (client, mut messages) = crate::tls::connect(target).await.map_err(db_error)?;
    // The highest sequence number notified so far; a watch keeps only the latest, so a burst of notifications
    // costs no memory.
    let (notified_tx, mut notified) = watch::channel(0u64);
    let _driver = AbortOnDrop(tokio::spawn(async move {
        while let Some(message) = messages.recv().await {
            if let AsyncMessage::Notification(n) = message {
                let seq = n.payload().parse().unwrap_or(u64::MAX);
                notified_tx.send_modify(|last| *last = (*last).max(seq));
            }
        }
        // Dropping `notified_tx` tells the listener.
    }));
    let mut conn = Conn::new(client);
    conn.batch(&format!("LISTEN {CHANNEL}")).await.map_err(db_error)?;
    let mut tick = tokio::time::interval(FALLBACK_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_trim = Instant::now();
    let mut last_heartbeat = Instant::now();
    let mut notified_only = false;
    // Since when the bus has refused this relay's messages, and until when this node stays out of the election
    // after handing the relay over for that reason.
    let mut bus_failing_since: Option<Instant> = None;
    let mut stay_out_until = Instant::now();
    loop {
        {
            let Some(inner) = weak.upgrade() else { return forget_node(&mut conn, node).await };
            if inner.sink.is_closed() {
                return forget_node(&mut conn, node).await;
            }
            let hint = *notified.borrow_and_update();
            // The election runs on ticks: a notification need not cost every other node a lock query.
            if let Some(Health(bus_healthy)) = &inner.relay
                && !notified_only
            {
                if !inner.relaying.load(Ordering::Acquire) {
                    if Instant::now() >= stay_out_until {
                        take_relay(&inner, &mut conn).await?;
                    }
                } else if bus_healthy() {
                    bus_failing_since = None;
                } else if bus_failing_since.get_or_insert_with(Instant::now).elapsed() >= RELAY_STEP_DOWN {
                    // This node cannot reach the bus, though others may: let one of them relay.
                    step_down(&inner, &mut conn).await?;
                    bus_failing_since = None;
                    stay_out_until = Instant::now() + RELAY_STAY_OUT;
                }
            }
            let publishes = inner.publishes();
            // The first pass after (re)connecting always looks: entries may have committed before LISTEN.
            if publishes && (!notified_only || hint > inner.published.lock().await.seq) {
                inner.publish(&mut conn).await?;
            }
            if !publishes && !notified_only {
                // A node that does not relay holds nothing back: its cursor follows the log's head, for the
                // heartbeat and trimming (and is replaced when it becomes the relay).
                inner.published.lock().await.seq = log::current_seq(&mut conn).await?;
            }
            if publishes && inner.relay.is_some() && !notified_only {
                // Each tick: the heads, so that a node that missed a message notices, and the cursor, so that the
                // next relay starts where this one stopped. A full bus skips the heads; the next tick sends them.
                let cursor = inner.published.lock().await;
                let _ = inner.sink.try_send(cursor.heads_message());
                log::save_relay_cursor(&mut conn, cursor.seq).await?;
            }
            if last_heartbeat.elapsed() >= HEARTBEAT_PERIOD {
                last_heartbeat = Instant::now();
                let published = inner.published.lock().await.seq;
                if !log::heartbeat(&mut conn, node, published).await? {
                    tracing::warn!(node, "this node was taken for dead; registering it again");
                    inner.reregister(&mut conn).await?;
                }
                log::expire_nodes(&mut conn).await?;
            }
            if last_trim.elapsed() >= TRIM_PERIOD {
                last_trim = Instant::now();
                let published = inner.published.lock().await.seq;
                match log::trim(&mut conn, &inner.schema(), inner.retention, node, published).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "trimmed the change log"),
                    Err(e) => tracing::warn!(error = %e, "could not trim the change log"),
                }
            }
        }
        tokio::select! {
            changed = notified.changed() => {
                if changed.is_err() {
                    return Err(StoreError::Database("the listening connection closed".into()));
                }
                notified_only = true;
            }
            _ = tick.tick() => notified_only = false,
        }
    }
}

/// Tries to become the relay; on success, continues from the previous relay's cursor (or from the log's head,
/// on a database that never had one).
async fn take_relay(inner: &Inner, conn: &mut Conn) -> Result<(), StoreError> {
    let won: bool = conn.query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK]).await.map_err(db_error)?.get(0);
    if !won {
        return Ok(());
    }
    let head = log::current_seq(conn).await?;
    let from = log::relay_cursor(conn).await?.filter(|&seq| seq <= head).unwrap_or(head);
    *inner.published.lock().await = log::Cursor::at(conn, from).await?;
    inner.relaying.store(true, Ordering::Release);
    tracing::info!(from, head, "this node relays the change log to the bus");
    Ok(())
}

/// Gives the relay up: releases the lock so another node takes it, from the cursor recorded last.
async fn step_down(inner: &Inner, conn: &mut Conn) -> Result<(), StoreError> {
    let seq = inner.published.lock().await.seq;
    log::save_relay_cursor(conn, seq).await?;
    inner.relaying.store(false, Ordering::Release);
    conn.query_one("SELECT pg_advisory_unlock($1)", &[&RELAY_LOCK]).await.map_err(db_error)?;
    tracing::warn!(
        stay_out = ?RELAY_STAY_OUT,
        "the bus has refused this node's messages for {RELAY_STEP_DOWN:?}: handing the relay to another node"
    );
    Ok(())
}

/// This node stops publishing: its cursor must stop holding back trimming, and its watches go with it.
async fn forget_node(conn: &mut Conn, node: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM _drakon_nodes WHERE id = $1", &[&node]).await.map(|_| ()).map_err(db_error)
}
