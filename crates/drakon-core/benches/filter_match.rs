//! In-memory filter matching, the per-channel cost the hub pays for every candidate channel of a change.
//!
//! Run with `cargo bench -p drakon-core --bench filter_match`; compare against a baseline run of the same machine
//! (`-- --save-baseline before` / `-- --baseline before`) rather than against absolute times.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use drakon_core::filter::matcher::Resolver;
use drakon_core::filter::{Filter, Lookup};
use drakon_core::schema::{Field, Model, OnDelete, Schema};
use drakon_core::value::Value;
use serde_json::{Value as Json, json};

fn schema() -> Schema {
    Schema::new().model(Model::new("todo_list").field(Field::text("name"))).model(
        Model::new("todo_item")
            .field(Field::text("text"))
            .field(Field::bool("done"))
            .field(Field::text("secret"))
            .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
    )
}

/// Resolves local lookups the way the hub does: by field name, into a row laid out like the model.
struct RowResolver<'a> {
    model: &'a Model,
    row: &'a [Value],
}

impl Resolver for RowResolver<'_> {
    fn value(&self, lookup: &Lookup) -> std::borrow::Cow<'_, Value> {
        self.model
            .field_index(&lookup.field)
            .map_or(std::borrow::Cow::Owned(Value::Null), |i| std::borrow::Cow::Borrowed(&self.row[i]))
    }
}

fn filter(schema: &Schema, model: &Model, args: Json) -> Filter {
    Filter::parse(schema, model, args.as_object().expect("object")).expect("valid filter")
}

fn bench(c: &mut Criterion) {
    let schema = schema();
    let model = schema.get_model("todo_item").expect("model").clone();
    let row = vec![
        Value::Int(17),
        Value::Text("buy milk and bread on the way home".into()),
        Value::Bool(false),
        Value::Text("s3cr3t".into()),
        Value::Int(1),
    ];
    let resolver = RowResolver { model: &model, row: &row };

    // The todo demo's subscription: one list's open items.
    let two = filter(&schema, &model, json!({"todo_list": 1, "done": false}));
    // Every operator family at once, all true, so matching evaluates each condition (`all` stops at the first miss).
    let ten = filter(
        &schema,
        &model,
        json!({
            "todo_list": 1,
            "done": false,
            "id__gt": 0,
            "id__lte": 1000,
            "todo_list__in": [1, 2, 3],
            "secret__ne": "public",
            "secret__isnull": false,
            "text__contains": "milk",
            "text__icontains": "BREAD",
            "text__startswith": "buy",
        }),
    );
    assert_eq!((two.conds.len(), ten.conds.len()), (2, 10));
    assert!(two.matches(&resolver) && ten.matches(&resolver), "the benchmarked filters must match the row");

    let mut group = c.benchmark_group("filter_match");
    group.bench_function("2_conditions", |b| b.iter(|| black_box(&two).matches(black_box(&resolver))));
    group.bench_function("10_conditions", |b| b.iter(|| black_box(&ten).matches(black_box(&resolver))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
