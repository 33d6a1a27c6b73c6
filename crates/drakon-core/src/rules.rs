//! Who may do what on a route: identities ([`User`]) and the per-verb rules of a model route ([`Rules`]).
//!
//! A rule is `public`, `authenticated`, a role, a filter over the row with user variables (`{ owner = "$user.id" }`),
//! or `any` / `all` of rules. For one principal a rule resolves to an [`Access`]: denied, or the rows it may touch
//! as filter arguments. The engine ANDs those into the client's filter wherever the verb reads or writes, so a rule
//! means what a filter means, in SQL and in memory, and a subscription under a row rule is a channel of its own,
//! indexed like any other filter (a write for one user costs that user's channels, not everyone's).
//!
//! `any` may hold at most one branch with a row filter (two would need an OR of filters, which channels cannot
//! express yet); [`Rule::check`] says so when the schema is checked.

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
    /// The rows matching every one of these filters (none: every row).
    Rows(Vec<Args>),
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
    const ALL: Access = Access::Rows(Vec::new());
}

impl Rule {
    /// What this rule gives `user` (`None`: anonymous).
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
                Some(u) => Access::Rows(vec![substitute(filter, u)]),
                None => Access::Denied(Denied::SignIn),
            },
            Rule::All(rules) => {
                let mut filters = Vec::new();
                for rule in rules {
                    match rule.resolve(user) {
                        Access::Denied(why) => return Access::Denied(why),
                        Access::Rows(more) => filters.extend(more),
                    }
                }
                Access::Rows(filters)
            }
            Rule::Any(rules) => {
                let mut narrowest: Option<Access> = None;
                let mut first_denial = None;
                for rule in rules {
                    match rule.resolve(user) {
                        Access::Rows(filters) if filters.is_empty() => return Access::ALL,
                        allowed @ Access::Rows(_) => narrowest = narrowest.or(Some(allowed)),
                        Access::Denied(why) => first_denial = first_denial.or(Some(why)),
                    }
                }
                narrowest.unwrap_or(Access::Denied(first_denial.unwrap_or(Denied::SignIn)))
            }
        }
    }

    /// How many of this rule's branches under an `any` carry a row filter; `check` refuses more than one.
    fn has_rows(&self) -> bool {
        match self {
            Rule::Rows(_) => true,
            Rule::Any(rules) | Rule::All(rules) => rules.iter().any(Rule::has_rows),
            _ => false,
        }
    }

    /// The rule's row filters, with `$user.id` standing for a sample id, for checking against the model; and a
    /// problem with the rule's shape.
    pub fn check(&self) -> Result<Vec<&Args>, String> {
        let mut filters = Vec::new();
        self.collect(&mut filters)?;
        Ok(filters)
    }

    fn collect<'a>(&'a self, filters: &mut Vec<&'a Args>) -> Result<(), String> {
        match self {
            Rule::Public | Rule::Authenticated | Rule::Role(_) => Ok(()),
            Rule::Rows(filter) => {
                filters.push(filter);
                Ok(())
            }
            Rule::All(rules) => rules.iter().try_for_each(|r| r.collect(filters)),
            Rule::Any(rules) => {
                if rules.iter().filter(|r| r.has_rows()).count() > 1 {
                    return Err("`any` may hold at most one rule with a row filter: drakon cannot yet combine two \
                                row filters with OR"
                        .into());
                }
                rules.iter().try_for_each(|r| r.collect(filters))
            }
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

/// `filter` with every `"$user.id"` value (alone or in a list) replaced by `user`'s id.
pub fn substitute(filter: &Args, user: &User) -> Args {
    let id = || Json::String(user.id.clone());
    filter
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Json::String(s) if s == USER_ID => id(),
                Json::Array(items) => {
                    Json::Array(items.iter().map(|v| if v == USER_ID { id() } else { v.clone() }).collect())
                }
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect()
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
mod tests {
    use serde_json::json;

    use super::*;

    fn user(id: &str, roles: &[&str]) -> User {
        User { id: id.into(), roles: roles.iter().map(|r| r.to_string()).collect(), info: Json::Null }
    }

    fn rule(value: Json) -> Rule {
        Rule::from_json(&value).expect("a rule")
    }

    fn rows(value: Json) -> Access {
        Access::Rows(vec![value.as_object().expect("an object").clone()])
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
            (owner.clone(), Some(&alice), rows(json!({"owner": "7"}))),
            (json!({"any": [{"role": "staff"}, owner.clone()]}), Some(&staff), Access::ALL),
            (json!({"any": [{"role": "staff"}, owner.clone()]}), Some(&alice), rows(json!({"owner": "7"}))),
            (json!({"any": [{"role": "staff"}, owner.clone()]}), None, Access::Denied(Denied::SignIn)),
            (
                json!({"all": [owner.clone(), {"filter": {"done": false, "id__in": [1, "$user.id"]}}]}),
                Some(&alice),
                Access::Rows(vec![
                    json!({"owner": "7"}).as_object().unwrap().clone(),
                    json!({"done": false, "id__in": [1, "7"]}).as_object().unwrap().clone(),
                ]),
            ),
            (
                json!({"all": ["authenticated", {"role": "staff"}]}),
                Some(&alice),
                Access::Denied(Denied::Role("staff".into())),
            ),
        ];
        for (given, who, want) in table {
            assert_eq!(rule(given.clone()).resolve(who), want, "{given} for {who:?}");
        }
    }

    #[test]
    fn malformed_rules_and_two_row_filters_under_any_are_refused() {
        for bad in [json!("everyone"), json!({"role": ""}), json!({"filter": {}}), json!({"any": []}), json!(3)] {
            assert!(Rule::from_json(&bad).is_err(), "{bad}");
        }
        let two = rule(json!({"any": [{"filter": {"a": 1}}, {"all": ["authenticated", {"filter": {"b": 1}}]}]}));
        assert!(two.check().unwrap_err().contains("at most one"));
        let one = rule(json!({"any": [{"role": "staff"}, {"all": ["authenticated", {"filter": {"b": 1}}]}]}));
        assert_eq!(one.check().unwrap().len(), 1);
    }
}
