//! The random writer: creates, updates, moves and deletes items, renames and deletes lists, through drakon's verbs
//! and as direct SQL from another connection (single rows, multi-row `UPDATE`s, and transactions of several
//! statements), until told to stop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use drakon_testkit::Client;
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::json;

use super::world::{Gate, LIST_NAMES, open_db};

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
    db: Connection,
    gate: Gate,
    /// The verb client and the URL it is connected to.
    client: Option<(String, Client)>,
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
    pub fn new(rng: ChaCha8Rng, db_path: &std::path::Path, gate: Gate, protected: Vec<i64>) -> Writer {
        Writer { rng, db: open_db(db_path), gate, client: None, protected, report: WriterReport::default() }
    }

    /// Writes until `stop` is set; verbs go to whichever server the gate names, SQL goes to the file directly (so
    /// writing goes on while the server restarts).
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
        self.report
    }

    fn count(&mut self, what: &'static str) {
        *self.report.ops.entry(what).or_default() += 1;
    }

    fn ids(&self, table: &str) -> Vec<i64> {
        let mut stmt = self.db.prepare_cached(&format!("SELECT id FROM {table} ORDER BY id")).expect("prepare");
        stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("ids")
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
        let items = self.ids("todo_item");
        let lists = self.ids("todo_list");
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
            // Verbs need a live server: while it restarts (the gate is held), write SQL instead.
            let gate = self.gate.clone();
            if let Ok(url) = gate.try_read() {
                self.verb(op, &items, &lists, &url).await;
                return;
            }
            self.count("verb skipped during restart");
            self.sql_update_item(&items, &lists);
            return;
        }
        match op {
            Op::SqlInsertItem => self.sql_insert_item(&lists),
            Op::SqlUpdateItem => self.sql_update_item(&items, &lists),
            Op::SqlDeleteItem => self.sql_delete_item(&items),
            Op::SqlRenameList => self.sql_rename_list(&lists),
            Op::SqlBulkUpdate => self.sql_bulk_update(&lists),
            Op::SqlDeleteList => self.sql_delete_list(&lists),
            Op::SqlInsertList => self.sql_insert_list(),
            Op::SqlTransaction => self.sql_transaction(&items, &lists),
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
        if self.client.as_ref().is_none_or(|(at, _)| at != url) {
            // A restart changed the port: the old connection is closed, the new server is up (we hold the gate).
            self.client = Some((url.to_owned(), Client::connect(url).await));
        }
        let (_, client) = self.client.as_mut().expect("connected");
        let reply = client.call(route, verb, args.clone()).await;
        self.count(what);
        if reply["context"]["state"] != "success" {
            self.report.verb_errors.push(format!("{route} {verb} {args}: {}", reply["data"]));
        }
    }

    // --- direct SQL, as another process would write ---

    fn sql_insert_item(&mut self, lists: &[i64]) {
        let Some(list) = self.pick(lists) else { return };
        let (text, done, n) = (self.text(), self.rng.random_bool(0.5), self.n());
        self.db
            .execute(
                "INSERT INTO todo_item (text, done, n, todo_list) VALUES (?1, ?2, ?3, ?4)",
                params![text, done, n, list],
            )
            .expect("sql insert item");
        self.count("sql insert item");
    }

    fn sql_update_item(&mut self, items: &[i64], lists: &[i64]) {
        let Some(id) = self.pick(items) else { return };
        let (sql, what): (String, &'static str) = match self.rng.random_range(0..5) {
            0 => (format!("UPDATE todo_item SET text = {} WHERE id = {id}", sql_text(&self.text())), "sql update text"),
            1 => (format!("UPDATE todo_item SET done = 1 - done WHERE id = {id}"), "sql toggle done"),
            2 => (format!("UPDATE todo_item SET n = {} WHERE id = {id}", self.n()), "sql set n"),
            3 => match self.pick(lists) {
                Some(list) => (format!("UPDATE todo_item SET todo_list = {list} WHERE id = {id}"), "sql move item"),
                None => return,
            },
            _ => (
                format!(
                    "UPDATE todo_item SET text = {}, done = {}, n = {} WHERE id = {id}",
                    sql_text(&self.text()),
                    i64::from(self.rng.random_bool(0.5)),
                    self.n()
                ),
                "sql update several fields",
            ),
        };
        self.db.execute(&sql, []).unwrap_or_else(|e| panic!("{sql}: {e}"));
        self.count(what);
    }

    fn sql_delete_item(&mut self, items: &[i64]) {
        let Some(id) = self.pick(items) else { return };
        self.db.execute("DELETE FROM todo_item WHERE id = ?1", [id]).expect("sql delete item");
        self.count("sql delete item");
    }

    fn sql_rename_list(&mut self, lists: &[i64]) {
        let Some(id) = self.pick(lists) else { return };
        let name = self.list_name();
        self.db.execute("UPDATE todo_list SET name = ?1 WHERE id = ?2", params![name, id]).expect("sql rename list");
        self.count("sql rename list");
    }

    fn sql_insert_list(&mut self) {
        let (name, rank) = (self.list_name(), self.rank());
        self.db.execute("INSERT INTO todo_list (name, rank) VALUES (?1, ?2)", params![name, rank]).expect("sql list");
        self.count("sql insert list");
    }

    /// One statement that changes many rows at once.
    fn sql_bulk_update(&mut self, lists: &[i64]) {
        let (sql, what) = match self.rng.random_range(0..5) {
            0 => (
                format!("UPDATE todo_item SET done = 1 - done WHERE n % 3 = {}", self.rng.random_range(0..3)),
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
        self.db.execute(&sql, []).unwrap_or_else(|e| panic!("{sql}: {e}"));
        self.count(what);
    }

    /// Deletes a list and its items in one transaction, as drakon's cascade would.
    fn sql_delete_list(&mut self, lists: &[i64]) {
        let Some(id) = self.deletable_list(lists) else { return };
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
        tx.execute("DELETE FROM todo_item WHERE todo_list = ?1", [id]).expect("delete items");
        tx.execute("DELETE FROM todo_list WHERE id = ?1", [id]).expect("delete list");
        tx.commit().expect("commit");
        self.count("sql delete list (cascade)");
    }

    /// Several writes in one transaction: they reach the bus as one batch, so the fan-out sees them together.
    fn sql_transaction(&mut self, items: &[i64], lists: &[i64]) {
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
                    i64::from(self.rng.random_bool(0.5)),
                    self.n()
                ),
                1 => format!("UPDATE todo_item SET done = 1 - done, n = {} WHERE id = {item}", self.n()),
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
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).expect("begin");
        for sql in &statements {
            tx.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        tx.commit().expect("commit");
        self.count("sql transaction");
    }
}

/// A SQL string literal.
pub fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
