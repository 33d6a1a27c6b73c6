//! The talk's demo in a real browser: runs `tests/e2e/todo.e2e.mjs` (Debian's Chromium through playwright-core)
//! against this build of `drakon`. Three browsers on one list and an admin: every change anywhere shows up
//! everywhere within a second, including after a server restart, and in a browser whose WebSockets are blocked (its
//! client moves to SockJS). Then the demo with users: Alice's private list never shows in Bob's browser or a
//! visitor's, the list she shares is live in both, and presence says who has it open and who is editing what.
//! Screenshots land in `tests/e2e/artifacts/`.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `tests/e2e`; `scripts/test.sh` (the README's test command) and
//! `.ci/run` install both. The test fails, never skips, when they are missing.

mod common;

#[test]
fn todo_demo_is_live_in_three_browsers_and_the_admin() {
    println!("{}", common::run_e2e("todo.e2e.mjs", "artifacts"));
}
