//! `drakon-bench floor-server`: the least any server can do for the `fanout` and `idle` scenarios, measured in the
//! same run as drakon and the Node baseline so that their figures have a floor to be read against.
//!
//! It speaks what `bench/peers/broadcast.mjs` speaks and nothing more: WebSocket at `/data/websocket`, where a
//! `subscribe` request adds the connection to channel `args.name` and gets a reply shaped like drakon's (any other
//! request gets an error reply); `POST /api/publish` with `{"channel","data"}` and the api key from
//! `DRAKON_API_KEY`; `floor listening on http://ADDR` on stdout once listening. A publish encodes the frame
//! `{"channel","data"}` (WebSocket header + payload) once and writes it to every subscriber with one non-blocking
//! `try_write` each, in a plain loop on this one thread. What a socket does not take at once waits in that
//! connection's backlog, and its task writes the rest when the socket is writable again: nothing is dropped, and a
//! slow reader holds up no one else. No store, no filters, no queue bounds, no heartbeats, no locks.

pub mod frame;
mod http;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use frame::Decoded;
use http::Head;

/// Where the WebSocket endpoint is, as in drakon and the baseline.
const WS_PATH: &str = "/data/websocket";

/// The listen backlog: Node's default, which the baseline runs with.
const BACKLOG: u32 = 511;

/// Runs the server until it is killed.
pub fn run(bind: SocketAddr) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(bind))
}

async fn serve(bind: SocketAddr) -> Result<()> {
    let socket = if bind.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(bind).with_context(|| format!("binding {bind}"))?;
    let listener = socket.listen(BACKLOG)?;
    println!("floor listening on http://{}", listener.local_addr()?);
    let hub = Rc::new(Hub { api_key: std::env::var("DRAKON_API_KEY").unwrap_or_default(), ..Hub::default() });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::task::spawn_local(connection(hub.clone(), stream));
            }
            Err(e) => {
                // Out of file descriptors, most likely: the clients retry, and some close soon.
                eprintln!("floor: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The channels and their subscribers.
#[derive(Debug, Default)]
struct Hub {
    api_key: String,
    /// Channel → subscribers, in the order they subscribed. A `Vec` keeps the publish loop a walk over a slice;
    /// removal is linear, paid only when a connection closes.
    channels: RefCell<HashMap<String, Vec<Rc<Conn>>>>,
}

impl Hub {
    /// Answers a plain HTTP request: `(status, JSON body)`.
    fn request(&self, head: &Head, body: &[u8]) -> (u16, &'static str) {
        if head.method != "POST" || head.path != "/api/publish" {
            return (404, r#"{"code":"not_found"}"#);
        }
        let bearer = head.header("authorization").and_then(|v| v.strip_prefix("Bearer "));
        if self.api_key.is_empty() || bearer != Some(self.api_key.as_str()) {
            return (403, r#"{"code":"permission_denied"}"#);
        }
        let Some((channel, text)) = publish_text(body) else { return (400, r#"{"code":"bad_json"}"#) };
        if let Some(channel) = channel {
            self.publish(&channel, &text);
        }
        (200, r#"{"ok":true}"#)
    }

    /// The fan-out: one frame, one `try_write` per subscriber.
    fn publish(&self, channel: &str, text: &str) {
        let channels = self.channels.borrow();
        let Some(subscribers) = channels.get(channel) else { return };
        let frame: Rc<[u8]> = frame::encode(frame::TEXT, text.as_bytes()).into();
        for conn in subscribers {
            conn.send(&frame);
        }
    }

    /// Answers a WebSocket text frame, joining `conn` to the channel it subscribes to.
    fn on_request(&self, conn: &Rc<Conn>, request: &[u8], mine: &mut Vec<String>) {
        let (join, reply) = answer(request);
        if let Some(name) = join
            && !mine.contains(&name)
        {
            self.channels.borrow_mut().entry(name.clone()).or_default().push(conn.clone());
            mine.push(name);
        }
        conn.send(&frame::encode(frame::TEXT, reply.as_bytes()).into());
    }

    fn leave(&self, conn: &Rc<Conn>, mine: &[String]) {
        let mut channels = self.channels.borrow_mut();
        for name in mine {
            if let Some(subscribers) = channels.get_mut(name) {
                subscribers.retain(|c| !Rc::ptr_eq(c, conn));
                if subscribers.is_empty() {
                    channels.remove(name);
                }
            }
        }
    }
}

/// The channel (when it is a string) and the frame text `{"channel","data"}` of a publish body, as the baseline's
/// `JSON.stringify` gives it; `None` when the body is not JSON.
fn publish_text(body: &[u8]) -> Option<(Option<String>, String)> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let channel = body.get("channel");
    let text = json!({"channel": channel, "data": body.get("data").unwrap_or(&Value::Null)}).to_string();
    Some((channel.and_then(Value::as_str).map(str::to_owned), text))
}

/// What a WebSocket text frame asks for: the channel to join when it is a valid `subscribe`, and the reply.
fn answer(request: &[u8]) -> (Option<String>, String) {
    let Ok(request) = serde_json::from_slice::<Value>(request) else {
        let data = json!({"code": "bad_json", "message": "frame is not valid JSON"});
        return (None, reply(Value::Null, &Value::from(""), "error", data, None));
    };
    let callback = match request.get("callbackname") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => Value::from(s.as_str()),
        Some(other) => Value::from(other.to_string()),
    };
    let verb = request.get("verb").cloned().unwrap_or_else(|| Value::from(""));
    let args = request.get("args");
    let name = args.and_then(|a| a.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty());
    match name {
        Some(name) if verb == "subscribe" => {
            let local =
                args.and_then(|a| a.get("channel")).filter(|c| !c.is_null()).cloned().unwrap_or_else(|| name.into());
            let channel_data = json!({"local_channel": local, "remote_channels": [name], "action": "subscribe"});
            (Some(name.to_owned()), reply(callback, &verb, "success", Value::from("subscribed"), Some(channel_data)))
        }
        _ => {
            let data = json!({"code": "unknown_verb", "message": "the baseline only knows subscribe"});
            (None, reply(callback, &verb, "error", data, None))
        }
    }
}

fn reply(callback: Value, verb: &Value, state: &str, data: Value, channel_data: Option<Value>) -> String {
    let mut out = json!({"data": data, "context": {"client_callback_name": callback, "verb": verb, "state": state}});
    if let Some(channel_data) = channel_data {
        out["channel_data"] = channel_data;
    }
    out.to_string()
}

/// One upgraded connection, shared by its task (which reads, and writes what is left over) and the hub (which
/// writes while publishing).
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    /// What the socket did not take at once, oldest first: a frame and how many of its bytes are written.
    backlog: RefCell<VecDeque<(Rc<[u8]>, usize)>>,
    /// Wakes the connection's task when the backlog stops being empty.
    wake: Notify,
    /// A write failed: the connection is dead, and its task ends it.
    broken: Cell<bool>,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn { stream, backlog: RefCell::default(), wake: Notify::new(), broken: Cell::new(false) }
    }

    /// Writes a whole frame with one non-blocking write when nothing is waiting before it; whatever is left waits
    /// in the backlog for the connection's task.
    fn send(&self, frame: &Rc<[u8]>) {
        if self.broken.get() {
            return;
        }
        let mut backlog = self.backlog.borrow_mut();
        if !backlog.is_empty() {
            backlog.push_back((frame.clone(), 0));
            return;
        }
        match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => backlog.push_back((frame.clone(), n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => backlog.push_back((frame.clone(), 0)),
            Err(_) => {
                self.broken.set(true);
                self.wake.notify_one();
                return;
            }
        }
        self.wake.notify_one();
    }

    /// Writes as much of the backlog as the socket takes now.
    fn flush(&self) -> io::Result<()> {
        let mut backlog = self.backlog.borrow_mut();
        while let Some((frame, written)) = backlog.front_mut() {
            match self.stream.try_write(&frame[*written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *written += n;
                    if *written == frame.len() {
                        backlog.pop_front();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn waiting(&self) -> bool {
        !self.backlog.borrow().is_empty()
    }
}

async fn connection(hub: Rc<Hub>, stream: TcpStream) {
    // A client that goes away mid-request is nothing to report: the baseline ignores those errors too.
    let _ = serve_connection(&hub, stream).await;
}

/// HTTP requests on a keep-alive connection, until one is a WebSocket upgrade.
async fn serve_connection(hub: &Hub, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&stream, &mut buf).await? else { return Ok(()) };
        buf.drain(..head.len);
        if head.is_upgrade() {
            return upgrade(hub, stream, &head, buf).await;
        }
        let length = head.content_length().map_err(|why| io::Error::new(ErrorKind::InvalidData, why))?;
        while buf.len() < length {
            if read_more(&stream, &mut buf).await? == 0 {
                return Ok(());
            }
        }
        let (status, body) = hub.request(&head, &buf[..length]);
        buf.drain(..length);
        stream.write_all(&http::response(status, body)).await?;
    }
}

async fn upgrade(hub: &Hub, mut stream: TcpStream, head: &Head, buf: Vec<u8>) -> io::Result<()> {
    let key = head.header("sec-websocket-key");
    let (true, Some(key)) = (head.path == WS_PATH, key) else {
        return stream.write_all(&http::response(400, r#"{"code":"bad_request"}"#)).await;
    };
    let accept = derive_accept_key(key.as_bytes());
    let switching = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    stream.write_all(switching.as_bytes()).await?;
    let conn = Rc::new(Conn::new(stream));
    let mut mine = Vec::new();
    let ended = websocket(hub, &conn, buf, &mut mine).await;
    hub.leave(&conn, &mine);
    ended
}

/// The connection's task: reads and answers client frames, and writes the backlog whenever the socket takes more.
async fn websocket(hub: &Hub, conn: &Rc<Conn>, mut buf: Vec<u8>, mine: &mut Vec<String>) -> io::Result<()> {
    loop {
        loop {
            let (f, used) = match frame::decode(&buf) {
                Decoded::Incomplete => break,
                Decoded::Frame(f, used) => (f, used),
                Decoded::Invalid(why) => {
                    let mut payload = 1002u16.to_be_bytes().to_vec();
                    payload.extend_from_slice(why.as_bytes());
                    conn.send(&frame::encode(frame::CLOSE, &payload).into());
                    return conn.flush();
                }
            };
            buf.drain(..used);
            match f.opcode {
                frame::TEXT => hub.on_request(conn, &f.payload, mine),
                // The baseline parses a binary frame as empty text, which is not JSON.
                frame::BINARY => hub.on_request(conn, b"", mine),
                frame::PING => conn.send(&frame::encode(frame::PONG, &f.payload).into()),
                frame::CLOSE => {
                    conn.send(&frame::encode(frame::CLOSE, &f.payload[..f.payload.len().min(2)]).into());
                    return conn.flush();
                }
                _ => {}
            }
        }
        if conn.broken.get() {
            return Ok(());
        }
        let waiting = conn.waiting();
        tokio::select! {
            ready = conn.stream.readable() => {
                ready?;
                match read_into(&conn.stream, &mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            ready = conn.stream.writable(), if waiting => {
                ready?;
                conn.flush()?;
            }
            // The hub queued something (or found the socket dead) while this task waited without `writable`.
            () = conn.wake.notified() => {}
        }
    }
}

/// Reads what the socket holds now (at most 4 KiB) onto the end of `buf`. A plain function, so that the scratch
/// array lives on the stack rather than in every connection's future.
fn read_into(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Waits for bytes and appends them to `buf`; 0 at the end of the stream.
async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match read_into(stream, buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            done => return done,
        }
    }
}

/// The next request head, or `None` when the client closed between requests.
async fn read_head(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Head>> {
    loop {
        match http::parse(buf) {
            Some(head) => return head.map(Some).map_err(|why| io::Error::new(ErrorKind::InvalidData, why)),
            None => {
                if read_more(stream, buf).await? == 0 {
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::Subscribe;

    #[test]
    fn answers_the_generators_subscribe_as_the_baseline_does() {
        let request = Subscribe::Channel { route: "bench".into(), name: "bench.fan".into() }.frames(0, false);
        let (join, reply) = answer(request[0].as_bytes());
        assert_eq!(join.as_deref(), Some("bench.fan"));
        assert_eq!(
            reply,
            r#"{"data":"subscribed","context":{"client_callback_name":"s0","verb":"subscribe","state":"success"},"channel_data":{"local_channel":"c","remote_channels":["bench.fan"],"action":"subscribe"}}"#
        );
    }

    #[test]
    fn refuses_other_requests() {
        let table: &[(&str, &str)] = &[
            (
                "not json",
                r#"{"data":{"code":"bad_json","message":"frame is not valid JSON"},"context":{"client_callback_name":null,"verb":"","state":"error"}}"#,
            ),
            (
                r#"{"route":"item","verb":"create","args":{"grp":1},"callbackname":7}"#,
                r#"{"data":{"code":"unknown_verb","message":"the baseline only knows subscribe"},"context":{"client_callback_name":"7","verb":"create","state":"error"}}"#,
            ),
            (
                r#"{"verb":"subscribe","args":{"name":""}}"#,
                r#"{"data":{"code":"unknown_verb","message":"the baseline only knows subscribe"},"context":{"client_callback_name":null,"verb":"subscribe","state":"error"}}"#,
            ),
        ];
        for (request, want) in table {
            assert_eq!(answer(request.as_bytes()), (None, (*want).to_owned()), "{request}");
        }
    }

    #[test]
    fn publishes_the_body_as_the_baseline_frames_it() {
        let data = crate::stamp::payload(1_764_226_000_123_456, 3, 100);
        let body = format!(r#"{{"channel":"bench.fan","data":{data}}}"#);
        assert_eq!(publish_text(body.as_bytes()), Some((Some("bench.fan".to_owned()), body)));
        assert_eq!(
            publish_text(br#"{"data":1}"#),
            Some((None, r#"{"channel":null,"data":1}"#.to_owned())),
            "no channel: nothing is sent"
        );
        assert_eq!(publish_text(b"{"), None);
    }

    #[test]
    fn publish_requests_need_the_api_key() {
        let hub = Hub { api_key: "k".into(), ..Hub::default() };
        let head = |raw: &str| http::parse(raw.as_bytes()).unwrap().unwrap();
        let body = br#"{"channel":"bench.fan","data":{}}"#;
        let table: &[(&str, &[u8], u16)] = &[
            ("POST /api/publish HTTP/1.1\r\nauthorization: Bearer k\r\n\r\n", body, 200),
            ("POST /api/publish HTTP/1.1\r\nauthorization: Bearer x\r\n\r\n", body, 403),
            ("POST /api/publish HTTP/1.1\r\n\r\n", body, 403),
            ("POST /api/publish HTTP/1.1\r\nauthorization: Bearer k\r\n\r\n", b"{", 400),
            ("GET /api/publish HTTP/1.1\r\nauthorization: Bearer k\r\n\r\n", body, 404),
        ];
        for (raw, body, status) in table {
            assert_eq!(hub.request(&head(raw), body).0, *status, "{raw:?}");
        }
        let keyless = Hub::default();
        assert_eq!(keyless.request(&head(table[0].0), body).0, 403, "no api key configured: publishing is refused");
    }

    /// A reader that does not keep up gets every byte, in order: what the socket does not take waits in the backlog.
    #[test]
    fn a_full_socket_keeps_the_rest_and_loses_nothing() {
        use tokio::io::AsyncReadExt;

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let conn = Conn::new(listener.accept().await.unwrap().0);
            // 16 MiB: more than loopback's socket buffers hold (4 MiB to send, a few hundred KiB to receive from
            // a reader that reads nothing), so part of it must wait.
            let frames: Vec<Rc<[u8]>> = (0..256u32).map(|i| vec![(i % 251) as u8; 64 * 1024].into()).collect();
            for f in &frames {
                conn.send(f);
            }
            assert!(conn.waiting(), "the socket took 16 MiB without a reader");
            let want: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
            let mut got = vec![0; want.len()];
            let read = client.read_exact(&mut got);
            let write = async {
                while conn.waiting() {
                    conn.stream.writable().await.unwrap();
                    conn.flush().unwrap();
                }
            };
            let (read, ()) = tokio::join!(read, write);
            read.unwrap();
            assert!(got == want, "every byte arrives, in order");
            assert!(!conn.broken.get());
        });
    }
}
