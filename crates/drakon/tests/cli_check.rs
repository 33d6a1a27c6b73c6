//! `drakon check`: a good config prints ok and exits 0; a broken one lists every problem as `path:line: message`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, TODO};

fn check(config: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("DRAKON_CONFIG")
        .env_remove("DRAKON_API_KEY")
        .env("DRAKON_LOG", "warn")
        .output()
        .expect("run drakon check")
}

/// Writes `text` to `drakon.toml` in a fresh directory and runs `drakon check` on it.
fn check_text(text: &str) -> (tempfile::TempDir, String, Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drakon.toml");
    std::fs::write(&path, text).expect("write config");
    let output = check(&path);
    (dir, path.display().to_string(), output)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn the_todo_example_checks_ok_and_touches_nothing() {
    let (dir, path, output) = check_text(TODO);
    let out = stdout(&output);
    assert!(output.status.success(), "exit {}: {out}{}", output.status, String::from_utf8_lossy(&output.stderr));
    assert_eq!(out.trim_end(), format!("{path}: ok (2 models, 3 routes)"));
    // Checking does not open the database.
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["drakon.toml"], "check created files");

    // The file as shipped, at its own path, too.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todo/drakon.toml");
    let output = check(&shipped);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).trim_end().ends_with(": ok (2 models, 3 routes)"), "{}", stdout(&output));
}

/// Expected problems: the 1-based line and a part of the message.
type Problems<'a> = &'a [(usize, &'a str)];

#[test]
fn broken_configs_list_every_problem_with_its_line_and_fail() {
    let cases: &[(&str, &str, Problems)] = &[
        (
            "problems in three sections",
            "[server]\nmax_frame_bytes = 0\n\n[models.a.fields]\nx = { type = \"strng\" }\n\n[routes.r]\nmodel = \"nope\"\n",
            &[
                (2, "max_frame_bytes must be a whole number of at least 1, got 0"),
                (5, "unknown type `strng`; use one of text, int, float, bool, datetime, json, ref"),
                (8, "unknown model `nope`"),
            ],
        ),
        (
            "toml syntax error",
            "[models.a.fields]\nx = { type = \"text\" }\ny = { type = \"text\"\n",
            &[(3, "unclosed inline table, expected `}`")],
        ),
        ("unknown server key", "[server]\nbind = \"127.0.0.1:0\"\nport = 8000\n", &[(3, "unknown field `port`")]),
        (
            "ping interval not under the idle timeout",
            "[server]\nidle_timeout_secs = 1\nping_interval_secs = 1\n",
            &[(3, "ping_interval_secs (1) must be shorter than idle_timeout_secs (1)")],
        ),
        (
            "a route naming unknown fields and a bad verb",
            "[models.a.fields]\nx = { type = \"text\" }\n\n[routes.r]\nmodel = \"a\"\npublish_fields = [\"x\", \"y\"]\nverbs = [\"get_list\", \"destroy\"]\n",
            &[(6, "publish_fields names unknown field `y` of model `a`"), (7, "unknown verb `destroy`")],
        ),
    ];
    for (name, text, want) in cases {
        let (_dir, path, output) = check_text(text);
        let out = stdout(&output);
        assert!(!output.status.success(), "{name}: exit 0 for a broken config:\n{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), want.len(), "{name}: one line per problem:\n{out}");
        for (line, (number, message)) in lines.iter().zip(want.iter()) {
            let prefix = format!("{path}:{number}: ");
            assert!(line.starts_with(&prefix), "{name}: `{line}` does not start with `{prefix}`");
            assert!(line.contains(message), "{name}: `{line}` does not say `{message}`");
        }
    }
}

#[test]
fn a_missing_config_file_fails_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let output = check(&path);
    let out = stdout(&output);
    assert!(!output.status.success(), "exit 0 for a missing file: {out}");
    assert!(out.contains(&path.display().to_string()) && out.contains("cannot read the config file"), "{out}");
}
