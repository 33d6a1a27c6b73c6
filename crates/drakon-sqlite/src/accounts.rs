//! Built-in users and their sessions in the SQLite file (see [`drakon_core::accounts`]).

use async_trait::async_trait;
use drakon_core::StoreError;
use drakon_core::accounts::{Account, Accounts, join_roles, split_roles};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::{SqliteStore, db_error, lock};

/// The tables, created with the store's own.
pub const TABLES: &str = "CREATE TABLE IF NOT EXISTS _drakon_users (
        name TEXT PRIMARY KEY, password TEXT NOT NULL, roles TEXT NOT NULL, info TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS _drakon_sessions (
        key TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES _drakon_users (name) ON DELETE CASCADE,
        expires INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS _drakon_sessions_name ON _drakon_sessions (name);";

const COLUMNS: &str = "u.name, u.password, u.roles, u.info";

fn account(row: &Row<'_>) -> rusqlite::Result<Account> {
    let info: String = row.get(3)?;
    Ok(Account {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        roles: split_roles(&row.get::<_, String>(2)?),
        info: serde_json::from_str(&info).unwrap_or_default(),
    })
}

impl SqliteStore {
    /// Runs `f` with the writer connection on the blocking pool.
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || f(&lock(&writer).conn).map_err(db_error))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Accounts for SqliteStore {
    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM _drakon_users AS u WHERE u.name = ?1"))
                .and_then(|mut s| s.query_row([&name], account).optional())
                .map_err(db_error)
        })
        .await
    }

    async fn all_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(|conn| {
            let mut s = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM _drakon_users AS u ORDER BY u.name"))
                .map_err(db_error)?;
            s.query_map([], account).and_then(|rows| rows.collect()).map_err(db_error)
        })
        .await
    }

    async fn save_account(&self, account: &Account) -> Result<(), StoreError> {
        let a = account.clone();
        self.with_writer(move |conn| {
            let tx = conn.unchecked_transaction()?;
            tx.execute("DELETE FROM _drakon_sessions WHERE name = ?1", [&a.name])?;
            tx.execute(
                "INSERT INTO _drakon_users (name, password, roles, info) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET password = ?2, roles = ?3, info = ?4",
                [&a.name, &a.password_hash, &join_roles(&a.roles), &a.info.to_string()],
            )?;
            tx.commit()
        })
        .await
    }

    async fn open_session(&self, key_hash: &str, name: &str, expires: u64) -> Result<(), StoreError> {
        let (key, name) = (key_hash.to_owned(), name.to_owned());
        let now = drakon_core::unix_now() as i64;
        self.with_writer(move |conn| {
            conn.execute("DELETE FROM _drakon_sessions WHERE expires <= ?1", [now])?;
            conn.execute(
                "INSERT INTO _drakon_sessions (key, name, expires) VALUES (?1, ?2, ?3)",
                rusqlite::params![key, name, expires as i64],
            )
            .map(|_| ())
        })
        .await
    }

    async fn session_account(&self, key_hash: &str, now: u64) -> Result<Option<Account>, StoreError> {
        let key = key_hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM _drakon_sessions AS s JOIN _drakon_users AS u ON u.name = s.name
                 WHERE s.key = ?1 AND s.expires > ?2"
            ))
            .and_then(|mut s| s.query_row(rusqlite::params![key, now as i64], account).optional())
            .map_err(db_error)
        })
        .await
    }

    async fn close_session(&self, key_hash: &str) -> Result<(), StoreError> {
        let key = key_hash.to_owned();
        self.with_writer(move |conn| conn.execute("DELETE FROM _drakon_sessions WHERE key = ?1", [&key]).map(|_| ()))
            .await
    }
}
