//! The change log as drakon reads it: the entries the log triggers wrote, turned back into [`Change`]s; publishing
//! every entry past this node's cursor, in global sequence order; `log_since`; and retention trimming.
//!
//! Each node keeps its own publish cursor (the last sequence number it handed to its sink), in memory behind a
//! mutex: every node delivers every entry to its own hubs exactly once, whichever node or program wrote it. The
//! cursor starts at the log's head when the node connects. Each node also records its cursor in `_drakon_nodes`
//! (a heartbeat), and trimming never removes an entry that a live node has not published yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use drakon_core::image::change_from_images;
use drakon_core::limits::LOG_TRIM_BATCH;
use drakon_core::store::{BusMessage, Change, ChangeSink, LogRead, LogRetention, StoreError};
use drakon_core::{Model, Schema};

use crate::db_error;
use crate::pool::Conn;

/// Entries published per bus message: a bulk `UPDATE` of a million rows goes out in bounded batches.
const PUBLISH_BATCH: i64 = 1000;

/// A node that has not written its heartbeat for this long is taken for dead: its watches stop logging touches and
/// its cursor stops holding back trimming. Far above the heartbeat period, so a busy node is never mistaken.
pub const NODE_EXPIRY: Duration = Duration::from_secs(120);

/// Retention ages beyond this (about a century) mean "forever"; PostgreSQL intervals cannot hold `Duration::MAX`.
const MAX_AGE_SECS: f64 = 3.0e9;

/// The last global sequence number assigned (the log is its own counter; see `migrate`).
pub const GLOBAL_HEAD: &str = "SELECT coalesce(max(seq), 0) FROM _drakon_changes";

/// The last offset of model `$1`.
pub const MODEL_HEAD: &str = "SELECT coalesce(max(\"offset\"), 0) FROM _drakon_changes WHERE model = $1";

/// The last global sequence number assigned.
pub async fn current_seq(conn: &mut Conn) -> Result<u64, StoreError> {
    let row = conn.query_one(GLOBAL_HEAD, &[]).await.map_err(db_error)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The offset (a `bigint`) in column `i` of a log row.
fn offset_at(row: &tokio_postgres::Row, i: usize) -> u64 {
    row.get::<_, i64>(i) as u64
}

/// Up to `limit` entries after global sequence `seq`, in order, each with its sequence number. Entries of models
/// the config no longer declares come back as `None`: nobody can subscribe to them, but they still take a place.
pub async fn read_entries(
    conn: &mut Conn,
    schema: &Schema,
    seq: u64,
    limit: i64,
) -> Result<Vec<(u64, Option<Change>)>, StoreError> {
    let rows = conn
        .query(
            "SELECT model, \"offset\", seq, row_id, action, old, new FROM _drakon_changes
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(seq as i64), &limit],
        )
        .await
        .map_err(db_error)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let model_name: String = row.get(0);
        let change = schema.get_model(&model_name).map(|model| {
            change_from_images(schema, model, offset_at(&row, 1), row.get(3), row.get(4), row.get(5), row.get(6))
        });
        out.push((row.get::<_, i64>(2) as u64, change));
    }
    Ok(out)
}

/// Every change after global sequence `seq` (a write's own, read inside its transaction).
pub async fn changes_since(conn: &mut Conn, schema: &Schema, seq: u64) -> Result<Vec<Change>, StoreError> {
    Ok(read_entries(conn, schema, seq, i64::MAX).await?.into_iter().filter_map(|(_, c)| c).collect())
}

/// How far a node has published the log: the last global sequence number handed to the sink, and each model's
/// offset as of that entry (what the relay announces as heads).
#[derive(Debug, Default)]
pub struct Cursor {
    pub seq: u64,
    pub heads: BTreeMap<Arc<str>, u64>,
}

impl Cursor {
    /// The cursor at global sequence `seq`, with each model's offset there read from the log.
    pub async fn at(conn: &mut Conn, seq: u64) -> Result<Cursor, StoreError> {
        let rows = conn
            .query(
                "SELECT model, max(\"offset\") FROM _drakon_changes WHERE seq <= $1 GROUP BY model",
                &[&(seq as i64)],
            )
            .await
            .map_err(db_error)?;
        let heads = rows.iter().map(|r| (Arc::from(r.get::<_, String>(0)), r.get::<_, i64>(1) as u64)).collect();
        Ok(Cursor { seq, heads })
    }

    /// The heads as a bus message.
    pub fn heads_message(&self) -> BusMessage {
        BusMessage::Heads(Arc::new(self.heads.iter().map(|(m, o)| (m.clone(), *o)).collect()))
    }
}

/// Publishes every entry past the cursor, in order, and moves it. The caller holds the cursor's mutex, so batches
/// reach the sink in sequence order and none twice.
pub async fn publish_pending(
    conn: &mut Conn,
    schema: &Schema,
    sink: &ChangeSink,
    cursor: &mut Cursor,
) -> Result<usize, StoreError> {
    let mut sent = 0;
    let published = &mut cursor.seq;
    loop {
        let entries = read_entries(conn, schema, *published, PUBLISH_BATCH).await?;
        let Some(&(last, _)) = entries.last() else { return Ok(sent) };
        let full = entries.len() as i64 == PUBLISH_BATCH;
        let batch: Vec<Change> = entries.into_iter().filter_map(|(_, c)| c).collect();
        for change in &batch {
            cursor.heads.insert(change.model.clone(), change.offset);
        }
        if !batch.is_empty() {
            sent += batch.len();
            // A closed sink means shutdown; the entries stay in the log either way.
            let closed = sink.send(BusMessage::Changes(Arc::new(batch))).await.is_err();
            if closed {
                *published = last;
                return Ok(sent);
            }
        }
        // Only once the batch is in the sink: a caller cancelled while the sink was full leaves the cursor where
        // it was, and the next pass sends the batch again instead of skipping it.
        *published = last;
        if !full {
            return Ok(sent);
        }
    }
}

/// The changes of one model after `offset` (see [`drakon_core::Store::log_since`]), read in one snapshot with the
/// model's head offset.
pub async fn model_since(
    conn: &mut Conn,
    schema: &Schema,
    model: &Model,
    offset: u64,
    limit: usize,
) -> Result<LogRead, StoreError> {
    let head = conn.query_one(MODEL_HEAD, &[&model.name]).await.map_err(db_error)?.get::<_, i64>(0) as u64;
    if offset == head {
        return Ok(LogRead::Changes { changes: Vec::new(), head });
    }
    // A client ahead of the log holds offsets from another database (replaced or restored): it must reload.
    if offset > head {
        return Ok(LogRead::Gone { head });
    }
    let first: Option<i64> = conn
        .query_one("SELECT min(\"offset\") FROM _drakon_changes WHERE model = $1", &[&model.name])
        .await
        .map_err(db_error)?
        .get(0);
    if first.is_none_or(|first| first as u64 > offset + 1) || head - offset > limit as u64 {
        return Ok(LogRead::Gone { head });
    }
    let rows = conn
        .query(
            "SELECT \"offset\", row_id, action, old, new FROM _drakon_changes
             WHERE model = $1 AND \"offset\" > $2 AND \"offset\" <= $3 ORDER BY \"offset\"",
            &[&model.name, &(offset as i64), &(head as i64)],
        )
        .await
        .map_err(db_error)?;
    let changes = rows
        .into_iter()
        .map(|row| {
            change_from_images(schema, model, offset_at(&row, 0), row.get(1), row.get(2), row.get(3), row.get(4))
        })
        .collect();
    Ok(LogRead::Changes { changes, head })
}

/// Where the previous relay stopped, if any node ever relayed on this database.
pub async fn relay_cursor(conn: &mut Conn) -> Result<Option<u64>, StoreError> {
    let row = conn.query_opt("SELECT seq FROM _drakon_relay WHERE id = 1", &[]).await.map_err(db_error)?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u64))
}

/// Records how far the relay has published, for the node that takes over after it.
pub async fn save_relay_cursor(conn: &mut Conn, seq: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _drakon_relay (id, seq) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
        &[&(seq as i64)],
    )
    .await
    .map(|_| ())
    .map_err(db_error)
}

/// Registers this node (or registers it again under the same id after it was taken for dead) with its cursor.
pub async fn register_node(conn: &mut Conn, id: Option<i64>, published: u64) -> Result<i64, StoreError> {
    let published = published as i64;
    let row = match id {
        None => conn.query_one("INSERT INTO _drakon_nodes (published) VALUES ($1) RETURNING id", &[&published]).await,
        Some(id) => {
            conn.query_one(
                "INSERT INTO _drakon_nodes (id, published) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET published = excluded.published, seen = now() RETURNING id",
                &[&id, &published],
            )
            .await
        }
    }
    .map_err(db_error)?;
    Ok(row.get(0))
}

/// Records that this node is alive and how far it has published; false when its row is gone (another node took it
/// for dead), so the caller registers again.
pub async fn heartbeat(conn: &mut Conn, node: i64, published: u64) -> Result<bool, StoreError> {
    let n = conn
        .execute("UPDATE _drakon_nodes SET published = $2, seen = now() WHERE id = $1", &[&node, &(published as i64)])
        .await
        .map_err(db_error)?;
    Ok(n == 1)
}

/// Removes nodes that stopped beating (and, through the foreign key, their watches).
pub async fn expire_nodes(conn: &mut Conn) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM _drakon_nodes WHERE seen < now() - make_interval(secs => $1)",
        &[&NODE_EXPIRY.as_secs_f64()],
    )
    .await
    .map_err(db_error)
}

/// Removes entries past the retention, in bounded batches (the next pass takes the rest). It never removes an
/// entry that a live node (this one included, whose cursor is `published`) has not published yet, nor a model's
/// newest entry or the newest of all: the log is its own counter, and its heads must not move back.
pub async fn trim(
    conn: &mut Conn,
    schema: &Schema,
    retention: LogRetention,
    node: i64,
    published: u64,
) -> Result<u64, StoreError> {
    let others: Option<i64> = conn
        .query_one(
            "SELECT min(published) FROM _drakon_nodes WHERE id <> $1 AND seen >= now() - make_interval(secs => $2)",
            &[&node, &NODE_EXPIRY.as_secs_f64()],
        )
        .await
        .map_err(db_error)?
        .get(0);
    let floor = others.map_or(published as i64, |o| o.min(published as i64));
    let mut removed = 0;
    for model in &schema.models {
        let row = conn
            .query_one("SELECT min(\"offset\"), max(\"offset\") FROM _drakon_changes WHERE model = $1", &[&model.name])
            .await
            .map_err(db_error)?;
        let (Some(first), Some(head)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) else {
            continue;
        };
        let keep_from = head - retention.count.max(1) as i64;
        if keep_from < first {
            continue;
        }
        let upto = keep_from.min(first + LOG_TRIM_BATCH as i64);
        removed += conn
            .execute(
                "DELETE FROM _drakon_changes WHERE model = $1 AND \"offset\" <= $2 AND seq <= $3",
                &[&model.name, &upto, &floor],
            )
            .await
            .map_err(db_error)?;
    }
    removed += conn
        .execute(
            "DELETE FROM _drakon_changes AS c
             WHERE c.seq IN (SELECT seq FROM _drakon_changes ORDER BY seq LIMIT $1)
                 AND c.at < now() - make_interval(secs => $2) AND c.seq <= $3
                 AND c.seq < (SELECT max(seq) FROM _drakon_changes)
                 AND c.\"offset\" < (SELECT max(\"offset\") FROM _drakon_changes AS m WHERE m.model = c.model)",
            &[&(LOG_TRIM_BATCH as i64), &retention.age.as_secs_f64().min(MAX_AGE_SECS), &floor],
        )
        .await
        .map_err(db_error)?;
    Ok(removed)
}
