//! drakon's default store: rows and the change log in one SQLite file.
//!
//! One writer connection behind a mutex commits every write; while it still holds the mutex it hands the committed
//! changes to the sink, so the bus sees changes in commit order. Offsets come from `_drakon_offsets` inside the same
//! transaction, which makes them gap-free and in commit order per model. Reads use a small pool of connections that
//! WAL mode lets run beside the writer. All SQLite calls run on tokio's blocking pool.

mod accounts;
mod log;
mod migrate;
mod rows;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use async_trait::async_trait;
use drakon_core::filter::sql::{Dialect, columns, compile, order_by, quote};
use drakon_core::store::{
    ChangeSink, LogRead, LogRetention, MigrationReport, OrderBy, Page, Store, StoreError, WriteOp,
};
use drakon_core::{Filter, Model, Schema};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::log::Writer;
use crate::rows::{read_row, to_sql};

/// Read connections beside the writer: enough for concurrent `get_list`s on two cores.
const READERS: usize = 4;

/// How long a connection waits on a lock held by another process (e.g. the `sqlite3` shell) before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Mutex<Writer>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    sink: ChangeSink,
    schema: Arc<RwLock<Arc<Schema>>>,
}

/// A rusqlite failure as a store error, by SQLite's result code: a database that stayed busy or locked past
/// [`BUSY_TIMEOUT_MS`] lost to another connection's transaction, and trying again may succeed.
fn db_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Conflict(e.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(db_error)?;
    if !read_only {
        // WAL lets readers run beside the writer; NORMAL sync is durable across process crashes in WAL mode.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_error)?;
    }
    Ok(conn)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`; committed changes go to `sink`.
    pub fn open(path: impl AsRef<Path>, sink: ChangeSink) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, sink, LogRetention::default())
    }

    /// Like [`SqliteStore::open`], with the change log's retention.
    pub fn open_with(
        path: impl AsRef<Path>,
        sink: ChangeSink,
        retention: LogRetention,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = open_connection(&path, false)?;
        migrate::ensure_meta(&conn)?;
        // Publishing starts from now: entries already in the log were published by an earlier run, or had no
        // subscriber to reach.
        let published_seq = log::current_seq(&conn)?;
        let writer = Arc::new(Mutex::new(Writer { conn, published_seq }));
        let readers = (0..READERS).map(|_| open_connection(&path, true).map(Mutex::new)).collect::<Result<_, _>>()?;
        let schema = Arc::new(RwLock::new(Arc::new(Schema::default())));
        log::spawn_tailer(Arc::downgrade(&writer), schema.clone(), sink.clone(), path.clone(), retention);
        Ok(SqliteStore { path, writer, readers: Arc::new(readers), next_reader: AtomicUsize::new(0), sink, schema })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn schema(&self) -> Arc<Schema> {
        self.schema.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with a read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % READERS;
        tokio::task::spawn_blocking(move || f(&lock(&readers[i]))).await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self, schema: &Schema) -> Result<MigrationReport, StoreError> {
        let writer = self.writer.clone();
        let owned = schema.clone();
        let report = tokio::task::spawn_blocking(move || migrate::migrate(&mut lock(&writer).conn, &owned))
            .await
            .map_err(|_| StoreError::Closed)??;
        *self.schema.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(schema.clone());
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
        let model = model.clone();
        let cond = compile(filter, "t", Dialect::Sqlite);
        let order_sql = order_by(&model, order, "t", Dialect::Sqlite);
        self.read(move |conn| {
            // One read transaction: the count, the rows and the offset all see the same committed state.
            let tx = conn.unchecked_transaction().map_err(db_error)?;
            let table = quote(&model.name);
            let params: Vec<_> = cond.params.iter().map(to_sql).collect();
            let log_offset: i64 = tx
                .prepare_cached("SELECT last FROM _drakon_offsets WHERE model = ?1")
                .and_then(|mut s| s.query_row([&model.name], |r| r.get(0)).optional())
                .map_err(db_error)?
                .unwrap_or(0);
            let total: i64 = tx
                .prepare_cached(&format!("SELECT count(*) FROM {table} AS \"t\" WHERE {}", cond.sql))
                .and_then(|mut s| s.query_row(rusqlite::params_from_iter(&params), |r| r.get(0)))
                .map_err(db_error)?;
            let sql = format!(
                "SELECT {} FROM {table} AS \"t\" WHERE {} ORDER BY {order_sql} LIMIT {limit} OFFSET {offset}",
                columns(&model, "t"),
                cond.sql
            );
            let rows = {
                let mut stmt = tx.prepare_cached(&sql).map_err(db_error)?;
                stmt.query_map(rusqlite::params_from_iter(&params), |r| read_row(&model, r))
                    .map_err(db_error)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_error)?
            };
            tx.finish().map_err(db_error)?;
            Ok(Page { rows, total: total as u64, offset: log_offset as u64 })
        })
        .await
    }

    async fn write(&self, op: WriteOp) -> Result<Vec<drakon_core::Change>, StoreError> {
        let writer = self.writer.clone();
        let sink = self.sink.clone();
        let schema = self.schema();
        tokio::task::spawn_blocking(move || write::write(&mut lock(&writer), &schema, &op, &sink))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    async fn log_since(&self, model: &Model, offset: u64, limit: usize) -> Result<LogRead, StoreError> {
        let model = model.clone();
        let schema = self.schema();
        self.read(move |conn| log::model_since(conn, &schema, &model, offset, limit)).await
    }

    async fn watch_reference(&self, model: &str, field: &str) -> Result<(), StoreError> {
        let writer = self.writer.clone();
        let (model, field) = (model.to_owned(), field.to_owned());
        tokio::task::spawn_blocking(move || {
            lock(&writer)
                .conn
                .execute("INSERT OR IGNORE INTO _drakon_watch (model, field) VALUES (?1, ?2)", [&model, &field])
                .map(|_| ())
                .map_err(db_error)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(db_error)).await
    }

    fn accounts(&self) -> Option<&dyn drakon_core::accounts::Accounts> {
        Some(self)
    }
}

#[cfg(test)]
mod tests;
