//! Plain HTTP endpoints: health, readiness and the server-side publish API.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drakon_protocol::ErrorCode;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;

/// The one place that turns an API error code into an HTTP status.
fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    (status_for(code), Json(json!({"code": code.as_str(), "message": message.into()}))).into_response()
}

/// The browser build of the TypeScript client (`clients/js`), committed as a build artifact and checked in CI.
const CLIENT_SCRIPT: &str = include_str!("../../../clients/js/dist/drakon.js");

pub async fn client_script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CLIENT_SCRIPT)
        .into_response()
}

pub async fn healthz(State(state): State<AppState>) -> Response {
    let stats = state.engine.hub().stats();
    Json(json!({"status": "ok", "connections": stats.connections, "channels": stats.model_channels + stats.plain_channels}))
        .into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if *state.shutdown.borrow() {
        return error(ErrorCode::Unavailable, "shutting down");
    }
    if let Err(e) = state.engine.store().ping().await {
        return error(ErrorCode::Unavailable, format!("store unavailable: {e}"));
    }
    match state.engine.bus_ready() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => error(ErrorCode::Unavailable, format!("bus unavailable: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    channel: String,
    #[serde(default)]
    data: Value,
}

/// The credential of an `Authorization: Bearer <credential>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| headers.get("x-drakon-key").and_then(|v| v.to_str().ok()))
}

pub async fn publish(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let Some(key) = state.options.api_key.as_deref() else {
        return error(ErrorCode::PermissionDenied, "publishing is disabled: set api_key in [server] or DRAKON_API_KEY");
    };
    match presented_key(&headers) {
        Some(given) if crate::admin::same_secret(given, key) => {}
        Some(_) => return error(ErrorCode::PermissionDenied, "wrong api key"),
        None => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "code": "permission_denied",
                    "message": "send the api key as `Authorization: Bearer <key>` or `X-Drakon-Key: <key>`"
                })),
            )
                .into_response();
        }
    }
    let max = drakon_core::limits::MAX_PUBLISH_BODY_BYTES;
    let wait = drakon_core::limits::REQUEST_BODY_TIMEOUT;
    let body = match tokio::time::timeout(wait, Limited::new(body, max).collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            return error(ErrorCode::FrameTooLarge, format!("the body may be at most {max} bytes"));
        }
        Ok(Err(e)) => return error(ErrorCode::BadRequest, format!("the request body is malformed: {e}")),
        Err(_) => {
            return error(ErrorCode::RequestTimeout, format!("the request body did not arrive within {wait:?}"));
        }
    };
    let body: PublishBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(ErrorCode::BadJson, format!("expected {{\"channel\": \"…\", \"data\": …}}: {e}")),
    };
    match state.engine.publish(&body.channel, body.data).await {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => error(e.code, e.message),
    }
}
