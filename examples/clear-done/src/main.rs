//! The todo app plus one verb written in Rust: `todo-list` `clear_done` deletes the list's done items.
//!
//! Run it like `drakon serve`: `cargo run -p drakon-example-clear-done -- serve --config examples/todo/drakon.toml`.
//! The verb writes through the engine's write path, so every deletion reaches subscribers like any other.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use drakon::{App, Args, ErrorCode, VerbContext, VerbError, custom_verb};
use serde_json::{Value, json};

/// `clear_done {"id": <list id>}` → `{"deleted": <count>}`.
async fn clear_done(ctx: VerbContext, args: Args) -> Result<Value, VerbError> {
    let Some(id) = args.get("id").and_then(Value::as_i64) else {
        return Err(VerbError::new(ErrorCode::InvalidArgs, "clear_done needs `id`, the list's id"));
    };
    // Reading through the route applies its rules: a list this route cannot see is not found.
    ctx.engine.call(&ctx.route, "get_single", Args::from_iter([("id".to_owned(), json!(id))])).await?;
    let filter = Args::from_iter([("todo_list".to_owned(), json!(id)), ("done".to_owned(), json!(true))]);
    let changes = ctx.engine.delete_where("todo_item", &filter).await?;
    Ok(json!({"deleted": changes.len()}))
}

fn parse_args() -> anyhow::Result<(PathBuf, Option<SocketAddr>)> {
    let mut args = std::env::args().skip(1);
    let mut config = PathBuf::from("examples/todo/drakon.toml");
    let mut bind = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "serve" => {}
            "--config" => config = args.next().context("--config needs a path")?.into(),
            "--bind" => bind = Some(args.next().context("--bind needs an address")?.parse()?),
            other => bail!("unknown argument {other}; usage: clear-done [serve] [--config PATH] [--bind ADDR]"),
        }
    }
    Ok((config, bind))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRAKON_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let (config, bind) = parse_args()?;
    let app = App::load(&config)?.custom_verb("todo-list", "clear_done", custom_verb(clear_done))?;
    let running = app.start(bind).await?;
    println!("{}", running.banner());
    running.until_signal().await
}
