//! Built-in users' front door: `POST /auth/login`, `POST /auth/logout`, `GET /auth/me`, and the session cookie that a
//! later WebSocket upgrade (or `/admin`, for the `staff` role) is recognised by.
//!
//! Passwords are kept as argon2id hashes; checking one costs tens of milliseconds of CPU on purpose, so at most
//! [`HASHING_AT_ONCE`] run at a time and failed logins are throttled per client address and per user name before any
//! hashing happens. A login for a name that does not exist still checks a hash, so the answer's timing does not say
//! which names exist, and both cases answer the same `bad_credentials`.
//!
//! A session is 32 random bytes in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the page came over HTTPS);
//! the store keeps only its SHA-256, so a copy of the database opens no session. Every request that uses the cookie,
//! the login itself included, must come from an allowed origin (see [`crate::origin`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drakon_core::accounts::{Account, Accounts, MIN_PASSWORD_LEN};
use drakon_core::limits::{
    LOGIN_FAILURE_WINDOW, LOGIN_FAILURES_PER_ADDRESS, LOGIN_FAILURES_PER_USER, MAX_LOGIN_BODY_BYTES, SESSION_TTL,
};
use drakon_core::{User, unix_now};
use drakon_protocol::ErrorCode;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;

use crate::origin::origin_allowed;
use crate::{AppState, PeerAddress};

/// The cookie that carries a built-in user's session key.
pub const COOKIE: &str = "drakon_session";

/// Password checks running at once; more wait. Each takes one core for tens of milliseconds.
const HASHING_AT_ONCE: usize = 2;

fn hashing() -> &'static tokio::sync::Semaphore {
    static SEMAPHORE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASHING_AT_ONCE);
    &SEMAPHORE
}

/// An argon2id hash of `password` with a fresh salt, as a PHC string (argon2's recommended parameters).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `hash`. A hash that cannot be read matches nothing.
fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of nothing anybody knows, checked for names without an account so that those take as long as the rest.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("drakon decoy password, never a real one").unwrap_or_default())
}

/// Checks a password on the blocking pool, no more than [`HASHING_AT_ONCE`] at a time.
async fn check_password(hash: Option<String>, password: String) -> bool {
    let Ok(_permit) = hashing().acquire().await else { return false };
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => password_matches(&hash, &password),
        None => {
            password_matches(decoy_hash(), &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// The SHA-256 of a session key, as the store keeps it.
fn key_hash(key: &str) -> String {
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Failed logins per client address and per user name, each counted over [`LOGIN_FAILURE_WINDOW`]. Past the limit
/// of either, logins are refused with `rate_limited` without checking the password, until the window that began
/// with the first failure ends. A success clears the name's count (not the address's: one right password does not
/// buy another round of guesses at other names). The counts live in this node's memory; behind a load balancer
/// each node counts on its own.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    inner: Mutex<ThrottleInner>,
}

#[derive(Debug, Default)]
struct ThrottleInner {
    addresses: HashMap<IpAddr, Failures>,
    names: HashMap<String, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

impl Failures {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.since) < LOGIN_FAILURE_WINDOW
    }

    /// How long until the window ends, if these failures reached `max` within it.
    fn wait(&self, max: u32, now: Instant) -> Option<Duration> {
        (self.live(now) && self.count >= max).then(|| LOGIN_FAILURE_WINDOW - now.duration_since(self.since))
    }
}

/// Most entries each map keeps; past it, expired ones are dropped first, then the map starts over.
const THROTTLE_ENTRIES: usize = 100_000;

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, ThrottleInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long until `address` and `name` may try again, if either is over its limit.
    fn wait(&self, address: Option<IpAddr>, name: &str) -> Option<Duration> {
        let now = Instant::now();
        let inner = self.lock();
        let by_address = address.and_then(|a| inner.addresses.get(&a)?.wait(LOGIN_FAILURES_PER_ADDRESS, now));
        let by_name = inner.names.get(name).and_then(|f| f.wait(LOGIN_FAILURES_PER_USER, now));
        by_address.into_iter().chain(by_name).max()
    }

    /// How long until `address` may try again, if it is over its limit.
    pub fn address_waits(&self, address: Option<IpAddr>) -> Option<Duration> {
        self.lock().addresses.get(&address?)?.wait(LOGIN_FAILURES_PER_ADDRESS, Instant::now())
    }

    pub fn failed(&self, address: Option<IpAddr>, name: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        fn count<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: K, now: Instant) {
            if map.len() >= THROTTLE_ENTRIES {
                map.retain(|_, f| f.live(now));
                if map.len() >= THROTTLE_ENTRIES {
                    map.clear();
                }
            }
            let f = map.entry(key).or_insert(Failures { count: 0, since: now });
            if !f.live(now) {
                *f = Failures { count: 0, since: now };
            }
            f.count += 1;
        }
        if let Some(address) = address {
            count(&mut inner.addresses, address, now);
        }
        count(&mut inner.names, name.to_owned(), now);
    }

    fn succeeded(&self, name: &str) {
        self.lock().names.remove(name);
    }
}

fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": code.as_str(), "message": message.into()}))).into_response()
}

/// The store's accounts, if `[auth] users = true` and the store keeps them.
fn accounts(state: &AppState) -> Option<&dyn Accounts> {
    let enabled = state.options.identity.as_ref().is_some_and(|identity| identity.builtin_users());
    state.engine.store().accounts().filter(|_| enabled)
}

fn no_users() -> Response {
    error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "this server has no built-in users: set `users = true` in [auth]")
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    crate::admin::cookie_named(headers, COOKIE)
}

/// Whether the page came over HTTPS (directly, or through a proxy that says so), so the cookie may only go back
/// over HTTPS.
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    forwarded.is_some_and(|p| p.eq_ignore_ascii_case("https")) || origin.is_some_and(|o| o.starts_with("https://"))
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn user_json(user: &User) -> serde_json::Value {
    json!({"id": user.id, "roles": user.roles, "info": user.info})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    name: String,
    password: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<PeerAddress>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(accounts) = accounts(&state) else { return no_users() };
    if !origin_allowed(&state.options, &headers) {
        return error(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, "logins from this page's origin are refused");
    }
    if body.len() > MAX_LOGIN_BODY_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::FrameTooLarge, "the login body is too large");
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json_body {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadJson,
            "send {\"name\": …, \"password\": …} as application/json",
        );
    }
    let LoginBody { name, password } = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, ErrorCode::BadJson, format!("expected {{name, password}}: {e}"));
        }
    };
    let address = peer.map(|p| p.0.ip());
    if let Some(wait) = state.http.login_throttle.wait(address, &name) {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many failed logins; try again in {} s", wait.as_secs() + 1),
        );
        if let Ok(value) = HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let account = match accounts.account(&name).await {
        Ok(account) => account,
        Err(e) => return store_error(e),
    };
    let matches = check_password(account.as_ref().map(|a| a.password_hash.clone()), password).await;
    let Some(account) = account.filter(|_| matches) else {
        state.http.login_throttle.failed(address, &name);
        tracing::info!(user = %name, ?address, "failed login");
        return error(StatusCode::UNAUTHORIZED, ErrorCode::BadCredentials, "wrong name or password");
    };
    state.http.login_throttle.succeeded(&name);
    let mut key = [0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "no randomness for a session key");
    }
    let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
    if let Err(e) = accounts.open_session(&key_hash(&key), &account.name, unix_now() + SESSION_TTL.as_secs()).await {
        return store_error(e);
    }
    tracing::info!(user = %account.name, "logged in");
    let mut response = Json(json!({"user": user_json(&account.user())})).into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&key, SESSION_TTL.as_secs(), over_tls(&headers)));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn store_error(e: drakon_core::StoreError) -> Response {
    tracing::warn!(error = %e, "the store failed a login request");
    error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "the user store is unavailable; try again")
}

pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(accounts) = accounts(&state) else { return no_users() };
    if !origin_allowed(&state.options, &headers) {
        return error(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "logouts from this page's origin are refused",
        );
    }
    if let Some(key) = session_cookie(&headers)
        && let Err(e) = accounts.close_session(&key_hash(key)).await
    {
        return store_error(e);
    }
    let mut response = Json(json!({"ok": true})).into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie("", 0, over_tls(&headers)));
    response
}

/// The signed-in user, or 401.
pub(crate) async fn me(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session_user(&state, &headers).await {
        Ok(Some(user)) => Json(json!({"user": user_json(&user)})).into_response(),
        Ok(None) if accounts(&state).is_none() => no_users(),
        Ok(None) => error(StatusCode::UNAUTHORIZED, ErrorCode::PermissionDenied, "not logged in"),
        Err(e) => store_error(e),
    }
}

/// The built-in user whose live session cookie the request carries, from an allowed origin. `Ok(None)` without
/// built-in users, without a cookie, or for a session that ended.
pub(crate) async fn session_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<User>>, drakon_core::StoreError> {
    let Some(key) = session_cookie(headers) else { return Ok(None) };
    let Some(accounts) = accounts(state) else { return Ok(None) };
    if !origin_allowed(&state.options, headers) {
        return Ok(None);
    }
    Ok(accounts.session_account(&key_hash(key), unix_now()).await?.map(|a| Arc::new(a.user())))
}

/// A new account, or a new password (and roles) for an existing one, for `drakon user`.
pub fn account(name: &str, password: &str, roles: Vec<String>) -> Result<Account, String> {
    if !drakon_core::accounts::valid_name(name) {
        return Err(format!("`{name}` is not a valid user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`"));
    }
    if let Some(role) = roles.iter().find(|r| !drakon_core::accounts::valid_role(r)) {
        return Err(format!("`{role}` is not a valid role: 1 to 64 letters, digits, `_` or `-`"));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!("the password must be at least {MIN_PASSWORD_LEN} characters"));
    }
    Ok(Account { name: name.to_owned(), password_hash: hash_password(password)?, roles, info: serde_json::Value::Null })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_own_hash_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches(&hash, "correct horse"));
        assert!(!password_matches(&hash, "correct horse "));
        assert!(!password_matches("not a hash", "correct horse"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "every hash has its own salt");
    }

    #[test]
    fn failures_past_the_limit_wait_for_the_window_and_a_success_clears_the_name() {
        let throttle = Throttle::default();
        let (here, there): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..LOGIN_FAILURES_PER_USER {
            assert_eq!(throttle.wait(Some(here), "alice"), None);
            throttle.failed(Some(here), "alice");
        }
        assert!(throttle.wait(Some(there), "alice").is_some(), "the name is throttled from every address");
        assert_eq!(throttle.wait(Some(there), "bob"), None);
        throttle.succeeded("alice");
        assert_eq!(throttle.wait(Some(there), "alice"), None);
        for i in LOGIN_FAILURES_PER_USER..LOGIN_FAILURES_PER_ADDRESS {
            throttle.failed(Some(here), &format!("name{i}"));
        }
        let wait = throttle.wait(Some(here), "carol").expect("the address is throttled for every name");
        assert!(wait <= LOGIN_FAILURE_WINDOW && wait > LOGIN_FAILURE_WINDOW - Duration::from_secs(5));
    }

    #[test]
    fn accounts_need_a_valid_name_and_roles_and_a_long_enough_password() {
        assert!(account("alice", "long enough", vec!["staff".into()]).is_ok());
        assert!(account("al ice", "long enough", vec![]).unwrap_err().contains("user name"));
        assert!(account("alice", "long enough", vec!["a,b".into()]).unwrap_err().contains("role"));
        assert!(account("alice", "short", vec![]).unwrap_err().contains("at least 8"));
    }
}
