//! SwampDragon's own browser client against drakon, in Chromium: runs `tests/e2e/swampdragon.e2e.mjs`, which
//! downloads `swampdragon.js` (with the SockJS 0.3.4 client it bundles) from the SwampDragon 0.4.2.2 sdist on PyPI,
//! serves it unmodified in a page that subscribes, gets, lists and updates the way the talk's front end did, and
//! checks that two such pages stay live with each other and with a WebSocket client, over xhr-streaming and, with
//! streaming blocked, over xhr-polling. Screenshots land in `tests/e2e/artifacts/swampdragon/`.
//!
//! Needs `/usr/bin/chromium`, `npm ci` in `tests/e2e` and `python3 -m pip`; `scripts/test.sh` installs the first two.

mod common;

#[test]
fn swampdragon_js_from_its_sdist_stays_live_over_sockjs_streaming_and_polling() {
    println!("{}", common::run_e2e("swampdragon.e2e.mjs", "artifacts/swampdragon"));
}
