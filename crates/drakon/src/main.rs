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
