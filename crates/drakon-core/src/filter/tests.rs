//! Filter parsing tables and the SQL ≡ memory property.

use std::collections::HashMap;

use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::{Value as Json, json};

use super::matcher::Resolver;
use super::sql::{Dialect, compile};
use super::*;
use crate::schema::{Field, Model, OnDelete, Schema};

pub(crate) fn test_schema() -> Schema {
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

fn parse(args: Json) -> Result<Filter, FilterError> {
    let schema = test_schema();
    let model = schema.get_model("todo_item").unwrap();
    Filter::parse(&schema, model, args.as_object().unwrap())
}

#[test]
fn parse_accepts_typed_lookups() {
    let cases = [
        (json!({"done": false}), "done__eq One(Bool(false))"),
        (json!({"todo_list__id": 1}), "todo_list__eq One(Int(1))"),
        (json!({"todo_list": 1}), "todo_list__eq One(Int(1))"),
        (json!({"todo_list__name": "List one"}), "todo_list__name__eq One(Text(\"List one\"))"),
        (json!({"todo_list__rank__gte": 2}), "todo_list__rank__gte One(Int(2))"),
        (json!({"n__in": [1, 2]}), "n__in List([Int(1), Int(2)])"),
        (json!({"n": null}), "n__isnull Flag(true)"),
        (json!({"n__ne": null}), "n__isnull Flag(false)"),
        (json!({"text__icontains": "Foo"}), "text__icontains One(Text(\"Foo\"))"),
        (json!({"score__lt": 1}), "score__lt One(Float(1.0))"),
    ];
    for (args, want) in cases {
        let filter = parse(args.clone()).unwrap_or_else(|e| panic!("{args}: {e}"));
        assert_eq!(filter.conds[0].to_string(), want, "{args}");
    }
}

#[test]
fn parse_rejects_bad_filters_with_codes() {
    let cases = [
        (json!({"nope": 1}), ErrorCode::UnknownField, "model `todo_item` has no field `nope`"),
        (json!({"todo_list__nope": 1}), ErrorCode::UnknownField, "model `todo_list` has no field `nope`"),
        (json!({"done": "False"}), ErrorCode::WrongType, "expected a bool, got a string"),
        (
            json!({"done__contains": "x"}),
            ErrorCode::InvalidFilter,
            "operator `contains` does not apply to bool field `done`",
        ),
        (json!({"text__foo": 1}), ErrorCode::InvalidFilter, "unknown operator `foo`"),
        (json!({"text__foo__eq": 1}), ErrorCode::InvalidFilter, "`text` is not a reference"),
        (json!({"n__in": 1}), ErrorCode::WrongType, "in takes a list of values"),
        (json!({"n__in": [1, null]}), ErrorCode::WrongType, "in may not list null; use isnull"),
        (json!({"n__isnull": "yes"}), ErrorCode::WrongType, "isnull takes true or false"),
        (json!({"n__gt": null}), ErrorCode::WrongType, "gt cannot compare with null"),
        (json!({"text\"; DROP TABLE todo_item; --": 1}), ErrorCode::UnknownField, "has no field"),
    ];
    for (args, code, message) in cases {
        let err = parse(args.clone()).expect_err(&args.to_string());
        assert_eq!(err.code, code, "{args}");
        assert!(err.message.contains(message), "{args}: {}", err.message);
    }
}

/// What each operator compiles to, in each dialect. The SQLite column is the output the store has always run; the
/// PostgreSQL column runs against a real server in the store suite's filter tests (`drakon_testkit::store_suite`).
#[test]
fn compile_writes_each_dialect() {
    let hop = r#"(SELECT "t_h1"."name" FROM "todo_list" AS "t_h1" WHERE "t_h1"."id" = "t"."todo_list")"#;
    let fold = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'";
    let cases: Vec<(Json, String, String)> = vec![
        (json!({}), "1".into(), "TRUE".into()),
        (json!({"done": false}), r#"("t"."done" = ?)"#.into(), r#"("t"."done" = $1::bool)"#.into()),
        (
            json!({"n__ne": 2, "score__gt": 1.5}),
            r#"("t"."n" IS NOT ?) AND ("t"."score" > ?)"#.into(),
            r#"("t"."n" IS DISTINCT FROM $1::int8) AND ("t"."score" > $2::float8)"#.into(),
        ),
        (json!({"text__lt": "b"}), r#"("t"."text" < ?)"#.into(), r#"("t"."text" < $1::text COLLATE "C")"#.into()),
        (
            json!({"at__gte": "2026-11-27T00:00:00Z"}),
            r#"("t"."at" >= ?)"#.into(),
            r#"("t"."at" >= $1::text COLLATE "C")"#.into(),
        ),
        (json!({"n__in": []}), "(0)".into(), "(FALSE)".into()),
        (json!({"n__in": [1, 2]}), r#"("t"."n" IN (?, ?))"#.into(), r#"("t"."n" IN ($1::int8, $2::int8))"#.into()),
        (json!({"n__isnull": false}), r#"("t"."n" IS NOT NULL)"#.into(), r#"("t"."n" IS NOT NULL)"#.into()),
        (
            json!({"text__contains": "a"}),
            r#"(instr("t"."text", ?) > 0)"#.into(),
            r#"(strpos("t"."text", $1::text) > 0)"#.into(),
        ),
        (
            json!({"text__icontains": "A"}),
            r#"(instr(lower("t"."text"), lower(?)) > 0)"#.into(),
            format!(r#"(strpos(translate("t"."text", {fold}), translate($1::text, {fold})) > 0)"#),
        ),
        (
            json!({"text__startswith": "a"}),
            r#"(substr("t"."text", 1, length(?)) = ?)"#.into(),
            r#"(substring("t"."text", 1, char_length($1::text)) = $1::text)"#.into(),
        ),
        (
            json!({"todo_list__name": "x", "n": 1}),
            format!(r#"({hop} = ?) AND ("t"."n" = ?)"#),
            format!(r#"({hop} = $1::text) AND ("t"."n" = $2::int8)"#),
        ),
    ];
    for (args, sqlite, postgres) in cases {
        let filter = parse(args.clone()).unwrap_or_else(|e| panic!("{args}: {e}"));
        let lite = compile(&filter, "t", Dialect::Sqlite);
        assert_eq!(lite.sql, sqlite, "{args}");
        let pg = compile(&filter, "t", Dialect::Postgres);
        assert_eq!(pg.sql, postgres, "{args}");
        // `$n` names a value once however often the statement uses it; SQLite binds each `?`.
        assert_eq!(lite.params.len(), lite.sql.matches('?').count(), "{args}");
        assert!(pg.params.len() <= lite.params.len(), "{args}");
    }
}

// ---- the property: SQL and memory select the same rows ----

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

fn small_text() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "A", "ab", "Ab b", "b", "foo bar", "FOO", "é", "Éa", "zz", "a%", "_"])
        .prop_map(str::to_owned)
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

fn op_for(kind: &str) -> Vec<&'static str> {
    match kind {
        "text" => vec!["", "__ne", "__lt", "__gte", "__in", "__contains", "__icontains", "__startswith", "__isnull"],
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
            prop::sample::select(op_for(kind)),
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
    fn value(&self, lookup: &Lookup) -> Value {
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

fn to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Null => S::Null,
        Value::Int(i) => S::Integer(*i),
        Value::Float(f) => S::Real(*f),
        Value::Bool(b) => S::Integer(i64::from(*b)),
        Value::Text(s) | Value::DateTime(s) => S::Text(s.clone()),
        Value::Json(j) => S::Text(j.to_string()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn sql_and_memory_select_the_same_rows(
        lists in prop::collection::vec(list_row(), 0..4),
        items in prop::collection::vec(item_row(), 0..12),
        conds in prop::collection::vec(cond(), 1..4),
    ) {
        let args: Args = conds.into_iter().collect();
        let filter = match parse(Json::Object(args.clone())) {
            Ok(f) => f,
            Err(e) => return Err(TestCaseError::reject(e.to_string())),
        };
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE todo_list (id INTEGER PRIMARY KEY, name TEXT NOT NULL, rank INTEGER);
             CREATE TABLE todo_item (id INTEGER PRIMARY KEY, text TEXT NOT NULL, done INTEGER NOT NULL, n INTEGER,
                                     score REAL, at TEXT, todo_list INTEGER);",
        ).unwrap();
        let mut list_map = HashMap::new();
        for (i, l) in lists.iter().enumerate() {
            let id = i as i64 + 1;
            db.execute("INSERT INTO todo_list VALUES (?1, ?2, ?3)", rusqlite::params![id, l.name, l.rank]).unwrap();
            list_map.insert(id, l.clone());
        }
        for (i, it) in items.iter().enumerate() {
            db.execute(
                "INSERT INTO todo_item VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![i as i64 + 1, it.text, it.done, it.n, it.score, it.at, it.todo_list],
            ).unwrap();
        }
        let cond = compile(&filter, "t", Dialect::Sqlite);
        let sql = format!("SELECT \"t\".id FROM todo_item AS \"t\" WHERE {} ORDER BY 1", cond.sql);
        let params: Vec<_> = cond.params.iter().map(to_sql).collect();
        let mut stmt = db.prepare(&sql).unwrap();
        let from_sql: Vec<i64> = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0)).unwrap()
            .collect::<Result<_, _>>().unwrap();
        let from_memory: Vec<i64> = items.iter().enumerate()
            .map(|(i, item)| (i as i64 + 1, item))
            .filter(|(id, item)| filter.matches(&MemRow { id: *id, item, lists: &list_map }))
            .map(|(id, _)| id)
            .collect();
        prop_assert_eq!(from_sql, from_memory, "filter {} compiled to {}", Json::Object(args), sql);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Json::from),
        ".{0,12}".prop_map(Json::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| prop::collection::vec(inner, 0..4).prop_map(Json::from))
}

proptest! {
    /// Hostile keys and values get an error or a filter, never a panic; and whatever parses compiles to SQL whose
    /// only identifiers come from the schema.
    #[test]
    fn arbitrary_filters_never_panic(
        keys in prop::collection::vec("(text|done|n|todo_list|id|x|todo_list__name|__|\"|;)(__(eq|in|isnull|gt|contains|zz))?.{0,3}", 1..4),
        values in prop::collection::vec(arbitrary_json(), 4),
    ) {
        let args: Args = keys.into_iter().zip(values).collect();
        if let Ok(filter) = parse(Json::Object(args)) {
            for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                let cond = compile(&filter, "t", dialect);
                prop_assert!(!cond.sql.contains(';'));
            }
        }
    }
}
