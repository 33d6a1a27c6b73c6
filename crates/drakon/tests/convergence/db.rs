//! The database as another program sees it: the test's own connection, straight to the SQLite file (as the
//! `sqlite3` shell would) or to PostgreSQL through tokio-postgres (as `psql` would). The writer's direct SQL and
//! the final comparison go through it, never through drakon.
//!
//! Most SQL the test writes means the same in both dialects (`NOT done`, `TRUE`, `||`, `%`, `substr`), and is run
//! as text; what differs (bools read back as 0/1 or as `boolean`, the change log's `offset` column, a burst of
//! rows) is written here once per dialect.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drakon_testkit::mirror::{MirrorRow, short};
use rusqlite::Connection;
use serde_json::{Map, Value, json};

use super::world::Spec;

/// SQLSTATEs of a transaction that PostgreSQL aborted because of a concurrent one; a client runs it again.
const RETRY_STATES: &[&str] = &["40P01", "40001"];

/// How often one statement is run again after such an abort before the test gives up.
const RETRIES: u32 = 20;

pub enum Db {
    /// A rusqlite connection (not `Sync`, hence the mutex: no call awaits while holding it).
    Sqlite(Mutex<Connection>),
    /// A tokio-postgres client, and how many transactions it ran again after a deadlock or serialization failure.
    Postgres { client: tokio_postgres::Client, retried: AtomicU64 },
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Sqlite(_) => "Db::Sqlite",
            Db::Postgres { .. } => "Db::Postgres",
        })
    }
}

/// Whether PostgreSQL aborted the transaction for a concurrent one (to run it again, saying so), or it failed.
fn retryable(e: &tokio_postgres::Error, what: &str) -> bool {
    let again = e.code().is_some_and(|code| RETRY_STATES.contains(&code.code()));
    if again {
        let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default();
        let what: String = what.chars().take(200).collect();
        println!("convergence: PostgreSQL aborted {what:?} for a concurrent transaction ({e}: {detail}); again");
    }
    again
}

impl Db {
    /// A connection to the SQLite file at `path`.
    pub fn sqlite(path: &Path) -> Db {
        let db = Connection::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        db.busy_timeout(Duration::from_secs(20)).expect("busy timeout");
        Db::Sqlite(Mutex::new(db))
    }

    /// A connection to the PostgreSQL database at `url`.
    pub async fn postgres(url: &str) -> Db {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        tokio::spawn(connection);
        Db::Postgres { client, retried: AtomicU64::new(0) }
    }

    /// The rusqlite connection, for tests that only run on SQLite.
    pub fn sqlite_connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        match self {
            Db::Sqlite(db) => db.lock().expect("the SQLite connection"),
            Db::Postgres { .. } => panic!("this test runs on SQLite only"),
        }
    }

    /// Transactions PostgreSQL aborted for a concurrent writer and that were run again.
    pub fn retried(&self) -> u64 {
        match self {
            Db::Sqlite(_) => 0,
            Db::Postgres { retried, .. } => retried.load(Ordering::Relaxed),
        }
    }

    /// Runs `statements` (each may hold several, separated by `;`) in one transaction; panics on an error other
    /// than PostgreSQL aborting it for a concurrent writer, after which it runs it again.
    pub async fn transaction(&self, statements: &[String]) {
        match self {
            Db::Sqlite(db) => {
                let mut db = db.lock().expect("the SQLite connection");
                let tx =
                    db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("begin immediate");
                for sql in statements {
                    tx.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
                tx.commit().expect("commit");
            }
            Db::Postgres { client, retried } => {
                let batch = format!("BEGIN; {}; COMMIT", statements.join("; "));
                for attempt in 0.. {
                    match client.batch_execute(&batch).await {
                        Ok(()) => return,
                        Err(e) => {
                            // A failed statement leaves the transaction open and aborted.
                            client.batch_execute("ROLLBACK").await.expect("rollback");
                            if !retryable(&e, &batch) || attempt == RETRIES {
                                panic!("{batch}: {e}");
                            }
                            retried.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    /// Runs one statement on its own.
    pub async fn execute(&self, sql: &str) {
        self.transaction(&[sql.to_owned()]).await;
    }

    /// Every id of `table`, ascending.
    pub async fn ids(&self, table: &str) -> Vec<i64> {
        let sql = format!("SELECT id FROM {table} ORDER BY id");
        match self {
            Db::Sqlite(db) => {
                let db = db.lock().expect("the SQLite connection");
                let mut stmt = db.prepare_cached(&sql).expect("prepare");
                stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("ids")
            }
            Db::Postgres { client, .. } => {
                client.query(&sql, &[]).await.expect("ids").iter().map(|r| r.get(0)).collect()
            }
        }
    }

    /// The rows `spec` selects, as the server would publish them.
    pub async fn select(&self, spec: &Spec) -> BTreeMap<i64, MirrorRow> {
        let table = spec.table();
        let sql = match table {
            "todo_list" => format!("SELECT id, name, rank FROM todo_list WHERE {}", spec.sql_where),
            _ => format!("SELECT id, text, done, n, todo_list FROM todo_item WHERE {}", spec.sql_where),
        };
        // The columns, typed the same on both: only `done` is read differently.
        let row = |id: i64, text: String, done: bool, n: i64, list: i64| {
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            row.insert("_type".into(), json!(table));
            row.insert("text".into(), json!(text));
            row.insert("done".into(), json!(done));
            row.insert("n".into(), json!(n));
            row.insert("todo_list".into(), json!(list));
            (id, row)
        };
        let list = |id: i64, name: String, rank: Option<i64>| {
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            row.insert("_type".into(), json!(table));
            row.insert("name".into(), json!(name));
            row.insert("rank".into(), json!(rank));
            (id, row)
        };
        match self {
            Db::Sqlite(db) => {
                let db = db.lock().expect("the SQLite connection");
                let mut stmt = db.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let rows = stmt
                    .query_map([], |r| {
                        Ok(if table == "todo_list" {
                            list(r.get(0)?, r.get(1)?, r.get(2)?)
                        } else {
                            // SQLite keeps a bool as 0 or 1.
                            row(r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0, r.get(3)?, r.get(4)?)
                        })
                    })
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Db::Postgres { client, .. } => {
                let rows = client.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter()
                    .map(|r| {
                        if table == "todo_list" {
                            list(r.get(0), r.get(1), r.get(2))
                        } else {
                            row(r.get(0), r.get(1), r.get::<_, bool>(2), r.get(3), r.get(4))
                        }
                    })
                    .collect()
            }
        }
    }

    /// The head offset of `model`: the last one the change log assigned.
    pub async fn head(&self, model: &str) -> u64 {
        match self {
            Db::Sqlite(db) => {
                let db = db.lock().expect("the SQLite connection");
                db.query_row("SELECT last FROM _drakon_offsets WHERE model = ?1", [model], |r| r.get::<_, i64>(0))
                    .expect("head offset") as u64
            }
            // Trimming always keeps each model's newest entry, so the largest offset is the head.
            Db::Postgres { client, .. } => client
                .query_one("SELECT coalesce(max(\"offset\"), 0) FROM _drakon_changes WHERE model = $1", &[&model])
                .await
                .expect("head offset")
                .get::<_, i64>(0) as u64,
        }
    }

    /// The change-log entries of one row that the log still holds, newest last, compacted; for failure messages.
    pub async fn log_of(&self, table: &str, id: i64, limit: usize) -> Vec<String> {
        let line = |offset: i64, seq: i64, action: String, old: Option<String>, new: Option<String>| {
            let image = |text: Option<String>| {
                text.and_then(|t| serde_json::from_str::<Value>(&t).ok()).map_or("-".into(), |v| short(&v))
            };
            format!("offset {offset} (seq {seq}) {action}: {} -> {}", image(old), image(new))
        };
        let mut rows: Vec<String> = match self {
            Db::Sqlite(db) => {
                let db = db.lock().expect("the SQLite connection");
                let sql = "SELECT offset, seq, action, old, new FROM _drakon_changes WHERE model = ?1 AND row_id = ?2
                           ORDER BY offset DESC LIMIT ?3";
                let mut stmt = db.prepare(sql).expect("prepare log read");
                stmt.query_map(rusqlite::params![table, id, limit as i64], |r| {
                    Ok(line(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .expect("log read")
                .collect::<Result<_, _>>()
                .expect("log rows")
            }
            Db::Postgres { client, .. } => {
                let sql = "SELECT \"offset\", seq, action, old::text, new::text FROM _drakon_changes
                           WHERE model = $1 AND row_id = $2 ORDER BY \"offset\" DESC LIMIT $3";
                client
                    .query(sql, &[&table, &id, &(limit as i64)])
                    .await
                    .expect("log read")
                    .iter()
                    .map(|r| line(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                    .collect()
            }
        };
        rows.reverse();
        rows
    }

    /// Creates `count` items in list `list` with `text` and a number in one statement, then deletes them again
    /// in one: `2 × count` changes, each carrying the text.
    pub async fn burst(&self, count: i64, text: &str, list: i64) {
        match self {
            Db::Sqlite(db) => {
                let db = db.lock().expect("the SQLite connection");
                // One statement, so the new ids are consecutive.
                db.execute(
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
                     INSERT INTO todo_item (text, done, n, todo_list) SELECT ?2 || ' #' || i, i % 2, i % 100, ?3 FROM s",
                    rusqlite::params![count, text, list],
                )
                .expect("burst insert");
                let last = db.last_insert_rowid();
                db.execute("DELETE FROM todo_item WHERE id BETWEEN ?1 AND ?2", [last - count + 1, last])
                    .expect("burst delete");
            }
            Db::Postgres { client, retried } => {
                // Ids from a sequence need not be consecutive when others insert at the same time: keep them.
                let insert = "INSERT INTO todo_item (text, done, n, todo_list)
                              SELECT $2::text || ' #' || i, i % 2 = 1, i % 100, $3::bigint
                              FROM generate_series(1, $1::bigint) AS s(i)
                              RETURNING id";
                let mut attempt = 0;
                let mut again = |e: tokio_postgres::Error, what: &str| {
                    attempt += 1;
                    if !retryable(&e, what) || attempt > RETRIES {
                        panic!("{what}: {e}");
                    }
                    retried.fetch_add(1, Ordering::Relaxed);
                };
                let ids: Vec<i64> = loop {
                    match client.query(insert, &[&count, &text, &list]).await {
                        Ok(rows) => break rows.iter().map(|r| r.get(0)).collect(),
                        Err(e) => again(e, "burst insert"),
                    }
                };
                while let Err(e) = client.execute("DELETE FROM todo_item WHERE id = ANY($1)", &[&ids]).await {
                    again(e, "burst delete");
                }
            }
        }
    }
}
