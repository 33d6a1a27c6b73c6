//! The store interface: where rows and the change log live, and the only place that commits.
//!
//! A store commits each write together with its change-log entries in one transaction, assigns per-model offsets
//! that are gap-free and in commit order, and hands the committed [`Change`]s to its [`ChangeSink`] in that same
//! order before the next write may commit. Nothing that did not commit reaches the sink.

use std::sync::Arc;

use async_trait::async_trait;
use drakon_protocol::Action;
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;

pub use crate::bus::BusMessage;
use crate::filter::Filter;
use crate::schema::{Model, Schema};
use crate::value::Value;

pub mod write;

/// A row's values, in the order of its model's fields (index 0 is `id`).
pub type Row = Vec<Value>;

/// One committed create, update or delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub model: Arc<str>,
    pub id: i64,
    pub action: Action,
    /// The row before the change (`None` for a create).
    pub old: Option<Row>,
    /// The row after the change (`None` for a delete).
    pub new: Option<Row>,
    /// Position in this model's change log: 1, 2, 3, … without gaps, in commit order.
    pub offset: u64,
    /// The rows the old image referred to, as they were when the change committed (one hop, by ref field), when
    /// the store recorded them. Filters through references are judged against these, not against whatever the
    /// referenced row has become by the time the change is delivered or replayed.
    pub old_refs: RefImages,
    /// The rows the new image refers to, as they were when the change committed.
    pub new_refs: RefImages,
}

/// Referenced rows by the name of the ref field that points at them; `None` for a null or dangling reference.
pub type RefImages = Vec<(String, Option<Row>)>;

impl Change {
    /// The recorded row behind ref field `field` of the old (`old = true`) or new image: `Some(None)` when the
    /// reference was null or dangling, `None` when the store recorded nothing for it.
    pub fn referenced(&self, old: bool, field: &str) -> Option<Option<&Row>> {
        let refs = if old { &self.old_refs } else { &self.new_refs };
        refs.iter().find(|(f, _)| f == field).map(|(_, row)| row.as_ref())
    }
}

/// Where a store delivers committed changes (into this node's [`Inbox`](crate::bus::Inbox), or to the relay onto the
/// bus between nodes); bounded so that a lagging hub slows writers instead of growing memory.
pub type ChangeSink = mpsc::Sender<BusMessage>;

/// A field given a value by a write, by index into the model's fields.
pub type Assignment = (usize, Value);

/// A write, checked against the schema by the engine before it reaches the store.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create {
        model: String,
        values: Vec<Assignment>,
        guard: Filter,
    },
    /// Changes `values` on row `id` if it satisfies `guard` before and after.
    Update {
        model: String,
        id: i64,
        values: Vec<Assignment>,
        guard: Filter,
    },
    /// Deletes row `id` (if it satisfies `guard`) and applies every reference's `on_delete`.
    Delete {
        model: String,
        id: i64,
        guard: Filter,
    },
    /// Deletes every row matching `filter`, as one transaction.
    DeleteWhere {
        model: String,
        filter: Filter,
    },
}

/// Ordering of a list read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub field: usize,
    pub descending: bool,
}

/// A page of rows and how many rows match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub rows: Vec<Row>,
    pub total: u64,
    /// The model's last change-log offset as of the same read: the rows reflect every change up to it and none after.
    pub offset: u64,
}

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub created_tables: Vec<String>,
    pub added_columns: Vec<String>,
}

/// Why a store refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("no {model} with id {id}")]
    NotFound { model: String, id: i64 },
    /// A unique field already holds this value.
    #[error("another {model} already has this {field}")]
    Unique { model: String, field: String },
    /// A reference names a row that does not exist.
    #[error("{field} refers to a {target} that does not exist")]
    MissingRef { field: String, target: String },
    /// `on_delete = "restrict"` blocked a delete.
    #[error("{model} {id} is still referred to by {referrer}.{field}; delete or move those rows first")]
    Restricted { model: String, id: i64, referrer: String, field: String },
    /// The schema asks for a change the store will not make on its own.
    #[error("{0}")]
    Migration(String),
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot be reached (stopped, restarting, network). Nothing was written; if the connection
    /// broke during the commit itself the write may have landed, and then it is published like any other.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// The row would fall outside the route's fixed filter.
    #[error("the row would fall outside this route's filter")]
    OutsideRoute,
    #[error("the store is shutting down")]
    Closed,
    /// A concurrent transaction changed or held what this one needed (a serialization failure; SQLite's database
    /// stayed busy or locked): nothing was written, and running it again may succeed.
    #[error("the transaction conflicted with a concurrent one: {0}")]
    Conflict(String),
    /// The transaction deadlocked with a concurrent one and the database rolled it back: nothing was written, and
    /// running it again may succeed.
    #[error("the transaction deadlocked with a concurrent one: {0}")]
    Deadlock(String),
}

impl StoreError {
    /// Whether the transaction lost to a concurrent one and nothing was written, so that running it again may
    /// succeed (the caller decides how often).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Deadlock(_))
    }
}

/// Rows and the change log.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates missing tables and columns; refuses changes that could lose data.
    async fn migrate(&self, schema: &Schema) -> Result<MigrationReport, StoreError>;

    /// Rows of `model` matching `filter`, ordered, one page of them, read in one consistent snapshot together with
    /// the total count and the model's offset.
    async fn list(
        &self,
        model: &Model,
        filter: &Filter,
        order: &[OrderBy],
        limit: u64,
        offset: u64,
    ) -> Result<Page, StoreError>;

    /// Commits a write with its change-log entries, hands them to the sink, and returns them.
    async fn write(&self, op: WriteOp) -> Result<Vec<Change>, StoreError>;

    /// The changes of `model` after `offset`, in order, up to `limit`, read together with the model's current
    /// offset. [`LogRead::Gone`] when the log no longer reaches back that far (retention trimmed it) or more than
    /// `limit` changes are missing.
    async fn log_since(&self, model: &Model, offset: u64, limit: usize) -> Result<LogRead, StoreError>;

    /// From now on, when a row that `model.field` refers to changes, log a touch (an `updated` entry with equal
    /// old and new images) for each referring row, in the same transaction: some subscription filters through
    /// that reference and must re-evaluate those rows.
    async fn watch_reference(&self, model: &str, field: &str) -> Result<(), StoreError>;

    /// Whether the store answers (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Where built-in users and their sessions live, if this store keeps them.
    fn accounts(&self) -> Option<&dyn crate::accounts::Accounts> {
        None
    }

    /// The offset of `model`'s newest change (0 when it has none).
    async fn log_head(&self, model: &Model) -> Result<u64, StoreError> {
        // No client holds an offset past the head, so asking for what follows `u64::MAX` reads just the head.
        match self.log_since(model, u64::MAX, 0).await? {
            LogRead::Changes { head, .. } | LogRead::Gone { head } => Ok(head),
        }
    }
}

/// How long the change log keeps entries: a resuming client further behind than this takes a fresh snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Entries kept per model, at least.
    pub count: u64,
    /// Entries older than this go, whatever the count.
    pub age: std::time::Duration,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            count: crate::limits::DEFAULT_LOG_RETENTION_COUNT,
            age: crate::limits::DEFAULT_LOG_RETENTION_AGE,
        }
    }
}

/// What [`Store::log_since`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRead {
    /// Every change after the requested offset, and the offset they lead up to.
    Changes { changes: Vec<Change>, head: u64 },
    /// The log cannot supply them: the client must take a fresh snapshot.
    Gone { head: u64 },
}

/// A row as a JSON object of the given fields (plus `id` and `_type`).
pub fn row_to_json(model: &Model, row: &Row, fields: &[usize]) -> Json {
    let mut out = Map::with_capacity(fields.len() + 2);
    out.insert("id".into(), row[0].to_json());
    out.insert("_type".into(), Json::String(model.name.clone()));
    for &i in fields {
        out.insert(model.fields[i].name.clone(), row[i].to_json());
    }
    Json::Object(out)
}
