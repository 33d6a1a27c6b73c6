//! drakon's scale-out store: rows and the change log in PostgreSQL, shared by every node.
//!
//! Log triggers on every model table write each change's entry, with its per-model offset and global sequence
//! number, in the writing transaction, whoever writes (drakon on any node, `psql`, another service); see
//! `migrate` for why offsets are gap-free and in commit order even with concurrent writers. After each of its own
//! commits a node publishes every log entry past its publish cursor to its sink, in sequence order, holding the
//! cursor's mutex so batches reach the sink in order. A listener task on its own connection `LISTEN`s for the
//! triggers' notifications (and looks every second regardless) and publishes the same way: that is how writes
//! from other nodes and programs reach this node's subscribers. Reads use one `REPEATABLE READ` snapshot each.
//!
//! Connections are plain TCP or Unix sockets, or TLS with a verified server certificate when the URL says
//! `sslmode=require` (see `tls`).

mod accounts;
mod listen;
mod log;
mod migrate;
mod pool;
mod rows;
mod tls;
mod write;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use drakon_core::filter::sql::{Dialect, columns, compile, order_by, quote};
use drakon_core::store::{
    Change, ChangeSink, LogRead, LogRetention, MigrationReport, OrderBy, Page, Store, StoreError, WriteOp,
};
use drakon_core::{Filter, Model, Schema};
use tokio_postgres::error::SqlState;

use crate::pool::{Conn, Pool};
use crate::rows::{params, read_row, refs};

/// Connections per node for writes and reads. Writes commit one at a time across the cluster (they take the log's
/// lock), so a few connections serve them; the rest let `get_list`s and replays run beside a write.
const POOL_SIZE: usize = 8;

/// How long opening a connection may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at a write that lost a deadlock to another writer (e.g. a `psql` session updating the same rows)
/// before the error reaches the client.
const WRITE_ATTEMPTS: usize = 3;

/// Snapshot reads: the count, the rows and the log offset all see the same committed state.
const SNAPSHOT: &str = "ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Whether the bus between nodes currently takes this node's messages.
pub type BusHealthy = Arc<dyn Fn() -> bool + Send + Sync>;

/// [`BusHealthy`], printable.
struct Health(BusHealthy);

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Health({})", (self.0)())
    }
}

/// The PostgreSQL store.
#[derive(Debug)]
pub struct PgStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    sink: ChangeSink,
    schema: RwLock<Arc<Schema>>,
    /// This node's publish cursor: the last global sequence number handed to the sink.
    published: tokio::sync::Mutex<log::Cursor>,
    /// With a bus between nodes (`connect_relay`), only the node holding the relay lock publishes, to the bus;
    /// this says whether the bus takes this node's messages.
    relay: Option<Health>,
    /// Whether this node holds the relay lock now (always false without `relay`).
    relaying: std::sync::atomic::AtomicBool,
    /// This node's id in `_drakon_nodes`.
    node: i64,
    /// References this node watches, to register again if the cluster took the node for dead.
    watched: Mutex<BTreeSet<(String, String)>>,
    retention: LogRetention,
}

/// A tokio-postgres failure as a store error, by its SQLSTATE code (the server's text is for people): a deadlock
/// or serialization failure rolled the transaction back and may succeed if run again; an unreachable server is
/// [`StoreError::Unavailable`].
fn db_error(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(&SqlState::T_R_DEADLOCK_DETECTED) => StoreError::Deadlock(describe(&e)),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE) => StoreError::Conflict(describe(&e)),
        _ if unreachable(&e) => StoreError::Unavailable(describe(&e)),
        _ => StoreError::Database(describe(&e)),
    }
}

/// Whether `e` says the server cannot be reached or is going away, rather than that a statement failed: a closed or
/// broken connection, a failed connect, a timeout, or the server's own "shutting down / starting up / too many
/// connections" (SQLSTATE class 08, 57P01–57P03, 53300).
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    e.to_string().contains("timeout")
}

/// The server's message with its detail and hint, or the client-side cause (tokio-postgres's own `Display` says
/// only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            for extra in [db.detail(), db.hint()].into_iter().flatten() {
                text.push_str("; ");
                text.push_str(extra);
            }
            text
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Rolls back when `done` failed, so the connection goes back to the pool clean.
async fn rolled_back<T>(conn: &mut Conn, done: Result<T, StoreError>) -> Result<T, StoreError> {
    if done.is_err() {
        conn.rollback().await;
    }
    done
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db` or `host=… dbname=…`),
    /// creates drakon's own tables if missing, registers this node, and starts the listener that publishes writes
    /// made elsewhere. Committed changes go to `sink`, starting with those committed after this call. Must run
    /// inside a tokio runtime.
    pub async fn connect(url: &str, sink: ChangeSink, retention: LogRetention) -> Result<PgStore, StoreError> {
        PgStore::open(url, sink, retention, None).await
    }

    /// Like [`PgStore::connect`], for nodes that share a bus (Redis): `sink` is the bus, and the nodes elect one
    /// of them, the relay, to publish the change log to it. The relay holds a session advisory lock on its
    /// listening connection; when it dies or loses the database, the lock goes with the connection and another
    /// node takes over from the cursor the relay recorded (publishing a few entries twice rather than skipping
    /// any: receivers drop duplicates by offset). Every second the relay also publishes each model's head, so a
    /// node that missed a message on the bus notices and reads it from the log.
    ///
    /// `bus_healthy` says whether the bus currently takes this node's messages: a relay that cannot reach the bus
    /// for a few seconds hands the relay over (others may still reach it) and stays out of the election a while.
    pub async fn connect_relay(
        url: &str,
        bus: ChangeSink,
        retention: LogRetention,
        bus_healthy: BusHealthy,
    ) -> Result<PgStore, StoreError> {
        PgStore::open(url, bus, retention, Some(bus_healthy)).await
    }

    async fn open(
        url: &str,
        sink: ChangeSink,
        retention: LogRetention,
        relay: Option<BusHealthy>,
    ) -> Result<PgStore, StoreError> {
        let mut target = tls::Target::parse(url)?;
        if target.config.get_connect_timeout().is_none() {
            target.config.connect_timeout(CONNECT_TIMEOUT);
        }
        if target.config.get_application_name().is_none() {
            target.config.application_name("drakon");
        }
        let pool = Pool::new(target, POOL_SIZE);
        let (node, published) = {
            let mut conn = pool.get().await.map_err(|e| cannot_connect(pool.target(), e))?;
            migrate::ensure_meta(&mut conn).await?;
            // Publishing starts from now: earlier entries were published by the nodes that were running then.
            let published = log::current_seq(&mut conn).await?;
            (log::register_node(&mut conn, None, published).await?, published)
        };
        let inner = Arc::new(Inner {
            pool,
            sink,
            schema: RwLock::new(Arc::new(Schema::default())),
            published: tokio::sync::Mutex::new(log::Cursor { seq: published, heads: Default::default() }),
            relay: relay.map(Health),
            relaying: std::sync::atomic::AtomicBool::new(false),
            node,
            watched: Mutex::new(BTreeSet::new()),
            retention,
        });
        listen::spawn(Arc::downgrade(&inner));
        Ok(PgStore { inner })
    }
}

/// A connection failure at start, naming the server but not the password.
fn cannot_connect(target: &tls::Target, e: tokio_postgres::Error) -> StoreError {
    let config = &target.config;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    StoreError::Database(format!(
        "cannot connect to PostgreSQL at {} port {} (database {}, user {}{}): {}",
        if hosts.is_empty() { "localhost".to_owned() } else { hosts.join(",") },
        if ports.is_empty() { "5432".to_owned() } else { ports.join(",") },
        config.get_dbname().unwrap_or("(the user's)"),
        config.get_user().unwrap_or("(the OS user's)"),
        if target.uses_tls() { ", over TLS" } else { "" },
        describe(&e)
    ))
}

impl Inner {
    fn schema(&self) -> Arc<Schema> {
        self.schema.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn conn(&self) -> Result<pool::Pooled<'_>, StoreError> {
        self.pool.get().await.map_err(db_error)
    }

    /// Whether this node publishes the log: always without a shared bus, only as the relay with one.
    fn publishes(&self) -> bool {
        self.relay.is_none() || self.relaying.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Publishes every entry past this node's cursor, on `conn`.
    async fn publish(&self, conn: &mut Conn) -> Result<usize, StoreError> {
        let mut cursor = self.published.lock().await;
        log::publish_pending(conn, &self.schema(), &self.sink, &mut cursor).await
    }

    /// Adds this node's watch on `model.field` (its node row must exist).
    async fn insert_watch(&self, conn: &mut Conn, model: &str, field: &str) -> Result<(), tokio_postgres::Error> {
        conn.execute(
            "INSERT INTO _drakon_watch (model, field, node) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&model, &field, &self.node],
        )
        .await
        .map(|_| ())
    }

    /// Registers this node again, with its watches, after another node expired it.
    async fn reregister(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let published = self.published.lock().await.seq;
        log::register_node(conn, Some(self.node), published).await?;
        let watched: Vec<(String, String)> = lock(&self.watched).iter().cloned().collect();
        for (model, field) in watched {
            self.insert_watch(conn, &model, &field).await.map_err(db_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self, schema: &Schema) -> Result<MigrationReport, StoreError> {
        let mut conn = self.inner.conn().await?;
        // DDL can still meet writers of other programs (a new column, new triggers): a deadlock there is a reason
        // to try again, not a config error.
        let mut attempt = 1;
        let report = loop {
            match migrate::migrate(&mut conn, schema).await {
                Err(e @ StoreError::Deadlock(_)) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "the migration lost a deadlock to a writer; retrying");
                    attempt += 1;
                }
                done => break done?,
            }
        };
        *self.inner.schema.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(schema.clone());
        Ok(report)
    }

    async fn list(
        &self,
        model: &Model,
        filter: &Filter,
        order: &[OrderBy],
        limit: u64,
        offset: u64,
    ) -> Result<Page, StoreError> {
        let cond = compile(filter, "t", Dialect::Postgres);
        let order_sql = order_by(model, order, "t", Dialect::Postgres);
        let table = quote(&model.name);
        let bound = params(&cond.params);
        let bound = refs(&bound);
        let mut conn = self.inner.conn().await?;
        conn.begin(SNAPSHOT).await.map_err(db_error)?;
        let read = async {
            let log_offset: i64 = conn.query_one(log::MODEL_HEAD, &[&model.name]).await?.get(0);
            let total: i64 = conn
                .query_one(&format!("SELECT count(*) FROM {table} AS \"t\" WHERE {}", cond.sql), &bound)
                .await?
                .get(0);
            let sql = format!(
                "SELECT {} FROM {table} AS \"t\" WHERE {} ORDER BY {order_sql} LIMIT {} OFFSET {}",
                columns(model, "t"),
                cond.sql,
                limit.min(i64::MAX as u64),
                offset.min(i64::MAX as u64),
            );
            let rows =
                conn.query(&sql, &bound).await?.iter().map(|r| read_row(model, r, 0)).collect::<Result<Vec<_>, _>>()?;
            conn.commit().await?;
            Ok(Page { rows, total: total as u64, offset: log_offset as u64 })
        }
        .await
        .map_err(db_error);
        rolled_back(&mut conn, read).await
    }

    async fn write(&self, op: WriteOp) -> Result<Vec<Change>, StoreError> {
        let schema = self.inner.schema();
        let mut conn = self.inner.conn().await?;
        let mut attempt = 1;
        let changes = loop {
            match write::write(&mut conn, &schema, &op).await {
                Ok(changes) => break changes,
                Err(e) if e.is_retryable() && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "a write lost to a concurrent writer; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        if !changes.is_empty() && self.inner.publishes() {
            // The write has committed whatever happens here: a failure to read the log back is the listener's to
            // repair on its next pass, not the client's error.
            if let Err(e) = self.inner.publish(&mut conn).await {
                tracing::warn!(error = %e, "could not publish a committed write; the listener will");
            }
        }
        Ok(changes)
    }

    async fn log_since(&self, model: &Model, offset: u64, limit: usize) -> Result<LogRead, StoreError> {
        let mut conn = self.inner.conn().await?;
        conn.begin(SNAPSHOT).await.map_err(db_error)?;
        let read = log::model_since(&mut conn, &self.inner.schema(), model, offset, limit).await;
        let read = match read {
            Ok(read) => conn.commit().await.map(|()| read).map_err(db_error),
            Err(e) => Err(e),
        };
        rolled_back(&mut conn, read).await
    }

    async fn watch_reference(&self, model: &str, field: &str) -> Result<(), StoreError> {
        lock(&self.inner.watched).insert((model.to_owned(), field.to_owned()));
        let mut conn = self.inner.conn().await?;
        match self.inner.insert_watch(&mut conn, model, field).await {
            Ok(()) => Ok(()),
            // The node's row is gone: another node took this one for dead. Come back, watches and all.
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => self.inner.reregister(&mut conn).await,
            Err(e) => Err(db_error(e)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.inner.conn().await?;
        conn.query_one("SELECT 1", &[]).await.map(|_| ()).map_err(db_error)
    }

    fn accounts(&self) -> Option<&dyn drakon_core::accounts::Accounts> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use drakon_core::StoreError;
    use drakon_testkit::postgres::TestPg;

    use super::db_error;

    /// The two ways PostgreSQL rolls a transaction back for the sake of a concurrent one are told apart by their
    /// SQLSTATE, on a real server, and both say that trying again may succeed (the store's writes do).
    #[tokio::test]
    async fn deadlocks_and_serialization_failures_are_retryable_by_their_code() {
        let pg = TestPg::start();
        let (a, b) = (pg.client("postgres").await, pg.client("postgres").await);
        a.batch_execute("CREATE TABLE t (id int PRIMARY KEY, n int); INSERT INTO t VALUES (1, 0), (2, 0)")
            .await
            .unwrap();

        a.batch_execute("BEGIN; UPDATE t SET n = 1 WHERE id = 1").await.unwrap();
        b.batch_execute("BEGIN; UPDATE t SET n = 1 WHERE id = 2").await.unwrap();
        let crossed = tokio::join!(
            a.batch_execute("UPDATE t SET n = 2 WHERE id = 2"),
            b.batch_execute("UPDATE t SET n = 2 WHERE id = 1")
        );
        let lost = crossed.0.err().or(crossed.1.err()).expect("one of the two lost the deadlock");
        let err = db_error(lost);
        assert!(matches!(err, StoreError::Deadlock(_)) && err.is_retryable(), "{err:?}");
        for client in [&a, &b] {
            client.batch_execute("ROLLBACK").await.unwrap();
        }

        a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT n FROM t WHERE id = 1").await.unwrap();
        b.batch_execute("UPDATE t SET n = 3 WHERE id = 1").await.unwrap();
        let err = db_error(a.batch_execute("UPDATE t SET n = 4 WHERE id = 1").await.unwrap_err());
        assert!(matches!(err, StoreError::Conflict(_)) && err.is_retryable(), "{err:?}");
        a.batch_execute("ROLLBACK").await.unwrap();

        let err = db_error(a.batch_execute("SELECT * FROM missing").await.unwrap_err());
        assert!(matches!(err, StoreError::Database(_)) && !err.is_retryable(), "{err:?}");
    }
}
