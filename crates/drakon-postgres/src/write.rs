//! The write path inside PostgreSQL: one transaction holds the row changes and their cascades; the log triggers
//! add the change-log entries in the same transaction. What a write reads, checks and changes is
//! `drakon_core::store::write`; this module is its SQL over a pooled connection ([`PgTx`]), and the transaction
//! around it. After the commit the store publishes everything new in the log.
//!
//! A write first takes the log's lock (`migrate::LOG_LOCK`), as SQLite's `BEGIN IMMEDIATE` takes the write lock:
//! from then on no other writer can log an entry until this one commits, so the entries past the log's head as read
//! then are this write's own. Outside programs do not take that lock, so the rows a write reads it also locks, and
//! a referenced row is held with `KEY SHARE`: its checks (a referenced row exists, a guard holds) cannot be undone
//! by anyone before it commits.

use drakon_core::filter::sql::{Dialect, quote, select_where};
use drakon_core::store::write::{WriteTx, apply};
use drakon_core::store::{Assignment, Change, Row, StoreError, WriteOp};
use drakon_core::{Filter, Model, Schema, Value};
use tokio_postgres::error::SqlState;

use crate::db_error;
use crate::log::{changes_since, current_seq};
use crate::migrate::{LOG_LOCK, unique_index};
use crate::pool::Conn;
use crate::rows::{Param, params, read_row, refs};

/// PostgreSQL truncates identifiers to this many bytes, constraint names in errors included.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Runs `op` in one transaction and returns its committed changes (none: nothing changed, nothing committed). A
/// deadlock or serialization failure comes back as such ([`StoreError::is_retryable`]), for the caller to retry.
pub async fn write(conn: &mut Conn, schema: &Schema, op: &WriteOp) -> Result<Vec<Change>, StoreError> {
    conn.begin("").await.map_err(db_error)?;
    let applied = async {
        conn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK]).await.map_err(db_error)?;
        apply(&mut PgTx(&mut *conn), schema, op).await
    }
    .await;
    match applied {
        Ok(changes) if changes.is_empty() => {
            conn.rollback().await;
            Ok(changes)
        }
        Ok(changes) => {
            conn.commit().await.map_err(db_error)?;
            Ok(changes)
        }
        Err(e) => {
            conn.rollback().await;
            Err(e)
        }
    }
}

/// The write transaction, as `drakon_core::store::write` uses it.
struct PgTx<'a>(&'a mut Conn);

impl WriteTx for PgTx<'_> {
    async fn log_head(&mut self) -> Result<u64, StoreError> {
        current_seq(self.0).await
    }

    async fn changes_since(&mut self, schema: &Schema, seq: u64) -> Result<Vec<Change>, StoreError> {
        changes_since(self.0, schema, seq).await
    }

    async fn select(&mut self, model: &Model, filter: &Filter, lock: bool) -> Result<Vec<Row>, StoreError> {
        let mut select = select_where(model, filter, Dialect::Postgres);
        if lock {
            select.sql.push_str(" FOR UPDATE OF \"t\"");
        }
        let bound = params(&select.params);
        let rows = self.0.query(&select.sql, &refs(&bound)).await.map_err(db_error)?;
        rows.iter().map(|r| read_row(model, r, 0).map_err(db_error)).collect()
    }

    async fn exists(&mut self, model: &Model, id: i64) -> Result<bool, StoreError> {
        // KEY SHARE keeps the row from being deleted (by anyone) until this write commits.
        let sql = format!("SELECT 1 FROM {} WHERE \"id\" = $1 FOR KEY SHARE", quote(&model.name));
        Ok(self.0.query_opt(&sql, &[&id]).await.map_err(db_error)?.is_some())
    }

    async fn insert(&mut self, model: &Model, row: &Row) -> Result<i64, StoreError> {
        let columns: Vec<String> = model.fields.iter().skip(1).map(|f| quote(&f.name)).collect();
        let sql = if columns.is_empty() {
            format!("INSERT INTO {} DEFAULT VALUES RETURNING \"id\"", quote(&model.name))
        } else {
            let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({}) RETURNING \"id\"",
                quote(&model.name),
                columns.join(", "),
                marks.join(", ")
            )
        };
        let bound = params(&row[1..]);
        let inserted = self.0.query_one(&sql, &refs(&bound)).await.map_err(|e| map_write_error(model, e))?;
        Ok(inserted.get(0))
    }

    async fn update(&mut self, model: &Model, id: i64, values: &[Assignment]) -> Result<(), StoreError> {
        let sets: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(n, (i, _))| format!("{} = ${}", quote(&model.fields[*i].name), n + 1))
            .collect();
        let sql = format!("UPDATE {} SET {} WHERE \"id\" = ${}", quote(&model.name), sets.join(", "), values.len() + 1);
        let id = Value::Int(id);
        let mut bound: Vec<Param<'_>> = values.iter().map(|(_, v)| Param(v)).collect();
        bound.push(Param(&id));
        self.0.execute(&sql, &refs(&bound)).await.map_err(|e| map_write_error(model, e))?;
        Ok(())
    }

    async fn delete(&mut self, model: &Model, id: i64) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {} WHERE \"id\" = $1", quote(&model.name));
        self.0.execute(&sql, &[&id]).await.map_err(db_error)?;
        Ok(())
    }
}

fn map_write_error(model: &Model, e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && *db.code() == SqlState::UNIQUE_VIOLATION
    {
        let by_index = model.fields.iter().find(|f| {
            let name = unique_index(model, f);
            db.constraint() == Some(name.get(..MAX_IDENTIFIER_BYTES).unwrap_or(&name))
        });
        // "Key (name)=(a) already exists.": the primary key, or an index made outside drakon.
        let by_detail = || {
            db.detail()
                .and_then(|d| d.strip_prefix("Key ("))
                .and_then(|d| d.split_once(")=("))
                .map(|(columns, _)| columns.trim_matches('"').to_owned())
        };
        let field = by_index.map(|f| f.name.clone()).or_else(by_detail).unwrap_or_else(|| "id".to_owned());
        return StoreError::Unique { model: model.name.clone(), field };
    }
    db_error(e)
}
