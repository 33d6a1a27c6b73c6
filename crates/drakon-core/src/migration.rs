//! What a store must do to bring an existing table up to its model, and what it must refuse: the part of
//! migrating that does not depend on the database, so every store refuses the same changes with the same advice.

use std::collections::HashMap;

use crate::schema::{Field, FieldType, Model};

/// The type a store records for a field in `_drakon_fields`: SQL column types cannot tell `text` from `datetime`.
pub fn type_tag(field: &Field) -> String {
    match &field.ty {
        FieldType::Ref { model, .. } => format!("ref:{model}"),
        ty => ty.name().to_owned(),
    }
}

/// What a store can do on its own.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How the user makes a field required by hand (SQL advice specific to the store).
    pub require_by_hand: fn(&Model, &Field) -> String,
    /// `None` when the store drops a NOT NULL constraint in place; otherwise why it cannot, for the refusal.
    pub relax_refusal: Option<fn(&Model, &Field) -> String>,
}

/// A change the store applies to an existing table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step<'a> {
    AddColumn(&'a Field),
    DropNotNull(&'a Field),
}

/// What to do with an existing table of `model`: the steps to apply, or the refusals that stop the migration.
/// `columns` are the table's columns; `known` maps each field recorded in `_drakon_fields` to (type tag, optional).
pub fn plan_existing<'a>(
    model: &'a Model,
    columns: &[String],
    known: &HashMap<String, (String, bool)>,
    rules: Rules,
) -> (Vec<Step<'a>>, Vec<String>) {
    let mut steps = Vec::new();
    let mut refused = Vec::new();
    for column in columns {
        if model.get_field(column).is_none() {
            refused.push(format!(
                "table {} has a column `{column}` that the config no longer declares; drakon never drops data: \
                 declare the field again, or back up and drop the column yourself \
                 (ALTER TABLE {} DROP COLUMN {column})",
                model.name, model.name
            ));
        }
    }
    for field in model.fields.iter().skip(1) {
        if let Some((ty, optional)) = known.get(&field.name) {
            if *ty != type_tag(field) {
                refused.push(format!(
                    "field {}.{} changed type from {ty} to {}; drakon does not convert data: add a new field \
                     with the new type and copy the data over yourself",
                    model.name,
                    field.name,
                    type_tag(field)
                ));
            }
            if *optional && !field.optional {
                refused.push(format!(
                    "field {}.{} became required; existing rows may hold null: keep it optional, or fill every null \
                     and {} yourself",
                    model.name,
                    field.name,
                    (rules.require_by_hand)(model, field)
                ));
            }
            if !*optional && field.optional {
                match rules.relax_refusal {
                    None => steps.push(Step::DropNotNull(field)),
                    Some(refusal) => refused.push(refusal(model, field)),
                }
            }
            continue;
        }
        if columns.contains(&field.name) {
            continue;
        }
        if !field.optional && field.default.is_none() {
            refused.push(format!(
                "cannot add required field {}.{} to existing rows without a value: give it a default or make it \
                 optional",
                model.name, field.name
            ));
            continue;
        }
        steps.push(Step::AddColumn(field));
    }
    (steps, refused)
}
