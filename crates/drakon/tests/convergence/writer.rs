//! The random writer: creates, updates, moves and deletes items, renames and deletes lists, through drakon's verbs
//! on a random live node and as direct SQL from another connection (single rows, multi-row `UPDATE`s, and
//! transactions of several statements, in SQL that SQLite and PostgreSQL read alike), until told to stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use drakon_testkit::Client;
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::db::Db;
use super::world::{self, Gate, LIST_NAMES};

/// Texts with spaces, quotes, backslashes and non-ASCII, so that encoding differences between the paths show.
const TEXTS: &[&str] = &[
    "buy milk",
    "call mum",
    "it's done",
    "naïve café",
    "日本語のテキスト",
    "dragon 🐉",
    "quote \" and \\ backslash",
    "",
    "  padded  ",
    "foo bar",
];

/// Values of `n` around the range mirror's bounds (10 ≤ n < 50) turn up more often than chance would have them.
const EDGES: &[i64] = &[9, 10, 11, 49, 50, 51];

/// Item counts the writer steers between.
const FEW_ITEMS: usize = 80;
const MANY_ITEMS: usize = 260;

/// What the writer did, by kind of operation, and the errors verbs answered.
#[derive(Debug, Default)]
pub struct WriterReport {
    pub ops: BTreeMap<&'static str, u64>,
    pub verb_errors: Vec<String>,
}

#[derive(Debug)]
pub struct Writer {
    rng: ChaCha8Rng,
    db: Db,
    gate: Gate,
    /// A verb client per node, by URL; dropped when the node is no longer up.
    clients: BTreeMap<String, Client>,
    /// Lists the id-filtered mirrors look at; never deleted, so those mirrors always have something to watch.
    protected: Vec<i64>,
    report: WriterReport,
}

enum Op {
    VerbCreateItem,
    VerbUpdateItem,
    VerbDeleteItem,
    VerbCreateList,
    VerbRenameList,
    VerbSetRank,
    VerbDeleteList,
    SqlInsertItem,
    SqlUpdateItem,
    SqlDeleteItem,
    SqlRenameList,
    SqlBulkUpdate,
    SqlDeleteList,
    SqlInsertList,
    SqlTransaction,
}

impl Writer {
    pub fn new(rng: ChaCha8Rng, db: Db, gate: Gate, protected: Vec<i64>) -> Writer {
        Writer { rng, db, gate, clients: BTreeMap::new(), protected, report: WriterReport::default() }
    }

    /// Writes until `stop` is set; verbs go to one of the nodes the gate names, SQL goes to the database directly
    /// (so writing goes on while a node restarts).
    pub async fn run(mut self, stop: Arc<AtomicBool>) -> WriterReport {
        while !stop.load(Ordering::Relaxed) {
            self.step().await;
            // Leave the server and the mirrors some of the two cores; the pause shapes the load, nothing waits on it.
            if self.rng.random_bool(0.5) {
                tokio::time::sleep(std::time::Duration::from_millis(self.rng.random_range(0..4))).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        let retried = self.db.retried();
        if retried > 0 {
            self.report.ops.insert("sql run again after a deadlock", retried);
        }
        self.report
    }

    fn count(&mut self, what: &'static str) {
        *self.report.ops.entry(what).or_default() += 1;
    }

    fn pick_op(&mut self, items: usize, lists: usize) -> Op {
        let create = if items < FEW_ITEMS {
            30
        } else if items > MANY_ITEMS {
            2
        } else {
            12
        };
        let delete = if items < FEW_ITEMS {
            1
        } else if items > MANY_ITEMS {
            25
        } else {
            7
        };
        let list_create = if lists < 4 {
            6
        } else if lists > 9 {
            0
        } else {
            2
        };
        let list_delete = if lists > 5 { 2 } else { 0 };
        let table: [(Op, u32); 15] = [
            (Op::VerbCreateItem, create),
            (Op::VerbUpdateItem, 30),
            (Op::VerbDeleteItem, delete),
            (Op::VerbCreateList, list_create),
            (Op::VerbRenameList, 5),
            (Op::VerbSetRank, 2),
            (Op::VerbDeleteList, list_delete),
            (Op::SqlInsertItem, create * 2 / 3),
            (Op::SqlUpdateItem, 20),
            (Op::SqlDeleteItem, delete * 2 / 3),
            (Op::SqlRenameList, 5),
            (Op::SqlBulkUpdate, 2),
            (Op::SqlDeleteList, list_delete / 2),
            (Op::SqlInsertList, list_create / 2),
            (Op::SqlTransaction, 4),
        ];
        let total: u32 = table.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.random_range(0..total);
        for (op, weight) in table {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total weight")
    }

    async fn step(&mut self) {
        let items = self.db.ids("todo_item").await;
        let lists = self.db.ids("todo_list").await;
        let op = self.pick_op(items.len(), lists.len());
        let is_verb = matches!(
            op,
            Op::VerbCreateItem
                | Op::VerbUpdateItem
                | Op::VerbDeleteItem
                | Op::VerbCreateList
                | Op::VerbRenameList
                | Op::VerbSetRank
                | Op::VerbDeleteList
        );
        if is_verb {
            // Verbs need a live node: while one stops (the gate is held), write SQL instead.
            let gate = self.gate.clone();
            if let Ok(urls) = gate.try_read() {
                self.clients.retain(|url, _| urls.contains(url));
                let url = world::pick(&urls, &mut self.rng);
                self.verb(op, &items, &lists, &url).await;
                return;
            }
            self.count("verb skipped during restart");
            self.sql_update_item(&items, &lists).await;
            return;
        }
        match op {
            Op::SqlInsertItem => self.sql_insert_item(&lists).await,
            Op::SqlUpdateItem => self.sql_update_item(&items, &lists).await,
            Op::SqlDeleteItem => self.sql_delete_item(&items).await,
            Op::SqlRenameList => self.sql_rename_list(&lists).await,
            Op::SqlBulkUpdate => self.sql_bulk_update(&lists).await,
            Op::SqlDeleteList => self.sql_delete_list(&lists).await,
            Op::SqlInsertList => self.sql_insert_list().await,
            Op::SqlTransaction => self.sql_transaction(&items, &lists).await,
            _ => unreachable!("verbs are handled above"),
        }
    }

    // --- random values ---

    fn text(&mut self) -> String {
        let base = *TEXTS.choose(&mut self.rng).expect("texts");
        if self.rng.random_bool(0.5) { format!("{base} {}", self.rng.random_range(0..1000)) } else { base.to_owned() }
    }

    fn n(&mut self) -> i64 {
        if self.rng.random_bool(0.25) {
            *EDGES.choose(&mut self.rng).expect("edges")
        } else {
            self.rng.random_range(0..100)
        }
    }

    fn list_name(&mut self) -> String {
        (*LIST_NAMES.choose(&mut self.rng).expect("names")).to_owned()
    }

    fn rank(&mut self) -> Option<i64> {
        self.rng.random_bool(0.7).then(|| self.rng.random_range(-5..100))
    }

    fn pick(&mut self, ids: &[i64]) -> Option<i64> {
        ids.choose(&mut self.rng).copied()
    }

    fn deletable_list(&mut self, lists: &[i64]) -> Option<i64> {
        let candidates: Vec<i64> = lists.iter().copied().filter(|id| !self.protected.contains(id)).collect();
        self.pick(&candidates)
    }

    // --- verbs ---

    async fn verb(&mut self, op: Op, items: &[i64], lists: &[i64], url: &str) {
        let (route, verb, args, what) = match op {
            Op::VerbCreateItem => {
                let Some(list) = self.pick(lists) else { return };
                let args =
                    json!({"text": self.text(), "done": self.rng.random_bool(0.5), "n": self.n(), "todo_list": list});
                ("todo-item", "create", args, "verb create item")
            }
            Op::VerbUpdateItem => {
                let Some(id) = self.pick(items) else { return };
                let mut args = json!({"id": id});
                let mut any = false;
                while !any {
                    if self.rng.random_bool(0.35) {
                        args["text"] = json!(self.text());
                        any = true;
                    }
                    if self.rng.random_bool(0.35) {
                        args["done"] = json!(self.rng.random_bool(0.5));
                        any = true;
                    }
                    if self.rng.random_bool(0.35) {
                        args["n"] = json!(self.n());
                        any = true;
                    }
                    if self.rng.random_bool(0.25)
                        && let Some(list) = self.pick(lists)
                    {
                        args["todo_list"] = json!(list);
                        any = true;
                    }
                }
                ("todo-item", "update", args, "verb update item")
            }
            Op::VerbDeleteItem => {
                let Some(id) = self.pick(items) else { return };
                ("todo-item", "delete", json!({"id": id}), "verb delete item")
            }
            Op::VerbCreateList => {
                let args = json!({"name": self.list_name(), "rank": self.rank()});
                ("todo-list", "create", args, "verb create list")
            }
            Op::VerbRenameList => {
                let Some(id) = self.pick(lists) else { return };
                ("todo-list", "update", json!({"id": id, "name": self.list_name()}), "verb rename list")
            }
            Op::VerbSetRank => {
                let Some(id) = self.pick(lists) else { return };
                ("todo-list", "update", json!({"id": id, "rank": self.rank()}), "verb set rank")
            }
            Op::VerbDeleteList => {
                let Some(id) = self.deletable_list(lists) else { return };
                ("todo-list", "delete", json!({"id": id}), "verb delete list (cascade)")
            }
            _ => unreachable!("not a verb"),
        };
        if !self.clients.contains_key(url) {
            // The node is up: we hold the gate.
            self.clients.insert(url.to_owned(), Client::connect(url).await);
        }
        let client = self.clients.get_mut(url).expect("connected");
        let reply = client.call(route, verb, args.clone()).await;
        self.count(what);
        if reply["context"]["state"] != "success" {
            self.report.verb_errors.push(format!("{route} {verb} {args}: {}", reply["data"]));
        }
    }

    // --- direct SQL, as another process would write ---

    async fn sql_insert_item(&mut self, lists: &[i64]) {
        let Some(list) = self.pick(lists) else { return };
        let (text, done, n) = (sql_text(&self.text()), sql_bool(self.rng.random_bool(0.5)), self.n());
        self.db
            .execute(&format!("INSERT INTO todo_item (text, done, n, todo_list) VALUES ({text}, {done}, {n}, {list})"))
            .await;
        self.count("sql insert item");
    }

    async fn sql_update_item(&mut self, items: &[i64], lists: &[i64]) {
        let Some(id) = self.pick(items) else { return };
        let (sql, what): (String, &'static str) = match self.rng.random_range(0..5) {
            0 => (format!("UPDATE todo_item SET text = {} WHERE id = {id}", sql_text(&self.text())), "sql update text"),
            1 => (format!("UPDATE todo_item SET done = NOT done WHERE id = {id}"), "sql toggle done"),
            2 => (format!("UPDATE todo_item SET n = {} WHERE id = {id}", self.n()), "sql set n"),
            3 => match self.pick(lists) {
                Some(list) => (format!("UPDATE todo_item SET todo_list = {list} WHERE id = {id}"), "sql move item"),
                None => return,
            },
            _ => (
                format!(
                    "UPDATE todo_item SET text = {}, done = {}, n = {} WHERE id = {id}",
                    sql_text(&self.text()),
                    sql_bool(self.rng.random_bool(0.5)),
                    self.n()
                ),
                "sql update several fields",
            ),
        };
        self.db.execute(&sql).await;
        self.count(what);
    }

    async fn sql_delete_item(&mut self, items: &[i64]) {
        let Some(id) = self.pick(items) else { return };
        self.db.execute(&format!("DELETE FROM todo_item WHERE id = {id}")).await;
        self.count("sql delete item");
    }

    async fn sql_rename_list(&mut self, lists: &[i64]) {
        let Some(id) = self.pick(lists) else { return };
        let name = sql_text(&self.list_name());
        self.db.execute(&format!("UPDATE todo_list SET name = {name} WHERE id = {id}")).await;
        self.count("sql rename list");
    }

    async fn sql_insert_list(&mut self) {
        let (name, rank) = (sql_text(&self.list_name()), self.rank().map_or("NULL".into(), |r| r.to_string()));
        self.db.execute(&format!("INSERT INTO todo_list (name, rank) VALUES ({name}, {rank})")).await;
        self.count("sql insert list");
    }

    /// One statement that changes many rows at once.
    async fn sql_bulk_update(&mut self, lists: &[i64]) {
        let (sql, what) = match self.rng.random_range(0..5) {
            0 => (
                format!("UPDATE todo_item SET done = NOT done WHERE n % 3 = {}", self.rng.random_range(0..3)),
                "sql bulk toggle done",
            ),
            1 => (format!("UPDATE todo_item SET n = (n + {}) % 100", self.rng.random_range(1..60)), "sql bulk shift n"),
            2 => match (self.pick(lists), self.pick(lists)) {
                (Some(from), Some(to)) if from != to => {
                    (format!("UPDATE todo_item SET todo_list = {to} WHERE todo_list = {from}"), "sql bulk move list")
                }
                _ => return,
            },
            3 => (
                format!(
                    "UPDATE todo_list SET name = CASE WHEN id % 2 = {} THEN 'alpha' ELSE 'beta' END",
                    self.rng.random_range(0..2)
                ),
                "sql bulk rename lists",
            ),
            _ => (
                format!("UPDATE todo_item SET text = text || ' +' WHERE n < {}", self.rng.random_range(10..60)),
                "sql bulk append text",
            ),
        };
        self.db.execute(&sql).await;
        self.count(what);
    }

    /// Deletes a list and its items in one transaction, as drakon's cascade would.
    async fn sql_delete_list(&mut self, lists: &[i64]) {
        let Some(id) = self.deletable_list(lists) else { return };
        self.db
            .transaction(&[
                format!("DELETE FROM todo_item WHERE todo_list = {id}"),
                format!("DELETE FROM todo_list WHERE id = {id}"),
            ])
            .await;
        self.count("sql delete list (cascade)");
    }

    /// Several writes in one transaction: they reach the bus as one batch, so the fan-out sees them together.
    async fn sql_transaction(&mut self, items: &[i64], lists: &[i64]) {
        let steps = self.rng.random_range(2..6);
        let mut statements = Vec::new();
        for _ in 0..steps {
            let item = self.pick(items);
            let list = self.pick(lists);
            let (Some(item), Some(list)) = (item, list) else { return };
            let sql = match self.rng.random_range(0..6) {
                0 => format!(
                    "INSERT INTO todo_item (text, done, n, todo_list) VALUES ({}, {}, {}, {list})",
                    sql_text(&self.text()),
                    sql_bool(self.rng.random_bool(0.5)),
                    self.n()
                ),
                1 => format!("UPDATE todo_item SET done = NOT done, n = {} WHERE id = {item}", self.n()),
                2 => format!("UPDATE todo_item SET todo_list = {list} WHERE id = {item}"),
                3 => format!("UPDATE todo_list SET name = {} WHERE id = {list}", sql_text(&self.list_name())),
                4 => format!("DELETE FROM todo_item WHERE id = {item}"),
                // A row changed and changed back: two log entries whose net effect is nothing.
                _ => format!(
                    "UPDATE todo_item SET text = text || '~' WHERE id = {item}; \
                     UPDATE todo_item SET text = substr(text, 1, length(text) - 1) WHERE id = {item}"
                ),
            };
            statements.push(sql);
        }
        self.db.transaction(&statements).await;
        self.count("sql transaction");
    }
}

/// A SQL string literal.
pub fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL bool literal; SQLite reads `TRUE` and `FALSE` as 1 and 0.
pub fn sql_bool(b: bool) -> &'static str {
    if b { "TRUE" } else { "FALSE" }
}
