//! What the convergence test runs against: the config, the mirrors' filters with the SQL that says what each one
//! selects (written by hand, independent of drakon's filter compiler, and meaning the same in SQLite and
//! PostgreSQL), and the comparison of a mirror with it.

use std::collections::BTreeMap;
use std::sync::Arc;

use drakon_testkit::mirror::{MirrorRow, short};
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

/// The WebSocket URLs of the nodes that are up. Stopping a node holds it for writing from before the node stops
/// until it is out of the list (and, for a restart, until its successor listens), so whoever connects under a
/// read guard reaches a live node.
pub type Gate = Arc<tokio::sync::RwLock<Vec<String>>>;

/// One of the live nodes, at random: where a client connects or reconnects.
pub fn pick(nodes: &[String], rng: &mut impl rand::Rng) -> String {
    nodes.choose(rng).expect("at least one node is up").clone()
}

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

/// One mirror: what it subscribes to, and the SQL condition that selects the same rows.
#[derive(Debug, Clone)]
pub struct Spec {
    pub label: String,
    pub route: &'static str,
    pub filter: Value,
    /// A condition on the route's table (`todo_item` or `todo_list`), unqualified, in SQL that SQLite and
    /// PostgreSQL read alike (a bool is tested as `done` or `NOT done`: SQLite keeps 0 and 1, PostgreSQL a
    /// `boolean`).
    pub sql_where: String,
}

impl Spec {
    pub fn item(label: &str, filter: Value, sql_where: impl Into<String>) -> Spec {
        Spec { label: label.to_owned(), route: "todo-item", filter, sql_where: sql_where.into() }
    }

    pub fn list(label: &str, sql_where: impl Into<String>) -> Spec {
        Spec { label: label.to_owned(), route: "todo-list", filter: json!({}), sql_where: sql_where.into() }
    }

    pub fn table(&self) -> &'static str {
        if self.route == "todo-list" { "todo_list" } else { "todo_item" }
    }
}

/// The mirrors, given the two lists that are never deleted. The last one is the one that stalls.
pub fn specs(p1: i64, p2: i64) -> Vec<Spec> {
    vec![
        Spec::item("list P1", json!({"todo_list__id": p1}), format!("todo_list = {p1}")),
        Spec::item("lists P1,P2", json!({"todo_list__id__in": [p1, p2]}), format!("todo_list IN ({p1}, {p2})")),
        Spec::item("10 <= n < 50", json!({"n__gte": 10, "n__lt": 50}), "n >= 10 AND n < 50"),
        Spec::item("done", json!({"done": true}), "done"),
        Spec::item("not done", json!({"done": false}), "NOT done"),
        Spec::item(
            "list named alpha",
            json!({"todo_list__name": "alpha"}),
            "todo_list IN (SELECT id FROM todo_list WHERE name = 'alpha')",
        ),
        Spec::item(
            "list named beta, not done",
            json!({"todo_list__name": "beta", "done": false}),
            "NOT done AND todo_list IN (SELECT id FROM todo_list WHERE name = 'beta')",
        ),
        Spec::item("all items", json!({}), "TRUE"),
        Spec::list("all lists", "TRUE"),
        Spec::item("all items (stalled)", json!({}), "TRUE"),
    ]
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
