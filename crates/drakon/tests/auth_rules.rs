//! Identity and per-user rules against the real binary: tokens on the socket (`auth`), on the upgrade (`?token=`,
//! `Authorization: Bearer`), each bad token refused with its own code; and a permission matrix of every verb of a
//! notes app for an anonymous client, the owner, another user and staff, over a row the caller may see and one it
//! may not. Subscriptions follow the rules too: each user hears only their rows, and a row that changes owner
//! leaves one user's view as `deleted` and enters the other's as `created`.

mod common;

use common::{BIN, NOTES, QUIET, now, token, user_token};
use drakon_testkit::{Client, PATIENCE, TestServer};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

/// A client signed in as `id` with `roles` (none: anonymous), through the `auth` request.
async fn signed_in(server: &TestServer, who: Option<(&str, &[&str])>) -> Client {
    let mut client = server.client().await;
    if let Some((id, roles)) = who {
        let reply = client.ok("drakon", "auth", json!({"token": user_token(id, roles)})).await;
        assert_eq!(reply["user"]["id"], id, "{reply}");
    }
    client
}

#[tokio::test]
async fn every_verb_follows_the_rules_for_each_kind_of_caller() {
    let server = TestServer::spawn(BIN, NOTES).await;
    let mut alice = signed_in(&server, Some(("alice", &[]))).await;
    let mut bob = signed_in(&server, Some(("bob", &[]))).await;
    let mut staff = signed_in(&server, Some(("carol", &["staff"]))).await;
    let mut anonymous = signed_in(&server, None).await;

    // The owner is set by the server, and cannot be forged.
    let mine = alice.ok("notes", "create", json!({"text": "alice's"})).await;
    assert_eq!(mine["owner"], "alice", "{mine}");
    alice.err("notes", "create", json!({"text": "forged", "owner": "bob"}), "read_only_field").await;
    let theirs = bob.ok("notes", "create", json!({"text": "bob's"})).await;
    let (a, b) = (mine["id"].clone(), theirs["id"].clone());

    // Alice's view of her row (a) and of Bob's (b); anonymous and staff likewise. Each cell: the expected code, or
    // "ok". A row the caller may not read is `not_found`, exactly as a row that does not exist.
    let cells: &[(&str, &str, Value, [&str; 4])] = &[
        //  route, verb, args,                         [anonymous, alice (owner of a), bob (not), staff]
        ("notes", "get_single", json!({"id": a}), ["not_found", "ok", "not_found", "ok"]),
        ("notes", "get_single", json!({"id": 999}), ["not_found", "not_found", "not_found", "not_found"]),
        (
            "notes",
            "update",
            json!({"id": a, "text": "edited"}),
            ["permission_denied", "ok", "not_found", "permission_denied"],
        ),
        ("notes", "create", json!({"text": "new"}), ["permission_denied", "ok", "ok", "ok"]),
        ("notes", "get_list", json!({"text__startswith": "zz"}), ["ok", "ok", "ok", "ok"]),
        (
            "handover",
            "update",
            json!({"id": a, "owner": "alice"}),
            ["permission_denied", "permission_denied", "permission_denied", "ok"],
        ),
        ("notes", "delete", json!({"id": b}), ["permission_denied", "not_found", "ok", "not_found"]),
    ];
    for (route, verb, args, expected) in cells {
        for (client, want) in [&mut anonymous, &mut alice, &mut bob, &mut staff].into_iter().zip(expected) {
            let reply = client.call(route, verb, args.clone()).await;
            let got = match reply["context"]["state"].as_str() {
                Some("success") => "ok",
                _ => reply["data"]["code"].as_str().unwrap_or("?"),
            };
            assert_eq!(got, *want, "{route} {verb} {args}: {reply}");
        }
    }

    // Lists hold exactly what each may read.
    let texts = |rows: Value| -> Vec<String> {
        let mut t: Vec<String> =
            rows.as_array().unwrap().iter().map(|r| r["owner"].as_str().unwrap().to_owned()).collect();
        t.sort();
        t
    };
    assert_eq!(texts(alice.ok("notes", "get_list", json!({})).await), ["alice", "alice"]);
    assert_eq!(texts(bob.ok("notes", "get_list", json!({})).await), ["bob"]);
    assert_eq!(texts(staff.ok("notes", "get_list", json!({})).await), ["alice", "alice", "bob", "carol"]);
    // A filter cannot reach around the rule.
    assert!(bob.ok("notes", "get_list", json!({"owner": "alice"})).await.as_array().unwrap().is_empty());
    assert!(anonymous.ok("notes", "get_list", json!({})).await.as_array().unwrap().is_empty());

    // A public note is readable by everyone, and writable by its owner only.
    alice.ok("notes", "update", json!({"id": a, "public": true})).await;
    assert_eq!(texts(anonymous.ok("notes", "get_list", json!({})).await), ["alice"]);
    assert_eq!(texts(bob.ok("notes", "get_list", json!({})).await), ["alice", "bob"]);
    bob.err("notes", "update", json!({"id": a, "text": "bob's now"}), "permission_denied").await;
    bob.err("notes", "delete", json!({"id": a}), "permission_denied").await;
}

#[tokio::test]
async fn subscribers_hear_only_their_rows_and_a_row_changing_owner_moves_between_them() {
    let server = TestServer::spawn(BIN, NOTES).await;
    let mut alice = signed_in(&server, Some(("alice", &[]))).await;
    let mut bob = signed_in(&server, Some(("bob", &[]))).await;
    let mut staff = signed_in(&server, Some(("carol", &["staff"]))).await;
    let mut anonymous = signed_in(&server, None).await;
    anonymous.err("notes", "create", json!({"text": "anonymous"}), "permission_denied").await;
    anonymous.subscribe("notes", "public", json!({})).await;
    let alice_channels = alice.subscribe("notes", "notes", json!({})).await;
    let bob_channels = bob.subscribe("notes", "notes", json!({})).await;
    // Clients see one name; the server keeps a channel per user, since their rules differ.
    assert_eq!(alice_channels, bob_channels, "the name a client sees carries no one's rule");
    let health = common::http(&server.addr, "GET", "/healthz", &[], b"").await.json();
    assert_eq!(health["channels"], 3, "users under an owner rule never share a channel: {health}");
    staff.subscribe("notes", "notes", json!({})).await;

    let note = alice.ok("notes", "create", json!({"text": "private"})).await;
    let seen = alice.next_publication(PATIENCE).await.expect("alice hears her note");
    assert_eq!((seen["action"].as_str(), seen["data"]["text"].as_str()), (Some("created"), Some("private")));
    let seen = staff.next_publication(PATIENCE).await.expect("staff hear every note");
    assert_eq!(seen["action"], "created");

    // Staff hand the note to Bob: it leaves Alice's view and enters Bob's.
    staff.ok("handover", "update", json!({"id": note["id"], "owner": "bob"})).await;
    let left = alice.next_publication(PATIENCE).await.expect("the note leaves alice's view");
    assert_eq!((left["action"].as_str(), &left["data"]["id"]), (Some("deleted"), &note["id"]), "{left}");
    let entered = bob.next_publication(PATIENCE).await.expect("the note enters bob's view");
    assert_eq!((entered["action"].as_str(), entered["data"]["text"].as_str()), (Some("created"), Some("private")));
    assert_eq!(bob.next_publication(QUIET).await, None, "bob heard nothing before the handover: {entered}");
    // Alice can no longer touch it.
    alice.err("notes", "update", json!({"id": note["id"], "text": "mine?"}), "not_found").await;
    assert!(alice.drain_publications(QUIET).await.is_empty());

    // Made public by its new owner, it enters the anonymous view (and Alice's, through the other branch of `any`);
    // made private again, it leaves both.
    bob.ok("notes", "update", json!({"id": note["id"], "public": true})).await;
    for client in [&mut anonymous, &mut alice] {
        let entered = client.next_publication(PATIENCE).await.expect("the public note enters");
        assert_eq!((entered["action"].as_str(), &entered["data"]["id"]), (Some("created"), &note["id"]), "{entered}");
    }
    bob.ok("notes", "update", json!({"id": note["id"], "public": false})).await;
    for client in [&mut anonymous, &mut alice] {
        let left = client.next_publication(PATIENCE).await.expect("the note leaves again");
        assert_eq!((left["action"].as_str(), &left["data"]["id"]), (Some("deleted"), &note["id"]), "{left}");
    }
    let updates: Vec<_> = bob.drain_publications(QUIET).await.into_iter().map(|p| p["action"].clone()).collect();
    assert_eq!(updates, [json!("updated"), json!("updated")], "bob's note stays in bob's view");
}

#[tokio::test]
async fn tokens_are_taken_on_the_socket_and_the_upgrade_and_bad_ones_get_their_own_code() {
    let server = TestServer::spawn(BIN, NOTES).await;
    let unsigned = {
        use base64::Engine as _;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.", b64(json!({"alg": "none"})), b64(json!({"sub": "alice", "exp": now() + 60})))
    };
    let wrong_key = encode(
        &Header::default(),
        &json!({"sub": "alice", "exp": now() + 60}),
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-chars!!").expect("a key"),
    )
    .expect("a token");
    let table = [
        ("not.a.token".to_owned(), "token_malformed"),
        (unsigned, "token_unsigned"),
        (wrong_key, "token_bad_signature"),
        (token(json!({"sub": "alice", "exp": now() - 60})), "token_expired"),
        (token(json!({"sub": "alice", "exp": now() + 60, "nbf": now() + 60})), "token_not_yet_valid"),
        (token(json!({"exp": now() + 60})), "token_rejected"),
    ];
    let mut client = server.client().await;
    for (bad, code) in &table {
        client.err("drakon", "auth", json!({"token": bad}), code).await;
        // On the upgrade: refused with 401 and the same code.
        let url = format!("{}?token={bad}", server.ws_url());
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["code"], *code, "{body}");
            }
            other => panic!("{code}: the upgrade was not refused: {other:?}"),
        }
    }
    // Still anonymous after the refusals.
    client.err("notes", "create", json!({"text": "anonymous"}), "permission_denied").await;

    // A good token on the upgrade, as `?token=` and as a bearer header.
    let good = user_token("alice", &[]);
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?token={good}", server.ws_url())).await.expect("connect");
    let mut by_query = Client::from_socket(ws);
    by_query.ok("notes", "create", json!({"text": "via query"})).await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(server.ws_url()).unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {good}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("connect with a bearer token");
    let mut by_header = Client::from_socket(ws);
    let rows = by_header.ok("notes", "get_list", json!({})).await;
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");

    // A signed-in session may refresh its token, but not become someone else once subscribed.
    by_header.subscribe("notes", "notes", json!({})).await;
    by_header.ok("drakon", "auth", json!({"token": user_token("alice", &[])})).await;
    by_header.err("drakon", "auth", json!({"token": user_token("bob", &[])}), "permission_denied").await;
}

#[tokio::test]
async fn an_expiring_token_is_announced_then_the_session_is_closed_unless_a_fresh_one_arrives() {
    let server = TestServer::spawn(BIN, NOTES).await;
    let soon = now() + 2;
    let short = token(json!({"sub": "alice", "exp": soon}));
    // Within the notice period from the start: asked for a fresh token at once; closed with 4001 past expiry.
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{}?token={short}", server.ws_url())).await.expect("connect");
    let mut lapsing = Client::from_socket(ws);
    let signed_in = lapsing.next_frame(PATIENCE).await.expect("whom the token signs in");
    assert_eq!((&signed_in["auth"], &signed_in["user"]["id"]), (&json!("signed_in"), &json!("alice")));
    let notice = lapsing.next_frame(PATIENCE).await.expect("a notice");
    assert_eq!(notice, json!({"auth": "expiring", "expires": soon}));
    let closed = lapsing.closed(std::time::Duration::from_secs(12)).await.expect("closed after expiry");
    assert_eq!((closed.code, closed.reason.as_str()), (Some(4001), "token expired: sign in again"));

    // A fresh token moves the deadline: the next notice is for the new expiry, and nothing closes meanwhile.
    let mut refreshing = server.client().await;
    refreshing.ok("drakon", "auth", json!({"token": token(json!({"sub": "alice", "exp": now() + 2}))})).await;
    assert_eq!(refreshing.next_frame(PATIENCE).await.expect("a notice")["auth"], "expiring");
    let later = now() + 33;
    refreshing.ok("drakon", "auth", json!({"token": token(json!({"sub": "alice", "exp": later}))})).await;
    let notice = refreshing.next_frame(std::time::Duration::from_secs(12)).await.expect("the next notice");
    assert_eq!(notice, json!({"auth": "expiring", "expires": later}));
    refreshing.ok("notes", "get_list", json!({})).await;
}

/// A channel route under a subscribe rule over channel names: each user their own `user.<id>` channel, rooms for
/// signed-in users, the lobby for anyone.
const INBOX: &str = r#"
[routes.inbox]
kind = "channel"
channels = ["user.*", "room.*", "lobby"]

[routes.inbox.rules]
subscribe = { any = [
    { filter = { name = "user.$user.id" } },
    { all = ["authenticated", { filter = { name__startswith = "room." } }] },
    { filter = { name = "lobby" } },
] }
"#;

#[tokio::test]
async fn channel_routes_let_each_user_subscribe_to_the_channels_their_rule_names() {
    let config = format!("{NOTES}\n{INBOX}");
    let server = TestServer::spawn_with(BIN, &config, &[("DRAKON_API_KEY", "inbox-test-key")]).await;
    let mut alice = signed_in(&server, Some(("alice", &[]))).await;
    let mut anonymous = signed_in(&server, None).await;
    let subscribe = |name: &str| json!({"channel": "c", "name": name});

    alice.ok("inbox", "subscribe", subscribe("user.alice")).await;
    alice.ok("inbox", "subscribe", json!({"channel": "r", "name": "room.42"})).await;
    let refused = alice.err("inbox", "subscribe", subscribe("user.bob"), "permission_denied").await;
    assert!(refused.to_string().contains("not yours"), "{refused}");
    anonymous.err("inbox", "subscribe", subscribe("room.42"), "permission_denied").await;
    anonymous.err("inbox", "subscribe", subscribe("user.alice"), "permission_denied").await;
    anonymous.ok("inbox", "subscribe", subscribe("lobby")).await;

    // What is published to Alice's channel reaches Alice, and nobody who could not subscribe to it.
    let sent =
        common::publish(&server, Some("inbox-test-key"), &json!({"channel": "user.alice", "data": {"n": 1}})).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let got = alice.next_publication(PATIENCE).await.expect("alice gets her message");
    assert_eq!(got["data"]["n"], 1, "{got}");
    assert!(anonymous.next_publication(QUIET).await.is_none());

    // Rules that speak of anything but the channel's name are config problems.
    let broken = format!(
        "{NOTES}\n[routes.x]\nkind = \"channel\"\nchannels = [\"a\"]\n[routes.x.rules]\nsubscribe = {{ filter = {{ owner = \"$user.id\" }} }}\nread = \"public\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("drakon.toml"), broken).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.path().join("drakon.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success()
            && text.contains("filter on the channel's name")
            && text.contains("one rule, `subscribe`"),
        "{text}"
    );
}

/// People whose email only staff see.
const PEOPLE: &str = r#"
[models.person.fields]
name = { type = "text" }
email = { type = "text", default = "" }

[routes.people]
model = "person"
publish_fields = ["name"]
update_fields = ["name", "email"]

[routes.people.publish_fields_for]
staff = ["email"]
"#;

#[tokio::test]
async fn a_role_sees_the_fields_published_to_it_in_replies_events_and_filters_and_nobody_else_does() {
    let server = TestServer::spawn(BIN, &format!("{NOTES}\n{PEOPLE}")).await;
    let mut alice = signed_in(&server, Some(("alice", &[]))).await;
    let mut staff = signed_in(&server, Some(("carol", &["staff"]))).await;
    let mut anonymous = signed_in(&server, None).await;
    let ann = staff.ok("people", "create", json!({"name": "Ann", "email": "ann@example.org"})).await;
    assert_eq!(ann["email"], "ann@example.org", "staff see the email they wrote: {ann}");
    let id = ann["id"].clone();

    let mine = alice.ok("people", "get_single", json!({"id": id})).await;
    assert!(mine.get("email").is_none() && mine["name"] == "Ann", "{mine}");
    let theirs = staff.ok("people", "get_list", json!({"email": "ann@example.org"})).await;
    assert_eq!(theirs[0]["email"], "ann@example.org", "{theirs}");
    // Filtering or ordering on a field one cannot see answers as for a field that does not exist.
    alice.err("people", "get_list", json!({"email": "ann@example.org"}), "unknown_field").await;
    anonymous.err("people", "get_list", json!({"email__startswith": "a"}), "unknown_field").await;
    alice.err("people", "get_list", json!({"_order": ["email"]}), "invalid_args").await;
    alice.err("people", "get_list", json!({"_order": ["colour"]}), "invalid_args").await;

    let seen_by_alice = alice.subscribe("people", "p", json!({})).await;
    let seen_by_staff = staff.subscribe("people", "p", json!({})).await;
    assert_eq!(seen_by_alice, seen_by_staff, "one visible name for both");
    // An email change tells staff only; a name change tells both, each in their own fields.
    alice.ok("people", "update", json!({"id": id, "email": "ann@elsewhere.org"})).await;
    let event = staff.next_publication(PATIENCE).await.expect("staff hear the email change");
    assert_eq!(event["data"]["email"], "ann@elsewhere.org", "{event}");
    alice.ok("people", "update", json!({"id": id, "name": "Anna"})).await;
    let event = alice.next_publication(PATIENCE).await.expect("alice hears the rename");
    assert!(event["data"].get("email").is_none() && event["data"]["name"] == "Anna", "{event}");
    let event = staff.next_publication(PATIENCE).await.expect("staff hear the rename");
    assert_eq!(event["data"]["name"], "Anna", "{event}");
    assert!(alice.next_publication(QUIET).await.is_none(), "alice heard of no email change");
    let snapshot = alice.call("people", "subscribe", json!({"channel": "q", "snapshot": true})).await;
    assert!(!snapshot.to_string().contains("elsewhere"), "{snapshot}");
}
