//! Creates missing tables and columns, and refuses any schema change that could lose or silently convert data.
//!
//! `_drakon_fields` remembers each column's declared drakon type and optionality, since SQLite's column types
//! cannot tell `text` from `datetime`.

use std::collections::HashMap;

use drakon_core::filter::sql::quote;
use drakon_core::migration::{Rules, Step, plan_existing, type_tag};
use drakon_core::store::{MigrationReport, StoreError};
use drakon_core::{Field, FieldType, Model, Schema, Value};
use rusqlite::{Connection, OptionalExtension};

use crate::db_error;

/// The tables drakon keeps for itself.
pub fn ensure_meta(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _drakon_fields (
             model TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL, optional INTEGER NOT NULL,
             PRIMARY KEY (model, field)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS _drakon_offsets (model TEXT PRIMARY KEY, last INTEGER NOT NULL) WITHOUT ROWID;
         INSERT OR IGNORE INTO _drakon_offsets (model, last) VALUES ('*', 0);
         CREATE TABLE IF NOT EXISTS _drakon_changes (
             model TEXT NOT NULL, offset INTEGER NOT NULL, seq INTEGER NOT NULL, row_id INTEGER NOT NULL,
             action TEXT NOT NULL, old TEXT, new TEXT, at TEXT NOT NULL,
             PRIMARY KEY (model, offset)) WITHOUT ROWID;
         CREATE UNIQUE INDEX IF NOT EXISTS _drakon_changes_seq ON _drakon_changes (seq);
         CREATE TABLE IF NOT EXISTS _drakon_watch (model TEXT NOT NULL, field TEXT NOT NULL,
             PRIMARY KEY (model, field)) WITHOUT ROWID;",
    )
    .and_then(|()| conn.execute_batch(crate::accounts::TABLES))
    .map_err(db_error)
}

fn sql_type(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::Id | FieldType::Int | FieldType::Bool | FieldType::Ref { .. } => "INTEGER",
        FieldType::Float => "REAL",
        FieldType::Text | FieldType::DateTime | FieldType::Json => "TEXT",
    }
}

/// A literal for a DDL default; values come from the config, so they are escaped, never trusted.
fn sql_literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => i64::from(*b).to_string(),
        Value::Text(s) | Value::DateTime(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Json(j) => format!("'{}'", j.to_string().replace('\'', "''")),
    }
}

fn column_def(field: &Field) -> String {
    let mut def = format!("{} {}", quote(&field.name), sql_type(&field.ty));
    if !field.optional {
        def.push_str(" NOT NULL");
    }
    if let Some(default) = &field.default {
        def.push_str(&format!(" DEFAULT {}", sql_literal(default)));
    }
    def
}

/// SQLite cannot drop a NOT NULL constraint without rebuilding the table.
const RULES: Rules = Rules {
    require_by_hand: |_, _| "rebuild the table".to_owned(),
    relax_refusal: Some(|model, field| {
        format!(
            "field {}.{} became optional; SQLite keeps its NOT NULL constraint, so drakon would fail writing null: \
             keep it required for now, or rebuild the table yourself",
            model.name, field.name
        )
    }),
};

/// Brings the database up to `schema` in one transaction, or changes nothing and says what the user must do.
pub fn migrate(conn: &mut Connection, schema: &Schema) -> Result<MigrationReport, StoreError> {
    // IMMEDIATE: take the write lock before reading, so a commit by another process in between cannot fail us.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_error)?;
    let mut report = MigrationReport::default();
    let mut refused = Vec::new();
    for model in &schema.models {
        let table = quote(&model.name);
        let exists: bool = tx
            .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [&model.name], |_| Ok(()))
            .optional()
            .map_err(db_error)?
            .is_some();
        let known: HashMap<String, (String, bool)> = {
            let mut stmt =
                tx.prepare("SELECT field, type, optional FROM _drakon_fields WHERE model = ?1").map_err(db_error)?;
            stmt.query_map([&model.name], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
                .map_err(db_error)?
                .collect::<Result<_, _>>()
                .map_err(db_error)?
        };
        if !exists {
            let mut defs = vec!["\"id\" INTEGER PRIMARY KEY AUTOINCREMENT".to_owned()];
            defs.extend(model.fields.iter().skip(1).map(column_def));
            tx.execute_batch(&format!("CREATE TABLE {table} ({})", defs.join(", "))).map_err(db_error)?;
            report.created_tables.push(model.name.clone());
        } else {
            let columns: Vec<String> = {
                let mut stmt = tx.prepare(&format!("PRAGMA table_info({table})")).map_err(db_error)?;
                stmt.query_map([], |r| r.get(1)).map_err(db_error)?.collect::<Result<_, _>>().map_err(db_error)?
            };
            let (steps, refusals) = plan_existing(model, &columns, &known, RULES);
            refused.extend(refusals);
            for step in steps {
                match step {
                    Step::AddColumn(field) => {
                        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {}", column_def(field)))
                            .map_err(db_error)?;
                        report.added_columns.push(format!("{}.{}", model.name, field.name));
                    }
                    Step::DropNotNull(_) => unreachable!("SQLite's rules refuse relaxing NOT NULL"),
                }
            }
        }
        for field in model.fields.iter().skip(1) {
            if field.unique {
                tx.execute_batch(&format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {table} ({})",
                    quote(&format!("{}__{}__unique", model.name, field.name)),
                    quote(&field.name)
                ))
                .map_err(db_error)?;
            }
            if field.ref_target().is_some() {
                tx.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {table} ({})",
                    quote(&format!("{}__{}__ref", model.name, field.name)),
                    quote(&field.name)
                ))
                .map_err(db_error)?;
            }
            tx.execute(
                "INSERT INTO _drakon_fields (model, field, type, optional) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (model, field) DO UPDATE SET type = excluded.type, optional = excluded.optional",
                rusqlite::params![model.name, field.name, type_tag(field), field.optional],
            )
            .map_err(db_error)?;
        }
        tx.execute("INSERT OR IGNORE INTO _drakon_offsets (model, last) VALUES (?1, 0)", [&model.name])
            .map_err(db_error)?;
        tx.execute_batch(&triggers(schema, model)).map_err(db_error)?;
    }
    if !refused.is_empty() {
        return Err(StoreError::Migration(refused.join("\n")));
    }
    tx.commit().map_err(db_error)?;
    Ok(report)
}

/// A row image as SQL: `json_object('id', X."id", 'name', X."name", …)` for `X` = `NEW` or `OLD`. JSON fields are
/// embedded as JSON when they hold valid JSON (they do when drakon wrote them) and as text otherwise.
fn image_sql(model: &Model, row: &str) -> String {
    let parts: Vec<String> = model
        .fields
        .iter()
        .map(|f| {
            let column = format!("{row}.{}", quote(&f.name));
            let value = match f.ty {
                FieldType::Json => format!("CASE WHEN json_valid({column}) THEN json({column}) ELSE {column} END"),
                _ => column,
            };
            format!("'{}', {value}", f.name)
        })
        .collect();
    format!("json_object({})", parts.join(", "))
}

/// A row image with the rows it refers to: [`image_sql`] plus `'__refs', json_object('<ref field>', <referenced
/// row's image or null>, …)`, read at trigger time, i.e. as they are when the change commits. `swap` replaces the
/// referenced row of one ref field with a row of the trigger (`OLD` or `NEW`), for touches.
fn image_with_refs(schema: &Schema, model: &Model, row: &str, swap: Option<(&str, &str)>) -> String {
    let mut refs = Vec::new();
    for field in &model.fields {
        let Some((target, _)) = field.ref_target() else { continue };
        let Some(target) = schema.get_model(target) else { continue };
        let image = match swap {
            Some((swapped, trigger_row)) if swapped == field.name => image_sql(target, trigger_row),
            _ => format!(
                "(SELECT {} FROM {} AS \"r\" WHERE \"r\".\"id\" = {row}.{})",
                image_sql(target, "\"r\""),
                quote(&target.name),
                quote(&field.name)
            ),
        };
        // json() keeps the nested image an object: a subquery's result loses its JSON subtype otherwise.
        refs.push(format!("'{}', json({image})", field.name));
    }
    let own = image_sql(model, row);
    if refs.is_empty() {
        return own;
    }
    format!("json_set({own}, '$.__refs', json_object({}))", refs.join(", "))
}

/// Triggers that write the change log for every insert, update and delete of the model's table, whoever makes
/// it: drakon, the `sqlite3` shell or another program. Offsets and the global sequence come from
/// `_drakon_offsets` inside the writing transaction; SQLite has one writer at a time, so both follow commit order.
/// An update that changes no column logs nothing.
///
/// When a row changes, rows of other models that refer to it may enter or leave filters that look through the
/// reference (`todo_list__name`). For each reference declared on this model that a subscription currently looks
/// through (`_drakon_watch`, kept by drakon), the update trigger also logs a *touch* of every referring row: an
/// `updated` entry whose old and new images are equal, in the same transaction, so the fan-out sees it in the same
/// batch as the change and can compare the filter before and after.
fn triggers(schema: &Schema, model: &Model) -> String {
    let name = &model.name; // a validated lowercase identifier, safe inside quotes
    let table = quote(name);
    let entry = |action: &str, old: &str, new: &str, id: &str| {
        format!(
            "UPDATE _drakon_offsets SET last = last + 1 WHERE model IN ('{name}', '*');
             INSERT INTO _drakon_changes (model, offset, seq, row_id, action, old, new, at) VALUES ('{name}',
                 (SELECT last FROM _drakon_offsets WHERE model = '{name}'),
                 (SELECT last FROM _drakon_offsets WHERE model = '*'),
                 {id}, '{action}', {old}, {new}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));"
        )
    };
    let changed: Vec<String> =
        model.fields.iter().map(|f| format!("OLD.{c} IS NOT NEW.{c}", c = quote(&f.name))).collect();
    let mut touches = String::new();
    for referrer in &schema.models {
        for field in referrer.fields.iter().filter(|f| f.ref_target().is_some_and(|(target, _)| target == name)) {
            let (r, f) = (&referrer.name, &field.name);
            let watched = format!("EXISTS (SELECT 1 FROM _drakon_watch WHERE model = '{r}' AND field = '{f}')");
            let referring = format!("{}.{} = NEW.\"id\"", quote("t"), quote(f));
            let old_image = image_with_refs(schema, referrer, "\"t\"", Some((f, "OLD")));
            let new_image = image_with_refs(schema, referrer, "\"t\"", Some((f, "NEW")));
            touches.push_str(&format!(
                "INSERT INTO _drakon_changes (model, offset, seq, row_id, action, old, new, at)
                     SELECT '{r}',
                         (SELECT last FROM _drakon_offsets WHERE model = '{r}') + row_number() OVER (ORDER BY \"t\".\"id\"),
                         (SELECT last FROM _drakon_offsets WHERE model = '*') + row_number() OVER (ORDER BY \"t\".\"id\"),
                         \"t\".\"id\", 'updated', {old_image}, {new_image}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                     FROM {table_r} AS \"t\" WHERE {referring} AND {watched};
                 UPDATE _drakon_offsets SET last = last + (SELECT count(*) FROM {table_r} AS \"t\" WHERE {referring})
                     WHERE model IN ('{r}', '*') AND {watched};",
                table_r = quote(r),
            ));
        }
    }
    let trigger = |suffix: &str| quote(&format!("_drakon_{name}_{suffix}"));
    format!(
        "DROP TRIGGER IF EXISTS {ins}; DROP TRIGGER IF EXISTS {upd}; DROP TRIGGER IF EXISTS {del};
         CREATE TRIGGER {ins} AFTER INSERT ON {table} BEGIN {insert_entry} END;
         CREATE TRIGGER {upd} AFTER UPDATE ON {table} WHEN {changed} BEGIN {update_entry} END;
         CREATE TRIGGER {del} AFTER DELETE ON {table} BEGIN {delete_entry} END;",
        ins = trigger("insert"),
        upd = trigger("update"),
        del = trigger("delete"),
        changed = changed.join(" OR "),
        insert_entry = entry("created", "NULL", &image_with_refs(schema, model, "NEW", None), "NEW.\"id\""),
        update_entry = entry(
            "updated",
            &image_with_refs(schema, model, "OLD", None),
            &image_with_refs(schema, model, "NEW", None),
            "NEW.\"id\""
        ) + &touches,
        delete_entry = entry("deleted", &image_with_refs(schema, model, "OLD", None), "NULL", "OLD.\"id\""),
    )
}
