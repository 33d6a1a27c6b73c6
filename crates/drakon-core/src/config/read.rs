//! Turns the raw file into a [`ServerConfig`] and a [`Schema`], collecting every problem it finds, each at the line
//! of the key it is about, instead of stopping at the first; and records where each model, field, route and route
//! key is declared, so that the problems [`Schema::finish`] finds later can be located too.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;
use toml::Spanned;

use super::locate::Anchors;
use super::raw::{RawAuth, RawField, RawModel, RawPresence, RawRoute, RawServer, in_file_order};
use super::{ADMIN_SECRET_ENV, API_KEY_ENV, AuthConfig, ConfigProblem, DEFAULT_DATABASE, ServerConfig};
use crate::rules::Rule;
use crate::schema::{ChannelRoute, Field, FieldType, Model, ModelRoute, OnDelete, PresenceSpec, Schema, Verb};
use crate::value::Value;

/// Turns the raw file into typed config, collecting problems instead of stopping at the first.
pub(super) struct Reader<'a> {
    anchors: Anchors<'a>,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Reader<'a> {
        Reader { anchors: Anchors::new(text), problems: Vec::new() }
    }

    /// The problems found while reading, and where each declared thing is.
    pub(super) fn into_parts(self) -> (Vec<ConfigProblem>, Anchors<'a>) {
        (self.problems, self.anchors)
    }

    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = Some(self.anchors.line(span));
        self.problems.push(ConfigProblem { line, message: message.into() });
    }

    pub(super) fn server(&mut self, raw: RawServer, base_dir: &Path) -> ServerConfig {
        let mut server = ServerConfig::default();
        if let Some(bind) = raw.bind {
            match bind.get_ref().parse() {
                Ok(addr) => server.bind = Some(addr),
                Err(_) => self.problem(bind.span(), "bind must be an IP address and port such as \"127.0.0.1:8000\""),
            }
        }
        server.database = base_dir.join(DEFAULT_DATABASE);
        if let Some(db) = self.path(raw.database, base_dir, "database must name a SQLite file such as \"todo.db\"") {
            server.database = db;
        }
        if let Some(n) = self.number("max_frame_bytes", raw.max_frame_bytes.as_ref(), 1) {
            server.max_frame_bytes = n;
        }
        if let Some(n) = self.number("max_subscriptions", raw.max_subscriptions.as_ref(), 1) {
            server.max_subscriptions = n;
        }
        let idle = self.number("idle_timeout_secs", raw.idle_timeout_secs.as_ref(), 1);
        let ping = self.number("ping_interval_secs", raw.ping_interval_secs.as_ref(), 1);
        server.idle_timeout = idle.map_or(server.idle_timeout, Duration::from_secs);
        server.ping_interval = ping.map_or(server.ping_interval, Duration::from_secs);
        // A bad number has its own problem already; comparing the default in its place would only add noise.
        let both_read =
            (idle.is_some() || raw.idle_timeout_secs.is_none()) && (ping.is_some() || raw.ping_interval_secs.is_none());
        if both_read
            && server.ping_interval >= server.idle_timeout
            && let Some(span) = raw.ping_interval_secs.or(raw.idle_timeout_secs).map(|s| s.span())
        {
            self.problem(
                span,
                format!(
                    "ping_interval_secs ({}) must be shorter than idle_timeout_secs ({}), or clients that only \
                     answer pings are closed as idle; lower the one or raise the other",
                    server.ping_interval.as_secs(),
                    server.idle_timeout.as_secs()
                ),
            );
        }
        if let Some(secs) = self.number::<u64>("heartbeat_secs", raw.heartbeat_secs.as_ref(), 0) {
            server.heartbeat_interval = (secs > 0).then(|| Duration::from_secs(secs));
        }
        match raw.api_key {
            Some(key) if key.get_ref().is_empty() => {
                self.problem(key.span(), format!("api_key is empty; set a key, remove the line or use {API_KEY_ENV}"))
            }
            Some(key) => server.api_key = Some(key.into_inner()),
            None => {}
        }
        match raw.admin_secret {
            Some(secret) if secret.get_ref().len() < super::MIN_ADMIN_SECRET_LEN => self.problem(
                secret.span(),
                format!(
                    "admin_secret must be at least {} characters; remove it to have one generated, or use {ADMIN_SECRET_ENV}",
                    super::MIN_ADMIN_SECRET_LEN
                ),
            ),
            Some(secret) => server.admin_secret = Some(secret.into_inner()),
            None => {}
        }
        if let Some(n) = self.number("log_retention_count", raw.log_retention_count.as_ref(), 1) {
            server.log_retention.count = n;
        }
        if let Some(n) = self.number("log_retention_secs", raw.log_retention_secs.as_ref(), 1) {
            server.log_retention.age = Duration::from_secs(n);
        }
        match raw.database_url {
            Some(url) if !(url.get_ref().starts_with("postgres://") || url.get_ref().starts_with("postgresql://")) => {
                self.problem(url.span(), "database_url must be a PostgreSQL URL such as \"postgres://user@host/db\"")
            }
            Some(url) => server.database_url = Some(url.into_inner()),
            None => {}
        }
        server.redis_sharded = raw.redis_sharded.unwrap_or(false);
        match raw.redis_url {
            Some(url)
                if url
                    .get_ref()
                    .split(',')
                    .any(|u| !(u.trim().starts_with("redis://") || u.trim().starts_with("rediss://"))) =>
            {
                self.problem(
                    url.span(),
                    "redis_url must be a Redis URL such as \"redis://127.0.0.1:6379\" (rediss:// for TLS; with \
                     redis_sharded, one or more, comma-separated)",
                )
            }
            Some(url) if url.get_ref().contains(',') && !server.redis_sharded => self.problem(
                url.span(),
                "several Redis URLs make sense only for a Redis Cluster: set redis_sharded = true, or give one URL",
            ),
            Some(url) => server.redis_url = Some(url.into_inner()),
            None => {}
        }
        server.redis_ca_file =
            self.path(raw.redis_ca_file, base_dir, "redis_ca_file must name a PEM file of CA certificates");
        if let Some(secs) = self.number("request_head_timeout_secs", raw.request_head_timeout_secs.as_ref(), 1) {
            server.request_head_timeout = Duration::from_secs(secs);
        }
        if let Some(n) = self.number("max_requests_per_second", raw.max_requests_per_second.as_ref(), 1) {
            server.max_requests_per_second = n;
        }
        if let Some(n) = self.number("max_pending_per_address", raw.max_pending_per_address.as_ref(), 1) {
            server.max_pending_per_address = n;
        }
        for origin in raw.allowed_origins.into_iter().flatten() {
            let value = origin.get_ref();
            let well_formed = value == "*"
                || value.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains(['/', ' '])
                });
            if well_formed {
                server.allowed_origins.push(value.clone());
            } else {
                self.problem(
                    origin.span(),
                    format!("allowed_origins entries are origins such as \"https://app.example:8443\" (no path), or \"*\"; got {value:?}"),
                );
            }
        }
        server.static_dir = self.path(
            raw.static_dir,
            base_dir,
            "static_dir is empty: give a directory (relative to this file), or remove the line to serve no files",
        );
        server
    }

    /// `[auth]`. Whether it names a key at all is checked once the environment is read (`DRAKON_JWT_SECRET`).
    pub(super) fn auth(&mut self, raw: Spanned<RawAuth>, base_dir: &Path) -> AuthConfig {
        let raw_span = raw.span();
        let raw = raw.into_inner();
        let defaults = AuthConfig::default();
        let mut auth = AuthConfig {
            issuer: raw.issuer,
            audience: raw.audience,
            roles_claim: raw.roles_claim.unwrap_or(defaults.roles_claim),
            info_claim: raw.info_claim.unwrap_or(defaults.info_claim),
            users: raw.users.unwrap_or(false),
            auth_url_cache: self
                .number("auth_url_cache_secs", raw.auth_url_cache_secs.as_ref(), 0)
                .map_or(defaults.auth_url_cache, Duration::from_secs),
            auth_url_timeout: self
                .number("auth_url_timeout_ms", raw.auth_url_timeout_ms.as_ref(), 1)
                .map_or(defaults.auth_url_timeout, Duration::from_millis),
            ..AuthConfig::default()
        };
        for entry in raw.initial_users {
            let span = entry.span();
            let entry = entry.into_inner();
            if !crate::accounts::valid_name(&entry.name) {
                self.problem(span.clone(), format!("initial user `{}`: not a valid user name", entry.name));
            } else if let Some(role) = entry.roles.iter().find(|r| !crate::accounts::valid_role(r)) {
                self.problem(span.clone(), format!("initial user `{}`: `{role}` is not a valid role", entry.name));
            } else if entry.password.chars().count() < crate::accounts::MIN_PASSWORD_LEN {
                let min = crate::accounts::MIN_PASSWORD_LEN;
                self.problem(
                    span.clone(),
                    format!("initial user `{}`: the password needs {min} characters", entry.name),
                );
            }
            auth.initial_users.push(super::InitialUser {
                name: entry.name,
                password: entry.password,
                roles: entry.roles,
            });
        }
        if !auth.users && !auth.initial_users.is_empty() {
            self.problem(raw_span.clone(), "initial_users needs `users = true` (built-in users)");
        }
        match raw.auth_url {
            Some(url) if !url.get_ref().starts_with("http://") => self
                .problem(url.span(), "auth_url must be an http:// URL (the app, usually on the same host or network)"),
            Some(url) => auth.auth_url = Some(url.into_inner()),
            None => {}
        }
        match raw.jwt_secret {
            // Shorter HS256 secrets can be brute-forced from one token (RFC 7518 §3.2 asks for 256 bits).
            Some(secret) if secret.get_ref().len() < 32 => {
                self.problem(secret.span(), "jwt_secret must be at least 32 characters (RFC 7518 §3.2)")
            }
            Some(secret) => auth.jwt_secret = Some(secret.into_inner()),
            None => {}
        }
        auth.jwt_public_key_file = self.path(raw.jwt_public_key_file, base_dir, "jwt_public_key_file is empty");
        auth.jwks_file = self.path(
            raw.jwks_file,
            base_dir,
            "jwks_file is empty: give a JWKS file (relative to this file), or remove the line",
        );
        auth
    }

    /// A path given relative to the config file, resolved against its directory; an empty one is the problem
    /// `empty` at its line, and no path.
    fn path(&mut self, raw: Option<Spanned<String>>, base_dir: &Path, empty: &str) -> Option<PathBuf> {
        let raw = raw?;
        if raw.get_ref().is_empty() {
            self.problem(raw.span(), empty);
            return None;
        }
        Some(base_dir.join(raw.get_ref()))
    }

    /// A whole number of at least `min`, or a problem at its line.
    fn number<T: TryFrom<i64>>(&mut self, key: &str, value: Option<&Spanned<i64>>, min: i64) -> Option<T> {
        let value = value?;
        let n = *value.get_ref();
        let converted = if n >= min { T::try_from(n).ok() } else { None };
        if converted.is_none() {
            self.problem(value.span(), format!("{key} must be a whole number of at least {min}, got {n}"));
        }
        converted
    }

    pub(super) fn schema(
        &mut self,
        models: BTreeMap<Spanned<String>, RawModel>,
        routes: BTreeMap<Spanned<String>, RawRoute>,
    ) -> Schema {
        let mut schema = Schema::new();
        for (name, raw) in in_file_order(models) {
            self.anchors.record(&["models", name.get_ref()], name.span());
            let mut model = Model::new(name.get_ref());
            for (field_name, raw_field) in in_file_order(raw.fields) {
                self.anchors.record(&["models", name.get_ref(), "fields", field_name.get_ref()], field_name.span());
                if field_name.get_ref() == "id" {
                    self.problem(field_name.span(), "`id` is implicit in every model; remove this field");
                    continue;
                }
                model = model.field(self.field(field_name, raw_field));
            }
            schema = schema.model(model);
        }
        for (name, raw) in in_file_order(routes) {
            self.anchors.record(&["routes", name.get_ref()], name.span());
            schema = self.route(schema, name, raw);
        }
        schema
    }

    fn field(&mut self, name: Spanned<String>, raw: RawField) -> Field {
        if raw.r#type.as_ref().is_none_or(|t| t.get_ref() != "ref") {
            for (key, value) in [("to", &raw.to), ("on_delete", &raw.on_delete)] {
                if let Some(value) = value {
                    self.problem(value.span(), format!("`{key}` only applies to fields of type ref; remove it"));
                }
            }
        }
        // A field whose type is unusable is still declared, as json, so that routes naming it raise no follow-on
        // problems; its default and uniqueness are not checked against a type it may not have.
        let Some(ty) = self.field_type(&name, &raw) else {
            return Field { optional: raw.optional, ..Field::json(name.into_inner()) };
        };
        let mut field = Field::new(name.into_inner(), ty);
        field.optional = raw.optional;
        field.unique = raw.unique;
        if let Some(default) = raw.default {
            match default_value(&field.ty, default.get_ref()) {
                Ok(value) => field.default = Some(value),
                Err(message) => self.problem(default.span(), message),
            }
        }
        field
    }

    fn field_type(&mut self, name: &Spanned<String>, raw: &RawField) -> Option<FieldType> {
        let Some(ty) = &raw.r#type else {
            self.problem(name.span(), "field needs a type, e.g. { type = \"text\" }");
            return None;
        };
        Some(match ty.get_ref().as_str() {
            "text" => FieldType::Text,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "datetime" => FieldType::DateTime,
            "json" => FieldType::Json,
            "ref" => {
                let on_delete = match &raw.on_delete {
                    None => Some(OnDelete::Restrict),
                    Some(s) => {
                        let parsed = [OnDelete::Cascade, OnDelete::Restrict, OnDelete::SetNull]
                            .into_iter()
                            .find(|o| o.as_str() == s.get_ref());
                        if parsed.is_none() {
                            self.problem(
                                s.span(),
                                format!("unknown on_delete `{}`; use cascade, restrict or set_null", s.get_ref()),
                            );
                        }
                        parsed
                    }
                };
                if raw.to.is_none() {
                    self.problem(
                        ty.span(),
                        "a ref field needs `to`, the model it refers to, e.g. { type = \"ref\", to = \"todo_list\" }",
                    );
                }
                FieldType::Ref { model: raw.to.as_ref()?.get_ref().clone(), on_delete: on_delete? }
            }
            "id" => {
                self.problem(ty.span(), "type id is reserved for the implicit `id` field; use int or ref");
                return None;
            }
            other => {
                self.problem(
                    ty.span(),
                    format!("unknown type `{other}`; use one of text, int, float, bool, datetime, json, ref"),
                );
                return None;
            }
        })
    }

    /// A channel route's `rules`: `subscribe` only, its filters over the channel's `name`.
    fn channel_rule(&mut self, rules: &Spanned<toml::Table>) -> Option<Rule> {
        let mut subscribe = None;
        for (verb, value) in rules.get_ref() {
            if verb != "subscribe" {
                let message = format!("`{verb}`: a channel route has one rule, `subscribe`");
                self.problem(rules.span(), message);
                continue;
            }
            match toml_to_json(value).and_then(|json| Rule::from_json(&json)) {
                Ok(rule) => {
                    for problem in rule.channel_problems() {
                        self.problem(rules.span(), format!("rule `subscribe`: {problem}"));
                    }
                    subscribe = Some(rule);
                }
                Err(message) => self.problem(rules.span(), format!("rule `subscribe`: {message}")),
            }
        }
        subscribe
    }

    fn route(&mut self, schema: Schema, name: Spanned<String>, raw: RawRoute) -> Schema {
        let route_name = name.get_ref().as_str();
        let keys = [
            ("model", raw.model.as_ref().map(Spanned::span)),
            ("publish_fields", raw.publish_fields.as_ref().map(Spanned::span)),
            ("publish_fields_for", raw.publish_fields_for.as_ref().map(Spanned::span)),
            ("update_fields", raw.update_fields.as_ref().map(Spanned::span)),
            ("create_fields", raw.create_fields.as_ref().map(Spanned::span)),
            ("verbs", raw.verbs.as_ref().map(Spanned::span)),
            ("page_size", raw.page_size.as_ref().map(Spanned::span)),
            ("params", raw.params.as_ref().map(Spanned::span)),
            ("filters", raw.filters.as_ref().map(Spanned::span)),
            ("filter_fields", raw.filter_fields.as_ref().map(Spanned::span)),
            ("channels", raw.channels.as_ref().map(Spanned::span)),
            ("rules", raw.rules.as_ref().map(Spanned::span)),
            ("set", raw.set.as_ref().map(Spanned::span)),
            ("presence", raw.presence.as_ref().map(Spanned::span)),
        ];
        for (key, span) in &keys {
            if let Some(span) = span {
                self.anchors.record(&["routes", route_name, key], span.clone());
            }
        }
        match raw.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("model") => {}
            Some("channel") => {
                for (key, span) in keys {
                    if let Some(span) = span
                        && key != "channels"
                        && key != "rules"
                        && key != "presence"
                    {
                        self.problem(span, format!("`{key}` does not apply to a channel route; remove it"));
                    }
                }
                let channels = raw.channels.map(Spanned::into_inner).unwrap_or_default();
                let subscribe = raw.rules.and_then(|rules| self.channel_rule(&rules));
                let presence = raw.presence.map(|p| self.presence(p));
                return schema.channel_route(route_name, ChannelRoute { channels, subscribe, presence });
            }
            Some(other) => {
                let span = raw.kind.as_ref().map_or(name.span(), Spanned::span);
                self.problem(span, format!("unknown route kind `{other}`; use \"model\" or \"channel\""));
                return schema;
            }
        }
        if let Some(channels) = &raw.channels {
            self.problem(
                channels.span(),
                "`channels` only applies to channel routes; add kind = \"channel\" or remove it",
            );
        }
        let Some(model) = raw.model else {
            self.problem(name.span(), "a model route needs `model`, the model it serves, e.g. model = \"todo_list\"");
            return schema;
        };
        let mut route = ModelRoute::new(model.into_inner());
        if let Some(fields) = raw.publish_fields {
            route.publish_fields = fields.into_inner();
        }
        if let Some(by_role) = raw.publish_fields_for {
            route.publish_fields_for = by_role.into_inner();
        }
        if let Some(fields) = raw.update_fields {
            route.update_fields = fields.into_inner();
        }
        if let Some(fields) = raw.create_fields {
            route.create_fields = fields.into_inner();
        }
        if let Some(verbs) = raw.verbs {
            route.verbs = BTreeSet::new();
            for verb in verbs.into_inner() {
                match Verb::parse(verb.get_ref()) {
                    Some(v) => {
                        route.verbs.insert(v);
                    }
                    None => {
                        let known: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
                        self.problem(
                            verb.span(),
                            format!("unknown verb `{}`; use one of {}", verb.get_ref(), known.join(", ")),
                        );
                    }
                }
            }
        }
        if let Some(size) = raw.page_size {
            // Out of u32 range becomes 0, which Schema::validate rejects with the allowed bounds.
            route.page_size = u32::try_from(*size.get_ref()).unwrap_or(0);
        }
        if let Some(params) = raw.params {
            for (param, lookup) in params.into_inner() {
                self.anchors.record(&["routes", route_name, "params", param.get_ref()], param.span());
                route.params.insert(param.into_inner(), lookup);
            }
        }
        if let Some(filters) = raw.filters {
            for (key, value) in filters.get_ref() {
                match toml_to_json(value) {
                    Ok(json) => {
                        route.fixed_filter.insert(key.clone(), json);
                    }
                    Err(message) => self.problem(filters.span(), format!("filter `{key}`: {message}")),
                }
            }
        }
        route.filter_fields = raw.filter_fields.map(|f| f.into_inner().into_iter().collect());
        if let Some(rules) = raw.rules {
            for (verb, value) in rules.get_ref() {
                let rule = toml_to_json(value).and_then(|json| Rule::from_json(&json));
                let rule = match rule {
                    Ok(rule) => rule,
                    Err(message) => {
                        self.problem(rules.span(), format!("rule `{verb}`: {message}"));
                        continue;
                    }
                };
                let slot = match verb.as_str() {
                    "read" => &mut route.rules.read,
                    "subscribe" => &mut route.rules.subscribe,
                    "create" => &mut route.rules.create,
                    "update" => &mut route.rules.update,
                    "delete" => &mut route.rules.delete,
                    other => {
                        self.problem(
                            rules.span(),
                            format!("`{other}` is not a rule; use read, subscribe, create, update or delete"),
                        );
                        continue;
                    }
                };
                *slot = Some(rule);
            }
        }
        if let Some(set) = raw.set {
            for (key, value) in set.get_ref() {
                match toml_to_json(value) {
                    Ok(json) => {
                        route.set.insert(key.clone(), json);
                    }
                    Err(message) => self.problem(set.span(), format!("set `{key}`: {message}")),
                }
            }
        }
        route.presence = raw.presence.map(|p| self.presence(p));
        schema.model_route(route_name, route)
    }

    /// A route's `[presence]` table.
    fn presence(&mut self, raw: Spanned<RawPresence>) -> PresenceSpec {
        let raw = raw.into_inner();
        let mut spec = PresenceSpec { fields: raw.fields, anonymous: raw.anonymous, ..PresenceSpec::default() };
        if let Some(size) = self.number("large_room", raw.large_room.as_ref(), 1) {
            spec.large_room = size;
        }
        spec
    }
}

/// A field's `default` as a value of its type. TOML datetimes and strings both serve for datetime fields.
fn default_value(ty: &FieldType, value: &toml::Value) -> Result<Value, String> {
    if *ty == FieldType::DateTime && value.as_str() == Some("now") {
        return Err("default \"now\" is not supported yet; give a fixed time such as \"2026-11-27T10:00:00Z\" \
                    or make the field optional"
            .into());
    }
    let json = toml_to_json(value)?;
    Value::from_json(ty, &json).map_err(|e| format!("bad default: {e}"))
}

fn toml_to_json(value: &toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| format!("{f} has no JSON form; use a finite number"))?,
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| Ok((k.clone(), toml_to_json(v)?))).collect::<Result<_, String>>()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;
    use crate::schema::RouteKind;

    /// Reads `lines` (line N of the file is `lines[N - 1]`) without finishing the schema: what reading alone makes
    /// of the file, and the problems it finds.
    fn read(lines: &[&str]) -> (ServerConfig, Schema, Vec<(Option<usize>, String)>) {
        let text = lines.join("\n");
        let raw: RawConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut reader = Reader::new(&text);
        let server = reader.server(raw.server, Path::new("app"));
        let schema = reader.schema(raw.models, raw.routes);
        let (problems, _) = reader.into_parts();
        (server, schema, problems.into_iter().map(|p| (p.line, p.message)).collect())
    }

    #[test]
    fn models_fields_and_routes_keep_the_order_of_the_file() {
        let (_, schema, problems) = read(&[
            "[models.zebra.fields]",
            "b = { type = \"text\" }",
            "a = { type = \"int\" }",
            "[models.ant.fields]",
            "[routes.z]",
            "model = \"zebra\"",
            "[routes.a]",
            "kind = \"channel\"",
            "channels = [\"room\"]",
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let models: Vec<&str> = schema.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(models, ["zebra", "ant"]);
        let fields: Vec<&str> = schema.models[0].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(fields, ["id", "b", "a"]);
        let routes: Vec<&str> = schema.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(routes, ["z", "a"]);
    }

    #[test]
    fn reading_leaves_cross_references_and_defaults_to_the_schema() {
        // Whether `model` and the field lists name things that exist is `Schema::finish`'s to say, and so is what
        // an absent `publish_fields` means; reading only takes the file at its word.
        let (_, schema, problems) =
            read(&["[models.a.fields]", "x = { type = \"ref\", to = \"nope\" }", "[routes.r]", "model = \"gone\""]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(schema.models[0].fields[1].ref_target(), Some(("nope", OnDelete::Restrict)));
        let RouteKind::Model(route) = &schema.routes[0].kind else { panic!("r is a model route") };
        assert_eq!(route.model, "gone");
        assert!(route.publish_fields.is_empty());
    }

    #[test]
    fn a_field_with_an_unusable_type_is_read_as_json_and_reported_once() {
        let (_, schema, problems) = read(&["[models.a.fields]", "x = { type = \"txt\", optional = true }"]);
        let unknown = "unknown type `txt`; use one of text, int, float, bool, datetime, json, ref";
        assert_eq!(problems, [(Some(2), unknown.to_string())]);
        assert_eq!(schema.models[0].fields[1], Field::json("x").optional());
    }

    #[test]
    fn server_problems_name_their_key_and_leave_its_default() {
        let (server, _, problems) = read(&["[server]", "max_subscriptions = 0", "database = \"data/app.db\""]);
        let bad = "max_subscriptions must be a whole number of at least 1, got 0";
        assert_eq!(problems, [(Some(2), bad.to_string())]);
        assert_eq!(server.max_subscriptions, ServerConfig::default().max_subscriptions);
        assert_eq!(server.database, Path::new("app/data/app.db"));
    }
}
