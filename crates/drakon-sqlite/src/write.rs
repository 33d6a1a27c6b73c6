//! The write path inside SQLite: one transaction holds the row changes and their cascades; the log triggers add
//! the change-log entries in the same transaction. The write reads its own entries back before committing (to
//! answer the client), and after commit, still under the writer lock, publishes everything new in the log.

use drakon_core::filter::sql::{Dialect, compile, quote};
use drakon_core::store::{Assignment, Change, ChangeSink, Row, StoreError, WriteOp};
use drakon_core::{Filter, Model, OnDelete, Schema, Value};
use rusqlite::{ErrorCode, OptionalExtension, Transaction, TransactionBehavior};

use crate::db_error;
use crate::log::{Writer, changes_since, current_seq, publish_pending};
use crate::rows::{read_row, row_columns, to_sql};

pub fn write(writer: &mut Writer, schema: &Schema, op: WriteOp, sink: &ChangeSink) -> Result<Vec<Change>, StoreError> {
    // IMMEDIATE takes SQLite's write lock now, so no other process's entries can land between `before` and ours.
    let tx = writer.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error)?;
    let before = current_seq(&tx)?;
    match op {
        WriteOp::Create { model, values, guard } => {
            let model = model_of(schema, &model)?;
            check_refs(&tx, schema, model, &values)?;
            let row = insert(&tx, model, &values)?;
            require_guard(&tx, model, row[0].as_i64().unwrap_or_default(), &guard, StoreError::OutsideRoute)?;
        }
        WriteOp::Update { model, id, values, guard } => {
            let model = model_of(schema, &model)?;
            let not_found = || StoreError::NotFound { model: model.name.clone(), id };
            let old = select_row(&tx, model, id, &guard)?.ok_or_else(not_found)?;
            check_refs(&tx, schema, model, &values)?;
            let mut new = old.clone();
            for (i, v) in &values {
                new[*i] = v.clone();
            }
            if new != old {
                update(&tx, model, id, &values)?;
                require_guard(&tx, model, id, &guard, StoreError::OutsideRoute)?;
            }
        }
        WriteOp::Delete { model, id, guard } => {
            let model = model_of(schema, &model)?;
            let old = select_row(&tx, model, id, &guard)?
                .ok_or_else(|| StoreError::NotFound { model: model.name.clone(), id })?;
            delete_cascading(&tx, schema, model, old)?;
        }
        WriteOp::DeleteWhere { model, filter } => {
            let model = model_of(schema, &model)?;
            for row in select_rows(&tx, model, &filter)? {
                // An earlier cascade in this batch may already have removed the row.
                let id = row[0].as_i64().unwrap_or_default();
                if let Some(row) = select_row(&tx, model, id, &Filter::default())? {
                    delete_cascading(&tx, schema, model, row)?;
                }
            }
        }
    }
    let changes = changes_since(&tx, schema, before)?;
    if changes.is_empty() {
        return Ok(changes);
    }
    tx.commit().map_err(db_error)?;
    // Still under the writer lock: the bus sees batches in commit order.
    publish_pending(writer, schema, sink)?;
    Ok(changes)
}

fn model_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Model, StoreError> {
    schema.get_model(name).ok_or_else(|| StoreError::Database(format!("unknown model {name}")))
}

fn map_write_error(model: &Model, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, Some(msg)) = &e
        && f.code == ErrorCode::ConstraintViolation
        && let Some(cols) = msg.strip_prefix("UNIQUE constraint failed: ")
    {
        let field = cols.split(", ").next().and_then(|c| c.split('.').nth(1)).unwrap_or(cols).to_owned();
        return StoreError::Unique { model: model.name.clone(), field };
    }
    db_error(e)
}

fn check_refs(tx: &Transaction<'_>, schema: &Schema, model: &Model, values: &[Assignment]) -> Result<(), StoreError> {
    for (i, v) in values {
        let field = &model.fields[*i];
        let (Some((target, _)), Some(id)) = (field.ref_target(), v.as_i64()) else { continue };
        let target = model_of(schema, target)?;
        let found = tx
            .prepare_cached(&format!("SELECT 1 FROM {} WHERE \"id\" = ?1", quote(&target.name)))
            .and_then(|mut s| s.query_row([id], |_| Ok(())).optional())
            .map_err(db_error)?;
        if found.is_none() {
            return Err(StoreError::MissingRef { field: field.name.clone(), target: target.name.clone() });
        }
    }
    Ok(())
}

fn insert(tx: &Transaction<'_>, model: &Model, values: &[Assignment]) -> Result<Row, StoreError> {
    // Fields the write leaves out take their default (or null); the store fills them so the logged image is whole.
    let mut row: Row = model.fields.iter().map(|f| f.default.clone().unwrap_or(Value::Null)).collect();
    for (i, v) in values {
        row[*i] = v.clone();
    }
    let columns: Vec<String> = model.fields.iter().skip(1).map(|f| quote(&f.name)).collect();
    let marks = vec!["?"; columns.len()].join(", ");
    let sql = if columns.is_empty() {
        format!("INSERT INTO {} DEFAULT VALUES", quote(&model.name))
    } else {
        format!("INSERT INTO {} ({}) VALUES ({marks})", quote(&model.name), columns.join(", "))
    };
    let params: Vec<_> = row.iter().skip(1).map(to_sql).collect();
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
        .map_err(|e| map_write_error(model, e))?;
    row[0] = Value::Int(tx.last_insert_rowid());
    Ok(row)
}

fn update(tx: &Transaction<'_>, model: &Model, id: i64, values: &[Assignment]) -> Result<(), StoreError> {
    let sets: Vec<String> = values.iter().map(|(i, _)| format!("{} = ?", quote(&model.fields[*i].name))).collect();
    let sql = format!("UPDATE {} SET {} WHERE \"id\" = ?", quote(&model.name), sets.join(", "));
    let mut params: Vec<_> = values.iter().map(|(_, v)| to_sql(v)).collect();
    params.push(rusqlite::types::Value::Integer(id));
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
        .map_err(|e| map_write_error(model, e))?;
    Ok(())
}

fn select_rows(tx: &Transaction<'_>, model: &Model, filter: &Filter) -> Result<Vec<Row>, StoreError> {
    let cond = compile(filter, "t", Dialect::Sqlite);
    let sql = format!(
        "SELECT {} FROM {} AS \"t\" WHERE {} ORDER BY \"t\".\"id\"",
        row_columns(model, "t"),
        quote(&model.name),
        cond.sql
    );
    let params: Vec<_> = cond.params.iter().map(to_sql).collect();
    let mut stmt = tx.prepare_cached(&sql).map_err(db_error)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| read_row(model, r))
        .map_err(db_error)?
        .collect::<Result<_, _>>()
        .map_err(db_error)?;
    Ok(rows)
}

fn select_row(tx: &Transaction<'_>, model: &Model, id: i64, guard: &Filter) -> Result<Option<Row>, StoreError> {
    let mut filter = guard.clone();
    filter.conds.push(id_cond(model, id));
    Ok(select_rows(tx, model, &filter)?.into_iter().next())
}

fn id_cond(model: &Model, id: i64) -> drakon_core::filter::Cond {
    drakon_core::filter::Cond {
        lookup: drakon_core::filter::Lookup {
            hops: Vec::new(),
            model: model.name.clone(),
            field: "id".into(),
            ty: drakon_core::FieldType::Id,
        },
        op: drakon_core::filter::Op::Eq,
        operand: drakon_core::filter::Operand::One(Value::Int(id)),
    }
}

fn require_guard(
    tx: &Transaction<'_>,
    model: &Model,
    id: i64,
    guard: &Filter,
    err: StoreError,
) -> Result<(), StoreError> {
    if guard.conds.is_empty() || select_row(tx, model, id, guard)?.is_some() { Ok(()) } else { Err(err) }
}

/// Deletes `row` after applying every reference's `on_delete` to the rows that point at it.
fn delete_cascading(tx: &Transaction<'_>, schema: &Schema, model: &Model, row: Row) -> Result<(), StoreError> {
    let id = row[0].as_i64().unwrap_or_default();
    for referrer in &schema.models {
        for (index, field) in referrer.fields.iter().enumerate() {
            let Some((target, on_delete)) = field.ref_target() else { continue };
            if target != model.name {
                continue;
            }
            let mut filter = Filter::default();
            filter.conds.push(drakon_core::filter::Cond {
                lookup: drakon_core::filter::Lookup {
                    hops: Vec::new(),
                    model: referrer.name.clone(),
                    field: field.name.clone(),
                    ty: field.ty.clone(),
                },
                op: drakon_core::filter::Op::Eq,
                operand: drakon_core::filter::Operand::One(Value::Int(id)),
            });
            let rows = select_rows(tx, referrer, &filter)?;
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
                        if let Some(child) = select_row(tx, referrer, child_id, &Filter::default())? {
                            delete_cascading(tx, schema, referrer, child)?;
                        }
                    }
                }
                OnDelete::SetNull => {
                    for old in rows {
                        let child_id = old[0].as_i64().unwrap_or_default();
                        update(tx, referrer, child_id, &[(index, Value::Null)])?;
                    }
                }
            }
        }
    }
    tx.prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ?1", quote(&model.name)))
        .and_then(|mut s| s.execute([id]))
        .map_err(db_error)?;
    Ok(())
}
