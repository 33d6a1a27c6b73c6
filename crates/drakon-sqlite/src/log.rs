//! The change log as drakon reads it: the entries the log triggers wrote, turned back into [`Change`]s, and the
//! tailer that publishes every new entry, whoever wrote it, in commit order.
//!
//! Every entry has a per-model `offset` and a global `seq`, both assigned inside the writing transaction. The
//! writer remembers the last `seq` it published; after each of its own commits, and whenever the database file
//! changes underneath it (another process wrote), it publishes every entry past that point, so drakon's writes and
//! outside writes reach the bus through the same path and in the same order.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use drakon_core::image::change_from_images;
use drakon_core::limits::LOG_TRIM_BATCH;
use drakon_core::store::{BusMessage, Change, ChangeSink, LogRead, LogRetention, StoreError};
use drakon_core::{Model, Schema};
use rusqlite::Connection;

use crate::{db_error, lock};

/// Entries published per bus message: a bulk `UPDATE` of a million rows goes out in bounded batches.
const PUBLISH_BATCH: usize = 1000;

/// How often the tailer looks even without a file event: file events can be missed (another process may use a
/// rollback journal, or the directory may be on a file system without inotify), and this bounds the delay.
const TAIL_FALLBACK: Duration = Duration::from_millis(500);

/// The writer connection and how far its log has been published.
#[derive(Debug)]
pub struct Writer {
    pub conn: Connection,
    pub published_seq: u64,
}

/// The last global sequence number assigned.
pub fn current_seq(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row("SELECT last FROM _drakon_offsets WHERE model = '*'", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(db_error)
}

/// A change from its log columns (images as JSON text, see the log triggers).
fn change(
    schema: &Schema,
    model: &Model,
    offset: i64,
    id: i64,
    action: &str,
    old: Option<String>,
    new: Option<String>,
) -> Change {
    let json = |text: Option<String>| text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    change_from_images(schema, model, offset as u64, id, action, json(old), json(new))
}

/// Up to `limit` entries after global sequence `seq`, in order, each with its sequence number. Entries of models
/// the config no longer declares come back as `None`: nobody can subscribe to them, but they still take a place.
pub fn read_entries(
    conn: &Connection,
    schema: &Schema,
    seq: u64,
    limit: usize,
) -> Result<Vec<(u64, Option<Change>)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT model, offset, seq, row_id, action, old, new FROM _drakon_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(db_error)?;
    let rows = stmt
        .query_map(rusqlite::params![seq as i64, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })
        .map_err(db_error)?;
    let mut out = Vec::new();
    for row in rows {
        let (model_name, offset, seq, id, action, old, new) = row.map_err(db_error)?;
        let change = schema.get_model(&model_name).map(|model| change(schema, model, offset, id, &action, old, new));
        out.push((seq as u64, change));
    }
    Ok(out)
}

/// The changes of one model after `offset` (see [`drakon_core::Store::log_since`]), read in one transaction with
/// the model's head offset.
pub fn model_since(
    conn: &Connection,
    schema: &Schema,
    model: &Model,
    offset: u64,
    limit: usize,
) -> Result<LogRead, StoreError> {
    let tx = conn.unchecked_transaction().map_err(db_error)?;
    let head: u64 = tx
        .query_row("SELECT last FROM _drakon_offsets WHERE model = ?1", [&model.name], |r| r.get::<_, i64>(0))
        .map_err(db_error)? as u64;
    if offset == head {
        return Ok(LogRead::Changes { changes: Vec::new(), head });
    }
    // A client ahead of the log holds offsets from another database (replaced or restored): it must reload.
    if offset > head {
        return Ok(LogRead::Gone { head });
    }
    let first: Option<i64> = tx
        .query_row("SELECT min(offset) FROM _drakon_changes WHERE model = ?1", [&model.name], |r| r.get(0))
        .map_err(db_error)?;
    if first.is_none_or(|first| first as u64 > offset + 1) || head - offset > limit as u64 {
        return Ok(LogRead::Gone { head });
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT offset, row_id, action, old, new FROM _drakon_changes
             WHERE model = ?1 AND offset > ?2 AND offset <= ?3 ORDER BY offset",
        )
        .map_err(db_error)?;
    let changes = stmt
        .query_map(rusqlite::params![model.name, offset as i64, head as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(db_error)?
        .map(|row| {
            let (offset, id, action, old, new) = row.map_err(db_error)?;
            Ok(change(schema, model, offset, id, &action, old, new))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(LogRead::Changes { changes, head })
}

/// Every change after global sequence `seq` (a write's own, read inside its transaction).
pub fn changes_since(conn: &Connection, schema: &Schema, seq: u64) -> Result<Vec<Change>, StoreError> {
    Ok(read_entries(conn, schema, seq, usize::MAX >> 1)?.into_iter().filter_map(|(_, c)| c).collect())
}

/// Publishes every entry past `writer.published_seq`, in order. Called with the writer locked, so batches reach the
/// bus in commit order.
pub fn publish_pending(writer: &mut Writer, schema: &Schema, sink: &ChangeSink) -> Result<usize, StoreError> {
    let mut sent = 0;
    loop {
        let entries = read_entries(&writer.conn, schema, writer.published_seq, PUBLISH_BATCH)?;
        let Some(&(last, _)) = entries.last() else { return Ok(sent) };
        let full = entries.len() == PUBLISH_BATCH;
        writer.published_seq = last;
        let batch: Vec<Change> = entries.into_iter().filter_map(|(_, c)| c).collect();
        if !batch.is_empty() {
            sent += batch.len();
            // A closed sink means shutdown; the entries stay in the log either way.
            if sink.blocking_send(BusMessage::Changes(Arc::new(batch))).is_err() {
                return Ok(sent);
            }
        }
        if !full {
            return Ok(sent);
        }
    }
}

/// How often the tailer trims the log.
const TRIM_PERIOD: Duration = Duration::from_secs(1);

/// Removes entries past the retention, in bounded batches (the next pass takes the rest), and never one that has
/// not been published yet.
pub fn trim(writer: &Writer, schema: &Schema, retention: LogRetention) -> Result<usize, StoreError> {
    let published = writer.published_seq as i64;
    let mut removed = 0;
    for model in &schema.models {
        let (head, first): (i64, Option<i64>) = writer
            .conn
            .query_row(
                "SELECT (SELECT last FROM _drakon_offsets WHERE model = ?1),
                        (SELECT min(offset) FROM _drakon_changes WHERE model = ?1)",
                [&model.name],
                |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get(1)?)),
            )
            .map_err(db_error)?;
        let Some(first) = first else { continue };
        let keep_from = head - retention.count as i64;
        if keep_from < first {
            continue;
        }
        let upto = keep_from.min(first + LOG_TRIM_BATCH as i64);
        removed += writer
            .conn
            .execute(
                "DELETE FROM _drakon_changes WHERE model = ?1 AND offset <= ?2 AND seq <= ?3",
                rusqlite::params![model.name, upto, published],
            )
            .map_err(db_error)?;
    }
    let age = time::Duration::try_from(retention.age).unwrap_or(time::Duration::MAX);
    let cutoff = drakon_core::value::format_datetime(time::OffsetDateTime::now_utc().saturating_sub(age));
    removed += writer
        .conn
        .execute(
            "DELETE FROM _drakon_changes WHERE seq IN (SELECT seq FROM _drakon_changes ORDER BY seq LIMIT ?1)
                 AND at < ?2 AND seq <= ?3",
            rusqlite::params![LOG_TRIM_BATCH as i64, cutoff, published],
        )
        .map_err(db_error)?;
    Ok(removed)
}

/// Watches the database for writes by other processes and publishes them. Ends when the store is dropped.
pub fn spawn_tailer(
    writer: Weak<Mutex<Writer>>,
    schema: Arc<RwLock<Arc<Schema>>>,
    sink: ChangeSink,
    path: PathBuf,
    retention: LogRetention,
) {
    let (wake, woken) = std_mpsc::channel::<()>();
    let watcher = watch(&path, wake);
    let spawned = std::thread::Builder::new().name("drakon-sqlite-tail".into()).spawn(move || {
        let _watcher = watcher; // dropping it stops the events
        let mut last_trim = std::time::Instant::now();
        loop {
            match woken.recv_timeout(TAIL_FALLBACK) {
                Ok(()) | Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(TAIL_FALLBACK),
            }
            while woken.try_recv().is_ok() {}
            let Some(writer) = writer.upgrade() else { return };
            let schema = schema.read().unwrap_or_else(|e| e.into_inner()).clone();
            let mut writer = lock(&writer);
            if let Err(e) = publish_pending(&mut writer, &schema, &sink) {
                tracing::warn!(error = %e, "could not read the change log; retrying");
            }
            if last_trim.elapsed() >= TRIM_PERIOD {
                last_trim = std::time::Instant::now();
                match trim(&writer, &schema, retention) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "trimmed the change log"),
                    Err(e) => tracing::warn!(error = %e, "could not trim the change log"),
                }
            }
            drop(writer);
            if sink.is_closed() {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the change-log tailer; writes from other processes will not publish");
    }
}

/// File events for the database and its WAL, so an outside commit is seen at once rather than at the next
/// fallback tick.
fn watch(path: &Path, wake: std_mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let file_name = path.file_name()?.to_string_lossy().into_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            e.kind.is_modify()
                && e.paths.iter().any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&file_name)))
        });
        if relevant {
            let _ = wake.send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "no file events; outside writes are seen within the fallback period"))
    .ok()?;
    watcher.watch(&dir, RecursiveMode::NonRecursive).ok()?;
    Some(watcher)
}
