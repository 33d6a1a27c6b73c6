//! The write algorithm, written once for every store: which rows a write reads, checks and changes, in which order,
//! and how it answers with the change-log entries it made. A store supplies only its dialect, as a [`WriteTx`]
//! over its own open transaction: selecting rows, inserting, updating, deleting, and reading the log.
//!
//! A store opens the transaction (taking whatever lock makes it the only drakon writer until it commits), awaits
//! [`apply`], commits when the write logged anything (rolls back when it did not) and publishes. So the rules for
//! references, guards and `on_delete` live here, and a new rule lands once.
//!
//! Why `async`: PostgreSQL's transaction is driven by tokio-postgres, so its steps must await. SQLite's steps are
//! synchronous rusqlite calls made on the blocking pool; its `WriteTx` methods do their work before returning
//! `Ready`, so the SQLite store polls [`apply`] once, to completion, on that thread, with no executor. A synchronous
//! copy of the algorithm for SQLite would be the second algorithm this module exists to remove. The trait's futures
//! carry no `Send` bound: a rusqlite transaction never leaves its thread, while the PostgreSQL store's futures are
//! `Send` by their concrete types, which is what its async caller needs.

use crate::filter::{Cond, Filter, Lookup, Op, Operand};
use crate::schema::{FieldType, Model, OnDelete, Schema};
use crate::store::{Assignment, Change, Row, StoreError, WriteOp};
use crate::value::Value;

/// One store's open write transaction, as [`apply`] uses it. Every method runs inside that transaction; an error
/// ends the write, and the store rolls the transaction back.
#[allow(async_fn_in_trait, reason = "the SQLite transaction is not Send; see the module's doc")]
pub trait WriteTx {
    /// The log's last global sequence number, as this transaction sees it.
    async fn log_head(&mut self) -> Result<u64, StoreError>;

    /// Every change logged after global sequence `seq`: inside the write, the write's own, in log order.
    async fn changes_since(&mut self, schema: &Schema, seq: u64) -> Result<Vec<Change>, StoreError>;

    /// Rows of `model` matching `filter`, ordered by id. With `lock`, no other writer may change or delete them
    /// until this transaction ends (a store whose write transaction already shuts out every other writer need not
    /// do more).
    async fn select(&mut self, model: &Model, filter: &Filter, lock: bool) -> Result<Vec<Row>, StoreError>;

    /// Whether row `id` of `model` exists; if it does, nobody may delete it until this transaction ends (a
    /// reference to it is about to be written).
    async fn exists(&mut self, model: &Model, id: i64) -> Result<bool, StoreError>;

    /// Inserts `row` (every field but `id`, which the database gives out) and returns the new row's id; a unique
    /// field's duplicate is [`StoreError::Unique`].
    async fn insert(&mut self, model: &Model, row: &Row) -> Result<i64, StoreError>;

    /// Sets `values` on row `id`; a unique field's duplicate is [`StoreError::Unique`].
    async fn update(&mut self, model: &Model, id: i64, values: &[Assignment]) -> Result<(), StoreError>;

    /// Deletes row `id`, nothing else: [`apply`] has already dealt with the rows that refer to it.
    async fn delete(&mut self, model: &Model, id: i64) -> Result<(), StoreError>;
}

/// Runs `op` in `tx` and returns the changes it logged (none: it changed nothing, and nothing need commit).
pub async fn apply<T: WriteTx>(tx: &mut T, schema: &Schema, op: &WriteOp) -> Result<Vec<Change>, StoreError> {
    // The store's write lock is held: every entry past this point is this write's own.
    let before = tx.log_head().await?;
    match op {
        WriteOp::Create { model, values, guard } => {
            let model = model_of(schema, model)?;
            check_refs(tx, schema, model, values).await?;
            // Fields the write leaves out take their default (or null); the store fills them so the logged image
            // is whole.
            let mut row: Row = model.fields.iter().map(|f| f.default.clone().unwrap_or(Value::Null)).collect();
            for (i, v) in values {
                row[*i] = v.clone();
            }
            let id = tx.insert(model, &row).await?;
            require_guard(tx, model, id, guard).await?;
        }
        WriteOp::Update { model, id, values, guard } => {
            let model = model_of(schema, model)?;
            let old = select_row(tx, model, *id, guard).await?.ok_or_else(|| not_found(model, *id))?;
            check_refs(tx, schema, model, values).await?;
            let mut new = old.clone();
            for (i, v) in values {
                new[*i] = v.clone();
            }
            // An update that changes nothing writes nothing, so it logs nothing either.
            if new != old {
                tx.update(model, *id, values).await?;
                require_guard(tx, model, *id, guard).await?;
            }
        }
        WriteOp::Delete { model, id, guard } => {
            let model = model_of(schema, model)?;
            select_row(tx, model, *id, guard).await?.ok_or_else(|| not_found(model, *id))?;
            delete_cascading(tx, schema, model, *id).await?;
        }
        WriteOp::DeleteWhere { model, filter } => {
            let model = model_of(schema, model)?;
            for row in tx.select(model, filter, true).await? {
                // An earlier cascade in this batch may already have removed the row.
                let id = id_of(&row);
                if select_row(tx, model, id, &Filter::default()).await?.is_some() {
                    delete_cascading(tx, schema, model, id).await?;
                }
            }
        }
    }
    tx.changes_since(schema, before).await
}

fn model_of<'a>(schema: &'a Schema, name: &str) -> Result<&'a Model, StoreError> {
    schema.get_model(name).ok_or_else(|| StoreError::Database(format!("unknown model {name}")))
}

fn not_found(model: &Model, id: i64) -> StoreError {
    StoreError::NotFound { model: model.name.clone(), id }
}

fn id_of(row: &Row) -> i64 {
    row[0].as_i64().unwrap_or_default()
}

/// `model.field = id`, a condition on a plain column (no hops).
fn eq_cond(model: &Model, field: &str, ty: FieldType, id: i64) -> Cond {
    Cond {
        lookup: Lookup {
            hops: Vec::new(),
            model: model.name.clone(),
            field: field.to_owned(),
            ty,
            position: model.field_index(field).unwrap_or_default(),
        },
        op: Op::Eq,
        operand: Operand::One(Value::Int(id)),
    }
}

/// Row `id` of `model` if it satisfies `guard`, locked until the write ends.
async fn select_row<T: WriteTx>(tx: &mut T, model: &Model, id: i64, guard: &Filter) -> Result<Option<Row>, StoreError> {
    let mut filter = guard.clone();
    filter.conds.push(eq_cond(model, "id", FieldType::Id, id));
    Ok(tx.select(model, &filter, true).await?.into_iter().next())
}

/// Every reference the write sets names a row that exists (and keeps existing until the write commits).
async fn check_refs<T: WriteTx>(
    tx: &mut T,
    schema: &Schema,
    model: &Model,
    values: &[Assignment],
) -> Result<(), StoreError> {
    for (i, v) in values {
        let field = &model.fields[*i];
        let (Some((target, _)), Some(id)) = (field.ref_target(), v.as_i64()) else { continue };
        let target = model_of(schema, target)?;
        if !tx.exists(target, id).await? {
            return Err(StoreError::MissingRef { field: field.name.clone(), target: target.name.clone() });
        }
    }
    Ok(())
}

/// The written row `id` still satisfies the route's guard: a write may not move a row out of what its route sees.
async fn require_guard<T: WriteTx>(tx: &mut T, model: &Model, id: i64, guard: &Filter) -> Result<(), StoreError> {
    if guard.is_everything() {
        return Ok(());
    }
    let mut filter = guard.clone();
    filter.conds.push(eq_cond(model, "id", FieldType::Id, id));
    // The row is this write's own already; reading it needs no lock.
    if tx.select(model, &filter, false).await?.is_empty() {
        return Err(StoreError::OutsideRoute);
    }
    Ok(())
}

/// Deletes row `id` of `model` after applying every reference's `on_delete` to the rows that point at it, in the
/// schema's order of models and fields, children before their parent: so the log lists a cascade's deletions
/// before the deletion that caused them, and a `restrict` anywhere refuses the whole write.
async fn delete_cascading<T: WriteTx>(tx: &mut T, schema: &Schema, model: &Model, id: i64) -> Result<(), StoreError> {
    for referrer in &schema.models {
        for (index, field) in referrer.fields.iter().enumerate() {
            let Some((target, on_delete)) = field.ref_target() else { continue };
            if target != model.name {
                continue;
            }
            let mut filter = Filter::default();
            filter.conds.push(eq_cond(referrer, &field.name, field.ty.clone(), id));
            let rows = tx.select(referrer, &filter, true).await?;
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
                        let child = id_of(&child);
                        // A self-referencing cascade may have removed it already.
                        if select_row(tx, referrer, child, &Filter::default()).await?.is_some() {
                            Box::pin(delete_cascading(tx, schema, referrer, child)).await?;
                        }
                    }
                }
                OnDelete::SetNull => {
                    for child in rows {
                        tx.update(referrer, id_of(&child), &[(index, Value::Null)]).await?;
                    }
                }
            }
        }
    }
    tx.delete(model, id).await
}
