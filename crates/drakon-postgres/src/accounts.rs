//! Built-in users and their sessions in PostgreSQL (see [`drakon_core::accounts`]); every node shares them.

use async_trait::async_trait;
use drakon_core::StoreError;
use drakon_core::accounts::{Account, Accounts, join_roles, split_roles};
use tokio_postgres::Row;

use crate::{PgStore, db_error, rolled_back};

/// The tables, created with the store's own.
pub const TABLES: &str = "
CREATE TABLE IF NOT EXISTS _drakon_users (
    name text PRIMARY KEY, password text NOT NULL, roles text NOT NULL, info jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS _drakon_sessions (
    key text PRIMARY KEY, name text NOT NULL REFERENCES _drakon_users (name) ON DELETE CASCADE,
    expires bigint NOT NULL);
CREATE INDEX IF NOT EXISTS _drakon_sessions_name ON _drakon_sessions (name);
";

const COLUMNS: &str = "u.name, u.password, u.roles, u.info";

fn account(row: &Row) -> Account {
    Account {
        name: row.get(0),
        password_hash: row.get(1),
        roles: split_roles(row.get(2)),
        info: row.get::<_, serde_json::Value>(3),
    }
}

#[async_trait]
impl Accounts for PgStore {
    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let mut conn = self.inner.conn().await?;
        let sql = format!("SELECT {COLUMNS} FROM _drakon_users AS u WHERE u.name = $1");
        Ok(conn.query_opt(&sql, &[&name]).await.map_err(db_error)?.as_ref().map(account))
    }

    async fn all_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let mut conn = self.inner.conn().await?;
        let sql = format!("SELECT {COLUMNS} FROM _drakon_users AS u ORDER BY u.name");
        Ok(conn.query(&sql, &[]).await.map_err(db_error)?.iter().map(account).collect())
    }

    async fn save_account(&self, a: &Account) -> Result<(), StoreError> {
        let mut conn = self.inner.conn().await?;
        conn.begin("").await.map_err(db_error)?;
        let roles = join_roles(&a.roles);
        let saved = async {
            conn.execute("DELETE FROM _drakon_sessions WHERE name = $1", &[&a.name]).await?;
            conn.execute(
                "INSERT INTO _drakon_users (name, password, roles, info) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET password = $2, roles = $3, info = $4",
                &[&a.name, &a.password_hash, &roles, &a.info],
            )
            .await?;
            conn.commit().await
        }
        .await
        .map_err(db_error);
        rolled_back(&mut conn, saved).await
    }

    async fn open_session(&self, key_hash: &str, name: &str, expires: u64) -> Result<(), StoreError> {
        let mut conn = self.inner.conn().await?;
        let now = drakon_core::unix_now() as i64;
        conn.execute("DELETE FROM _drakon_sessions WHERE expires <= $1", &[&now]).await.map_err(db_error)?;
        conn.execute(
            "INSERT INTO _drakon_sessions (key, name, expires) VALUES ($1, $2, $3)",
            &[&key_hash, &name, &(expires as i64)],
        )
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn session_account(&self, key_hash: &str, now: u64) -> Result<Option<Account>, StoreError> {
        let mut conn = self.inner.conn().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM _drakon_sessions AS s JOIN _drakon_users AS u ON u.name = s.name
             WHERE s.key = $1 AND s.expires > $2"
        );
        Ok(conn.query_opt(&sql, &[&key_hash, &(now as i64)]).await.map_err(db_error)?.as_ref().map(account))
    }

    async fn close_session(&self, key_hash: &str) -> Result<(), StoreError> {
        let mut conn = self.inner.conn().await?;
        conn.execute("DELETE FROM _drakon_sessions WHERE key = $1", &[&key_hash]).await.map(|_| ()).map_err(db_error)
    }
}
