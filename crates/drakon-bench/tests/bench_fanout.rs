//! A tiny `fanout` run, end to end: the real `drakon-bench` binary starts a real (debug) drakon and then the floor
//! server, its workers subscribe 50 connections to each, the controller publishes over HTTP for two seconds, and the
//! report must show every message delivered to every subscriber, with the fields the README documents.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_drakon-bench");

/// The drakon binary of the same build: `DRAKON_BIN`, or `drakon` beside `drakon-bench` (cargo builds it for the
/// workspace's tests, e.g. `cargo nextest run --workspace`).
fn drakon_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DRAKON_BIN") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(BENCH).with_file_name("drakon");
    assert!(
        path.is_file(),
        "no drakon binary at {}: build it first (`cargo build -p drakon`) or set DRAKON_BIN",
        path.display()
    );
    path
}

#[test]
fn a_tiny_fanout_delivers_everything_and_reports_it() {
    let out = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let run = Command::new(BENCH)
        .args(["fanout", "--connections", "50", "--rate", "20", "--duration", "2", "--processes", "2"])
        .args(["--no-baseline", "--no-pin", "--time-limit", "60", "--server"])
        .arg(drakon_binary())
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run drakon-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "drakon-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "the run is bounded in time");
    assert!(stdout.contains("srv µs/deliv"), "the table is printed:\n{stdout}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("fanout.json")).expect("fanout.json"))
            .expect("the report is JSON");
    assert_eq!(report["scenario"], "fanout");
    for key in ["command", "machine", "settings", "steps", "comparison"] {
        assert!(report.get(key).is_some(), "report has {key}: {report}");
    }
    let steps = report["steps"].as_array().expect("steps");
    let targets: Vec<&str> = steps.iter().map(|s| s["target"].as_str().unwrap_or_default()).collect();
    assert_eq!(targets, ["drakon", "floor"], "one size, drakon then the floor (no baseline): {steps:?}");
    for step in steps {
        assert_delivered_everything(step);
    }
    let comparison = report["comparison"].as_array().expect("comparison");
    let rate = comparison.iter().find(|c| c["metric"] == "deliveries per second").expect("a rate comparison");
    assert!(rate["floor_ratio"].as_f64().is_some() && rate.get("ratio").is_none(), "drakon ÷ floor only: {rate}");
    assert_eq!(report["machine"]["receive_steering"]["on"], false, "steering is off unless asked: {report}");

    let svg = std::fs::read_to_string(out.path().join("fanout.svg")).expect("fanout.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "a standalone SVG");
    assert!(svg.contains("latency distribution"), "the chart has the latency distribution");
}

/// Every subscriber got every message, and the step has the fields the README documents.
fn assert_delivered_everything(step: &Value) {
    assert_eq!(step["connected"], 50, "{step}");
    assert_eq!(step["failed_connections"], 0, "{step}");
    let published = step["published"].as_u64().expect("published");
    assert_eq!(published, 40, "20 messages a second for 2 seconds: {step}");
    assert_eq!(step["expected"].as_u64(), Some(published * 50));
    assert_eq!(step["delivered"], step["expected"], "every subscriber got every message: {step}");
    assert_eq!(step["losses"], 0, "{step}");
    assert_eq!(step["closed_connections"], 0, "{step}");
    let latency = &step["latency"];
    assert_eq!(latency["count"].as_u64(), Some(published * 50));
    let (p50, p99, max) = (latency["p50_us"].as_u64(), latency["p99_us"].as_u64(), latency["max_us"].as_u64());
    assert!(p50.is_some() && p99.is_some() && max.is_some(), "{latency}");
    assert!(p50 <= p99 && p99 <= max, "{latency}");
    assert!(latency["percentiles"].as_array().is_some_and(|p| p.len() > 2), "{latency}");
    for key in [
        "deliveries_per_sec",
        "server_cpu_secs",
        "generator_cpu_secs",
        "server_cpu_us_per_delivery",
        "generator_cpu_us_per_delivery",
    ] {
        assert!(step[key].as_f64().is_some(), "step has {key}: {step}");
    }
    assert!(step["deliveries_per_sec"].as_f64().unwrap() > 0.0);
}
