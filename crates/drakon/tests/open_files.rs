//! `drakon serve` raises its soft open-file limit to the hard one: with the usual soft limit of 1,024 a node would
//! refuse clients past about a thousand connections.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, todo_with_server};

/// The soft and hard "Max open files" of a process, from `/proc/<pid>/limits`.
fn open_file_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[test]
fn serve_raises_the_soft_open_file_limit_to_the_hard_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("drakon.toml");
    std::fs::write(&config, todo_with_server("")).expect("write the config");
    // A shell lowers the soft limit, then becomes drakon (same pid).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" serve --config "$1" --bind 127.0.0.1:0"#)
        .arg(BIN)
        .arg(&config)
        .env("DRAKON_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start drakon");
    let pid = child.id();
    let binary = std::fs::canonicalize(BIN).expect("the drakon binary");
    let is_drakon = || std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while Instant::now() < deadline {
        // Only once the shell has become drakon do its limits say anything (the shell's own soft limit is 256).
        if is_drakon() {
            seen = open_file_limits(pid);
            if seen.as_ref().is_some_and(|(soft, hard)| soft == hard) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (soft, hard) = seen.expect("drakon started and its limits were read");
    assert!(hard == "unlimited" || hard.parse::<u64>().is_ok_and(|h| h > 256), "the hard limit must allow a raise");
    assert_eq!(soft, hard, "the soft limit was raised from 256 to the hard one");
}
