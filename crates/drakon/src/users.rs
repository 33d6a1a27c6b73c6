//! Built-in users from the command line (`drakon user add|passwd|list`) and the config's `initial_users`.

use std::sync::Arc;

use anyhow::{Context, bail};
use drakon_core::accounts::Accounts;
use drakon_core::config::InitialUser;
use drakon_core::{LocalBus, Store};

use crate::App;

/// The store's accounts, or why there are none.
pub(crate) fn accounts(store: &dyn Store) -> anyhow::Result<&dyn Accounts> {
    store.accounts().context("this store keeps no built-in users")
}

impl App {
    /// Opens the configured store on its own, without serving and without migrating the app's tables (for `drakon
    /// user`); drakon's own tables, the users' among them, are made on opening.
    pub async fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (local, _inbox) = LocalBus::new(1);
        crate::open_store(&self.config.server, local.sink()).await
    }

    /// Whether `[auth] users = true`.
    pub fn has_builtin_users(&self) -> bool {
        self.config.auth.as_ref().is_some_and(|auth| auth.users)
    }

    /// Creates or replaces the built-in user `name` (replacing ends its sessions).
    pub async fn save_user(&self, name: &str, password: &str, roles: Vec<String>) -> anyhow::Result<()> {
        let store = self.open_store().await?;
        let account = drakon_server::users::account(name, password, roles).map_err(anyhow::Error::msg)?;
        accounts(store.as_ref())?.save_account(&account).await?;
        Ok(())
    }

    /// Gives the existing user `name` a new password, keeping their roles; every session of theirs ends.
    pub async fn set_password(&self, name: &str, password: &str) -> anyhow::Result<()> {
        let store = self.open_store().await?;
        let accounts = accounts(store.as_ref())?;
        let Some(existing) = accounts.account(name).await? else { bail!("there is no user named `{name}`") };
        let mut account = drakon_server::users::account(name, password, existing.roles).map_err(anyhow::Error::msg)?;
        account.info = existing.info;
        accounts.save_account(&account).await?;
        Ok(())
    }

    /// Every built-in user's name and roles.
    pub async fn users(&self) -> anyhow::Result<Vec<(String, Vec<String>)>> {
        let store = self.open_store().await?;
        let all = accounts(store.as_ref())?.all_accounts().await?;
        Ok(all.into_iter().map(|a| (a.name, a.roles)).collect())
    }
}

/// Creates each of `initial` that has no account yet; existing accounts (and changed passwords) are left alone.
pub(crate) async fn create_initial(store: &dyn Store, initial: &[InitialUser]) -> anyhow::Result<()> {
    if initial.is_empty() {
        return Ok(());
    }
    let accounts = accounts(store)?;
    for user in initial {
        if accounts.account(&user.name).await?.is_some() {
            continue;
        }
        let account = drakon_server::users::account(&user.name, &user.password, user.roles.clone())
            .map_err(anyhow::Error::msg)?;
        accounts.save_account(&account).await?;
        tracing::warn!(
            user = %user.name,
            "created initial user from the config; its password is in drakon.toml: change it with `drakon user passwd`"
        );
    }
    Ok(())
}
