//! Who may do what on a route: identities ([`User`]) and the per-verb rules of a model route ([`Rules`]).
//!
//! A rule is `public`, `authenticated`, a role, a filter over the row with user variables (`{ owner = "$user.id" }`),
//! or `any` / `all` of rules. For one principal a rule resolves to an [`Access`]: denied, or the rows it may touch
//! as a [`RowFilter`] (filter arguments joined with AND and OR). The engine ANDs those into the client's filter
//! wherever the verb reads or writes, so a rule means what a filter means, in SQL and in memory, and a subscription
//! under a row rule is a channel of its own, indexed like any other filter (a write for one user costs that user's
//! channels, not everyone's).

use std::sync::Arc;

use drakon_protocol::Args;
use serde_json::Value as Json;

/// A signed-in user, as the token (or the app's login) describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id, as text (a JWT's `sub`).
    pub id: String,
    pub roles: Vec<String>,
    /// Public information about the user (a name, an avatar), given to whoever may see the user.
    pub info: Json,
    /// When the credentials that signed the user in expire (seconds since the Unix epoch), if they do.
    pub expires: Option<u64>,
}

impl User {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Users with this role may use the admin page and its routes.
pub const STAFF_ROLE: &str = "staff";

/// The variable a rule's filter value names to mean the caller's user id.
pub const USER_ID: &str = "$user.id";

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user.
    Authenticated,
    /// Users with this role.
    Role(String),
    /// Signed-in users, on the rows this filter matches once `$user.id` is replaced by their id.
    Rows(Args),
    /// Allowed when any of these allows (the widest access among them).
    Any(Vec<Rule>),
    /// Allowed when every one of these allows (their filters together).
    All(Vec<Rule>),
}

/// The rules of a model route, per verb; `None` is `public`. `subscribe` defaults to `read`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub read: Option<Rule>,
    pub subscribe: Option<Rule>,
    pub create: Option<Rule>,
    pub update: Option<Rule>,
    pub delete: Option<Rule>,
}

/// Which rule a verb is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Subscribe,
    Create,
    Update,
    Delete,
}

impl Rules {
    pub fn for_action(&self, action: Action) -> Option<&Rule> {
        match action {
            Action::Read => self.read.as_ref(),
            Action::Subscribe => self.subscribe.as_ref().or(self.read.as_ref()),
            Action::Create => self.create.as_ref(),
            Action::Update => self.update.as_ref(),
            Action::Delete => self.delete.as_ref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }
}

/// What a rule gives one principal.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Nothing; the reason, for the `permission_denied` reply.
    Denied(Denied),
    /// The rows this filter matches; `None`: every row.
    Rows(Option<RowFilter>),
}

/// Which rows a rule lets a principal touch: filter arguments as the rule writes them (user variables are replaced
/// when the filter is parsed for the principal), and `all` / `any` of such.
#[derive(Debug, Clone, PartialEq)]
pub enum RowFilter {
    Where(Args),
    All(Vec<RowFilter>),
    Any(Vec<RowFilter>),
}

impl RowFilter {
    /// The filter for `user` as JSON, for a channel name: principals whose rules give the same rows share a channel.
    pub fn to_json(&self, user: Option<&User>) -> Json {
        let list = |filters: &[RowFilter]| Json::Array(filters.iter().map(|f| f.to_json(user)).collect());
        match self {
            RowFilter::Where(args) => Json::Object(user.map_or_else(|| args.clone(), |u| substitute(args, u))),
            RowFilter::All(all) => Json::Object(Args::from_iter([("all".to_owned(), list(all))])),
            RowFilter::Any(any) => Json::Object(Args::from_iter([("any".to_owned(), list(any))])),
        }
    }
}

/// Why a rule refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Only signed-in users may.
    SignIn,
    /// Only users with this role may.
    Role(String),
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::SignIn => f.write_str("sign in first"),
            Denied::Role(role) => write!(f, "only users with the role `{role}` may"),
        }
    }
}

impl Access {
    const ALL: Access = Access::Rows(None);
}

impl Rule {
    /// What this rule gives `user` (`None`: anonymous). A row filter that names no user variable applies to
    /// anonymous callers too (`{ public = true }`); one that does admits signed-in users only.
    pub fn resolve(&self, user: Option<&User>) -> Access {
        match self {
            Rule::Public => Access::ALL,
            Rule::Authenticated => match user {
                Some(_) => Access::ALL,
                None => Access::Denied(Denied::SignIn),
            },
            Rule::Role(role) => match user {
                Some(u) if u.has_role(role) => Access::ALL,
                Some(_) => Access::Denied(Denied::Role(role.clone())),
                None => Access::Denied(Denied::SignIn),
            },
            Rule::Rows(filter) => match user {
                Some(_) => Access::Rows(Some(RowFilter::Where(filter.clone()))),
                None if names_user(filter) => Access::Denied(Denied::SignIn),
                None => Access::Rows(Some(RowFilter::Where(filter.clone()))),
            },
            Rule::All(rules) => {
                let mut filters = Vec::new();
                for rule in rules {
                    match rule.resolve(user) {
                        Access::Denied(why) => return Access::Denied(why),
                        Access::Rows(Some(filter)) => filters.push(filter),
                        Access::Rows(None) => {}
                    }
                }
                Access::Rows(joined(filters, RowFilter::All))
            }
            Rule::Any(rules) => {
                let mut filters = Vec::new();
                let mut first_denial = None;
                for rule in rules {
                    match rule.resolve(user) {
                        Access::Rows(None) => return Access::ALL,
                        Access::Rows(Some(filter)) => filters.push(filter),
                        Access::Denied(why) => first_denial = first_denial.or(Some(why)),
                    }
                }
                match joined(filters, RowFilter::Any) {
                    Some(filter) => Access::Rows(Some(filter)),
                    None => Access::Denied(first_denial.unwrap_or(Denied::SignIn)),
                }
            }
        }
    }

    /// The rule's row filters (user variables unreplaced), for checking against the model.
    pub fn row_filters(&self) -> Vec<&Args> {
        match self {
            Rule::Public | Rule::Authenticated | Rule::Role(_) => Vec::new(),
            Rule::Rows(filter) => vec![filter],
            Rule::All(rules) | Rule::Any(rules) => rules.iter().flat_map(Rule::row_filters).collect(),
        }
    }

    /// Reads a rule as `drakon.toml` writes it (as JSON): `"public"`, `"authenticated"`, `{ role = "staff" }`,
    /// `{ filter = { owner = "$user.id" } }`, `{ any = [...] }`, `{ all = [...] }`.
    pub fn from_json(value: &Json) -> Result<Rule, String> {
        const SHAPES: &str = "a rule is \"public\", \"authenticated\", { role = \"…\" }, { filter = { … } }, \
                              { any = [ … ] } or { all = [ … ] }";
        match value {
            Json::String(s) if s == "public" => Ok(Rule::Public),
            Json::String(s) if s == "authenticated" => Ok(Rule::Authenticated),
            Json::Object(table) if table.len() == 1 => {
                let (key, inner) = table.iter().next().expect("one entry");
                match (key.as_str(), inner) {
                    ("role", Json::String(role)) if !role.is_empty() => Ok(Rule::Role(role.clone())),
                    ("filter", Json::Object(filter)) if !filter.is_empty() => Ok(Rule::Rows(filter.clone())),
                    ("any" | "all", Json::Array(rules)) if !rules.is_empty() => {
                        let rules = rules.iter().map(Rule::from_json).collect::<Result<Vec<_>, _>>()?;
                        Ok(if key == "any" { Rule::Any(rules) } else { Rule::All(rules) })
                    }
                    _ => Err(format!("`{key}` = {inner}: {SHAPES}")),
                }
            }
            other => Err(format!("{other}: {SHAPES}")),
        }
    }
}

/// One filter as it is, several joined by `join`, none as `None`.
fn joined(mut filters: Vec<RowFilter>, join: fn(Vec<RowFilter>) -> RowFilter) -> Option<RowFilter> {
    match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(join(filters)),
    }
}

/// Whether a rule's filter names a user variable.
fn names_user(filter: &Args) -> bool {
    filter.values().any(|v| match v {
        Json::String(s) => s.contains(USER_ID),
        Json::Array(items) => items.iter().any(|i| i.as_str().is_some_and(|s| s.contains(USER_ID))),
        _ => false,
    })
}

/// `filter` with every `$user.id` in its text values (alone, as in `"$user.id"`, or within a longer text, as in
/// `"user.$user.id"`; in a list too) replaced by `user`'s id.
pub fn substitute(filter: &Args, user: &User) -> Args {
    let text = |s: &str| Json::String(s.replace(USER_ID, &user.id));
    filter
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Json::String(s) => text(s),
                Json::Array(items) => {
                    Json::Array(items.iter().map(|v| v.as_str().map_or_else(|| v.clone(), text)).collect())
                }
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect()
}

/// The lookups a channel route's rule filters may use: they speak of the channel's `name`.
pub const CHANNEL_LOOKUPS: [&str; 5] = ["name", "name__in", "name__startswith", "name__endswith", "name__contains"];

impl Rule {
    /// Whether the rule lets `user` subscribe to the plain channel `name`. A channel route's row filters speak of
    /// the channel's name (`{ name = "user.$user.id" }`, `{ name__startswith = "room." }`; see
    /// [`CHANNEL_LOOKUPS`]); a name no filter admits is refused like a row the caller may not touch.
    pub fn allows_channel(&self, user: Option<&User>, name: &str) -> Result<(), String> {
        match self.resolve(user) {
            Access::Denied(why) => Err(why.to_string()),
            Access::Rows(None) => Ok(()),
            Access::Rows(Some(filter)) if filter.admits_name(user, name) => Ok(()),
            Access::Rows(Some(_)) => Err(format!("channel `{name}` is not yours to subscribe to")),
        }
    }

    /// Problems with the rule as a channel route's: lookups other than [`CHANNEL_LOOKUPS`], values not text.
    pub fn channel_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for filter in self.row_filters() {
            for (key, value) in filter {
                if !CHANNEL_LOOKUPS.contains(&key.as_str()) {
                    problems.push(format!(
                        "`{key}`: a channel route's rules filter on the channel's name: {}",
                        CHANNEL_LOOKUPS.join(", ")
                    ));
                    continue;
                }
                let texts = match value {
                    Json::Array(items) if key == "name__in" => items.iter().all(Json::is_string),
                    Json::String(_) => key != "name__in",
                    _ => false,
                };
                if !texts {
                    let shape = if key == "name__in" { "a list of texts" } else { "a text" };
                    problems.push(format!("`{key}` takes {shape}, got {value}"));
                }
            }
        }
        problems
    }
}

impl RowFilter {
    /// Whether the channel `name` meets this filter of a channel route's rule, for `user`.
    fn admits_name(&self, user: Option<&User>, name: &str) -> bool {
        match self {
            RowFilter::All(all) => all.iter().all(|f| f.admits_name(user, name)),
            RowFilter::Any(any) => any.iter().any(|f| f.admits_name(user, name)),
            RowFilter::Where(args) => {
                let args = user.map_or_else(|| args.clone(), |u| substitute(args, u));
                args.iter().all(|(key, value)| {
                    let text = value.as_str().unwrap_or_default();
                    match key.as_str() {
                        "name" => name == text,
                        "name__in" => value.as_array().is_some_and(|items| items.iter().any(|i| i == name)),
                        "name__startswith" => name.starts_with(text),
                        "name__endswith" => name.ends_with(text),
                        "name__contains" => name.contains(text),
                        _ => false,
                    }
                })
            }
        }
    }
}

/// Who a session acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Anyone: what `public` rules allow.
    Anonymous,
    /// Whoever holds the admin secret: also the `admin:<model>` routes, and every rule allows.
    Admin,
    /// A signed-in user.
    User(Arc<User>),
}

impl Principal {
    /// The user, when signed in.
    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::User(user) => Some(user),
            _ => None,
        }
    }
}

#[cfg(test)]
mod channel_tests {
    use serde_json::json;

    use super::*;

    fn user(id: &str) -> User {
        User { id: id.into(), roles: Vec::new(), info: Json::Null, expires: None }
    }

    #[test]
    fn channel_rules_admit_the_names_their_filters_allow_with_the_users_id_in_them() {
        let rule = Rule::from_json(&json!({"any": [
            {"filter": {"name": "user.$user.id"}},
            {"all": ["authenticated", {"filter": {"name__startswith": "room."}}]},
            {"filter": {"name__in": ["lobby", "news"]}},
        ]}))
        .unwrap();
        assert!(rule.channel_problems().is_empty(), "{:?}", rule.channel_problems());
        let (alice, bob) = (user("alice"), user("bob"));
        let table = [
            (Some(&alice), "user.alice", true),
            (Some(&bob), "user.alice", false),
            (Some(&alice), "user.alice.x", false),
            (Some(&alice), "room.1", true),
            (None, "room.1", false),
            (None, "lobby", true),
            (None, "user.alice", false),
            (None, "user.$user.id", false),
        ];
        for (who, name, allowed) in table {
            assert_eq!(rule.allows_channel(who, name).is_ok(), allowed, "{who:?} on {name}");
        }
        let bad = Rule::from_json(&json!({"filter": {"owner": "$user.id", "name__in": "x"}})).unwrap();
        assert_eq!(bad.channel_problems().len(), 2, "{:?}", bad.channel_problems());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn user(id: &str, roles: &[&str]) -> User {
        User { id: id.into(), roles: roles.iter().map(|r| r.to_string()).collect(), info: Json::Null, expires: None }
    }

    fn rule(value: Json) -> Rule {
        Rule::from_json(&value).expect("a rule")
    }

    fn rows(value: Json) -> Access {
        Access::Rows(Some(RowFilter::Where(value.as_object().expect("an object").clone())))
    }

    #[test]
    fn each_rule_resolves_per_principal() {
        let (alice, staff) = (user("7", &[]), user("9", &["staff"]));
        let owner = json!({"filter": {"owner": "$user.id"}});
        let table = [
            (json!("public"), None, Access::ALL),
            (json!("authenticated"), None, Access::Denied(Denied::SignIn)),
            (json!("authenticated"), Some(&alice), Access::ALL),
            (json!({"role": "staff"}), Some(&alice), Access::Denied(Denied::Role("staff".into()))),
            (json!({"role": "staff"}), Some(&staff), Access::ALL),
            (owner.clone(), None, Access::Denied(Denied::SignIn)),
            (owner.clone(), Some(&alice), rows(json!({"owner": "$user.id"}))),
            (json!({"any": [{"role": "staff"}, owner.clone()]}), Some(&staff), Access::ALL),
            (json!({"any": [{"role": "staff"}, owner.clone()]}), Some(&alice), rows(json!({"owner": "$user.id"}))),
            (json!({"any": [{"role": "staff"}, owner.clone()]}), None, Access::Denied(Denied::SignIn)),
            (
                json!({"all": [owner.clone(), {"filter": {"done": false, "id__in": [1, "$user.id"]}}]}),
                Some(&alice),
                Access::Rows(Some(RowFilter::All(vec![
                    RowFilter::Where(json!({"owner": "$user.id"}).as_object().unwrap().clone()),
                    RowFilter::Where(json!({"done": false, "id__in": [1, "$user.id"]}).as_object().unwrap().clone()),
                ]))),
            ),
            (
                json!({"all": ["authenticated", {"role": "staff"}]}),
                Some(&alice),
                Access::Denied(Denied::Role("staff".into())),
            ),
            // A filter without user variables admits anonymous callers; `any` of two filters is their OR.
            (json!({"filter": {"public": true}}), None, rows(json!({"public": true}))),
            (json!({"any": [{"filter": {"public": true}}, owner.clone()]}), None, rows(json!({"public": true}))),
            (
                json!({"any": [{"filter": {"public": true}}, owner.clone()]}),
                Some(&alice),
                Access::Rows(Some(RowFilter::Any(vec![
                    RowFilter::Where(json!({"public": true}).as_object().unwrap().clone()),
                    RowFilter::Where(json!({"owner": "$user.id"}).as_object().unwrap().clone()),
                ]))),
            ),
        ];
        for (given, who, want) in table {
            assert_eq!(rule(given.clone()).resolve(who), want, "{given} for {who:?}");
        }
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [json!("everyone"), json!({"role": ""}), json!({"filter": {}}), json!({"any": []}), json!(3)] {
            assert!(Rule::from_json(&bad).is_err(), "{bad}");
        }
        let nested = rule(json!({"any": [{"filter": {"a": 1}}, {"all": ["authenticated", {"filter": {"b": 1}}]}]}));
        assert_eq!(nested.row_filters().len(), 2);
        let Access::Rows(Some(rows)) = nested.resolve(Some(&user("7", &[]))) else { panic!("allowed") };
        // `all` of one filter is that filter.
        assert_eq!(rows.to_json(None), json!({"any": [{"a": 1}, {"b": 1}]}));
    }
}
