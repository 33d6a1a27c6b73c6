//! Errors a verb reports to its client, and how filter and store errors become them.

use std::collections::BTreeMap;

use drakon_protocol::ErrorCode;
use serde_json::{Map, Value as Json, json};

use crate::filter::FilterError;
use crate::store::StoreError;

/// An error a verb reports to its client: a stable code, a message saying what to do, and per-field messages.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct VerbError {
    pub code: ErrorCode,
    pub message: String,
    pub fields: Option<Map<String, Json>>,
}

impl VerbError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> VerbError {
        VerbError { code, message: message.into(), fields: None }
    }

    /// An error about named fields: `fields` maps each field to its messages.
    pub fn fields(code: ErrorCode, message: impl Into<String>, fields: BTreeMap<String, Vec<String>>) -> VerbError {
        let fields = fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
        VerbError { code, message: message.into(), fields: Some(fields) }
    }
}

impl From<FilterError> for VerbError {
    fn from(e: FilterError) -> VerbError {
        let mut fields = BTreeMap::new();
        if !e.key.is_empty() {
            fields.insert(e.key.clone(), vec![e.message.clone()]);
        }
        let message = if e.key.is_empty() { e.message } else { format!("filter `{}`: {}", e.key, e.message) };
        VerbError {
            fields: (!fields.is_empty()).then(|| fields.into_iter().map(|(k, v)| (k, json!(v))).collect()),
            ..VerbError::new(e.code, message)
        }
    }
}

impl From<StoreError> for VerbError {
    fn from(e: StoreError) -> VerbError {
        let one = |field: &str, message: String| BTreeMap::from([(field.to_owned(), vec![message])]);
        match &e {
            StoreError::NotFound { .. } => VerbError::new(ErrorCode::NotFound, e.to_string()),
            StoreError::Unique { field, .. } => {
                VerbError::fields(ErrorCode::Conflict, e.to_string(), one(field, "must be unique".into()))
            }
            StoreError::MissingRef { field, .. } => {
                VerbError::fields(ErrorCode::ValidationFailed, e.to_string(), one(field, e.to_string()))
            }
            StoreError::Restricted { .. } => VerbError::new(ErrorCode::Conflict, e.to_string()),
            StoreError::OutsideRoute => VerbError::new(ErrorCode::PermissionDenied, e.to_string()),
            StoreError::Closed => VerbError::new(ErrorCode::Unavailable, e.to_string()),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unreachable");
                VerbError::new(
                    ErrorCode::Unavailable,
                    "the database is unreachable; nothing was changed unless a later read shows it. Try again shortly",
                )
            }
            StoreError::Migration(_) | StoreError::Database(_) | StoreError::Conflict(_) | StoreError::Deadlock(_) => {
                tracing::error!(error = %e, "store failure");
                VerbError::new(ErrorCode::Internal, "the server could not complete this request; try again later")
            }
        }
    }
}

pub(super) fn unknown_verb(route: &str, verb: &str, known: &[&str]) -> VerbError {
    VerbError::new(ErrorCode::UnknownVerb, format!("route `{route}` has no verb `{verb}`; it has {}", known.join(", ")))
}

pub(super) fn read_only(field: &str, message: &str) -> VerbError {
    VerbError::fields(ErrorCode::ReadOnlyField, message, BTreeMap::from([(field.to_owned(), vec![message.to_owned()])]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_client_codes_without_leaking_database_details() {
        let cases = [
            (StoreError::NotFound { model: "todo_item".into(), id: 7 }, ErrorCode::NotFound, "no todo_item with id 7"),
            (
                StoreError::Unique { model: "todo_list".into(), field: "name".into() },
                ErrorCode::Conflict,
                "another todo_list already has this name",
            ),
            (StoreError::OutsideRoute, ErrorCode::PermissionDenied, "the row would fall outside this route's filter"),
            (StoreError::Closed, ErrorCode::Unavailable, "the store is shutting down"),
            (
                StoreError::Database("near \"DROP\": syntax error".into()),
                ErrorCode::Internal,
                "the server could not complete this request; try again later",
            ),
        ];
        for (store, code, message) in cases {
            let e = VerbError::from(store);
            assert_eq!((e.code, e.message.as_str()), (code, message));
        }
        let unique = VerbError::from(StoreError::Unique { model: "todo_list".into(), field: "name".into() });
        assert_eq!(unique.fields.unwrap()["name"], json!(["must be unique"]));
    }

    #[test]
    fn filter_errors_name_their_key() {
        let e = VerbError::from(FilterError {
            code: ErrorCode::UnknownField,
            key: "secret".into(),
            message: "model `todo_item` has no field `secret`".into(),
        });
        assert_eq!(e.message, "filter `secret`: model `todo_item` has no field `secret`");
        assert_eq!(e.fields.unwrap()["secret"], json!(["model `todo_item` has no field `secret`"]));
    }
}
