//! The write path inside PostgreSQL: one transaction holds the row changes and their cascades; the log triggers
//! add the change-log entries in the same transaction. The write reads its own entries back before committing (to
//! answer the client); after the commit the store publishes everything new in the log.
//!
//! A write first takes the log's lock (`migrate::LOG_LOCK`), as SQLite's `BEGIN IMMEDIATE` takes the write lock:
//! from then on no other writer can log an entry until this one commits, so the entries past the log's head as read
//! then are this write's own, and its checks (a referenced row exists, a guard holds) cannot be undone by a
//! concurrent drakon write before it commits.

use drakon_core::filter::sql::{Dialect, compile, quote};
use drakon_core::filter::{Cond, Lookup, Op, Operand};
use drakon_core::store::{Assignment, Change, Row, StoreError, WriteOp};
use drakon_core::{FieldType, Filter, Model, OnDelete, Schema, Value};
use tokio_postgres::error::SqlState;

use crate::db_error;
use crate::log::{GLOBAL_HEAD, changes_since};
use crate::migrate::{LOG_LOCK, unique_index};
use crate::pool::Conn;
use crate::rows::{Param, params, read_row, refs, row_columns};

/// PostgreSQL truncates identifiers to this many bytes, constraint names in errors included.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Runs `op` in one transaction and returns its committed changes (none: nothing changed, nothing committed). A
/// deadlock or serialization failure comes back as such ([`StoreError::is_retryable`]), for the caller to retry.
pub async fn write(conn: &mut Conn, schema: &Schema, op: &WriteOp) -> Result<Vec<Change>, StoreError> {
    conn.begin("").await.map_err(db_error)?;
    match apply(conn, schema, op).await {
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

async fn apply(conn: &mut Conn, schema: &Schema, op: &WriteOp) -> Result<Vec<Change>, StoreError> {
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&LOG_LOCK]).await.map_err(db_error)?;
    let before = conn.query_one(GLOBAL_HEAD, &[]).await.map_err(db_error)?.get::<_, i64>(0) as u64;
    match op {
        WriteOp::Create { model, values, guard } => {
            let model = model_of(schema, model)?;
            check_refs(conn, schema, model, values).await?;
            let row = insert(conn, model, values).await?;
            require_guard(conn, model, row[0].as_i64().unwrap_or_default(), guard).await?;
        }
        WriteOp::Update { model, id, values, guard } => {
            let model = model_of(schema, model)?;
            let old = select_row(conn, model, *id, guard)
                .await?
                .ok_or_else(|| StoreError::NotFound { model: model.name.clone(), id: *id })?;
            check_refs(conn, schema, model, values).await?;
            let mut new = old.clone();
            for (i, v) in values {
                new[*i] = v.clone();
            }
            if new != old {
                update(conn, model, *id, values).await?;
                require_guard(conn, model, *id, guard).await?;
            }
        }
        WriteOp::Delete { model, id, guard } => {
            let model = model_of(schema, model)?;
            let old = select_row(conn, model, *id, guard)
                .await?
                .ok_or_else(|| StoreError::NotFound { model: model.name.clone(), id: *id })?;
            delete_cascading(conn, schema, model, old).await?;
        }
        WriteOp::DeleteWhere { model, filter } => {
            let model = model_of(schema, model)?;
            for row in select_rows(conn, model, filter, true).await? {
                // An earlier cascade in this batch may already have removed the row.
                let id = row[0].as_i64().unwrap_or_default();
                if let Some(row) = select_row(conn, model, id, &Filter::default()).await? {
                    delete_cascading(conn, schema, model, row).await?;
                }
            }
        }
    }
    changes_since(conn, schema, before).await
}

fn model_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Model, StoreError> {
    schema.get_model(name).ok_or_else(|| StoreError::Database(format!("unknown model {name}")))
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

async fn check_refs(conn: &mut Conn, schema: &Schema, model: &Model, values: &[Assignment]) -> Result<(), StoreError> {
    for (i, v) in values {
        let field = &model.fields[*i];
        let (Some((target, _)), Some(id)) = (field.ref_target(), v.as_i64()) else { continue };
        let target = model_of(schema, target)?;
        // KEY SHARE keeps the row from being deleted (by anyone) until this write commits.
        let found = conn
            .query_opt(&format!("SELECT 1 FROM {} WHERE \"id\" = $1 FOR KEY SHARE", quote(&target.name)), &[&id])
            .await
            .map_err(db_error)?;
        if found.is_none() {
            return Err(StoreError::MissingRef { field: field.name.clone(), target: target.name.clone() });
        }
    }
    Ok(())
}

async fn insert(conn: &mut Conn, model: &Model, values: &[Assignment]) -> Result<Row, StoreError> {
    // Fields the write leaves out take their default (or null); the store fills them so the logged image is whole.
    let mut row: Row = model.fields.iter().map(|f| f.default.clone().unwrap_or(Value::Null)).collect();
    for (i, v) in values {
        row[*i] = v.clone();
    }
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
    let inserted = conn.query_one(&sql, &refs(&bound)).await.map_err(|e| map_write_error(model, e))?;
    row[0] = Value::Int(inserted.get(0));
    Ok(row)
}

async fn update(conn: &mut Conn, model: &Model, id: i64, values: &[Assignment]) -> Result<(), StoreError> {
    let sets: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(n, (i, _))| format!("{} = ${}", quote(&model.fields[*i].name), n + 1))
        .collect();
    let sql = format!("UPDATE {} SET {} WHERE \"id\" = ${}", quote(&model.name), sets.join(", "), values.len() + 1);
    let id = Value::Int(id);
    let mut bound: Vec<Param<'_>> = values.iter().map(|(_, v)| Param(v)).collect();
    bound.push(Param(&id));
    conn.execute(&sql, &refs(&bound)).await.map_err(|e| map_write_error(model, e))?;
    Ok(())
}

/// Rows of `model` matching `filter`, by id; `lock` takes their row locks until the transaction ends, so a
/// concurrent writer cannot change them between this read and this write's own change.
async fn select_rows(conn: &mut Conn, model: &Model, filter: &Filter, lock: bool) -> Result<Vec<Row>, StoreError> {
    let cond = compile(filter, "t", Dialect::Postgres);
    let sql = format!(
        "SELECT {} FROM {} AS \"t\" WHERE {} ORDER BY \"t\".\"id\"{}",
        row_columns(model, "t"),
        quote(&model.name),
        cond.sql,
        if lock { " FOR UPDATE OF \"t\"" } else { "" }
    );
    let bound = params(&cond.params);
    let rows = conn.query(&sql, &refs(&bound)).await.map_err(db_error)?;
    rows.iter().map(|r| read_row(model, r, 0).map_err(db_error)).collect()
}

async fn select_row(conn: &mut Conn, model: &Model, id: i64, guard: &Filter) -> Result<Option<Row>, StoreError> {
    let mut filter = guard.clone();
    filter.conds.push(eq_cond(model, "id", FieldType::Id, id));
    Ok(select_rows(conn, model, &filter, true).await?.into_iter().next())
}

fn eq_cond(model: &Model, field: &str, ty: FieldType, id: i64) -> Cond {
    Cond {
        lookup: Lookup { hops: Vec::new(), model: model.name.clone(), field: field.to_owned(), ty },
        op: Op::Eq,
        operand: Operand::One(Value::Int(id)),
    }
}

async fn require_guard(conn: &mut Conn, model: &Model, id: i64, guard: &Filter) -> Result<(), StoreError> {
    if guard.conds.is_empty() {
        return Ok(());
    }
    let mut filter = guard.clone();
    filter.conds.push(eq_cond(model, "id", FieldType::Id, id));
    if select_rows(conn, model, &filter, false).await?.is_empty() {
        return Err(StoreError::OutsideRoute);
    }
    Ok(())
}

/// Deletes `row` after applying every reference's `on_delete` to the rows that point at it.
async fn delete_cascading(conn: &mut Conn, schema: &Schema, model: &Model, row: Row) -> Result<(), StoreError> {
    let id = row[0].as_i64().unwrap_or_default();
    for referrer in &schema.models {
        for (index, field) in referrer.fields.iter().enumerate() {
            let Some((target, on_delete)) = field.ref_target() else { continue };
            if target != model.name {
                continue;
            }
            let mut filter = Filter::default();
            filter.conds.push(eq_cond(referrer, &field.name, field.ty.clone(), id));
            let rows = select_rows(conn, referrer, &filter, true).await?;
            if rows.is_empty() {
                continue;
            }
            match on_delete {
                OnDelete::Restrict => {
                    return Err(StoreError::Restricted {
                        model: model.name.clone(),
                        id,
                        referrer: referrer.name.clone(),
                        field: field.name.clone(),
                    });
                }
                OnDelete::Cascade => {
                    for child in rows {
                        let child_id = child[0].as_i64().unwrap_or_default();
                        // A self-referencing cascade may have removed it already.
                        if let Some(child) = select_row(conn, referrer, child_id, &Filter::default()).await? {
                            Box::pin(delete_cascading(conn, schema, referrer, child)).await?;
                        }
                    }
                }
                OnDelete::SetNull => {
                    for old in rows {
                        let child_id = old[0].as_i64().unwrap_or_default();
                        update(conn, referrer, child_id, &[(index, Value::Null)]).await?;
                    }
                }
            }
        }
    }
    conn.execute(&format!("DELETE FROM {} WHERE \"id\" = $1", quote(&model.name)), &[&id]).await.map_err(db_error)?;
    Ok(())
}
