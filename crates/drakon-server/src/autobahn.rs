//! An echo endpoint over drakon's own WebSocket implementation (the handshake and `wire`'s framing, with
//! `drakon_protocol::websocket`'s decoder), for the Autobahn test suite's server cases, which expect every message
//! back as it was sent. Built only with the `autobahn` feature; `scripts/autobahn.sh` runs the suite against it.

use std::future::poll_fn;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use drakon_protocol::websocket::{Message, Opcode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::wire::{Inbound, Wire, accept, refuse};

/// The largest message echoed: the suite's cases outside its performance series (9.*) stay far below it.
const MAX_MESSAGE: usize = 16 << 20;

/// Serves the echo endpoint at `/` until the process ends.
pub async fn serve_echo(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, Router::new().route("/", get(echo))).await
}

async fn echo(mut request: Request) -> Response {
    let (response, on_upgrade) = match accept(&mut request) {
        Ok(accepted) => accepted,
        Err(refusal) => return refuse(refusal),
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut wire = Wire::new(TokioIo::new(upgraded), MAX_MESSAGE, Bytes::new());
        loop {
            match poll_fn(|cx| wire.poll_message(cx)).await {
                Inbound::Message(Message::Text(text)) => wire.push_control(Opcode::Text, text.as_bytes()),
                Inbound::Message(Message::Binary(data)) => wire.push_control(Opcode::Binary, &data),
                Inbound::Message(Message::Ping(payload)) => wire.push_control(Opcode::Pong, &payload),
                Inbound::Message(Message::Pong(_)) => continue,
                Inbound::Message(Message::Close(close)) => {
                    wire.answer_close(close.map(|(code, _)| code)).await;
                    return;
                }
                Inbound::Invalid(e) => {
                    wire.close(e.close_code(), e.reason(), true).await;
                    return;
                }
                Inbound::Gone => return,
            }
            if wire.write_all_out().await.is_err() {
                return;
            }
        }
    });
    response
}
