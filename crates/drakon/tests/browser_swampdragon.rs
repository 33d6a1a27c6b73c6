//! SwampDragon's own browser client against drakon, in Chromium: runs `tests/e2e/swampdragon.e2e.mjs`, which
//! downloads `swampdragon.js` (with the SockJS 0.3.4 client it bundles) from the SwampDragon 0.4.2.2 sdist on PyPI,
//! serves it unmodified in a page that subscribes, gets, lists and updates the way the talk's front end did, and
//! checks that two such pages stay live with each other and with a WebSocket client, over xhr-streaming and, with
//! streaming blocked, over xhr-polling. Screenshots land in `tests/e2e/artifacts/swampdragon/`.
//!
//! Needs `/usr/bin/chromium`, `npm ci` in `tests/e2e` and `python3 -m pip`; `scripts/test.sh` installs the first two.

mod common;

use std::process::Command;

#[test]
fn swampdragon_js_from_its_sdist_stays_live_over_sockjs_streaming_and_polling() {
    let e2e = common::e2e_dir();
    let output = Command::new("node")
        .arg(e2e.join("swampdragon.e2e.mjs"))
        .env("DRAKON_BIN", env!("CARGO_BIN_EXE_drakon"))
        .env("E2E_ARTIFACTS", e2e.join("artifacts").join("swampdragon"))
        .output()
        .expect("run node (Node.js 20 is needed for the browser test)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "SwampDragon browser test failed ({}):\n{stdout}\n{stderr}", output.status);
    println!("{stdout}");
}
