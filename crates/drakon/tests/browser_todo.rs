//! The talk's demo in a real browser: runs `tests/e2e/todo.e2e.mjs` (Debian's Chromium through playwright-core)
//! against this build of `drakon`. Three browsers on one list and an admin: every change anywhere shows up
//! everywhere within a second, including after a server restart. Then the demo with users: Alice's private list never
//! shows in Bob's browser or a visitor's, and the list she shares is live in both. Screenshots land in
//! `tests/e2e/artifacts/`.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `tests/e2e`; `scripts/test.sh` (the README's test command) and
//! `.ci/run` install both. The test fails, never skips, when they are missing.

mod common;

use std::process::Command;

#[test]
fn todo_demo_is_live_in_three_browsers_and_the_admin() {
    let e2e = common::e2e_dir();
    let output = Command::new("node")
        .arg(e2e.join("todo.e2e.mjs"))
        .env("DRAKON_BIN", env!("CARGO_BIN_EXE_drakon"))
        .env("E2E_ARTIFACTS", e2e.join("artifacts"))
        .output()
        .expect("run node (Node.js 20 is needed for the browser test)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed ({}):\n{stdout}\n{stderr}", output.status);
    println!("{stdout}");
}
