//! The admin page's door: who is an admin, logging in and out, and the page itself.
//!
//! The admin secret comes from config or the environment, or `drakon serve` makes one up and prints a login link.
//! Logging in (with the secret in a form, or through the printed link) gives a login token, never the secret: signed
//! with the secret, expiring, sent back as an HttpOnly, SameSite=Strict cookie, and revoked by logging out (see
//! [`Logins`]). A WebSocket opened with that cookie gets an admin session, which may use the `admin:<model>` routes.
//! The cookie counts only on requests from an allowed origin (see [`crate::origin`]): another site, or another port
//! of this one, cannot borrow it. Every admin write goes through the engine like any other, so it publishes like
//! any other.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use drakon_core::unix_now;
use serde::Deserialize;

use crate::origin::origin_allowed;
use crate::{AppState, PeerAddress};

/// The cookie that carries an admin's login token.
pub const COOKIE: &str = "drakon_admin";

/// Admin logins. A login token is `<expiry>.<nonce>.<mac>`: when it ends (Unix seconds), a random nonce, and an
/// HMAC-SHA256 of both under the admin secret. Every node with the same secret accepts it (behind a load balancer the
/// admin's next request may reach another node), nobody without the secret can make one, and the secret itself never
/// leaves the login form. Logging out revokes the token's nonce on the node that handles it, and the browser drops
/// the cookie.
#[derive(Debug, Default)]
pub struct Logins {
    /// Revoked nonces, until their token would have expired anyway.
    revoked: Mutex<HashMap<String, u64>>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn signer(secret: &str, body: &str) -> HmacSha256 {
    use hmac::{KeyInit, Mac};
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this branch is unreachable, and a fixed key would only make tokens invalid.
        <HmacSha256 as KeyInit>::new_from_slice(b"-").expect("hmac takes any key")
    });
    mac.update(b"drakon-admin-login.");
    mac.update(body.as_bytes());
    mac
}

impl Logins {
    fn revoked(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new login token under `secret`, valid for [`drakon_core::limits::ADMIN_LOGIN_TTL`]; `None` if the system
    /// has no randomness to give.
    fn issue(&self, secret: &str) -> Option<String> {
        use hmac::Mac;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).ok()?;
        let body = format!("{}.{}", unix_now() + drakon_core::limits::ADMIN_LOGIN_TTL.as_secs(), hex(&nonce));
        let mac = signer(secret, &body).finalize().into_bytes();
        Some(format!("{body}.{}", hex(&mac)))
    }

    /// The token's nonce and expiry, if `secret` signed it, it has not expired, and it was not revoked.
    fn check<'t>(&self, secret: &str, token: &'t str) -> Option<(&'t str, u64)> {
        use hmac::Mac;
        let (body, mac) = token.rsplit_once('.')?;
        let (expiry, nonce) = body.split_once('.')?;
        let expiry: u64 = expiry.parse().ok()?;
        signer(secret, body).verify_slice(&unhex(mac)?).ok()?;
        (expiry > unix_now() && !self.revoked().contains_key(nonce)).then_some((nonce, expiry))
    }

    fn revoke(&self, secret: &str, token: &str) {
        let Some((nonce, expiry)) = self.check(secret, token) else { return };
        let now = unix_now();
        let mut revoked = self.revoked();
        // Revocations outlive their tokens by nothing, so the map holds only what could still be presented.
        revoked.retain(|_, until| *until > now);
        revoked.insert(nonce.to_owned(), expiry);
    }
}

/// The value of the cookie `name`, if the request carries one.
pub fn cookie_named<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(n, value)| (n == name).then_some(value))
}

/// The admin cookie's value, if the request carries one.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
}

/// Compares in time independent of where the strings differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request comes from an allowed origin with the cookie of a live admin login (the admin secret's).
pub fn has_admin_login(state: &AppState, headers: &HeaderMap) -> bool {
    origin_allowed(&state.options, headers)
        && cookie(headers).is_some_and(|token| state.http.logins.check(&state.options.admin_secret, token).is_some())
}

/// Whether the request may use the admin page: an admin login, or the session of a built-in user with the `staff`
/// role.
pub async fn is_admin(state: &AppState, headers: &HeaderMap) -> bool {
    has_admin_login(state, headers)
        || matches!(crate::users::session_user(state, headers).await, Ok(Some(user)) if user.has_role(drakon_core::rules::STAFF_ROLE))
}

fn login_cookie(token: &str) -> HeaderValue {
    let max_age = drakon_core::limits::ADMIN_LOGIN_TTL.as_secs();
    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

const LOGIN_PAGE: &str = include_str!("../assets/admin/login.html");
const ADMIN_PAGE: &str = include_str!("../assets/admin/index.html");
const ADMIN_JS: &str = include_str!("../assets/admin/admin.js");
const ADMIN_CSS: &str = include_str!("../assets/admin/admin.css");

fn login_page(status: StatusCode, message: &str) -> Response {
    let page = LOGIN_PAGE.replace("{{message}}", &html_escape(message));
    (status, Html(page)).into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `GET /admin`: the admin page, or the login form.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state, &headers).await {
        return login_page(StatusCode::UNAUTHORIZED, "");
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(ADMIN_PAGE)).into_response()
}

pub async fn script(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], ADMIN_JS).into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], ADMIN_CSS).into_response()
}

#[derive(Deserialize)]
pub struct LoginLink {
    token: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    secret: String,
}

/// The name failed admin-secret logins are counted under, per address, in the login throttle.
const ADMIN_LOGIN_NAME: &str = "(admin secret)";

fn log_in(state: &AppState, headers: &HeaderMap, peer: Option<std::net::IpAddr>, secret: &str) -> Response {
    if !origin_allowed(&state.options, headers) {
        return login_page(StatusCode::FORBIDDEN, "Log in from this server's own page.");
    }
    if state.http.login_throttle.address_waits(peer).is_some() {
        return login_page(StatusCode::TOO_MANY_REQUESTS, "Too many failed logins from here; try again later.");
    }
    if !same_secret(secret, &state.options.admin_secret) {
        state.http.login_throttle.failed(peer, ADMIN_LOGIN_NAME);
        return login_page(StatusCode::UNAUTHORIZED, "That secret is not right.");
    }
    let Some(token) = state.http.logins.issue(&state.options.admin_secret) else {
        return login_page(StatusCode::SERVICE_UNAVAILABLE, "The server cannot make a login token right now.");
    };
    let mut response = Redirect::to("/admin").into_response();
    response.headers_mut().insert(header::SET_COOKIE, login_cookie(&token));
    response
}

/// `GET /admin/login?token=…`: the link `drakon serve` prints.
pub async fn login_link(
    State(state): State<AppState>,
    peer: Option<axum::Extension<PeerAddress>>,
    headers: HeaderMap,
    Query(link): Query<LoginLink>,
) -> Response {
    match link.token {
        Some(token) => log_in(&state, &headers, peer.map(|p| p.0.ip()), &token),
        None => login_page(StatusCode::OK, ""),
    }
}

/// `POST /admin/login` with the secret in a form.
pub async fn login_form(
    State(state): State<AppState>,
    peer: Option<axum::Extension<PeerAddress>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    log_in(&state, &headers, peer.map(|p| p.0.ip()), &form.secret)
}

/// `POST /admin/logout`: revokes the login, wherever its cookie is kept.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers).filter(|_| origin_allowed(&state.options, &headers)) {
        state.http.logins.revoke(&state.options.admin_secret, token);
    }
    let mut response = Redirect::to("/admin").into_response();
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"));
    response
}

/// `GET /admin/api/connected`: who is connected to this node (signed-in users with their connections, admins,
/// anonymous clients).
pub async fn connected(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(state.engine.hub().connected())).into_response()
}

/// Members the admin lists per room.
const ROOM_MEMBERS_LISTED: usize = 20;

/// `GET /admin/api/presence`: the presence rooms of this node with members, each with what it is about (a model
/// route's object: `route`, `model` and `id`; a channel route's channel: `route` and `channel`), its member count
/// and its first members.
pub async fn presence(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let schema = state.engine.schema();
    let rooms: Vec<serde_json::Value> = state
        .engine
        .presence()
        .rooms(ROOM_MEMBERS_LISTED)
        .into_iter()
        .map(|room| {
            let members: Vec<serde_json::Value> = room.members.iter().map(|m| m.to_json()).collect();
            let mut entry = serde_json::json!({
                "room": &*room.name, "count": room.count, "connections": room.connections, "members": members,
            });
            // The route whose rooms are named `presence:<route>:…`, the longest name first (route names may hold `:`).
            let about = schema
                .routes
                .iter()
                .filter_map(|route| {
                    let rest =
                        room.name.strip_prefix("presence:")?.strip_prefix(route.name.as_str())?.strip_prefix(':')?;
                    Some((route, rest))
                })
                .max_by_key(|(route, _)| route.name.len());
            if let Some((route, rest)) = about {
                entry["route"] = route.name.clone().into();
                match &route.kind {
                    drakon_core::schema::RouteKind::Model(spec) => {
                        entry["model"] = spec.model.clone().into();
                        entry["id"] = rest.parse::<i64>().map_or(serde_json::Value::Null, Into::into);
                    }
                    drakon_core::schema::RouteKind::Channel(_) => entry["channel"] = rest.into(),
                }
            }
            entry
        })
        .collect();
    ([(header::CACHE_CONTROL, "no-store")], Json(serde_json::json!({"rooms": rooms}))).into_response()
}

/// `GET /admin/api/schema`: models and fields, for the admin page to build its lists and forms.
pub async fn schema(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let models: Vec<serde_json::Value> = state
        .engine
        .schema()
        .models
        .iter()
        .map(|m| {
            let fields: Vec<serde_json::Value> = m
                .fields
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name,
                        "type": f.ty.name(),
                        "optional": f.optional,
                        "unique": f.unique,
                        "default": f.default.as_ref().map(drakon_core::Value::to_json),
                        "ref": f.ref_target().map(|(model, _)| model),
                        "on_delete": f.ref_target().map(|(_, d)| d.as_str()),
                    })
                })
                .collect();
            serde_json::json!({
                "name": m.name,
                "route": format!("{}{}", drakon_core::engine::ADMIN_ROUTE_PREFIX, m.name),
                "fields": fields,
            })
        })
        .collect();
    Json(serde_json::json!({ "models": models })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_expire_and_can_be_revoked() {
        let logins = Logins::default();
        let token = logins.issue("s3cret").expect("a token");
        assert!(logins.check("s3cret", &token).is_some());
        assert!(Logins::default().check("s3cret", &token).is_some(), "another node with the same secret");
        assert!(logins.check("another secret", &token).is_none());
        let (body, _) = token.rsplit_once('.').unwrap();
        let (_, nonce) = body.split_once('.').unwrap();
        for forged in [
            format!("{}.{nonce}.{}", unix_now() + 99_999, token.rsplit_once('.').unwrap().1),
            format!("{body}.00"),
            format!("{body}.zz"),
            "s3cret".to_owned(),
            String::new(),
        ] {
            assert!(logins.check("s3cret", &forged).is_none(), "{forged}");
        }
        use hmac::Mac;
        let expired = format!("{}.{nonce}", unix_now() - 1);
        let signed = format!("{expired}.{}", hex(&signer("s3cret", &expired).finalize().into_bytes()));
        assert!(logins.check("s3cret", &signed).is_none(), "expired");
        logins.revoke("s3cret", &token);
        assert!(logins.check("s3cret", &token).is_none(), "revoked");
    }
}
