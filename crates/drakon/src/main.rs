//! The `drakon` command: `drakon serve` runs an app from its `drakon.toml`, `drakon check` validates one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drakon::App;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "drakon", version, about = "Effortless real-time apps: declare models, every subscriber stays live")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app described by a config file.
    Serve {
        #[arg(long, short, env = "DRAKON_CONFIG", default_value = "drakon.toml")]
        config: PathBuf,
        /// Address to listen on; overrides `[server] bind`.
        #[arg(long, env = "DRAKON_BIND")]
        bind: Option<SocketAddr>,
    },
    /// Validate a config file and print every problem with its line.
    Check {
        #[arg(long, short, env = "DRAKON_CONFIG", default_value = "drakon.toml")]
        config: PathBuf,
    },
    /// Manage built-in users (`[auth] users = true`), in the database the config names.
    User {
        #[command(subcommand)]
        action: UserAction,
        #[arg(long, short, global = true, env = "DRAKON_CONFIG", default_value = "drakon.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user, or replace the one of that name (which ends its sessions). Asks for the password twice on a
    /// terminal; otherwise reads it from the first line of standard input.
    Add {
        name: String,
        /// A role to give the user (`staff` opens the admin page); repeat for more.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Set a user's password, keeping their roles; every session of theirs ends.
    Passwd { name: String },
    /// List users and their roles.
    List,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("DRAKON_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Check { config } => match App::load(&config) {
            Ok(app) => match app.config.schema.check() {
                Ok(checked) => {
                    let schema = checked.schema();
                    println!(
                        "{}: ok ({} models, {} routes)",
                        config.display(),
                        schema.models.len(),
                        schema.routes.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    for p in problems {
                        println!("{}: {p}", config.display());
                    }
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                println!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::User { action, config } => match user(action, &config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, bind } => {
            raise_open_file_limit();
            let app = match App::load(&config) {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let running = match app.start(bind).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            println!("{}", running.banner());
            match running.until_signal().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn user(action: UserAction, config: &std::path::Path) -> anyhow::Result<()> {
    let app = App::load(config)?;
    if !app.has_builtin_users() {
        anyhow::bail!("{} has no built-in users: add `users = true` to its [auth] table", config.display());
    }
    match action {
        UserAction::Add { name, roles } => {
            app.save_user(&name, &read_password()?, roles).await?;
            println!("user {name} saved");
        }
        UserAction::Passwd { name } => {
            app.set_password(&name, &read_password()?).await?;
            println!("password of {name} changed; their sessions have ended");
        }
        UserAction::List => {
            for (name, roles) in app.users().await? {
                println!("{name}\t{}", roles.join(","));
            }
        }
    }
    Ok(())
}

/// A password: asked for twice, unechoed, on a terminal; else the first line of standard input.
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let password = rpassword::prompt_password("password: ")?;
        if rpassword::prompt_password("again: ")? != password {
            anyhow::bail!("the two passwords differ");
        }
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Every connection is an open file, and the usual soft limit (1,024) would cap a node at about a thousand clients.
/// Like most servers, `drakon serve` raises its soft limit to the hard one the system allows, and says so.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else { return };
    // An unlimited hard limit still stops at the kernel's `fs.nr_open` for open files (1,048,576 by default).
    let target = limit.maximum.unwrap_or(1 << 20);
    if target <= soft {
        tracing::info!(open_files = soft, "open-file limit");
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }) {
        Ok(()) => tracing::info!(from = soft, to = target, "raised the open-file limit to the hard limit"),
        Err(e) => tracing::warn!(open_files = soft, error = %e, "cannot raise the open-file limit"),
    }
}
