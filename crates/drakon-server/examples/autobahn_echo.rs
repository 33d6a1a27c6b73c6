//! Echoes WebSocket messages with drakon's own WebSocket implementation, for the Autobahn test suite:
//! `cargo run -p drakon-server --features autobahn --example autobahn_echo -- 127.0.0.1:9001`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echoing WebSocket messages on ws://{addr}");
    drakon_server::autobahn::serve_echo(listener).await
}
