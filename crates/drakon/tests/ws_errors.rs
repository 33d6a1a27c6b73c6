//! Every mistake a client can make gets an addressed error reply with a stable code, and the connection stays up.

mod common;

use common::{OP_BINARY, OP_TEXT, RawWs, TODO, assert_alive, spawn};
use drakon_testkit::{Client, PATIENCE};
use serde_json::{Value, json};

/// Sends `frame` as text and returns the next frame, which must be its reply.
async fn reply_to_raw(client: &mut Client, frame: &str) -> Value {
    client.send_text(frame).await;
    client.next_frame(PATIENCE).await.unwrap_or_else(|| panic!("no reply to {frame}"))
}

#[tokio::test]
async fn malformed_frames_get_addressed_errors_and_the_connection_stays_up() {
    let server = spawn(TODO).await;
    let mut c = server.client().await;
    // (frame, code, callback name in the reply, verb in the reply)
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        ("not json", "bad_json", None, ""),
        ("{\"route\":", "bad_json", None, ""),
        ("", "bad_json", None, ""),
        ("[1, 2]", "bad_json", None, ""),
        (r#"[{"route":"todo-list","verb":"get_list","callbackname":"a1"}]"#, "bad_json", None, ""),
        (r#""text""#, "bad_json", None, ""),
        ("42", "bad_json", None, ""),
        ("null", "bad_json", None, ""),
        (r#"{"verb":"get_list","args":{},"callbackname":"m1"}"#, "missing_route", Some("m1"), "get_list"),
        (r#"{"route":"","verb":"get_list","callbackname":"m2"}"#, "missing_route", Some("m2"), "get_list"),
        (r#"{"route":5,"verb":"get_list","callbackname":7}"#, "missing_route", Some("7"), "get_list"),
        (r#"{"route":"todo-list","callbackname":"v1"}"#, "missing_verb", Some("v1"), ""),
        (r#"{"route":"todo-list","verb":["get_list"],"callbackname":"v2"}"#, "missing_verb", Some("v2"), ""),
        (
            r#"{"route":"todo-list","verb":"get_list","args":[1],"callbackname":"a2"}"#,
            "invalid_args",
            Some("a2"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":"x=1","callbackname":"a3"}"#,
            "invalid_args",
            Some("a3"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":5,"callbackname":"a4"}"#,
            "invalid_args",
            Some("a4"),
            "get_list",
        ),
        (r#"{"route":"todo-list","verb":"get_list","callbackname":{}}"#, "invalid_args", None, "get_list"),
        (
            r#"{"route":"todo-list","verb":"get_list","args":{"_page":0},"callbackname":"p1"}"#,
            "invalid_args",
            Some("p1"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":{"_page":-1},"callbackname":"p2"}"#,
            "invalid_args",
            Some("p2"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":{"_page":1.5},"callbackname":"p3"}"#,
            "invalid_args",
            Some("p3"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":{"_page":"two"},"callbackname":"p4"}"#,
            "invalid_args",
            Some("p4"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":{"_page":[1]},"callbackname":"p5"}"#,
            "invalid_args",
            Some("p5"),
            "get_list",
        ),
        (
            r#"{"route":"todo-list","verb":"get_list","args":{"_page":true},"callbackname":"p6"}"#,
            "invalid_args",
            Some("p6"),
            "get_list",
        ),
        (r#"{"route":"nope","verb":"get_list","callbackname":"r1"}"#, "unknown_route", Some("r1"), "get_list"),
        (r#"{"route":"todo-list","verb":"nope","callbackname":"r2"}"#, "unknown_verb", Some("r2"), "nope"),
        (r#"{"heartbeat":"2"}"#, "missing_route", None, ""),
    ];
    for &(frame, code, callback, verb) in cases {
        let reply = reply_to_raw(&mut c, frame).await;
        assert_eq!(reply["context"]["state"], "error", "{frame}: {reply}");
        assert_eq!(reply["data"]["code"], code, "{frame}: {reply}");
        assert_eq!(reply["context"]["client_callback_name"], json!(callback), "{frame}: {reply}");
        assert_eq!(reply["context"]["verb"], verb, "{frame}: {reply}");
        let message = reply["data"]["message"].as_str().unwrap_or_else(|| panic!("{frame}: no message: {reply}"));
        assert!(!message.is_empty(), "{frame}: {reply}");
        assert!(reply.get("channel_data").is_none(), "{frame}: {reply}");
        assert_alive(&mut c, frame).await;
    }
}

#[tokio::test]
async fn bad_filters_and_arguments_get_typed_errors_and_the_connection_stays_up() {
    let server = spawn(TODO).await;
    let mut c = server.client().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    c.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1})).await;
    let mut too_many = serde_json::Map::new();
    for field in ["text", "todo_list__name", "todo_list__description"] {
        for op in ["", "__ne", "__lt", "__lte", "__gt", "__gte", "__contains", "__icontains", "__startswith"] {
            too_many.insert(format!("{field}{op}"), json!("x"));
        }
    }
    for op in ["", "__ne", "__lt", "__lte", "__gt", "__gte"] {
        too_many.insert(format!("id{op}"), json!(1));
    }
    assert!(too_many.len() > 32, "{}", too_many.len());
    let long_in: Vec<i64> = (0..1001).collect();

    // (route, verb, args, code, the field named in `fields`)
    let cases: Vec<(&str, &str, Value, &str, Option<&str>)> = vec![
        ("todo-item", "get_list", json!({"colour": "red"}), "unknown_field", Some("colour")),
        ("todo-item", "get_list", json!({"colour__in": ["red"]}), "unknown_field", Some("colour__in")),
        ("todo-item", "get_list", json!({"todo_list__colour": 1}), "unknown_field", Some("todo_list__colour")),
        ("todo-item", "get_list", json!({"todo_list__name__nope": 1}), "invalid_filter", Some("todo_list__name__nope")),
        ("todo-item", "get_list", json!({"done": "false"}), "wrong_type", Some("done")),
        ("todo-item", "get_list", json!({"done": "False"}), "wrong_type", Some("done")),
        ("todo-item", "get_list", json!({"done": 0}), "wrong_type", Some("done")),
        ("todo-item", "get_list", json!({"todo_list__id": "1"}), "wrong_type", Some("todo_list__id")),
        ("todo-item", "get_list", json!({"list_id": "1"}), "wrong_type", Some("todo_list__id")),
        ("todo-item", "get_list", json!({"id__in": 5}), "wrong_type", Some("id__in")),
        ("todo-item", "get_list", json!({"id__in": [1, null]}), "wrong_type", Some("id__in")),
        ("todo-item", "get_list", json!({"text__isnull": "yes"}), "wrong_type", Some("text__isnull")),
        ("todo-item", "get_list", json!({"id__gt": null}), "wrong_type", Some("id__gt")),
        ("todo-item", "get_list", json!({"done__contains": "x"}), "invalid_filter", Some("done__contains")),
        ("todo-item", "get_list", json!({"text__foo": 1}), "invalid_filter", Some("text__foo")),
        ("todo-item", "get_list", json!({"": 1}), "invalid_filter", None),
        ("todo-item", "get_list", Value::Object(too_many.clone()), "invalid_filter", None),
        ("todo-item", "get_list", json!({"id__in": long_in}), "invalid_filter", Some("id__in")),
        ("todo-item", "get_list", json!({"_order": "colour"}), "invalid_args", None),
        ("todo-item", "get_list", json!({"_order": {"text": 1}}), "invalid_args", None),
        ("todo-item", "get_list", json!({"_limit": 5}), "invalid_args", None),
        ("todo-item", "get_single", json!({}), "invalid_args", Some("id")),
        ("todo-item", "get_single", json!({"id": "1"}), "wrong_type", Some("id")),
        ("todo-item", "get_single", json!({"id": 1.5}), "wrong_type", Some("id")),
        ("todo-item", "get_single", json!({"id": 99}), "not_found", None),
        ("todo-item", "subscribe", json!({"channel": "c", "colour": "red"}), "unknown_field", Some("colour")),
        ("todo-item", "subscribe", json!({"channel": "c", "done": "false"}), "wrong_type", Some("done")),
        ("todo-item", "subscribe", json!({"channel": "c", "_limit": 1}), "invalid_args", None),
        ("todo-item", "subscribe", json!({"channel": "c", "snapshot": "yes"}), "invalid_args", None),
        ("todo-item", "create", json!({"text": "x", "todo_list": "1"}), "wrong_type", Some("todo_list")),
        ("todo-item", "update", json!({"id": 1, "done": "true"}), "wrong_type", Some("done")),
    ];
    for (route, verb, args, code, field) in cases {
        let error = c.err(route, verb, args.clone(), code).await;
        if let Some(field) = field {
            assert!(error["fields"][field].is_array(), "{route} {verb} {args}: {error}");
        }
        assert_alive(&mut c, &format!("{route} {verb} {args}")).await;
    }
    // Nothing above changed the row.
    let rows = c.ok("todo-item", "get_list", json!({})).await;
    assert_eq!(rows, json!([{"id": 1, "_type": "todo_item", "text": "milk", "done": false, "todo_list": 1}]));
}

#[tokio::test]
async fn hostile_filter_keys_are_rejected_and_the_table_survives() {
    let server = spawn(TODO).await;
    let mut c = server.client().await;
    c.ok("todo-list", "create", json!({"name": "A"})).await;
    c.ok("todo-item", "create", json!({"text": "milk", "todo_list": 1})).await;
    let keys = [
        "text\"; DROP TABLE todo_item; --",
        "text'; DROP TABLE todo_item; --",
        "text\" OR 1=1 --",
        "1=1) OR (\"text",
        "todo_list__name\") OR 1=1 --",
        "text__eq\"; DELETE FROM todo_item; --",
        "\"todo_item\".\"text\"",
        "text;--",
        "text\0",
        "todo_list__\"; DROP TABLE todo_list; --",
    ];
    for key in keys {
        for verb in ["get_list", "subscribe"] {
            let mut args = serde_json::Map::new();
            args.insert(key.to_owned(), json!(1));
            args.insert("channel".to_owned(), json!("c"));
            if verb == "get_list" {
                args.remove("channel");
            }
            let reply = c.call("todo-item", verb, Value::Object(args)).await;
            assert_eq!(reply["context"]["state"], "error", "{verb} {key:?}: {reply}");
            let code = reply["data"]["code"].as_str().unwrap();
            assert!(["unknown_field", "invalid_filter"].contains(&code), "{verb} {key:?}: {reply}");
            assert_alive(&mut c, key).await;
        }
    }
    // Hostile values are only values: bound as parameters, they match nothing and harm nothing.
    for value in ["x'; DROP TABLE todo_item; --", "milk\" OR \"1\"=\"1", "%", "_ilk"] {
        for key in ["text", "text__contains", "text__startswith", "todo_list__name"] {
            let rows = c.ok("todo-item", "get_list", json!({key: value})).await;
            assert_eq!(rows, json!([]), "{key} = {value:?}");
        }
    }
    for order in ["text; DROP TABLE todo_item", "text\" DESC, \"id", "-text--"] {
        c.err("todo-item", "get_list", json!({"_order": order}), "invalid_args").await;
    }
    // The table is intact and writable.
    let rows = c.ok("todo-item", "get_list", json!({})).await;
    assert_eq!(rows, json!([{"id": 1, "_type": "todo_item", "text": "milk", "done": false, "todo_list": 1}]));
    let item = c.ok("todo-item", "create", json!({"text": "x'; DROP TABLE todo_item; --", "todo_list": 1})).await;
    let found = c.ok("todo-item", "get_list", json!({"text": "x'; DROP TABLE todo_item; --"})).await;
    assert_eq!(found, json!([item]));
}

#[tokio::test]
async fn binary_frames_get_bad_json_and_the_connection_stays_up() {
    let server = spawn(TODO).await;
    let mut ws = RawWs::connect(&server.addr).await;
    let request = json!({"route": "todo-list", "verb": "get_list", "args": {}, "callbackname": "cb"});
    for payload in [request.to_string().into_bytes(), vec![0, 159, 146, 150], Vec::new()] {
        ws.send(OP_BINARY, &payload).await.expect("send binary");
        let reply = ws.next(PATIENCE).await.expect("a reply to a binary frame");
        assert_eq!(reply.opcode, OP_TEXT, "{reply:?}");
        let reply = reply.json();
        assert_eq!(reply["context"]["state"], "error", "{reply}");
        assert_eq!(reply["data"]["code"], "bad_json", "{reply}");

        ws.send_json(&request).await;
        let reply = ws.next(PATIENCE).await.expect("a reply to a text frame").json();
        assert_eq!(reply["context"]["client_callback_name"], "cb", "{reply}");
        assert_eq!(reply["context"]["state"], "success", "{reply}");
    }
}

/// Fields outside `publish_fields` are not exposed (docs/protocol.md: only `publish_fields` are ever sent; the
/// `unknown_field` code: "a filter or write names a field the model does not expose"). Filtering on one would let a
/// client read it a bit at a time, and a write to one should not reveal that it exists.
#[tokio::test]
async fn fields_outside_publish_fields_are_unknown_to_clients() {
    const APP: &str = r#"
[models.account.fields]
name = { type = "text" }
secret = { type = "text", default = "hunter2" }

[routes.account]
model = "account"
publish_fields = ["name"]
update_fields = ["name"]
"#;
    let server = spawn(APP).await;
    let mut c = server.client().await;
    c.ok("account", "create", json!({"name": "ann"})).await;
    let probes = [
        ("get_list", json!({"secret__startswith": "h"})),
        ("get_list", json!({"secret": "hunter2"})),
        ("get_list", json!({"_order": "secret"})),
        ("subscribe", json!({"channel": "c", "secret": "hunter2"})),
        ("get_single", json!({"id": 1, "secret": "hunter2"})),
        ("create", json!({"name": "bob", "secret": "x"})),
        ("update", json!({"id": 1, "secret": "x"})),
    ];
    let mut leaks = Vec::new();
    for (verb, args) in probes {
        let reply = c.call("account", verb, args.clone()).await;
        let code = &reply["data"]["code"];
        // `_order` reports invalid_args for any field it may not use; every other probe must say unknown_field.
        let ok = if args.get("_order").is_some() { code == "invalid_args" } else { code == "unknown_field" };
        if !ok {
            leaks.push(format!("{verb} {args} -> {reply}"));
        }
    }
    assert!(leaks.is_empty(), "unpublished field `secret` is reachable:\n{}", leaks.join("\n"));
}
