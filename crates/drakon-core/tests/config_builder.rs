//! Two faces, one engine: the todo example read from `drakon.toml` is the same description a Rust program builds.

use std::path::Path;

use drakon_core::schema::{ChannelRoute, Field, Model, ModelRoute, OnDelete, Schema};
use drakon_core::value::Value;

#[test]
fn todo_config_equals_the_rust_builder() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todo/drakon.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let loaded = drakon_core::config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));

    let mut built = Schema::new()
        .model(
            Model::new("todo_list")
                .field(Field::text("name"))
                .field(Field::text("description").default(Value::Text(String::new()))),
        )
        .model(
            Model::new("todo_item")
                .field(Field::text("text"))
                .field(Field::bool("done").default(Value::Bool(false)))
                .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
        )
        .model_route(
            "todo-list",
            ModelRoute::new("todo_list").publish(&["name", "description"]).update(&["name", "description"]),
        )
        .model_route(
            "todo-item",
            ModelRoute::new("todo_item")
                .publish(&["text", "done", "todo_list"])
                .update(&["done", "text"])
                .create(&["text", "done", "todo_list"])
                .param("list_id", "todo_list__id"),
        )
        .channel_route(
            "chat",
            ChannelRoute { channels: vec!["chatroom".into(), "room.*".into()], subscribe: None, presence: None },
        );
    assert_eq!(built.finish(), vec![]);
    assert_eq!(format!("{:#?}", loaded.schema), format!("{built:#?}"));
}
