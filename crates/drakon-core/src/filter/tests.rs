//! Filter parsing tables and the SQL ≡ memory property.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

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

// ---- properties ----

// SQL ≡ memory over random rows and filters is the store suite's property test
// (`drakon_testkit::store_suite::sql_and_memory_select_the_same_rows`), run against SQLite and PostgreSQL.

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
