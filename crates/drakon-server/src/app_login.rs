//! An app's own login (`[auth] auth_url`): how a Django, Rails or Node app keeps its users, reused as is.
//!
//! On a WebSocket upgrade that carries a `Cookie` or an `Authorization` header, drakon sends both, unchanged, in a
//! `GET` to `auth_url`. The app answers `200` with `{"id": …, "roles": […], "info": {…}}` for a signed-in user, or
//! `401`/`403` for a visitor, who then connects anonymously. Anything else (a timeout, another status, a body that
//! is not such an object) refuses the upgrade with `503 auth_unavailable`: a broken login endpoint must not let
//! anyone in as somebody, nor quietly turn every user into a visitor.
//!
//! Answers are kept for `auth_url_cache_secs` under a SHA-256 of the credentials, so a page that reconnects, or
//! many tabs of one user, cost the app one request per period. Failures are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use bytes::Bytes;
use drakon_core::User;
use drakon_protocol::ErrorCode;
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value as Json;
use sha2::Digest;

use crate::identity::Refused;

/// The largest answer read from `auth_url`.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Most answers kept; past it, expired ones go first, then all.
const CACHE_ENTRIES: usize = 10_000;

/// Answers by a hash of the credentials: when each came, and the user (`None`: a visitor).
type Answers = HashMap<[u8; 32], (Instant, Option<Arc<User>>)>;

/// Asks the app who a request's credentials belong to.
#[derive(Debug)]
pub struct AppLogin {
    url: axum::http::Uri,
    /// `host:port` to connect to.
    authority: String,
    cache_for: Duration,
    timeout: Duration,
    cache: Mutex<Answers>,
}

fn unavailable(message: impl Into<String>) -> Refused {
    Refused { code: ErrorCode::AuthUnavailable, message: message.into() }
}

impl AppLogin {
    pub fn new(url: &str, cache_for: Duration, timeout: Duration) -> Result<AppLogin, String> {
        let parsed: axum::http::Uri = url.parse().map_err(|e| format!("auth_url `{url}` is not a URL: {e}"))?;
        if parsed.scheme_str() != Some("http") {
            return Err(format!("auth_url `{url}` must start with http://"));
        }
        let host = parsed.host().ok_or_else(|| format!("auth_url `{url}` names no host"))?;
        let authority = format!("{host}:{}", parsed.port_u16().unwrap_or(80));
        Ok(AppLogin { url: parsed, authority, cache_for, timeout, cache: Mutex::default() })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user the request's credentials belong to (`None`: a visitor), if it carries any.
    pub async fn user(&self, headers: &HeaderMap) -> Result<Option<Arc<User>>, Refused> {
        let (cookie, authorization) = (headers.get(header::COOKIE), headers.get(header::AUTHORIZATION));
        if cookie.is_none() && authorization.is_none() {
            return Ok(None);
        }
        let mut digest = sha2::Sha256::new();
        for value in [cookie, authorization] {
            digest.update(value.map_or(&b""[..], HeaderValue::as_bytes));
            digest.update([0]);
        }
        let key: [u8; 32] = digest.finalize().into();
        let now = Instant::now();
        if let Some((at, user)) = self.cache().get(&key)
            && now.duration_since(*at) < self.cache_for
        {
            return Ok(user.clone());
        }
        let user = tokio::time::timeout(self.timeout, self.ask(cookie, authorization))
            .await
            .map_err(|_| unavailable(format!("the app's login endpoint did not answer within {:?}", self.timeout)))?
            .inspect_err(|refused| tracing::warn!(url = %self.url, problem = %refused.message, "auth_url failed"))?;
        if !self.cache_for.is_zero() {
            let mut cache = self.cache();
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, (at, _)| now.duration_since(*at) < self.cache_for);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(key, (now, user.clone()));
        }
        Ok(user)
    }

    async fn ask(
        &self,
        cookie: Option<&HeaderValue>,
        authorization: Option<&HeaderValue>,
    ) -> Result<Option<Arc<User>>, Refused> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unavailable(format!("cannot reach the app's login endpoint: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(format!("the app's login endpoint failed: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let path = self.url.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::get(path).header(header::HOST, &self.authority);
        for (name, value) in [(header::COOKIE, cookie), (header::AUTHORIZATION, authorization)] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        request = request.header(header::ACCEPT, "application/json");
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| unavailable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unavailable(format!("the app's login endpoint failed: {e}")))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(None),
            status => return Err(unavailable(format!("the app's login endpoint answered {status}"))),
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| unavailable(format!("the app's login answer could not be read: {e}")))?
            .to_bytes();
        parse_user(&body).map(|user| Some(Arc::new(user)))
    }
}

/// `{"id": "7" or 7, "roles": ["staff"], "info": {…}}`; `roles` and `info` may be left out.
fn parse_user(body: &[u8]) -> Result<User, Refused> {
    let garbage = |why: &str| unavailable(format!("the app's login answer is not a user: {why}"));
    let answer: serde_json::Map<String, Json> =
        serde_json::from_slice(body).map_err(|_| garbage("not a JSON object"))?;
    let id = match answer.get("id") {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        Some(Json::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(garbage("`id` must be a non-empty string or an integer")),
    };
    let roles = match answer.get("roles") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(roles)) if roles.iter().all(Json::is_string) => {
            roles.iter().filter_map(Json::as_str).map(str::to_owned).collect()
        }
        Some(_) => return Err(garbage("`roles` must be a list of strings")),
    };
    let info = answer.get("info").cloned().unwrap_or(Json::Null);
    Ok(User { id, roles, info, expires: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_names_a_user_or_is_refused_as_garbage() {
        let user = parse_user(br#"{"id": 7, "roles": ["staff"], "info": {"name": "Ann"}}"#).unwrap();
        assert_eq!((user.id.as_str(), user.roles.as_slice()), ("7", &["staff".to_owned()][..]));
        assert_eq!(parse_user(br#"{"id": "u1"}"#).unwrap().roles, Vec::<String>::new());
        for garbage in
            [&b"<html>"[..], b"[]", b"{}", br#"{"id": ""}"#, br#"{"id": 1.5}"#, br#"{"id": 1, "roles": "a"}"#]
        {
            let refused = parse_user(garbage).unwrap_err();
            assert_eq!(refused.code, ErrorCode::AuthUnavailable, "{}", String::from_utf8_lossy(garbage));
        }
    }

    #[test]
    fn only_plain_http_urls_with_a_host_are_taken() {
        assert!(AppLogin::new("http://127.0.0.1:8001/api/me", Duration::ZERO, Duration::from_secs(1)).is_ok());
        assert!(AppLogin::new("https://app.example/me", Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(AppLogin::new("not a url", Duration::ZERO, Duration::from_secs(1)).is_err());
    }
}
