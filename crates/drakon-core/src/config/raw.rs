//! `drakon.toml` as written: serde structs that mirror the file. Keys are `Spanned` so that problems can name their
//! line, and every table denies unknown keys so that a misspelt key is a problem rather than silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) models: BTreeMap<Spanned<String>, RawModel>,
    #[serde(default)]
    pub(super) routes: BTreeMap<Spanned<String>, RawRoute>,
    pub(super) auth: Option<Spanned<RawAuth>>,
}

/// `[auth]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) jwt_secret: Option<Spanned<String>>,
    pub(super) jwt_public_key_file: Option<Spanned<String>>,
    pub(super) jwks_file: Option<Spanned<String>>,
    pub(super) issuer: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) roles_claim: Option<String>,
    pub(super) info_claim: Option<String>,
    pub(super) users: Option<bool>,
    pub(super) auth_url: Option<Spanned<String>>,
    pub(super) auth_url_cache_secs: Option<Spanned<i64>>,
    pub(super) auth_url_timeout_ms: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) initial_users: Vec<Spanned<RawInitialUser>>,
}

/// One `[[auth.initial_users]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInitialUser {
    pub(super) name: String,
    pub(super) password: String,
    #[serde(default)]
    pub(super) roles: Vec<String>,
}

/// `[server]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) bind: Option<Spanned<String>>,
    pub(super) database: Option<Spanned<String>>,
    pub(super) max_frame_bytes: Option<Spanned<i64>>,
    pub(super) max_subscriptions: Option<Spanned<i64>>,
    pub(super) idle_timeout_secs: Option<Spanned<i64>>,
    pub(super) ping_interval_secs: Option<Spanned<i64>>,
    pub(super) heartbeat_secs: Option<Spanned<i64>>,
    pub(super) api_key: Option<Spanned<String>>,
    pub(super) admin_secret: Option<Spanned<String>>,
    pub(super) static_dir: Option<Spanned<String>>,
    pub(super) log_retention_count: Option<Spanned<i64>>,
    pub(super) log_retention_secs: Option<Spanned<i64>>,
    pub(super) database_url: Option<Spanned<String>>,
    pub(super) redis_url: Option<Spanned<String>>,
    pub(super) redis_sharded: Option<bool>,
    pub(super) redis_ca_file: Option<Spanned<String>>,
    pub(super) request_head_timeout_secs: Option<Spanned<i64>>,
    pub(super) max_pending_per_address: Option<Spanned<i64>>,
    pub(super) max_requests_per_second: Option<Spanned<i64>>,
    pub(super) allowed_origins: Option<Vec<Spanned<String>>>,
}

/// `[models.<name>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a model table such as [models.todo_list.fields]")]
pub(super) struct RawModel {
    #[serde(default)]
    pub(super) fields: BTreeMap<Spanned<String>, RawField>,
}

/// One field spec of `[models.<name>.fields]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a field spec such as { type = \"text\" }")]
pub(super) struct RawField {
    pub(super) r#type: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) optional: bool,
    pub(super) default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(super) unique: bool,
    pub(super) to: Option<Spanned<String>>,
    pub(super) on_delete: Option<Spanned<String>>,
}

/// `[routes.<name>]`: the keys of model and channel routes alike, so that a key of the other kind is reported
/// as not applying rather than as unknown.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route table such as [routes.todo-list]")]
pub(super) struct RawRoute {
    pub(super) kind: Option<Spanned<String>>,
    pub(super) model: Option<Spanned<String>>,
    pub(super) publish_fields: Option<Spanned<Vec<String>>>,
    pub(super) publish_fields_for: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    pub(super) update_fields: Option<Spanned<Vec<String>>>,
    pub(super) create_fields: Option<Spanned<Vec<String>>>,
    pub(super) verbs: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) page_size: Option<Spanned<i64>>,
    pub(super) params: Option<Spanned<BTreeMap<Spanned<String>, String>>>,
    pub(super) filters: Option<Spanned<toml::Table>>,
    pub(super) filter_fields: Option<Spanned<Vec<String>>>,
    pub(super) channels: Option<Spanned<Vec<String>>>,
    pub(super) rules: Option<Spanned<toml::Table>>,
    pub(super) set: Option<Spanned<toml::Table>>,
    pub(super) presence: Option<Spanned<RawPresence>>,
}

/// `[routes.<name>.presence]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a presence table such as [routes.todo-item.presence]")]
pub(super) struct RawPresence {
    #[serde(default)]
    pub(super) fields: Vec<String>,
    #[serde(default)]
    pub(super) anonymous: bool,
    pub(super) large_room: Option<Spanned<i64>>,
}

/// Map entries in the order the file declares them: serde cannot fill an order-keeping map with spanned keys, so
/// the keys' positions restore it.
pub(super) fn in_file_order<V>(map: BTreeMap<Spanned<String>, V>) -> Vec<(Spanned<String>, V)> {
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}
