//! Built-in users and an app's own login, against the real binary.
//!
//! Built-in users run the todo demo with users (`examples/todo/drakon-users.toml`): logging in and out, the session
//! cookie on the upgrade and on `/admin`, the origin check on every cookie-authenticated request, `drakon user` on
//! the command line, brute-force throttling, and the demo's rules (private, shared and public lists) for Alice, Bob
//! and a visitor. The app's login (`auth_url`) runs against a small HTTP app in this process that answers as a
//! Django or Rails session endpoint would, and sometimes as a broken one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, HttpResponse, RawWs, client_with_cookie, http, logged_in, login, session_cookie, todo_users_config};
use drakon_testkit::TestServer;
use serde_json::{Value, json};

async fn me(server: &TestServer, cookie: &str) -> HttpResponse {
    http(&server.addr, "GET", "/auth/me", &[("Cookie", cookie)], b"").await
}

#[tokio::test]
async fn a_login_opens_a_session_that_sockets_and_the_admin_page_recognise_until_logout() {
    let server = TestServer::spawn(BIN, &todo_users_config()).await;
    let addr = server.addr.clone();

    // Unknown names and wrong passwords get the same answer.
    let wrong = login(&server, "alice", "not-her-password").await;
    let unknown = login(&server, "mallory", "not-her-password").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.json(), unknown.json());
    assert_eq!(wrong.json()["code"], "bad_credentials");
    assert!(!wrong.head.to_ascii_lowercase().contains("set-cookie"), "{}", wrong.head);

    // Logins come as JSON from the server's own pages only.
    let form = http(&addr, "POST", "/auth/login", &[("Content-Type", "text/plain")], b"name=alice").await;
    let body = json!({"name": "alice", "password": "alice-demo-pass"}).to_string();
    let elsewhere = http(&addr, "POST", "/auth/login", &[("Origin", "http://evil.example")], body.as_bytes()).await;
    assert_eq!((form.status, elsewhere.status), (415, 403), "{} / {}", form.body, elsewhere.body);

    let ok = login(&server, "alice", "alice-demo-pass").await;
    assert_eq!(ok.json()["user"]["id"], "alice");
    let head = ok.head.to_ascii_lowercase();
    for attribute in ["httponly", "samesite=lax", "path=/"] {
        assert!(head.contains(attribute), "the session cookie lacks {attribute}: {}", ok.head);
    }
    assert!(!head.contains("secure"), "plain HTTP gets no Secure cookie: {}", ok.head);
    let alice = session_cookie(&ok);
    assert_eq!(me(&server, &alice).await.json()["user"]["id"], "alice");
    assert_eq!(me(&server, "drakon_session=0123").await.status, 401);
    // Behind a TLS proxy the cookie is Secure.
    let tls = http(&addr, "POST", "/auth/login", &[("X-Forwarded-Proto", "https")], body.as_bytes()).await;
    assert!(tls.head.to_ascii_lowercase().contains("; secure"), "{}", tls.head);

    // The cookie signs the socket in as Alice, from the server's own page only.
    let mut socket = client_with_cookie(&server, &alice).await;
    let first = socket.next_frame(Duration::from_secs(5)).await.expect("the signed-in notice");
    assert_eq!(first["auth"], "signed_in", "a cookie session hears whom it acts for first: {first}");
    assert_eq!((&first["user"]["id"], &first["expires"]), (&json!("alice"), &Value::Null), "{first}");
    let list = socket.ok("todo-list", "create", json!({"name": "alice's"})).await;
    assert_eq!(list["owner"], "alice", "{list}");
    let refused = RawWs::connect_with(&addr, &[("Cookie", &alice), ("Origin", "http://evil.example")]).await;
    assert!(refused.unwrap_err().contains("403"), "a foreign page cannot ride the cookie");

    // Alice is no staff: the admin page wants its secret. Carol is.
    let page = |cookie: String| {
        let addr = addr.clone();
        async move { http(&addr, "GET", "/admin", &[("Cookie", &cookie)], b"").await.status }
    };
    assert_eq!(page(alice.clone()).await, 401);
    let carol = logged_in(&server, "carol", "carol-staff-pass").await;
    assert_eq!(page(carol.clone()).await, 200);
    let mut admin = client_with_cookie(&server, &carol).await;
    admin.ok("admin:todo_list", "get_list", json!({})).await;
    // The admin page lists who is connected: Alice, Carol, and nobody else by name.
    let anonymous = server.client().await;
    let connected = http(&addr, "GET", "/admin/api/connected", &[("Cookie", &carol)], b"").await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    let connected = connected.json();
    let users: Vec<(&str, u64)> = connected["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u["connections"].as_u64().unwrap()))
        .collect();
    assert_eq!(users, [("alice", 1), ("carol", 1)], "{connected}");
    assert_eq!((connected["anonymous"].as_u64(), connected["connections"].as_u64()), (Some(1), Some(3)), "{connected}");
    assert_eq!(connected["users"][1]["roles"], json!(["staff"]));
    assert_eq!(http(&addr, "GET", "/admin/api/connected", &[("Cookie", &alice)], b"").await.status, 401);
    drop(anonymous);

    // Logging out ends the session everywhere it would be presented.
    let out = http(&addr, "POST", "/auth/logout", &[("Cookie", &alice)], b"").await;
    assert_eq!(out.status, 200);
    assert!(out.head.contains("Max-Age=0"), "{}", out.head);
    assert_eq!(me(&server, &alice).await.status, 401);
    let mut after = client_with_cookie(&server, &alice).await;
    after.err("todo-list", "create", json!({"name": "anonymous now"}), "permission_denied").await;
}

#[tokio::test]
async fn the_command_line_adds_users_changes_passwords_and_ends_sessions() {
    let server = TestServer::spawn(BIN, &todo_users_config()).await;
    let config = server.config_path();
    let run = |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run drakon user");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (ok, out) = run(&["user", "add", "dave", "--role", "staff", "--role", "editor"], "dave-password\n");
    assert!(ok, "{out}");
    let (ok, out) = run(&["user", "add", "eve"], "short\n");
    assert!(!ok && out.contains("at least 8"), "{out}");
    let (ok, out) = run(&["user", "list"], "");
    assert!(ok, "{out}");
    for line in ["alice\t", "bob\t", "carol\tstaff", "dave\tstaff,editor"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "`{line}` missing from:\n{out}");
    }
    let dave = logged_in(&server, "dave", "dave-password").await;
    assert_eq!(me(&server, &dave).await.json()["user"]["roles"], json!(["staff", "editor"]));

    let alice = logged_in(&server, "alice", "alice-demo-pass").await;
    let (ok, out) = run(&["user", "passwd", "alice"], "a-brand-new-password\n");
    assert!(ok, "{out}");
    assert_eq!(me(&server, &alice).await.status, 401, "a new password ends the old sessions");
    assert_eq!(login(&server, "alice", "alice-demo-pass").await.status, 401);
    logged_in(&server, "alice", "a-brand-new-password").await;
    let (ok, out) = run(&["user", "passwd", "nobody"], "whatever-password\n");
    assert!(!ok && out.contains("no user named `nobody`"), "{out}");
}

#[tokio::test]
async fn brute_force_is_throttled_per_name_and_per_address_before_any_hash_is_checked() {
    let server = TestServer::spawn(BIN, &todo_users_config()).await;
    for _ in 0..drakon_core::limits::LOGIN_FAILURES_PER_USER {
        assert_eq!(login(&server, "bob", "guess").await.status, 401);
    }
    // Even the right password waits now: a guesser learns nothing from the answers past the limit.
    let throttled = login(&server, "bob", "bob-demo-pass").await;
    assert_eq!((throttled.status, throttled.json()["code"].as_str()), (429, Some("rate_limited")));
    assert!(throttled.head.to_ascii_lowercase().contains("retry-after: "), "{}", throttled.head);
    // Other names still work, until this address has failed too often for any name.
    logged_in(&server, "alice", "alice-demo-pass").await;
    let per_address = drakon_core::limits::LOGIN_FAILURES_PER_ADDRESS - drakon_core::limits::LOGIN_FAILURES_PER_USER;
    for i in 0..per_address {
        assert_eq!(login(&server, &format!("name{i}"), "guess").await.status, 401);
    }
    assert_eq!(login(&server, "alice", "alice-demo-pass").await.status, 429);
    // The admin secret's login counts against the same address.
    let form = http(
        &server.addr,
        "POST",
        "/admin/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"secret=x",
    )
    .await;
    assert_eq!(form.status, 429);
}

/// Each cell: what a verb answers for Alice, Bob and a visitor; `ok`, or the error code.
type Cell = (&'static str, &'static str, Value, [&'static str; 3]);

#[tokio::test]
async fn the_demo_keeps_private_lists_private_shares_one_and_shows_visitors_the_public_ones() {
    let server = TestServer::spawn(BIN, &todo_users_config()).await;
    let mut alice = client_with_cookie(&server, &logged_in(&server, "alice", "alice-demo-pass").await).await;
    let mut bob = client_with_cookie(&server, &logged_in(&server, "bob", "bob-demo-pass").await).await;
    let mut visitor = server.client().await;

    let private = alice.ok("todo-list", "create", json!({"name": "alice private"})).await["id"].clone();
    let shared = alice.ok("todo-list", "create", json!({"name": "shared", "shared": true})).await["id"].clone();
    let public = alice.ok("todo-list", "create", json!({"name": "public", "public": true})).await["id"].clone();
    let in_private = alice.ok("todo-item", "create", json!({"text": "a", "todo_list": private})).await["id"].clone();
    let in_shared = bob.ok("todo-item", "create", json!({"text": "b", "todo_list": shared})).await["id"].clone();
    let in_public = alice.ok("todo-item", "create", json!({"text": "p", "todo_list": public})).await["id"].clone();

    let cells: &[Cell] = &[
        //  route, verb, args, [alice (owner), bob (signed in), visitor]
        ("todo-list", "get_single", json!({"id": private}), ["ok", "not_found", "not_found"]),
        ("todo-list", "get_single", json!({"id": shared}), ["ok", "ok", "not_found"]),
        ("todo-list", "get_single", json!({"id": public}), ["ok", "ok", "ok"]),
        // A visitor may not update or delete anything, whichever row it names: `permission_denied`, "sign in first".
        (
            "todo-list",
            "update",
            json!({"id": shared, "name": "renamed"}),
            ["ok", "permission_denied", "permission_denied"],
        ),
        ("todo-list", "create", json!({"name": "mine"}), ["ok", "ok", "permission_denied"]),
        ("todo-item", "get_single", json!({"id": in_private}), ["ok", "not_found", "not_found"]),
        ("todo-item", "get_single", json!({"id": in_shared}), ["ok", "ok", "not_found"]),
        ("todo-item", "get_single", json!({"id": in_public}), ["ok", "ok", "ok"]),
        // Writing into a list you may not use fails alike whether the list exists or not: no existence oracle.
        (
            "todo-item",
            "create",
            json!({"text": "x", "todo_list": private}),
            ["ok", "permission_denied", "permission_denied"],
        ),
        (
            "todo-item",
            "create",
            json!({"text": "x", "todo_list": 999}),
            ["permission_denied", "permission_denied", "permission_denied"],
        ),
        ("todo-item", "create", json!({"text": "x", "todo_list": shared}), ["ok", "ok", "permission_denied"]),
        (
            "todo-item",
            "create",
            json!({"text": "x", "todo_list": public}),
            ["ok", "permission_denied", "permission_denied"],
        ),
        ("todo-item", "update", json!({"id": in_shared, "done": true}), ["ok", "ok", "permission_denied"]),
        (
            "todo-item",
            "update",
            json!({"id": in_public, "done": true}),
            ["ok", "permission_denied", "permission_denied"],
        ),
        ("todo-item", "delete", json!({"id": in_private}), ["ok", "not_found", "permission_denied"]),
    ];
    // Bob and the visitor go first, so that Alice's writes (the delete) do not change their cells.
    for (column, client) in [(1, &mut bob), (2, &mut visitor), (0, &mut alice)] {
        for (route, verb, args, expected) in cells {
            let reply = client.call(route, verb, args.clone()).await;
            let got = match reply["context"]["state"].as_str() {
                Some("success") => "ok",
                _ => reply["data"]["code"].as_str().unwrap_or("?"),
            };
            assert_eq!(got, expected[column], "{route} {verb} {args} as caller #{column}: {reply}");
        }
    }

    let names = |page: Value| -> Vec<String> {
        let mut names: Vec<String> =
            page.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names(visitor.ok("todo-list", "get_list", json!({})).await), ["public"]);
    assert_eq!(names(bob.ok("todo-list", "get_list", json!({})).await), ["mine", "public", "renamed"]);
}

/// The app behind `auth_url`: who a `session` cookie belongs to, as a Django app's "who am I" view would say, and a
/// few broken behaviours, counting the requests it gets.
async fn app_login(hits: Arc<AtomicUsize>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/whoami",
        axum::routing::get(move |headers: HeaderMap| {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let cookie = headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
                let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                match (cookie, bearer) {
                    ("sessionid=alice", _) | (_, "Bearer alice-key") => {
                        axum::Json(json!({"id": "alice", "roles": [], "info": {"name": "Alice"}})).into_response()
                    }
                    ("sessionid=slow", _) => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                    ("sessionid=garbage", _) => "<html>welcome</html>".into_response(),
                    ("sessionid=broken", _) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    _ => StatusCode::UNAUTHORIZED.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/whoami")
}

#[tokio::test]
async fn an_apps_own_login_signs_users_in_and_a_broken_one_lets_nobody_in() {
    let hits = Arc::new(AtomicUsize::new(0));
    let url = app_login(hits.clone()).await;
    let config = common::NOTES.replace(
        "jwt_secret = \"the-notes-app-secret-of-32-chars-or-more\"",
        &format!("auth_url = \"{url}\"\nauth_url_timeout_ms = 500\nauth_url_cache_secs = 60"),
    );
    let server = TestServer::spawn(BIN, &config).await;
    let addr = server.addr.clone();

    // Alice's app session signs her in; the answer is reused for the next connection.
    let mut alice = client_with_cookie(&server, "sessionid=alice").await;
    let first = alice.next_frame(Duration::from_secs(5)).await.expect("the signed-in notice");
    assert_eq!((&first["auth"], &first["user"]["id"]), (&json!("signed_in"), &json!("alice")), "{first}");
    assert_eq!(alice.ok("notes", "create", json!({"text": "from the app"})).await["owner"], "alice");
    client_with_cookie(&server, "sessionid=alice").await.ok("notes", "get_list", json!({})).await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the second connection used the cached answer");
    // So does an `Authorization` header the app understands (this server takes no tokens itself).
    let by_header = RawWs::connect_with(&addr, &[("Authorization", "Bearer alice-key")]).await;
    assert!(by_header.is_ok(), "{:?}", by_header.err());

    // A visitor of the app (401) is anonymous here; with no credentials at all the app is not asked.
    let mut visitor = client_with_cookie(&server, "sessionid=nobody").await;
    assert_eq!(visitor.next_frame(Duration::from_millis(300)).await, None, "an anonymous session hears nothing first");
    visitor.err("notes", "create", json!({"text": "x"}), "permission_denied").await;
    let before = hits.load(Ordering::SeqCst);
    server.client().await.ok("notes", "get_list", json!({})).await;
    assert_eq!(hits.load(Ordering::SeqCst), before);

    // A slow, broken or confused app lets nobody in, and says so.
    for cookie in ["sessionid=slow", "sessionid=garbage", "sessionid=broken"] {
        let started = Instant::now();
        let refused = RawWs::connect_with(&addr, &[("Cookie", cookie)]).await.map(|_| ()).unwrap_err();
        assert!(refused.contains("503"), "{cookie}: {refused}");
        assert!(started.elapsed() < Duration::from_secs(3), "{cookie} took {:?}", started.elapsed());
    }
}
