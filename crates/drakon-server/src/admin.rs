//! The admin page's door: who is an admin, logging in and out, and the page itself.
//!
//! The admin secret comes from config or the environment, or `drakon serve` makes one up and prints a login link.
//! Logging in (with the secret in a form, or through the printed link) sets an HttpOnly, SameSite=Strict cookie;
//! a WebSocket opened with that cookie gets an admin session, which may use the `admin:<model>` routes. Every admin
//! write goes through the engine like any other, so it publishes like any other.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;

use crate::{AppState, ServerOptions};

/// The cookie that carries the admin secret.
pub const COOKIE: &str = "drakon_admin";

/// Compares in time independent of where the strings differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the admin cookie with the right secret.
pub fn is_admin(options: &ServerOptions, headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && same_secret(value, &options.admin_secret))
}

fn login_cookie(secret: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict"))
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
    if !is_admin(&state.options, &headers) {
        return login_page(StatusCode::UNAUTHORIZED, "");
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(ADMIN_PAGE)).into_response()
}

pub async fn script(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state.options, &headers) {
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

fn log_in(state: &AppState, secret: &str) -> Response {
    if !same_secret(secret, &state.options.admin_secret) {
        return login_page(StatusCode::UNAUTHORIZED, "That secret is not right.");
    }
    let mut response = Redirect::to("/admin").into_response();
    response.headers_mut().insert(header::SET_COOKIE, login_cookie(secret));
    response
}

/// `GET /admin/login?token=…`: the link `drakon serve` prints.
pub async fn login_link(State(state): State<AppState>, Query(link): Query<LoginLink>) -> Response {
    match link.token {
        Some(token) => log_in(&state, &token),
        None => login_page(StatusCode::OK, ""),
    }
}

/// `POST /admin/login` with the secret in a form.
pub async fn login_form(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    log_in(&state, &form.secret)
}

/// `POST /admin/logout`.
pub async fn logout() -> Response {
    let mut response = Redirect::to("/admin").into_response();
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ascii"));
    response
}

/// `GET /admin/api/schema`: models and fields, for the admin page to build its lists and forms.
pub async fn schema(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&state.options, &headers) {
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
