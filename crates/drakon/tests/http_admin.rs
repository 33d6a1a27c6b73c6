//! The admin cookie: a login token (never the secret) that expires and is revoked by logging out, and that counts
//! only on requests from the server's own pages. A page on another origin, even another port of the same host,
//! can neither open an admin WebSocket with it nor read the admin API.

mod common;

use std::time::Duration;

use common::{BIN, RawWs, TODO, http};
use drakon_testkit::TestServer;
use serde_json::json;

const SECRET: &str = "correct-horse-battery-staple";

/// The admin cookie a login response sets.
fn login_token(head: &str) -> String {
    head.lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie: drakon_admin="))
        .and_then(|line| line.split_once('=').map(|(_, rest)| rest.split(';').next().unwrap_or_default().to_owned()))
        .unwrap_or_else(|| panic!("no admin cookie in {head}"))
}

#[tokio::test]
async fn the_admin_cookie_is_a_revocable_token_that_other_origins_cannot_use() {
    let server = TestServer::spawn_with(BIN, TODO, &[("DRAKON_ADMIN_SECRET", SECRET)]).await;
    let addr = server.addr.clone();
    let own = format!("http://{addr}");
    let login = http(&addr, "GET", &format!("/admin/login?token={SECRET}"), &[], b"").await;
    assert_eq!(login.status, 303, "{}", login.head);
    let token = login_token(&login.head);
    assert!(
        !token.contains(SECRET) && token.split('.').count() == 3,
        "the cookie holds a token, not the secret: {token}"
    );
    let cookie = format!("drakon_admin={token}");

    // From the server's own pages (or without an Origin, as a navigation) the cookie opens the admin.
    assert_eq!(http(&addr, "GET", "/admin", &[("Cookie", &cookie)], b"").await.status, 200);
    assert_eq!(
        http(&addr, "GET", "/admin/api/schema", &[("Cookie", &cookie), ("Origin", &own)], b"").await.status,
        200
    );
    let mut admin = RawWs::connect_with(&addr, &[("Cookie", &cookie), ("Origin", &own)]).await.expect("own origin");
    admin.send_json(&json!({"route": "admin:todo_item", "verb": "get_list", "args": {}, "callbackname": "a"})).await;
    let reply = admin.next(Duration::from_secs(5)).await.expect("a reply").json();
    assert_eq!(reply["context"]["state"], "success", "{reply}");

    // From any other page it does not: another site, or another port of this host.
    for origin in ["http://evil.example", "http://127.0.0.1:1"] {
        let refused = RawWs::connect_with(&addr, &[("Cookie", &cookie), ("Origin", origin)]).await.err();
        assert_eq!(refused.as_deref(), Some("HTTP/1.1 403 Forbidden"), "a WebSocket from {origin}");
        let schema = http(&addr, "GET", "/admin/api/schema", &[("Cookie", &cookie), ("Origin", origin)], b"").await;
        assert_eq!(schema.status, 401, "the admin API read from {origin}");
        let link = http(&addr, "GET", &format!("/admin/login?token={SECRET}"), &[("Origin", origin)], b"").await;
        assert_eq!((link.status, link.head.to_ascii_lowercase().contains("set-cookie")), (403, false), "{origin}");
    }

    // The secret itself is not a cookie that works, and a logged-out token no longer does.
    let secret_cookie = format!("drakon_admin={SECRET}");
    assert_eq!(http(&addr, "GET", "/admin", &[("Cookie", &secret_cookie)], b"").await.status, 401);
    let out = http(&addr, "POST", "/admin/logout", &[("Cookie", &cookie), ("Origin", &own)], b"").await;
    assert_eq!(out.status, 303);
    assert_eq!(http(&addr, "GET", "/admin", &[("Cookie", &cookie)], b"").await.status, 401);
    let mut plain = RawWs::connect_with(&addr, &[("Cookie", &cookie), ("Origin", &own)]).await.expect("a plain socket");
    plain.send_json(&json!({"route": "admin:todo_item", "verb": "get_list", "args": {}, "callbackname": "b"})).await;
    let reply = plain.next(Duration::from_secs(5)).await.expect("a reply").json();
    assert_eq!(reply["data"]["code"], "unknown_route", "{reply}");
}
