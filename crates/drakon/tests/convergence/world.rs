//! What the convergence test runs against: the config, the mirrors' filters with the SQL that says what each one
//! selects (written by hand, independent of drakon's filter compiler), and the comparison of a mirror with it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use drakon_testkit::mirror::{MirrorRow, short};
use rusqlite::Connection;
use serde_json::{Map, Value, json};

/// The current server's WebSocket URL. A restart holds it for writing from before the old server stops until the
/// new one listens, so whoever connects under a read guard reaches a live server.
pub type Gate = Arc<tokio::sync::RwLock<String>>;

/// The database file, relative to the config's directory.
pub const DATABASE: &str = "convergence.db";

/// List names the writer picks from. The related-field mirror watches `alpha`; `Alpha` and `alpha beta` must not
/// match it.
pub const LIST_NAMES: &[&str] = &["alpha", "beta", "gamma", "Alpha", "alpha beta"];

/// The server config; `retention` bounds the change log, so that a mirror away for long gets a reload instead of
/// a replay.
pub fn config(retention: u64) -> String {
    format!(
        r#"
[server]
database = "{DATABASE}"
# Mirrors only read; a long run must not close them as idle.
idle_timeout_secs = 3600
log_retention_count = {retention}

[models.todo_list.fields]
name = {{ type = "text" }}
rank = {{ type = "int", optional = true }}

[models.todo_item.fields]
text = {{ type = "text" }}
done = {{ type = "bool", default = false }}
n = {{ type = "int", default = 0 }}
todo_list = {{ type = "ref", to = "todo_list", on_delete = "cascade" }}

[routes.todo-list]
model = "todo_list"
publish_fields = ["name", "rank"]
update_fields = ["name", "rank"]

[routes.todo-item]
model = "todo_item"
publish_fields = ["text", "done", "n", "todo_list"]
update_fields = ["text", "done", "n", "todo_list"]
"#
    )
}

/// A connection from "another process": the test's own, straight to the file.
pub fn open_db(path: &Path) -> Connection {
    let db = Connection::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    db.busy_timeout(std::time::Duration::from_secs(20)).expect("busy timeout");
    db
}

/// One mirror: what it subscribes to, and the SQL condition that selects the same rows.
#[derive(Debug, Clone)]
pub struct Spec {
    pub label: String,
    pub route: &'static str,
    pub filter: Value,
    /// A condition on the route's table (`todo_item` or `todo_list`), unqualified.
    pub sql_where: String,
}

impl Spec {
    pub fn item(label: &str, filter: Value, sql_where: impl Into<String>) -> Spec {
        Spec { label: label.to_owned(), route: "todo-item", filter, sql_where: sql_where.into() }
    }

    fn table(&self) -> &'static str {
        if self.route == "todo-list" { "todo_list" } else { "todo_item" }
    }
}

/// The mirrors, given the two lists that are never deleted. The last one is the one that stalls.
pub fn specs(p1: i64, p2: i64) -> Vec<Spec> {
    vec![
        Spec::item("list P1", json!({"todo_list__id": p1}), format!("todo_list = {p1}")),
        Spec::item("lists P1,P2", json!({"todo_list__id__in": [p1, p2]}), format!("todo_list IN ({p1}, {p2})")),
        Spec::item("10 <= n < 50", json!({"n__gte": 10, "n__lt": 50}), "n >= 10 AND n < 50"),
        Spec::item("done", json!({"done": true}), "done = 1"),
        Spec::item("not done", json!({"done": false}), "done = 0"),
        Spec::item(
            "list named alpha",
            json!({"todo_list__name": "alpha"}),
            "todo_list IN (SELECT id FROM todo_list WHERE name = 'alpha')",
        ),
        Spec::item(
            "list named beta, not done",
            json!({"todo_list__name": "beta", "done": false}),
            "done = 0 AND todo_list IN (SELECT id FROM todo_list WHERE name = 'beta')",
        ),
        Spec::item("all items", json!({}), "1"),
        Spec { label: "all lists".into(), route: "todo-list", filter: json!({}), sql_where: "1".into() },
        Spec::item("all items (stalled)", json!({}), "1"),
    ]
}

/// The rows `spec` selects, as the server would publish them.
pub fn select(db: &Connection, spec: &Spec) -> BTreeMap<i64, MirrorRow> {
    let table = spec.table();
    let sql = match table {
        "todo_list" => format!("SELECT id, name, rank FROM todo_list WHERE {}", spec.sql_where),
        _ => format!("SELECT id, text, done, n, todo_list FROM todo_item WHERE {}", spec.sql_where),
    };
    let mut stmt = db.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let rows = stmt
        .query_map([], |r| {
            let id: i64 = r.get(0)?;
            let mut row = Map::new();
            row.insert("id".into(), json!(id));
            row.insert("_type".into(), json!(table));
            if table == "todo_list" {
                row.insert("name".into(), json!(r.get::<_, String>(1)?));
                row.insert("rank".into(), json!(r.get::<_, Option<i64>>(2)?));
            } else {
                row.insert("text".into(), json!(r.get::<_, String>(1)?));
                row.insert("done".into(), json!(r.get::<_, i64>(2)? != 0));
                row.insert("n".into(), json!(r.get::<_, i64>(3)?));
                row.insert("todo_list".into(), json!(r.get::<_, i64>(4)?));
            }
            Ok((id, row))
        })
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every way `mirror` differs from `db` (the database's rows), one line each; empty when they are equal.
pub fn diff(mirror: &BTreeMap<i64, MirrorRow>, db: &BTreeMap<i64, MirrorRow>) -> Vec<String> {
    let mut out = Vec::new();
    for (id, want) in db {
        match mirror.get(id) {
            None => out.push(format!("missing {id}: the database has {}", short(&Value::Object(want.clone())))),
            Some(got) => {
                let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
                for key in keys {
                    if got.get(key) != want.get(key) {
                        out.push(format!(
                            "different {id}.{key}: mirror {}, database {}",
                            got.get(key).map_or("(absent)".into(), short),
                            want.get(key).map_or("(absent)".into(), short),
                        ));
                    }
                }
            }
        }
    }
    for (id, got) in mirror {
        if !db.contains_key(id) {
            out.push(format!("extra {id}: the mirror holds {}", short(&Value::Object(got.clone()))));
        }
    }
    out
}

/// The change-log entries of one row that the log still holds, newest last, compacted; for failure messages.
pub fn log_of(db: &Connection, table: &str, id: i64, limit: usize) -> Vec<String> {
    let sql = "SELECT offset, seq, action, old, new FROM _drakon_changes WHERE model = ?1 AND row_id = ?2
               ORDER BY offset DESC LIMIT ?3";
    let mut stmt = db.prepare(sql).expect("prepare log read");
    let mut rows: Vec<String> = stmt
        .query_map(rusqlite::params![table, id, limit as i64], |r| {
            let image = |text: Option<String>| {
                text.and_then(|t| serde_json::from_str::<Value>(&t).ok()).map_or("-".into(), |v| short(&v))
            };
            Ok(format!(
                "offset {} (seq {}) {}: {} -> {}",
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                image(r.get(3)?),
                image(r.get(4)?)
            ))
        })
        .expect("log read")
        .collect::<Result<_, _>>()
        .expect("log rows");
    rows.reverse();
    rows
}
