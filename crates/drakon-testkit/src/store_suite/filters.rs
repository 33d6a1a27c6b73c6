//! Filters mean one thing in every store: `list` through the store (filters compiled to the store's SQL dialect, run
//! by the real database) selects exactly the rows the in-memory matcher selects, over random rows and filters and
//! over every tricky text. The rows are written from outside drakon, as any program could. A database's default
//! collation need not be byte order (the PostgreSQL harness makes ICU English databases), so text comparisons must
//! not depend on it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use drakon_core::filter::Lookup;
use drakon_core::filter::matcher::Resolver;
use drakon_core::schema::{Field, Model, Schema};
use drakon_core::store::{LogRetention, Store};
use drakon_core::{Filter, OnDelete, Value};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value as Json;
use tokio::sync::mpsc;

use super::{Outside, StoreHarness};

fn schema() -> Schema {
    Schema::new().model(Model::new("todo_list").field(Field::text("name")).field(Field::int("rank").optional())).model(
        Model::new("todo_item")
            .field(Field::text("text"))
            .field(Field::bool("done"))
            .field(Field::int("n").optional())
            .field(Field::float("score").optional())
            .field(Field::datetime("at").optional())
            .field(Field::reference("todo_list", "todo_list", OnDelete::SetNull).optional()),
    )
}

#[derive(Debug, Clone)]
struct ListRow {
    name: String,
    rank: Option<i64>,
}

#[derive(Debug, Clone)]
struct ItemRow {
    text: String,
    done: bool,
    n: Option<i64>,
    score: Option<f64>,
    at: Option<String>,
    todo_list: Option<i64>,
}

/// Texts where byte order, case folding and pattern characters matter: `B` sorts before `a` in bytes but not in
/// English; `É` is not an ASCII letter, so `icontains` must not fold it; `%` and `_` are LIKE wildcards.
const TEXTS: [&str; 14] = ["", "a", "A", "B", "ab", "Ab b", "b", "foo bar", "FOO", "é", "Éa", "zz", "a%", "_"];

fn small_text() -> impl Strategy<Value = String> {
    prop::sample::select(TEXTS.to_vec()).prop_map(str::to_owned)
}

fn datetime() -> impl Strategy<Value = String> {
    (0u32..4).prop_map(|h| format!("2026-11-27T0{h}:00:00.000000Z"))
}

fn item_row() -> impl Strategy<Value = ItemRow> {
    (
        small_text(),
        any::<bool>(),
        prop::option::of(-2i64..3),
        prop::option::of(prop::sample::select(vec![-1.5, 0.0, 1.0, 2.5])),
        prop::option::of(datetime()),
        prop::option::of(1i64..5),
    )
        .prop_map(|(text, done, n, score, at, todo_list)| ItemRow { text, done, n, score, at, todo_list })
}

fn list_row() -> impl Strategy<Value = ListRow> {
    (small_text(), prop::option::of(0i64..3)).prop_map(|(name, rank)| ListRow { name, rank })
}

fn ops_for(kind: &str) -> Vec<&'static str> {
    match kind {
        "text" => vec![
            "",
            "__ne",
            "__lt",
            "__lte",
            "__gt",
            "__gte",
            "__in",
            "__contains",
            "__icontains",
            "__startswith",
            "__isnull",
        ],
        "bool" => vec!["", "__ne", "__in", "__isnull"],
        _ => vec!["", "__ne", "__lt", "__lte", "__gt", "__gte", "__in", "__isnull"],
    }
}

fn value_for(kind: &str) -> BoxedStrategy<Json> {
    match kind {
        "text" => small_text().prop_map(Json::from).boxed(),
        "bool" => any::<bool>().prop_map(Json::from).boxed(),
        "float" => prop::sample::select(vec![-1.5, 0.0, 1.0, 2.0]).prop_map(Json::from).boxed(),
        "datetime" => datetime().prop_map(Json::from).boxed(),
        _ => (-2i64..5).prop_map(Json::from).boxed(),
    }
}

fn cond() -> impl Strategy<Value = (String, Json)> {
    let lookups = vec![
        ("text", "text"),
        ("done", "bool"),
        ("n", "int"),
        ("score", "float"),
        ("at", "datetime"),
        ("todo_list", "int"),
        ("todo_list__id", "int"),
        ("todo_list__name", "text"),
        ("todo_list__rank", "int"),
        ("id", "int"),
    ];
    prop::sample::select(lookups).prop_flat_map(|(path, kind)| {
        (
            prop::sample::select(ops_for(kind)),
            value_for(kind),
            prop::collection::vec(value_for(kind), 0..3),
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(move |(op, v, list, flag, nullish)| {
                let value = match op {
                    "__in" => Json::from(list),
                    "__isnull" => Json::from(flag),
                    // Sometimes compare with null, which eq/ne turn into isnull.
                    "" | "__ne" if nullish < 20 => Json::Null,
                    _ => v,
                };
                (format!("{path}{op}"), value)
            })
    })
}

struct MemRow<'a> {
    id: i64,
    item: &'a ItemRow,
    lists: &'a HashMap<i64, ListRow>,
}

impl Resolver for MemRow<'_> {
    fn value(&self, lookup: &Lookup) -> std::borrow::Cow<'_, Value> {
        std::borrow::Cow::Owned(self.owned(lookup))
    }
}

impl MemRow<'_> {
    fn owned(&self, lookup: &Lookup) -> Value {
        let list = || self.item.todo_list.and_then(|id| self.lists.get(&id).map(|l| (id, l)));
        let opt_int = |v: Option<i64>| v.map_or(Value::Null, Value::Int);
        match (lookup.hops.len(), lookup.field.as_str()) {
            (0, "id") => Value::Int(self.id),
            (0, "text") => Value::Text(self.item.text.clone()),
            (0, "done") => Value::Bool(self.item.done),
            (0, "n") => opt_int(self.item.n),
            (0, "score") => self.item.score.map_or(Value::Null, Value::Float),
            (0, "at") => self.item.at.clone().map_or(Value::Null, Value::DateTime),
            (0, "todo_list") => opt_int(self.item.todo_list),
            (1, "id") => list().map_or(Value::Null, |(id, _)| Value::Int(id)),
            (1, "name") => list().map_or(Value::Null, |(_, l)| Value::Text(l.name.clone())),
            (1, "rank") => opt_int(list().and_then(|(_, l)| l.rank)),
            other => panic!("unexpected lookup {other:?}"),
        }
    }
}

/// A store migrated to the filter schema, and an outside connection to fill its tables.
async fn setup(h: &dyn StoreHarness) -> (Arc<dyn Store>, Box<dyn Outside>) {
    // Nothing reads the bus here: a closed sink stops the store publishing.
    let (sink, _) = mpsc::channel(1);
    let store = h.open(sink, LogRetention::default()).await;
    store.migrate(&schema()).await.unwrap();
    (store, h.outside().await)
}

/// A SQL literal that reads the same in SQLite and PostgreSQL.
fn literal(text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), |t| format!("'{}'", t.replace('\'', "''")))
}

fn number(n: Option<impl std::fmt::Debug>) -> String {
    n.map_or_else(|| "NULL".to_owned(), |n| format!("{n:?}"))
}

/// Replaces the tables' rows, in one transaction; ids are 1, 2, … in order.
async fn fill(db: &dyn Outside, lists: &[ListRow], items: &[ItemRow]) {
    let mut sql = "BEGIN; DELETE FROM todo_item; DELETE FROM todo_list;".to_owned();
    for (i, l) in lists.iter().enumerate() {
        let (name, rank) = (literal(Some(&l.name)), number(l.rank));
        write!(sql, " INSERT INTO todo_list (id, name, rank) VALUES ({}, {name}, {rank});", i + 1).unwrap();
    }
    for (i, it) in items.iter().enumerate() {
        write!(
            sql,
            " INSERT INTO todo_item (id, text, done, n, score, at, todo_list) VALUES ({}, {}, {}, {}, {}, {}, {});",
            i + 1,
            literal(Some(&it.text)),
            it.done,
            number(it.n),
            number(it.score),
            literal(it.at.as_deref()),
            number(it.todo_list),
        )
        .unwrap();
    }
    sql.push_str(" COMMIT;");
    db.execute(&sql).await;
}

/// The ids of the items `filter` selects through the store's `list`.
async fn select(store: &dyn Store, model: &Model, filter: &Filter) -> Vec<i64> {
    let page = store.list(model, filter, &[], 1000, 0).await.unwrap();
    page.rows.iter().map(|r| r[0].as_i64().unwrap()).collect()
}

/// The ids of the items the matcher selects.
fn matching(filter: &Filter, lists: &[ListRow], items: &[ItemRow]) -> Vec<i64> {
    let lists: HashMap<i64, ListRow> = lists.iter().cloned().enumerate().map(|(i, l)| (i as i64 + 1, l)).collect();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (i as i64 + 1, item))
        .filter(|(id, item)| filter.matches(&MemRow { id: *id, item, lists: &lists }))
        .map(|(id, _)| id)
        .collect()
}

/// Every text operator with every tricky text, on the row and through a reference, against rows holding every
/// tricky text: the cases a random sample may miss (`icontains` of `Éa`, order of `B` and `a`).
pub async fn text_operators_agree_on_every_tricky_text(h: &dyn StoreHarness) {
    let schema = schema();
    let (store, db) = setup(h).await;
    let model = schema.get_model("todo_item").unwrap();
    let lists: Vec<ListRow> = TEXTS.iter().map(|t| ListRow { name: t.to_string(), rank: None }).collect();
    let items: Vec<ItemRow> = (0..TEXTS.len())
        .map(|i| ItemRow {
            text: TEXTS[i].to_owned(),
            done: false,
            n: None,
            score: None,
            at: None,
            // Each item's list has another item's text, and one item has no list.
            todo_list: (i > 0).then_some(((i + 5) % TEXTS.len()) as i64 + 1),
        })
        .collect();
    fill(&*db, &lists, &items).await;
    let mut checked = 0;
    for lookup in ["text", "todo_list__name"] {
        for op in ops_for("text") {
            for value in TEXTS {
                let value = match op {
                    "__in" => serde_json::json!([value, "b"]),
                    "__isnull" => Json::Bool(value.is_empty()),
                    _ => Json::from(value),
                };
                let args: serde_json::Map<String, Json> = [(format!("{lookup}{op}"), value)].into_iter().collect();
                let filter = Filter::parse(&schema, model, &args).unwrap();
                let want = matching(&filter, &lists, &items);
                assert_eq!(select(&*store, model, &filter).await, want, "filter {}", Json::Object(args));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 11 * TEXTS.len());
}

/// The property over random rows and filters (with groups of alternatives, as `any` rules give), shrunk to a small
/// failing case when it breaks.
pub async fn sql_and_memory_select_the_same_rows(h: &dyn StoreHarness) {
    let (store, db) = setup(h).await;
    let db: Arc<dyn Outside> = db.into();
    // proptest drives the cases synchronously, so it runs on a blocking thread that waits on each async step.
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let schema = schema();
        let model = schema.get_model("todo_item").unwrap();
        let strategy = (
            prop::collection::vec(list_row(), 0..4),
            prop::collection::vec(item_row(), 0..12),
            prop::collection::vec(cond(), 1..4),
            // Alternatives, as rules joined with `any` make them: (a AND b) OR (c) OR …, ANDed with the rest.
            prop::collection::vec(prop::collection::vec(cond(), 1..3), 0..3),
        );
        let mut runner = TestRunner::new(Config { cases: 400, ..Config::default() });
        let outcome = runner.run(&strategy, |(lists, items, conds, alternatives)| {
            let args: serde_json::Map<String, Json> = conds.into_iter().collect();
            let mut filter = match Filter::parse(&schema, model, &args) {
                Ok(f) => f,
                Err(e) => return Err(TestCaseError::reject(e.to_string())),
            };
            let alternatives: Vec<serde_json::Map<String, Json>> =
                alternatives.into_iter().map(|conds| conds.into_iter().collect()).collect();
            if !alternatives.is_empty() {
                let parsed: Result<Vec<Filter>, _> =
                    alternatives.iter().map(|args| Filter::parse(&schema, model, args)).collect();
                match parsed {
                    Ok(parsed) => filter = filter.and(Filter::either(parsed)),
                    Err(e) => return Err(TestCaseError::reject(e.to_string())),
                }
            }
            let args = {
                let mut shown = args;
                shown.insert("$any".into(), Json::Array(alternatives.into_iter().map(Json::Object).collect()));
                shown
            };
            let from_sql = runtime.block_on(async {
                fill(&*db, &lists, &items).await;
                select(&*store, model, &filter).await
            });
            prop_assert_eq!(from_sql, matching(&filter, &lists, &items), "filter {}", Json::Object(args));
            Ok(())
        });
        outcome.map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
