//! Filters: Django-style lookups (`field`, `field__op`, `ref__field__op`) typed by the schema.
//!
//! A [`Filter`] is parsed once against the schema and then compiled two ways that must agree: to parameterized
//! SQL for reads ([`sql`]) and to an in-memory matcher for live events ([`matcher`]). A property test holds the two
//! to the same rows. Values are read by the type of the field they compare with, never by their JSON shape.
//!
//! Null semantics, the same on both sides: a path through a null reference yields null; `eq`, `lt`, `lte`, `gt`,
//! `gte`, `in`, `contains`, `icontains` and `startswith` never match null; `ne` does (it means "is distinct from");
//! `eq: null` means `isnull: true` and `ne: null` means `isnull: false`.

pub mod matcher;
pub mod sql;

use std::fmt;

use drakon_protocol::{Args, ErrorCode};
use serde_json::Value as Json;

use crate::limits;
use crate::schema::{FieldType, Model, Schema};
use crate::value::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Contains,
    IContains,
    StartsWith,
    IsNull,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::In,
        Op::Contains,
        Op::IContains,
        Op::StartsWith,
        Op::IsNull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::In => "in",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::StartsWith => "startswith",
            Op::IsNull => "isnull",
        }
    }

    fn parse(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == name)
    }

    fn allowed_on(self, ty: &FieldType) -> bool {
        use FieldType as T;
        match self {
            Op::IsNull => true,
            Op::Eq | Op::Ne | Op::In => !matches!(ty, T::Json),
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => {
                matches!(ty, T::Id | T::Int | T::Float | T::Text | T::DateTime | T::Ref { .. })
            }
            Op::Contains | Op::IContains | Op::StartsWith => matches!(ty, T::Text),
        }
    }
}

/// One step through a reference: the referring field on `from_model`, landing on `to_model`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    pub from_model: String,
    pub field: String,
    pub to_model: String,
}

/// Where a condition reads its value: zero or more hops, then a field of the last model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lookup {
    pub hops: Vec<Hop>,
    /// The model the field belongs to (the last hop's target, or the filtered model).
    pub model: String,
    pub field: String,
    pub ty: FieldType,
    /// Where `field` sits in its model's fields (and so in a row of it): the hub reads a row's value by position
    /// when it matches a change against thousands of channels.
    pub position: usize,
}

impl Lookup {
    /// The lookup in filter syntax, without an operator: `todo_list__name`.
    pub fn path(&self) -> String {
        let mut parts: Vec<&str> = self.hops.iter().map(|h| h.field.as_str()).collect();
        parts.push(&self.field);
        parts.join("__")
    }

    /// True when the value lives on the filtered row itself.
    pub fn is_local(&self) -> bool {
        self.hops.is_empty()
    }
}

/// The right-hand side of a condition, already typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    One(Value),
    List(Vec<Value>),
    Flag(bool),
}

/// One `lookup__op: value` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub lookup: Lookup,
    pub op: Op,
    pub operand: Operand,
}

/// Conditions that must all hold, and groups of alternatives of which one must hold in each group.
///
/// Clients' filters are conditions only; the alternatives come from rules joined with `any` (one user's rows are
/// "their own, or shared"). Both compile the same way: to SQL with `AND` and `OR`, and to the in-memory matcher.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub conds: Vec<Cond>,
    pub any_of: Vec<Vec<Filter>>,
}

/// Why a filter was refused; `key` is the argument it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct FilterError {
    pub code: ErrorCode,
    pub key: String,
    pub message: String,
}

impl FilterError {
    fn new(code: ErrorCode, key: &str, message: impl Into<String>) -> FilterError {
        FilterError { code, key: key.to_owned(), message: message.into() }
    }
}

/// Parses a lookup path without an operator (`todo_list__name`), as route params declare them.
pub fn parse_lookup(schema: &Schema, model: &Model, path: &str) -> Result<Lookup, FilterError> {
    let segments: Vec<&str> = path.split("__").collect();
    resolve(schema, model, path, &segments, false)
}

/// Walks `segments` through references. `op_expected`: the key had no operator of its own, so a last unknown
/// segment after a non-reference is most likely a misspelt operator, and the error says so.
fn resolve(
    schema: &Schema,
    model: &Model,
    key: &str,
    segments: &[&str],
    op_expected: bool,
) -> Result<Lookup, FilterError> {
    let mut current = model;
    let mut hops = Vec::new();
    for (i, name) in segments.iter().enumerate() {
        let Some(field) = current.get_field(name) else {
            return Err(FilterError::new(
                ErrorCode::UnknownField,
                key,
                format!("model `{}` has no field `{name}`", current.name),
            ));
        };
        let last = i + 1 == segments.len();
        let position = current.field_index(name).unwrap_or_default();
        match (&field.ty, last) {
            (_, true) => {
                return Ok(Lookup {
                    hops,
                    model: current.name.clone(),
                    field: field.name.clone(),
                    ty: field.ty.clone(),
                    position,
                });
            }
            (FieldType::Ref { model: target, .. }, false) => {
                let target_model = schema.get_model(target).ok_or_else(|| {
                    FilterError::new(ErrorCode::Internal, key, format!("reference to unknown model `{target}`"))
                })?;
                // `ref__id` is the reference itself: no hop needed.
                if i + 2 == segments.len() && segments[i + 1] == "id" {
                    return Ok(Lookup {
                        hops,
                        model: current.name.clone(),
                        field: field.name.clone(),
                        ty: field.ty.clone(),
                        position,
                    });
                }
                hops.push(Hop {
                    from_model: current.name.clone(),
                    field: field.name.clone(),
                    to_model: target.clone(),
                });
                current = target_model;
            }
            (_, false) if op_expected && i + 2 == segments.len() => {
                return Err(FilterError::new(
                    ErrorCode::InvalidFilter,
                    key,
                    format!("unknown operator `{}`; use one of {}", segments[i + 1], op_names()),
                ));
            }
            (_, false) => {
                return Err(FilterError::new(
                    ErrorCode::InvalidFilter,
                    key,
                    format!("`{name}` is not a reference, so no lookup can follow it"),
                ));
            }
        }
    }
    Err(FilterError::new(ErrorCode::InvalidFilter, key, "empty lookup"))
}

fn op_names() -> String {
    Op::ALL.iter().map(|op| op.as_str()).collect::<Vec<_>>().join(", ")
}

impl Filter {
    /// Parses filter arguments (`{"todo_list__id": 1, "done": false}`) against `model`.
    pub fn parse(schema: &Schema, model: &Model, args: &Args) -> Result<Filter, FilterError> {
        if args.len() > limits::MAX_FILTER_CONDITIONS {
            return Err(FilterError::new(
                ErrorCode::InvalidFilter,
                "",
                format!("a filter may have at most {} conditions", limits::MAX_FILTER_CONDITIONS),
            ));
        }
        let mut conds = Vec::with_capacity(args.len());
        for (key, value) in args {
            conds.push(Cond::parse(schema, model, key, value)?);
        }
        Ok(Filter { conds, any_of: Vec::new() })
    }

    /// Whether the filter holds no condition at all, and so matches every row.
    pub fn is_everything(&self) -> bool {
        self.conds.is_empty() && self.any_of.is_empty()
    }

    /// Rows that match any of `filters` (none: no row).
    pub fn either(filters: Vec<Filter>) -> Filter {
        Filter { conds: Vec::new(), any_of: vec![filters] }
    }

    pub fn and(mut self, other: Filter) -> Filter {
        self.conds.extend(other.conds);
        self.any_of.extend(other.any_of);
        self
    }

    /// Every lookup that goes through a reference, once each, alternatives included.
    pub fn remote_lookups(&self) -> Vec<&Lookup> {
        let mut lookups: Vec<&Lookup> = Vec::new();
        self.collect_remote(&mut lookups);
        lookups
    }

    fn collect_remote<'a>(&'a self, into: &mut Vec<&'a Lookup>) {
        for lookup in self.conds.iter().map(|c| &c.lookup).filter(|l| !l.is_local()) {
            if !into.contains(&lookup) {
                into.push(lookup);
            }
        }
        for filter in self.any_of.iter().flatten() {
            filter.collect_remote(into);
        }
    }
}

impl Cond {
    pub fn parse(schema: &Schema, model: &Model, key: &str, value: &Json) -> Result<Cond, FilterError> {
        if key.is_empty() {
            return Err(FilterError::new(ErrorCode::InvalidFilter, key, "empty filter key"));
        }
        let mut segments: Vec<&str> = key.split("__").collect();
        let (op, op_expected) = match segments.last().and_then(|s| Op::parse(s)) {
            Some(op) if segments.len() > 1 => {
                segments.pop();
                (op, false)
            }
            _ => (Op::Eq, true),
        };
        let lookup = resolve(schema, model, key, &segments, op_expected)?;
        if !op.allowed_on(&lookup.ty) {
            return Err(FilterError::new(
                ErrorCode::InvalidFilter,
                key,
                format!("operator `{}` does not apply to {} field `{}`", op.as_str(), lookup.ty.name(), lookup.field),
            ));
        }
        let wrong = |message: String| FilterError::new(ErrorCode::WrongType, key, message);
        let (op, operand) = match op {
            Op::IsNull => match value {
                Json::Bool(flag) => (Op::IsNull, Operand::Flag(*flag)),
                _ => return Err(wrong("isnull takes true or false".into())),
            },
            Op::In => {
                let Json::Array(items) = value else {
                    return Err(wrong("in takes a list of values".into()));
                };
                if items.len() > limits::MAX_IN_VALUES {
                    return Err(FilterError::new(
                        ErrorCode::InvalidFilter,
                        key,
                        format!("in takes at most {} values", limits::MAX_IN_VALUES),
                    ));
                }
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    match Value::from_json(&lookup.ty, item) {
                        Ok(Value::Null) => return Err(wrong("in may not list null; use isnull".into())),
                        Ok(v) => values.push(v),
                        Err(e) => return Err(wrong(e.0)),
                    }
                }
                (Op::In, Operand::List(values))
            }
            op => match Value::from_json(&lookup.ty, value).map_err(|e| wrong(e.0))? {
                Value::Null => match op {
                    Op::Eq => (Op::IsNull, Operand::Flag(true)),
                    Op::Ne => (Op::IsNull, Operand::Flag(false)),
                    _ => return Err(wrong(format!("{} cannot compare with null", op.as_str()))),
                },
                v => (op, Operand::One(v)),
            },
        };
        Ok(Cond { lookup, op, operand })
    }
}

impl fmt::Display for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}__{} {:?}", self.lookup.path(), self.op.as_str(), self.operand)
    }
}

#[cfg(test)]
pub(crate) mod tests;
