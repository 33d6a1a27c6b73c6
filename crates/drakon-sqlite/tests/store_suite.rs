//! The store conformance suite (`drakon_testkit::store_suite`) against SQLite: a fresh database file per test,
//! further stores on the same file standing for other processes, and rusqlite connections writing from outside
//! drakon, as the `sqlite3` shell would.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use drakon_core::store::{ChangeSink, LogRetention, Store};
use drakon_sqlite::SqliteStore;
use drakon_testkit::store_suite::{Outside, StoreHarness};

#[derive(Debug)]
struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn new() -> SqliteHarness {
        SqliteHarness { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("t.db")
    }
}

#[async_trait]
impl StoreHarness for SqliteHarness {
    async fn open(&self, sink: ChangeSink, retention: LogRetention) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_with(self.path(), sink, retention).expect("open the store"))
    }

    async fn outside(&self) -> Box<dyn Outside> {
        let conn = rusqlite::Connection::open(self.path()).expect("open the database");
        Box::new(Shell(Arc::new(Mutex::new(conn))))
    }

    fn refused_creates_use_up_ids(&self) -> bool {
        false
    }
}

/// A connection of its own, used on the blocking pool like the store's.
#[derive(Debug)]
struct Shell(Arc<Mutex<rusqlite::Connection>>);

impl Shell {
    async fn run<T: Send + 'static>(&self, sql: &str, f: fn(&rusqlite::Connection, &str) -> rusqlite::Result<T>) -> T {
        let (conn, sql) = (self.0.clone(), sql.to_owned());
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn, &sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

#[async_trait]
impl Outside for Shell {
    async fn execute(&self, sql: &str) {
        self.run(sql, |conn, sql| conn.execute_batch(sql)).await
    }

    async fn ints(&self, sql: &str) -> Vec<i64> {
        self.run(sql, |conn, sql| conn.prepare(sql)?.query_map([], |r| r.get(0))?.collect()).await
    }
}

drakon_testkit::store_suite!(SqliteHarness::new());
