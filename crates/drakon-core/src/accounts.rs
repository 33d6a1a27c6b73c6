//! Built-in users, for apps without a backend of their own: accounts with password hashes, and login sessions.
//!
//! The store keeps both next to the app's rows (`_drakon_users`, `_drakon_sessions`), so every node sees the same
//! users and a session opened on one node is good on all. Nothing here hashes: callers hand in finished argon2id
//! hashes (PHC strings), and sessions are stored by a hash of their key, so a copy of the database lets nobody into
//! a live session. Accounts are never rows of a model: no route publishes them, and they never enter the change log.

use async_trait::async_trait;
use serde_json::Value as Json;

use crate::User;
use crate::store::StoreError;

/// One built-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The login name, which is also the user's id in rules (`$user.id`).
    pub name: String,
    /// The password's argon2id hash, as a PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    /// Public information given to whoever may see the user.
    pub info: Json,
}

impl Account {
    /// The user this account signs in as.
    pub fn user(&self) -> User {
        let info = match &self.info {
            Json::Null => serde_json::json!({"name": self.name}),
            info => info.clone(),
        };
        User { id: self.name.clone(), roles: self.roles.clone(), info, expires: None }
    }
}

/// Where built-in users and their sessions live.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// The account named `name`, if there is one.
    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError>;

    /// Every account, by name.
    async fn all_accounts(&self) -> Result<Vec<Account>, StoreError>;

    /// Creates the account, or replaces the one of the same name. Replacing ends all of its sessions (a new
    /// password logs out every browser that knew the old one).
    async fn save_account(&self, account: &Account) -> Result<(), StoreError>;

    /// Records a session of `name`, found again by `key_hash`, until `expires` (Unix seconds). Expired sessions
    /// are cleared out on the way.
    async fn open_session(&self, key_hash: &str, name: &str, expires: u64) -> Result<(), StoreError>;

    /// The account of the session `key_hash`, if it exists and has not expired at `now`.
    async fn session_account(&self, key_hash: &str, now: u64) -> Result<Option<Account>, StoreError>;

    /// Ends the session `key_hash` (nothing if there is none).
    async fn close_session(&self, key_hash: &str) -> Result<(), StoreError>;
}

/// The shortest password accepted for a built-in user.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Roles as stored: one text column, names separated by commas (role names hold no commas; see
/// [`valid_role`]).
pub fn join_roles(roles: &[String]) -> String {
    roles.join(",")
}

pub fn split_roles(stored: &str) -> Vec<String> {
    stored.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect()
}

/// Whether `name` may name a built-in user: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Whether `role` may name a role: 1 to 64 letters, digits, `_` or `-`.
pub fn valid_role(role: &str) -> bool {
    (1..=64).contains(&role.len()) && role.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_column_and_names_are_checked() {
        let roles = vec!["staff".to_owned(), "editor".to_owned()];
        assert_eq!(split_roles(&join_roles(&roles)), roles);
        assert!(split_roles("").is_empty());
        assert!(valid_name("alice") && valid_name("a.b-c_d@example.org"));
        assert!(!valid_name("") && !valid_name("al ice") && !valid_name(&"x".repeat(65)) && !valid_name("a,b"));
        assert!(valid_role("staff") && !valid_role("a,b") && !valid_role(""));
    }

    #[test]
    fn an_account_signs_in_as_its_name_with_its_roles() {
        let account = Account {
            name: "alice".into(),
            password_hash: "$argon2id$…".into(),
            roles: vec!["staff".into()],
            info: Json::Null,
        };
        let user = account.user();
        assert_eq!((user.id.as_str(), user.roles.as_slice()), ("alice", &["staff".to_owned()][..]));
        assert_eq!(user.info, serde_json::json!({"name": "alice"}));
        assert_eq!(user.expires, None);
    }
}
