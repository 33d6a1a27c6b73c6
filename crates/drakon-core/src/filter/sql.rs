//! Compiles a [`Filter`] to a parameterized SQL condition.
//!
//! Identifiers come only from the schema (the parser has checked every field name) and are quoted; values are
//! always bound parameters, never text in the statement. A path through references becomes a scalar subquery, which
//! yields NULL for a null or dangling reference exactly as the matcher does.
//!
//! PostgreSQL gets `$n` placeholders, each cast to the type of its value, so a statement's parameter types never
//! depend on what the server infers from the context around them; `strpos` for `instr`; an ASCII-only case fold
//! with `translate`, because PostgreSQL's `lower` folds every letter of the database's locale while the matcher
//! folds ASCII only; and `COLLATE "C"` on text order comparisons, so that `lt`/`gt` compare bytes as the matcher
//! does whatever the database's default collation is.

use std::fmt::Write;

use super::{Cond, Filter, Lookup, Op, Operand};
use crate::value::Value;

/// SQL flavours drakon speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The letters the matcher folds for `icontains` (`str::to_ascii_lowercase`), as `translate` arguments.
const ASCII_FOLD: &str = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'";

/// The PostgreSQL type a bound value is cast to: the column type the store gives that kind of value.
fn pg_type(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "int8",
        Value::Float(_) => "float8",
        Value::Bool(_) => "bool",
        Value::Json(_) => "jsonb",
        Value::Null | Value::Text(_) | Value::DateTime(_) => "text",
    }
}

/// A condition (or a whole statement) and the values bound to its placeholders, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlCondition {
    pub sql: String,
    pub params: Vec<Value>,
}

/// Quotes an identifier that the schema has already validated (lowercase identifiers only).
pub fn quote(ident: &str) -> String {
    debug_assert!(!ident.contains('"'));
    format!("\"{ident}\"")
}

/// The `ORDER BY` list for `order` over rows of `model` aliased `alias`, the same in every dialect: nulls sort
/// before every value (SQLite's rule, and the JS mirror's), and `id` breaks ties, so pages never skip or repeat
/// rows that share a value.
pub fn order_by(model: &crate::Model, order: &[crate::store::OrderBy], alias: &str, dialect: Dialect) -> String {
    let mut terms: Vec<String> = order
        .iter()
        .map(|o| {
            let column = format!("{}.{}", quote(alias), quote(&model.fields[o.field].name));
            match (dialect, o.descending) {
                (Dialect::Sqlite, false) => format!("{column} ASC"),
                (Dialect::Sqlite, true) => format!("{column} DESC"),
                (Dialect::Postgres, false) => format!("{column} ASC NULLS FIRST"),
                (Dialect::Postgres, true) => format!("{column} DESC NULLS LAST"),
            }
        })
        .collect();
    if !order.iter().any(|o| o.field == 0) {
        terms.push(format!("{}.\"id\"", quote(alias)));
    }
    terms.join(", ")
}

/// `"t"."id", "t"."name", …`: every field of `model`, in the model's order, from the table aliased `alias`.
pub fn columns(model: &crate::Model, alias: &str) -> String {
    model.fields.iter().map(|f| format!("{}.{}", quote(alias), quote(&f.name))).collect::<Vec<_>>().join(", ")
}

/// The statement reading every row of `model` where `filter` holds, whole (see [`columns`]) and by id, as a
/// write reads the rows it is about to check or change.
pub fn select_where(model: &crate::Model, filter: &Filter, dialect: Dialect) -> SqlCondition {
    let cond = compile(filter, "t", dialect);
    let sql = format!(
        "SELECT {} FROM {} AS \"t\" WHERE {} ORDER BY \"t\".\"id\"",
        columns(model, "t"),
        quote(&model.name),
        cond.sql
    );
    SqlCondition { sql, params: cond.params }
}

/// Compiles `filter` against rows of the table aliased `alias`. An empty filter is always true (`1`, `TRUE`).
/// PostgreSQL placeholders are numbered from `$1` in the order of `params`.
pub fn compile(filter: &Filter, alias: &str, dialect: Dialect) -> SqlCondition {
    let mut out = SqlCondition::default();
    compile_into(filter, alias, dialect, &mut out);
    out
}

fn compile_into(filter: &Filter, alias: &str, dialect: Dialect, out: &mut SqlCondition) {
    let (yes, no) = match dialect {
        Dialect::Sqlite => ("1", "0"),
        Dialect::Postgres => ("TRUE", "FALSE"),
    };
    if filter.is_everything() {
        out.sql.push_str(yes);
        return;
    }
    let mut first = true;
    for cond in &filter.conds {
        if !std::mem::take(&mut first) {
            out.sql.push_str(" AND ");
        }
        compile_cond(cond, alias, dialect, out);
    }
    for group in &filter.any_of {
        if !std::mem::take(&mut first) {
            out.sql.push_str(" AND ");
        }
        if group.is_empty() {
            out.sql.push_str(no);
            continue;
        }
        out.sql.push('(');
        for (i, alternative) in group.iter().enumerate() {
            if i > 0 {
                out.sql.push_str(" OR ");
            }
            out.sql.push('(');
            compile_into(alternative, alias, dialect, out);
            out.sql.push(')');
        }
        out.sql.push(')');
    }
}

fn lookup_expr(lookup: &Lookup, alias: &str) -> String {
    if lookup.hops.is_empty() {
        return format!("{}.{}", quote(alias), quote(&lookup.field));
    }
    // Innermost first: each hop selects the next reference (or the final field) from the row the previous one names.
    let mut expr = format!("{}.{}", quote(alias), quote(&lookup.hops[0].field));
    for (depth, hop) in lookup.hops.iter().enumerate() {
        let inner = format!("h{}", depth + 1);
        let column = lookup.hops.get(depth + 1).map_or(lookup.field.as_str(), |next| next.field.as_str());
        expr = format!(
            "(SELECT {i}.{c} FROM {t} AS {i} WHERE {i}.\"id\" = {expr})",
            i = quote(&format!("{alias}_{inner}")),
            c = quote(column),
            t = quote(&hop.to_model),
        );
    }
    expr
}

fn compile_cond(cond: &Cond, alias: &str, dialect: Dialect, out: &mut SqlCondition) {
    let expr = lookup_expr(&cond.lookup, alias);
    let bind = |out: &mut SqlCondition, v: &Value| {
        out.params.push(v.clone());
        match dialect {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${}::{}", out.params.len(), pg_type(v)),
        }
    };
    let pg = dialect == Dialect::Postgres;
    let sql = match (&cond.op, &cond.operand) {
        (Op::IsNull, Operand::Flag(true)) => format!("{expr} IS NULL"),
        (Op::IsNull, Operand::Flag(false)) => format!("{expr} IS NOT NULL"),
        (Op::In, Operand::List(values)) if values.is_empty() => (if pg { "FALSE" } else { "0" }).to_owned(),
        (Op::In, Operand::List(values)) => {
            let mut sql = format!("{expr} IN (");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let p = bind(out, v);
                sql.push_str(&p);
            }
            sql.push(')');
            sql
        }
        (op, Operand::One(v)) => {
            let mut p = bind(out, v);
            if pg
                && matches!(op, Op::Lt | Op::Lte | Op::Gt | Op::Gte)
                && matches!(v, Value::Text(_) | Value::DateTime(_))
            {
                // Byte order, as the matcher compares text, whatever the column's or database's collation.
                p.push_str(" COLLATE \"C\"");
            }
            match op {
                Op::Eq => format!("{expr} = {p}"),
                // Null-safe: a null value is distinct from any given value, as in the matcher.
                Op::Ne if pg => format!("{expr} IS DISTINCT FROM {p}"),
                Op::Ne => format!("{expr} IS NOT {p}"),
                Op::Lt => format!("{expr} < {p}"),
                Op::Lte => format!("{expr} <= {p}"),
                Op::Gt => format!("{expr} > {p}"),
                Op::Gte => format!("{expr} >= {p}"),
                Op::Contains if pg => format!("strpos({expr}, {p}) > 0"),
                Op::Contains => format!("instr({expr}, {p}) > 0"),
                // PostgreSQL's lower() folds every letter its locale knows; translate folds exactly what the matcher
                // folds.
                Op::IContains if pg => {
                    format!("strpos(translate({expr}, {ASCII_FOLD}), translate({p}, {ASCII_FOLD})) > 0")
                }
                // SQLite's lower() folds ASCII only; the matcher folds exactly the same letters.
                Op::IContains => format!("instr(lower({expr}), lower({p})) > 0"),
                // A `$n` placeholder may appear twice; SQLite's `?` takes a second binding.
                Op::StartsWith if pg => format!("substring({expr}, 1, char_length({p})) = {p}"),
                Op::StartsWith => {
                    let p2 = bind(out, v);
                    format!("substr({expr}, 1, length({p})) = {p2}")
                }
                Op::In | Op::IsNull => unreachable!("parser gives in a list and isnull a flag"),
            }
        }
        (op, operand) => unreachable!("parser never pairs {op:?} with {operand:?}"),
    };
    let _ = write!(out.sql, "({sql})");
}
