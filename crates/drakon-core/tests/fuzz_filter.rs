//! Hostile filters, as a bounded fuzz run that CI repeats: whatever keys and values a client sends, parsing answers
//! with a filter or a client error (never a panic, never `internal`), and the SQL a parsed filter compiles to keeps
//! every value a parameter, so no client text reaches the statement itself.

use drakon_core::filter::Filter;
use drakon_core::filter::sql::{Dialect, compile};
use drakon_core::schema::{Field, Model, OnDelete, Schema};
use drakon_protocol::{Args, ErrorCode};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

fn schema() -> Schema {
    Schema::new().model(Model::new("todo_list").field(Field::text("name")).field(Field::int("rank"))).model(
        Model::new("todo_item")
            .field(Field::text("text"))
            .field(Field::bool("done"))
            .field(Field::float("score"))
            .field(Field::datetime("due").optional())
            .field(Field::json("meta").optional())
            .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
    )
}

fn key() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        Just("text"),
        Just("done"),
        Just("score"),
        Just("due"),
        Just("meta"),
        Just("id"),
        Just("todo_list"),
        Just("todo_list__name"),
        Just("todo_list__rank"),
        Just("todo_list__id"),
        Just("todo_list__todo_list"),
        Just("text__name"),
        Just("nope"),
        Just(""),
        Just("__"),
    ];
    let op = prop_oneof![
        Just(""),
        Just("__eq"),
        Just("__ne"),
        Just("__lt"),
        Just("__gte"),
        Just("__in"),
        Just("__contains"),
        Just("__icontains"),
        Just("__startswith"),
        Just("__isnull"),
        Just("__regex"),
        Just("__"),
    ];
    prop_oneof![(path, op).prop_map(|(p, o)| format!("{p}{o}")), ".{0,20}"]
}

fn value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Json::String),
        Just(json!("2026-12-07T10:00:00Z")),
        Just(json!("'; DROP TABLE todo_item; --")),
        Just(json!("%_\\")),
    ];
    leaf.prop_recursive(2, 16, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            proptest::collection::vec(("[a-z]{1,4}", inner), 0..3)
                .prop_map(|pairs| Json::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn any_client_filter_parses_or_is_refused_with_a_client_code(
        pairs in proptest::collection::vec((key(), value()), 0..6),
    ) {
        let schema = schema();
        let model = schema.get_model("todo_item").expect("the model");
        let args: Args = pairs.into_iter().collect();
        match Filter::parse(&schema, model, &args) {
            Ok(filter) => {
                for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                    let condition = compile(&filter, "t", dialect);
                    prop_assert!(!condition.sql.contains("DROP") && !condition.sql.contains(';'), "{}", condition.sql);
                    prop_assert!(condition.params.len() <= 6 * 1000, "{} params", condition.params.len());
                }
            }
            Err(e) => prop_assert!(e.code != ErrorCode::Internal, "{args:?}: {e:?}"),
        }
    }
}
