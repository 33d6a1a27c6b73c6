//! The write path inside SQLite: one transaction holds the row changes, their cascades and their change-log
//! entries; after commit, and before the writer lock is released, the changes go to the sink.

use std::sync::Arc;

use drakon_core::filter::sql::{Dialect, compile, quote};
use drakon_core::store::{Assignment, BusMessage, Change, ChangeSink, Row, StoreError, WriteOp};
use drakon_core::value::now_datetime;
use drakon_core::{Filter, Model, OnDelete, Schema, Value};
use drakon_protocol::Action;
use rusqlite::{ErrorCode, OptionalExtension, Transaction};
use serde_json::{Map, Value as Json};

use crate::db_error;
use crate::rows::{read_row, row_columns, to_sql};

pub fn write(
    conn: &mut rusqlite::Connection,
    schema: &Schema,
    op: WriteOp,
    sink: &ChangeSink,
) -> Result<Vec<Change>, StoreError> {
    let tx = conn.transaction().map_err(db_error)?;
    let mut changes = Vec::new();
    match op {
        WriteOp::Create { model, values, guard } => {
            let model = model_of(schema, &model)?;
            check_refs(&tx, schema, model, &values)?;
            let row = insert(&tx, model, &values)?;
            require_guard(&tx, model, row[0].as_i64().unwrap_or_default(), &guard, StoreError::OutsideRoute)?;
            changes.push(change(model, Action::Created, None, Some(row)));
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
                changes.push(change(model, Action::Updated, Some(old), Some(new)));
            }
        }
        WriteOp::Delete { model, id, guard } => {
            let model = model_of(schema, &model)?;
            let old = select_row(&tx, model, id, &guard)?
                .ok_or_else(|| StoreError::NotFound { model: model.name.clone(), id })?;
            delete_cascading(&tx, schema, model, old, &mut changes)?;
        }
        WriteOp::DeleteWhere { model, filter } => {
            let model = model_of(schema, &model)?;
            for row in select_rows(&tx, model, &filter)? {
                // An earlier cascade in this batch may already have removed the row.
                let id = row[0].as_i64().unwrap_or_default();
                if let Some(row) = select_row(&tx, model, id, &Filter::default())? {
                    delete_cascading(&tx, schema, model, row, &mut changes)?;
                }
            }
        }
    }
    if changes.is_empty() {
        return Ok(changes);
    }
    log_changes(&tx, schema, &mut changes)?;
    tx.commit().map_err(db_error)?;
    // Still under the writer lock: the bus sees batches in commit order. A closed sink means shutdown; the changes
    // are committed and logged either way.
    let _ = sink.blocking_send(BusMessage::Changes(Arc::new(changes.clone())));
    Ok(changes)
}

fn model_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Model, StoreError> {
    schema.get_model(name).ok_or_else(|| StoreError::Database(format!("unknown model {name}")))
}

fn change(model: &Model, action: Action, old: Option<Row>, new: Option<Row>) -> Change {
    let id = new.as_ref().or(old.as_ref()).and_then(|r| r[0].as_i64()).unwrap_or_default();
    Change { model: Arc::from(model.name.as_str()), id, action, old, new, offset: 0 }
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
fn delete_cascading(
    tx: &Transaction<'_>,
    schema: &Schema,
    model: &Model,
    row: Row,
    changes: &mut Vec<Change>,
) -> Result<(), StoreError> {
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
                            delete_cascading(tx, schema, referrer, child, changes)?;
                        }
                    }
                }
                OnDelete::SetNull => {
                    for old in rows {
                        let child_id = old[0].as_i64().unwrap_or_default();
                        let mut new = old.clone();
                        new[index] = Value::Null;
                        update(tx, referrer, child_id, &[(index, Value::Null)])?;
                        changes.push(change(referrer, Action::Updated, Some(old), Some(new)));
                    }
                }
            }
        }
    }
    tx.prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ?1", quote(&model.name)))
        .and_then(|mut s| s.execute([id]))
        .map_err(db_error)?;
    changes.push(change(model, Action::Deleted, Some(row), None));
    Ok(())
}

fn image(model: &Model, row: &Row) -> String {
    let map: Map<String, Json> = model.fields.iter().zip(row).map(|(f, v)| (f.name.clone(), v.to_json())).collect();
    Json::Object(map).to_string()
}

/// Gives each change the next offset of its model and writes its change-log entry.
fn log_changes(tx: &Transaction<'_>, schema: &Schema, changes: &mut [Change]) -> Result<(), StoreError> {
    let at = now_datetime();
    for change in changes.iter_mut() {
        let model = model_of(schema, &change.model)?;
        let offset: i64 = tx
            .prepare_cached("UPDATE _drakon_offsets SET last = last + 1 WHERE model = ?1 RETURNING last")
            .and_then(|mut s| s.query_row([&*change.model], |r| r.get(0)))
            .map_err(db_error)?;
        change.offset = offset as u64;
        tx.prepare_cached(
            "INSERT INTO _drakon_changes (model, offset, row_id, action, old, new, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                &*change.model,
                offset,
                change.id,
                change.action.as_str(),
                change.old.as_ref().map(|r| image(model, r)),
                change.new.as_ref().map(|r| image(model, r)),
                at,
            ])
        })
        .map_err(db_error)?;
    }
    Ok(())
}
