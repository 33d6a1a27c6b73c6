//! Tests of the whole file: `parse` and `load`, from text to `Config` or to every problem at its line.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::schema::{Field, Model, ModelRoute, OnDelete, RouteKind, Verb};
use crate::value::Value;

const EXAMPLE: &str = include_str!("../../../../examples/todo/drakon.toml");

fn doc(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

/// Expected problems: the 1-based line and the message.
type Problems<'a> = &'a [(usize, &'a str)];

/// Parses `lines` (line N of the file is `lines[N - 1]`) and compares every problem with `want`.
fn check(name: &str, lines: &[&str], want: Problems) {
    let text = doc(lines);
    let got = match parse(&text, Path::new("drakon.toml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.into_iter().map(|p| (p.line, p.message)).collect::<Vec<_>>(),
    };
    let want: Vec<_> = want.iter().map(|(line, message)| (Some(*line), message.to_string())).collect();
    assert_eq!(got, want, "{name}:\n{text}");
}

fn parse_ok(lines: &[&str]) -> Config {
    let text = doc(lines);
    parse(&text, Path::new("app/drakon.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn model_route<'a>(schema: &'a Schema, name: &str) -> &'a ModelRoute {
    match &schema.get_route(name).unwrap_or_else(|| panic!("no route {name}")).kind {
        RouteKind::Model(r) => r,
        RouteKind::Channel(_) => panic!("{name} is a channel route"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn example_parses_into_the_todo_schema() {
    let config = parse(EXAMPLE, Path::new("examples/todo/drakon.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.bind, Some("127.0.0.1:8000".parse().unwrap()));
    assert_eq!(config.server.database, Path::new("examples/todo/todo.db"));
    assert_eq!(config.base_dir, Path::new("examples/todo"));
    assert_eq!(config.server.api_key, None);

    let models = vec![
        Model::new("todo_list")
            .field(Field::text("name"))
            .field(Field::text("description").default(Value::Text(String::new()))),
        Model::new("todo_item")
            .field(Field::text("text"))
            .field(Field::bool("done").default(Value::Bool(false)))
            .field(Field::reference("todo_list", "todo_list", OnDelete::Cascade)),
    ];
    assert_eq!(config.schema.models, models);

    let names: Vec<&str> = config.schema.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["todo-list", "todo-item", "chat"]);

    let list = model_route(&config.schema, "todo-list");
    assert_eq!(list.model, "todo_list");
    assert_eq!(list.publish_fields, strings(&["name", "description"]));
    assert_eq!(list.update_fields, strings(&["name", "description"]));
    assert_eq!(list.create_fields, list.update_fields, "create_fields defaults to update_fields");
    assert_eq!(list.verbs, Verb::ALL.into_iter().collect());
    assert_eq!(list.page_size, limits::DEFAULT_PAGE_SIZE);
    assert!(list.params.is_empty());

    let item = model_route(&config.schema, "todo-item");
    assert_eq!(item.model, "todo_item");
    assert_eq!(item.publish_fields, strings(&["text", "done", "todo_list"]));
    assert_eq!(item.update_fields, strings(&["done", "text"]));
    assert_eq!(item.create_fields, strings(&["text", "done", "todo_list"]));
    assert_eq!(item.params, BTreeMap::from([("list_id".to_string(), "todo_list__id".to_string())]));
    assert_eq!(item.filter_fields, None);

    let RouteKind::Channel(chat) = &config.schema.get_route("chat").unwrap().kind else {
        panic!("chat is not a channel route");
    };
    assert_eq!(chat.channels, strings(&["chatroom", "room.*"]));
}

#[test]
fn load_reads_the_file_and_resolves_paths_beside_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todo");
    let config = load(&dir.join("drakon.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.base_dir, dir);
    assert_eq!(config.server.database, dir.join("todo.db"));
}

#[test]
fn load_reports_an_unreadable_file_without_a_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-drakon.toml");
    let err = load(&path).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].line, None);
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("{}: cannot read the config file (", path.display())), "{shown}");
}

#[test]
fn error_display_prints_one_problem_per_line() {
    let err = ConfigError {
        path: PathBuf::from("app/drakon.toml"),
        problems: vec![
            ConfigProblem { line: Some(3), message: "first".into() },
            ConfigProblem { line: None, message: "second".into() },
        ],
    };
    assert_eq!(err.to_string(), "app/drakon.toml:3: first\napp/drakon.toml: second");
}

#[test]
fn field_specs_become_typed_fields() {
    let config = parse_ok(&[
        "[models.list.fields]",
        "title = { type = \"text\", unique = true }",
        "[models.event.fields]",
        "at = { type = \"datetime\", default = \"2026-11-27T10:00:00+01:00\" }",
        "until = { type = \"datetime\", default = 2026-11-28T00:00:00Z }",
        "weight = { type = \"float\", default = 2 }",
        "count = { type = \"int\", optional = true }",
        "extra = { type = \"json\", default = { tags = [\"a\", 1], ok = true } }",
        "list = { type = \"ref\", to = \"list\", optional = true, on_delete = \"set_null\" }",
        "owner = { type = \"ref\", to = \"list\" }",
    ]);
    let want = Model::new("event")
        .field(Field::datetime("at").default(Value::DateTime("2026-11-27T09:00:00.000000Z".into())))
        .field(Field::datetime("until").default(Value::DateTime("2026-11-28T00:00:00.000000Z".into())))
        .field(Field::float("weight").default(Value::Float(2.0)))
        .field(Field::int("count").optional())
        .field(Field::json("extra").default(Value::Json(json!({"tags": ["a", 1], "ok": true}))))
        .field(Field::reference("list", "list", OnDelete::SetNull).optional())
        .field(Field::reference("owner", "list", OnDelete::Restrict));
    assert_eq!(config.schema.get_model("event"), Some(&want));
    assert_eq!(config.schema.get_model("list"), Some(&Model::new("list").field(Field::text("title").unique())));
}

#[test]
fn route_keys_fill_the_model_route() {
    let config = parse_ok(&[
        "[models.item.fields]",
        "text = { type = \"text\" }",
        "done = { type = \"bool\" }",
        "[routes.items]",
        "model = \"item\"",
        "verbs = [\"get_list\", \"subscribe\"]",
        "page_size = 20",
        "filters = { done = false }",
        "filter_fields = [\"done\"]",
    ]);
    let route = model_route(&config.schema, "items");
    assert_eq!(route.publish_fields, strings(&["text", "done"]), "publish_fields defaults to every field");
    assert!(route.update_fields.is_empty() && route.create_fields.is_empty());
    assert_eq!(route.verbs, BTreeSet::from([Verb::GetList, Verb::Subscribe]));
    assert_eq!(route.page_size, 20);
    assert_eq!(serde_json::Value::Object(route.fixed_filter.clone()), json!({"done": false}));
    assert_eq!(route.filter_fields, Some(BTreeSet::from(["done".to_string()])));
}

#[test]
fn server_keys_override_defaults() {
    let defaults = ServerConfig { database: PathBuf::from("app/drakon.db"), ..ServerConfig::default() };
    let cases: &[(&[&str], ServerConfig)] = &[
        (&[], defaults.clone()),
        (&["[server]", "heartbeat_secs = 0"], defaults.clone()),
        (
            &[
                "[server]",
                "bind = \"[::1]:9000\"",
                "database = \"/var/lib/drakon/app.db\"",
                "max_frame_bytes = 1024",
                "max_subscriptions = 8",
                "idle_timeout_secs = 60",
                "ping_interval_secs = 20",
                "heartbeat_secs = 15",
                "api_key = \"secret\"",
            ],
            ServerConfig {
                bind: Some("[::1]:9000".parse().unwrap()),
                database: PathBuf::from("/var/lib/drakon/app.db"),
                max_frame_bytes: 1024,
                max_subscriptions: 8,
                idle_timeout: Duration::from_secs(60),
                ping_interval: Duration::from_secs(20),
                heartbeat_interval: Some(Duration::from_secs(15)),
                api_key: Some("secret".into()),
                ..ServerConfig::default()
            },
        ),
        (
            &[
                "[server]",
                "request_head_timeout_secs = 5",
                "max_pending_per_address = 2000",
                "max_requests_per_second = 50",
                "allowed_origins = [\"https://app.example:8443\", \"http://localhost:3000\"]",
            ],
            ServerConfig {
                request_head_timeout: Duration::from_secs(5),
                max_pending_per_address: 2000,
                max_requests_per_second: 50,
                allowed_origins: vec!["https://app.example:8443".into(), "http://localhost:3000".into()],
                ..defaults.clone()
            },
        ),
    ];
    for (lines, want) in cases {
        assert_eq!(&parse_ok(lines).server, want, "{lines:?}");
    }
}

#[test]
fn auth_key_files_resolve_beside_the_config_file() {
    let config = parse_ok(&["[auth]", "jwt_public_key_file = \"keys/auth.pub.pem\"", "jwks_file = \"keys/jwks.json\""]);
    let auth = config.auth.expect("an [auth] table");
    assert_eq!(auth.jwt_public_key_file, Some(Path::new("app/keys/auth.pub.pem").to_owned()));
    assert_eq!(auth.jwks_file, Some(Path::new("app/keys/jwks.json").to_owned()));
}

#[test]
fn debug_output_hides_the_api_key() {
    let server = ServerConfig { api_key: Some("hunter2".into()), ..ServerConfig::default() };
    let shown = format!("{server:?}");
    assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
}

#[test]
fn broken_configs_report_each_problem_at_its_line() {
    let cases: &[(&str, &[&str], Problems)] = &[
        (
            "toml syntax error",
            &["[models.a.fields]", "x = { type = \"text\" }", "y = { type = \"text\""],
            &[(3, "unclosed inline table, expected `}`")],
        ),
        (
            "unknown key in a field spec",
            &["[models.a.fields]", "x = { type = \"text\" }", "y = { type = \"text\", uniq = true }"],
            &[(3, "unknown field `uniq`, expected one of `type`, `optional`, `default`, `unique`, `to`, `on_delete`")],
        ),
        (
            "field spec that is not a table",
            &["[models.a.fields]", "x = \"text\""],
            &[(2, "invalid type: string \"text\", expected a field spec such as { type = \"text\" }")],
        ),
        (
            "unknown top-level key",
            &["[server]", "bind = \"127.0.0.1:8000\"", "", "[model.a.fields]"],
            &[(4, "unknown field `model`, expected one of `server`, `models`, `routes`, `auth`")],
        ),
        (
            "an empty static_dir and origins that are not origins",
            &[
                "[server]",
                "static_dir = \"\"",
                "allowed_origins = [\"https://ok.example\", \"app.example\", \"https://x.example/path\"]",
            ],
            &[
                (
                    2,
                    "static_dir is empty: give a directory (relative to this file), or remove the line to serve no files",
                ),
                (
                    3,
                    "allowed_origins entries are origins such as \"https://app.example:8443\" (no path), or \"*\"; got \"app.example\"",
                ),
                (
                    3,
                    "allowed_origins entries are origins such as \"https://app.example:8443\" (no path), or \"*\"; got \"https://x.example/path\"",
                ),
            ],
        ),
        (
            "unknown server key",
            &["[server]", "port = 8000"],
            &[(
                2,
                "unknown field `port`, expected one of `bind`, `database`, `max_frame_bytes`, `max_subscriptions`, \
                 `idle_timeout_secs`, `ping_interval_secs`, `heartbeat_secs`, `api_key`, `admin_secret`, `static_dir`, `log_retention_count`, `log_retention_secs`, `database_url`, `redis_url`, `redis_sharded`, `redis_ca_file`, `request_head_timeout_secs`, `max_pending_per_address`, `max_requests_per_second`, `allowed_origins`",
            )],
        ),
        (
            "unknown type",
            &["[models.a.fields]", "x = { type = \"txt\" }"],
            &[(2, "unknown type `txt`; use one of text, int, float, bool, datetime, json, ref")],
        ),
        (
            "missing type",
            &["[models.a.fields]", "x = { optional = true }"],
            &[(2, "field needs a type, e.g. { type = \"text\" }")],
        ),
        (
            "ref without to",
            &["[models.a.fields]", "b = { type = \"ref\" }"],
            &[(2, "a ref field needs `to`, the model it refers to, e.g. { type = \"ref\", to = \"todo_list\" }")],
        ),
        (
            "ref to an unknown model",
            &["[models.a.fields]", "x = { type = \"text\" }", "b = { type = \"ref\", to = \"bb\" }"],
            &[(3, "refers to unknown model `bb`")],
        ),
        (
            "unknown on_delete",
            &["[models.a.fields]", "b = { type = \"ref\", to = \"a\", on_delete = \"nullify\" }"],
            &[(2, "unknown on_delete `nullify`; use cascade, restrict or set_null")],
        ),
        (
            "set_null on a required field",
            &["[models.a.fields]", "", "parent = { type = \"ref\", to = \"a\", on_delete = \"set_null\" }"],
            &[(3, "on_delete = \"set_null\" needs the field to be optional")],
        ),
        (
            "to and on_delete on a non-ref field",
            &["[models.a.fields]", "x = { type = \"int\", to = \"a\", on_delete = \"cascade\" }"],
            &[
                (2, "`to` only applies to fields of type ref; remove it"),
                (2, "`on_delete` only applies to fields of type ref; remove it"),
            ],
        ),
        (
            "declared id",
            &["[models.a.fields]", "id = { type = \"int\" }", "n = { type = \"id\" }"],
            &[
                (2, "`id` is implicit in every model; remove this field"),
                (3, "type id is reserved for the implicit `id` field; use int or ref"),
            ],
        ),
        (
            "default of the wrong type",
            &["[models.a.fields]", "done = { type = \"bool\", default = \"false\" }"],
            &[(2, "bad default: expected a bool, got a string")],
        ),
        (
            "datetime default now",
            &["[models.a.fields]", "at = { type = \"datetime\", default = \"now\" }"],
            &[(
                2,
                "default \"now\" is not supported yet; give a fixed time such as \"2026-11-27T10:00:00Z\" or make \
                 the field optional",
            )],
        ),
        (
            "field declared in its own table",
            &["[models.a.fields.x]", "type = \"json\"", "unique = true"],
            &[(1, "json fields cannot be unique")],
        ),
        (
            "bad model name",
            &["[models.a.fields]", "", "[models.Todo.fields]", "x = { type = \"text\" }"],
            &[(3, "model names are lowercase identifiers (a-z, 0-9, _) not starting with _drakon")],
        ),
        (
            "route on an unknown model",
            &["[models.a.fields]", "x = { type = \"text\" }", "[routes.r]", "model = \"nope\""],
            &[(4, "unknown model `nope`")],
        ),
        (
            "route without a model",
            &["[models.a.fields]", "[routes.r]", "page_size = 5"],
            &[(2, "a model route needs `model`, the model it serves, e.g. model = \"todo_list\"")],
        ),
        (
            "publish_fields naming an unknown field",
            &[
                "[models.a.fields]",
                "x = { type = \"text\" }",
                "[routes.r]",
                "model = \"a\"",
                "publish_fields = [\"x\", \"y\"]",
            ],
            &[(5, "publish_fields names unknown field `y` of model `a`")],
        ),
        (
            "bad verb name",
            &[
                "[models.a.fields]",
                "[routes.r]",
                "model = \"a\"",
                "verbs = [",
                "  \"get_list\",",
                "  \"destroy\",",
                "]",
            ],
            &[(
                6,
                "unknown verb `destroy`; use one of get_list, get_single, create, update, delete, subscribe, unsubscribe",
            )],
        ),
        (
            "page_size of zero",
            &["[models.a.fields]", "[routes.r]", "model = \"a\"", "page_size = 0"],
            &[(4, "page_size must be between 1 and 1000")],
        ),
        (
            "negative page_size",
            &["[models.a.fields]", "[routes.r]", "model = \"a\"", "page_size = -5"],
            &[(4, "page_size must be between 1 and 1000")],
        ),
        (
            "param mapping to a bad lookup",
            &[
                "[models.a.fields]",
                "x = { type = \"text\" }",
                "[routes.r]",
                "model = \"a\"",
                "[routes.r.params]",
                "ok = \"x\"",
                "list_id = \"list__id\"",
            ],
            &[(7, "param `list_id` maps to a bad lookup: model `a` has no field `list`")],
        ),
        (
            "rules: an unknown verb, a bad shape, a bad filter (two row filters under any are fine)",
            &[
                "[models.a.fields]",
                "owner = { type = \"text\" }",
                "[routes.r]",
                "model = \"a\"",
                "[routes.r.rules]",
                "read = { any = [{ filter = { owner = \"$user.id\" } }, { filter = { id = 1 } }] }",
                "update = { filter = { nope = \"$user.id\" } }",
                "create = \"everyone\"",
                "list = \"public\"",
            ],
            &[
                (
                    5,
                    "rule `create`: \"everyone\": a rule is \"public\", \"authenticated\", { role = \"…\" }, { filter = { … } }, { any = [ … ] } or { all = [ … ] }",
                ),
                (5, "`list` is not a rule; use read, subscribe, create, update or delete"),
                (5, "update: model `a` has no field `nope`"),
            ],
        ),
        (
            "set: an unknown field, a client-writable one, a value of the wrong type",
            &[
                "[models.a.fields]",
                "owner = { type = \"text\" }",
                "n = { type = \"int\" }",
                "[routes.r]",
                "model = \"a\"",
                "update_fields = [\"owner\"]",
                "set = { owner = \"$user.id\", nope = 1, n = \"x\" }",
            ],
            &[
                (7, "`owner` is set by the server; remove it from create_fields"),
                (7, "model `a` has no field `nope`"),
                (7, "`n`: \"x\" is neither \"$user.id\" nor a value of the field's type"),
            ],
        ),
        (
            "an [auth] secret too short to resist brute force, an empty key file, an empty JWKS file",
            &["[auth]", "jwt_secret = \"short\"", "jwt_public_key_file = \"\"", "jwks_file = \"\""],
            &[
                (2, "jwt_secret must be at least 32 characters (RFC 7518 §3.2)"),
                (3, "jwt_public_key_file is empty"),
                (4, "jwks_file is empty: give a JWKS file (relative to this file), or remove the line"),
            ],
        ),
        (
            "bad fixed filter",
            &["[models.a.fields]", "[routes.r]", "model = \"a\"", "filters = { nope = 1 }"],
            &[(4, "fixed filter is invalid: model `a` has no field `nope`")],
        ),
        (
            "filter_fields naming a bad lookup",
            &["[models.a.fields]", "[routes.r]", "model = \"a\"", "filter_fields = [\"nope\"]"],
            &[(4, "filter_fields names a bad lookup `nope`: model `a` has no field `nope`")],
        ),
        (
            "param clashing with a reserved argument",
            &[
                "[models.a.fields]",
                "x = { type = \"text\" }",
                "[routes.r]",
                "model = \"a\"",
                "[routes.r.params]",
                "ok = \"x\"",
                "channel = \"x\"",
            ],
            &[(7, "param `channel` clashes with a reserved argument")],
        ),
        (
            "update_fields naming id, and create_fields left to default to it",
            &[
                "[models.a.fields]",
                "x = { type = \"text\" }",
                "[routes.r]",
                "model = \"a\"",
                "publish_fields = [\"x\"]",
                "update_fields = [\"id\"]",
            ],
            &[
                (3, "create_fields may not include `id`: the store assigns it"),
                (6, "update_fields may not include `id`: the store assigns it"),
            ],
        ),
        (
            "channel name that is only `*`",
            &["[routes.chat]", "kind = \"channel\"", "channels = [", "  \"room\",", "  \"*\",", "]"],
            &[(3, "channel `*` must be non-empty, not `*`, and may not contain `|`")],
        ),
        (
            "unknown route kind",
            &["[routes.r]", "kind = \"stream\""],
            &[(2, "unknown route kind `stream`; use \"model\" or \"channel\"")],
        ),
        (
            "model keys on a channel route",
            &["[routes.chat]", "kind = \"channel\"", "channels = [\"room\"]", "model = \"a\""],
            &[(4, "`model` does not apply to a channel route; remove it")],
        ),
        (
            "channels on a model route",
            &["[models.a.fields]", "[routes.r]", "model = \"a\"", "channels = [\"room\"]"],
            &[(4, "`channels` only applies to channel routes; add kind = \"channel\" or remove it")],
        ),
        (
            "channel route without channels",
            &["[routes.chat]", "kind = \"channel\"", "channels = []"],
            &[(3, "a channel route needs at least one channel")],
        ),
        (
            "route name with a space",
            &["[models.a.fields]", "[routes.\"my route\"]", "model = \"a\""],
            &[(2, "route names may not be empty or contain `|` or spaces")],
        ),
        (
            "bad server values",
            &[
                "[server]",
                "bind = \"localhost:8000\"",
                "database = \"\"",
                "max_frame_bytes = 0",
                "heartbeat_secs = -1",
                "api_key = \"\"",
            ],
            &[
                (2, "bind must be an IP address and port such as \"127.0.0.1:8000\""),
                (3, "database must name a SQLite file such as \"todo.db\""),
                (4, "max_frame_bytes must be a whole number of at least 1, got 0"),
                (5, "heartbeat_secs must be a whole number of at least 0, got -1"),
                (6, "api_key is empty; set a key, remove the line or use DRAKON_API_KEY"),
            ],
        ),
        (
            "redis_url that is not a Redis URL",
            &["[server]", "", "redis_url = \"127.0.0.1:6379\""],
            &[(
                3,
                "redis_url must be a Redis URL such as \"redis://127.0.0.1:6379\" (rediss:// for TLS; with \
                 redis_sharded, one or more, comma-separated)",
            )],
        ),
        (
            "several Redis URLs without a cluster",
            &["[server]", "redis_url = \"redis://10.0.0.1:7000,redis://10.0.0.2:7000\""],
            &[(2, "several Redis URLs make sense only for a Redis Cluster: set redis_sharded = true, or give one URL")],
        ),
        (
            "ping interval not under the idle timeout",
            &["[server]", "idle_timeout_secs = 20"],
            &[(
                2,
                "ping_interval_secs (30) must be shorter than idle_timeout_secs (20), or clients that only answer \
                 pings are closed as idle; lower the one or raise the other",
            )],
        ),
        (
            "two problems in one file, reported in line order",
            &[
                "[routes.r]",
                "model = \"nope\"",
                "",
                "[models.a.fields]",
                "x = { type = \"strng\" }",
                "y = { type = \"text\" }",
            ],
            &[
                (2, "unknown model `nope`"),
                (5, "unknown type `strng`; use one of text, int, float, bool, datetime, json, ref"),
            ],
        ),
    ];
    for (name, lines, want) in cases {
        check(name, lines, want);
    }
}

#[test]
fn a_field_with_a_bad_type_causes_no_follow_on_problems() {
    check(
        "bad type named by a route",
        &["[models.a.fields]", "x = { type = \"txt\" }", "[routes.r]", "model = \"a\"", "publish_fields = [\"x\"]"],
        &[(2, "unknown type `txt`; use one of text, int, float, bool, datetime, json, ref")],
    );
}

#[test]
fn presence_tables_turn_presence_on_for_model_and_channel_routes() {
    let config = parse_ok(&[
        "[models.note.fields]",
        "text = { type = \"text\" }",
        "[routes.note]",
        "model = \"note\"",
        "[routes.note.presence]",
        "fields = [\"name\"]",
        "[routes.chat]",
        "kind = \"channel\"",
        "channels = [\"room.*\"]",
        "[routes.chat.presence]",
        "anonymous = true",
        "large_room = 20",
    ]);
    let note = model_route(&config.schema, "note").presence.clone().expect("presence on");
    assert_eq!((note.fields, note.anonymous, note.large_room), (strings(&["name"]), false, 100));
    let RouteKind::Channel(chat) = &config.schema.get_route("chat").unwrap().kind else { panic!("a channel route") };
    assert_eq!(chat.presence.as_ref().map(|p| (p.anonymous, p.large_room)), Some((true, 20)));
    check(
        "a room needs room for one",
        &["[routes.chat]", "kind = \"channel\"", "channels = [\"room\"]", "[routes.chat.presence]", "large_room = 0"],
        &[(5, "large_room must be a whole number of at least 1, got 0")],
    );
}
