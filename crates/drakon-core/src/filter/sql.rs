//! Compiles a [`Filter`] to a parameterized SQL condition.
//!
//! Identifiers come only from the schema (the parser has checked every field name) and are quoted; values are
//! always bound parameters, never text in the statement. A path through references becomes a scalar subquery, which
//! yields NULL for a null or dangling reference exactly as the matcher does.

use std::fmt::Write;

use super::{Cond, Filter, Lookup, Op, Operand};
use crate::value::Value;

/// SQL flavours drakon speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
}

/// A condition and the values bound to its placeholders, in order.
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

/// Compiles `filter` against rows of the table aliased `alias`. An empty filter is `1`.
pub fn compile(filter: &Filter, alias: &str, dialect: Dialect) -> SqlCondition {
    let mut out = SqlCondition::default();
    if filter.conds.is_empty() {
        out.sql.push('1');
        return out;
    }
    for (i, cond) in filter.conds.iter().enumerate() {
        if i > 0 {
            out.sql.push_str(" AND ");
        }
        compile_cond(cond, alias, dialect, &mut out);
    }
    out
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
    let Dialect::Sqlite = dialect;
    let bind = |out: &mut SqlCondition, v: &Value| {
        out.params.push(v.clone());
        "?".to_owned()
    };
    let sql = match (&cond.op, &cond.operand) {
        (Op::IsNull, Operand::Flag(true)) => format!("{expr} IS NULL"),
        (Op::IsNull, Operand::Flag(false)) => format!("{expr} IS NOT NULL"),
        (Op::In, Operand::List(values)) if values.is_empty() => "0".to_owned(),
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
            let p = bind(out, v);
            match op {
                Op::Eq => format!("{expr} = {p}"),
                // Null-safe: a null value is distinct from any given value, as in the matcher.
                Op::Ne => format!("{expr} IS NOT {p}"),
                Op::Lt => format!("{expr} < {p}"),
                Op::Lte => format!("{expr} <= {p}"),
                Op::Gt => format!("{expr} > {p}"),
                Op::Gte => format!("{expr} >= {p}"),
                Op::Contains => format!("instr({expr}, {p}) > 0"),
                // SQLite's lower() folds ASCII only; the matcher folds exactly the same letters.
                Op::IContains => format!("instr(lower({expr}), lower({p})) > 0"),
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
