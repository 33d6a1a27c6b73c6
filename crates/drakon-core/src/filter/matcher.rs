//! Evaluates a [`Filter`] against a row in memory, with the same meaning as the SQL it compiles to.
//!
//! Values behind references are supplied by a [`Resolver`], so that the hub can match events without touching the
//! store for local lookups and with one prepared read per remote lookup.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::{Cond, Filter, Lookup, Op, Operand};
use crate::value::Value;

/// Supplies the value of a lookup for the row being matched.
pub trait Resolver {
    /// The value at `lookup`, or [`Value::Null`] when a reference along the way is null or dangling. Borrowed
    /// where the resolver holds it: a change is matched against thousands of channels, and cloning a text value
    /// for each would cost more than the comparison.
    fn value(&self, lookup: &Lookup) -> Cow<'_, Value>;
}

impl Filter {
    /// Whether the row behind `resolver` satisfies every condition, and one alternative of every group.
    pub fn matches(&self, resolver: &dyn Resolver) -> bool {
        self.conds.iter().all(|c| c.matches(&resolver.value(&c.lookup)))
            && self.any_of.iter().all(|group| group.iter().any(|f| f.matches(resolver)))
    }
}

impl Cond {
    /// Whether `actual` (the row's value at this condition's lookup) satisfies the condition.
    pub fn matches(&self, actual: &Value) -> bool {
        match (&self.op, &self.operand) {
            (Op::IsNull, Operand::Flag(flag)) => actual.is_null() == *flag,
            (Op::In, Operand::List(values)) => values.iter().any(|v| actual.sql_eq(v)),
            (Op::Ne, Operand::One(v)) => !actual.sql_eq(v),
            (op, Operand::One(v)) => match op {
                Op::Eq => actual.sql_eq(v),
                Op::Lt => actual.compare(v) == Some(Ordering::Less),
                Op::Lte => matches!(actual.compare(v), Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => actual.compare(v) == Some(Ordering::Greater),
                Op::Gte => matches!(actual.compare(v), Some(Ordering::Greater | Ordering::Equal)),
                Op::Contains => text_pair(actual, v).is_some_and(|(a, b)| a.contains(b)),
                Op::IContains => {
                    text_pair(actual, v).is_some_and(|(a, b)| a.to_ascii_lowercase().contains(&b.to_ascii_lowercase()))
                }
                Op::StartsWith => text_pair(actual, v).is_some_and(|(a, b)| a.starts_with(b)),
                Op::Ne | Op::In | Op::IsNull => unreachable!("handled above"),
            },
            _ => false,
        }
    }
}

fn text_pair<'a>(actual: &'a Value, wanted: &'a Value) -> Option<(&'a str, &'a str)> {
    match (actual, wanted) {
        (Value::Text(a), Value::Text(b)) => Some((a, b)),
        _ => None,
    }
}
