//! The write path inside SQLite: one IMMEDIATE transaction holds the row changes and their cascades; the log
//! triggers add the change-log entries in the same transaction. What a write reads, checks and changes is
//! `drakon_core::store::write`; this module is its SQL over a rusqlite transaction ([`SqliteTx`]), and the
//! transaction around it: after commit, still under the writer lock, it publishes everything new in the log.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use drakon_core::filter::sql::{Dialect, quote, select_where};
use drakon_core::store::write::{WriteTx, apply};
use drakon_core::store::{Assignment, Change, ChangeSink, Row, StoreError, WriteOp};
use drakon_core::{Filter, Model, Schema};
use rusqlite::{ErrorCode, OptionalExtension, Transaction, TransactionBehavior};

use crate::db_error;
use crate::log::{Writer, changes_since, current_seq, publish_pending};
use crate::rows::{read_row, to_sql};

pub fn write(writer: &mut Writer, schema: &Schema, op: &WriteOp, sink: &ChangeSink) -> Result<Vec<Change>, StoreError> {
    // IMMEDIATE takes SQLite's write lock now, so no other process's entries can land between the log's head as
    // `apply` reads it and this write's own entries, and nobody can undo its checks before it commits.
    let tx = writer.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
    let changes = run_ready(apply(&mut SqliteTx(&tx), schema, op))?;
    if changes.is_empty() {
        // Dropping the transaction rolls it back.
        return Ok(changes);
    }
    tx.commit().map_err(db_error)?;
    // Still under the writer lock: the bus sees batches in commit order.
    publish_pending(writer, schema, sink)?;
    Ok(changes)
}

/// Runs a future whose every step is a synchronous SQLite call, such as [`apply`] over a [`SqliteTx`]: it is done
/// at its first poll, so it needs no executor on the blocking thread.
fn run_ready<T>(future: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(done) => done,
        // Only if a step ever awaited something: an error, not a hang, and the dropped transaction rolls back.
        Poll::Pending => Err(StoreError::Database("a SQLite write waited on something; nothing was written".into())),
    }
}

/// The write transaction, as `drakon_core::store::write` uses it. Locking rows is unnecessary: IMMEDIATE already
/// keeps every other writer out until commit.
struct SqliteTx<'a, 'c>(&'a Transaction<'c>);

impl WriteTx for SqliteTx<'_, '_> {
    async fn log_head(&mut self) -> Result<u64, StoreError> {
        current_seq(self.0)
    }

    async fn changes_since(&mut self, schema: &Schema, seq: u64) -> Result<Vec<Change>, StoreError> {
        changes_since(self.0, schema, seq)
    }

    async fn select(&mut self, model: &Model, filter: &Filter, _lock: bool) -> Result<Vec<Row>, StoreError> {
        let select = select_where(model, filter, Dialect::Sqlite);
        let params: Vec<_> = select.params.iter().map(to_sql).collect();
        let mut stmt = self.0.prepare_cached(&select.sql).map_err(db_error)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| read_row(model, r))
            .map_err(db_error)?
            .collect::<Result<_, _>>()
            .map_err(db_error)?;
        Ok(rows)
    }

    async fn exists(&mut self, model: &Model, id: i64) -> Result<bool, StoreError> {
        let found = self
            .0
            .prepare_cached(&format!("SELECT 1 FROM {} WHERE \"id\" = ?1", quote(&model.name)))
            .and_then(|mut s| s.query_row([id], |_| Ok(())).optional())
            .map_err(db_error)?;
        Ok(found.is_some())
    }

    async fn insert(&mut self, model: &Model, row: &Row) -> Result<i64, StoreError> {
        let columns: Vec<String> = model.fields.iter().skip(1).map(|f| quote(&f.name)).collect();
        let marks = vec!["?"; columns.len()].join(", ");
        let sql = if columns.is_empty() {
            format!("INSERT INTO {} DEFAULT VALUES", quote(&model.name))
        } else {
            format!("INSERT INTO {} ({}) VALUES ({marks})", quote(&model.name), columns.join(", "))
        };
        let params: Vec<_> = row.iter().skip(1).map(to_sql).collect();
        self.0
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map_err(|e| map_write_error(model, e))?;
        Ok(self.0.last_insert_rowid())
    }

    async fn update(&mut self, model: &Model, id: i64, values: &[Assignment]) -> Result<(), StoreError> {
        let sets: Vec<String> = values.iter().map(|(i, _)| format!("{} = ?", quote(&model.fields[*i].name))).collect();
        let sql = format!("UPDATE {} SET {} WHERE \"id\" = ?", quote(&model.name), sets.join(", "));
        let mut params: Vec<_> = values.iter().map(|(_, v)| to_sql(v)).collect();
        params.push(rusqlite::types::Value::Integer(id));
        self.0
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map_err(|e| map_write_error(model, e))?;
        Ok(())
    }

    async fn delete(&mut self, model: &Model, id: i64) -> Result<(), StoreError> {
        self.0
            .prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ?1", quote(&model.name)))
            .and_then(|mut s| s.execute([id]))
            .map_err(db_error)?;
        Ok(())
    }
}

fn map_write_error(model: &Model, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, Some(msg)) = &e
        && f.code == ErrorCode::ConstraintViolation
        && let Some(cols) = msg.strip_prefix("UNIQUE constraint failed: ")
    {
        // SQLite names the column only in its message.
        let field = cols.split(", ").next().and_then(|c| c.split('.').nth(1)).unwrap_or(cols).to_owned();
        return StoreError::Unique { model: model.name.clone(), field };
    }
    db_error(e)
}
