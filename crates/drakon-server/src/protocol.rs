//! Protocols: how a session's messages look on the wire, whatever transport carries them.
//!
//! A protocol decodes a client's message into a typed request and encodes what the engine answers (a typed
//! [`Outcome`] or [`VerbError`]), errors that answer no request, its own heartbeat, and the hub's typed [`Event`]s
//! (as an [`Encoding`], so that an event is encoded once per protocol and its bytes shared by every recipient).
//! The engine and the hub know no wire format; a transport (the WebSocket in `socket`) moves the bytes a protocol
//! makes and owns its own keepalive and close codes.
//!
//! [`answer`] is the one request loop every transport runs a client's messages through.
//!
//! [`Native`] is drakon's protocol: SwampDragon's envelope with its bugs fixed, in `drakon_protocol`.

use bytes::Bytes;
use drakon_core::Principal;
use drakon_core::engine::{Outcome, Payload};

use crate::identity::{Identity, SERVER_ROUTE};
use drakon_core::{Encoding, Engine, Event, EventBody, Session, VerbError};
use drakon_protocol::{
    ChannelData, ClientFrame, ErrorBody, ErrorCode, ReplyContext, Request, State, encode_channel_message, encode_error,
    encode_heartbeat, encode_publication, encode_reply, parse_frame, publication_value,
};
use serde_json::{Value as Json, json};

/// What a client's text message turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Request(Request),
    /// The protocol's own keepalive: nothing to answer.
    Heartbeat,
    /// A message the protocol could not read, with the error reply that says why.
    Invalid(Bytes),
}

/// Who a reply answers: the parts of the request the reply repeats.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo<'a> {
    pub callbackname: Option<&'a str>,
    pub verb: &'a str,
    pub page: Option<u64>,
}

/// A session's wire format. Stateless: one value serves every session that speaks it.
pub trait Protocol: Encoding + 'static {
    /// Reads one text message.
    fn decode(&self, text: &str) -> Decoded;

    /// The reply to a request.
    fn reply(&self, to: ReplyTo<'_>, result: Result<Outcome, VerbError>) -> Bytes;

    /// An error that answers no request in particular (a message too large, a binary frame).
    fn refusal(&self, code: ErrorCode, message: &str) -> Bytes;

    /// The application-level heartbeat this protocol sends when it is enabled.
    fn heartbeat(&self) -> Bytes;

    /// Asks the client for a fresh token: the session's expires at `expires` (seconds since the Unix epoch).
    fn token_expiring(&self, expires: u64) -> Bytes;

    /// Tells the client whom the upgrade signed it in as (a cookie, `auth_url`, or a token on the URL), the same
    /// user an `auth` reply names.
    fn signed_in(&self, user: &drakon_core::User) -> Bytes;
}

/// What every transport does with one text message from a session's client: decode it with the session's
/// protocol, hand a request to the engine, and encode the reply; `None` when the message calls for none (the
/// protocol's heartbeat). A message longer than `max_bytes` is answered with `frame_too_large` and not read.
pub async fn answer(
    protocol: &dyn Protocol,
    engine: &Engine,
    session: &mut Session,
    gate: Gate<'_>,
    text: &str,
) -> Option<Bytes> {
    let Gate { identity, budget, per_second, max_bytes } = gate;
    if text.len() > max_bytes {
        return Some(protocol.refusal(ErrorCode::FrameTooLarge, &format!("frames may be at most {max_bytes} bytes")));
    }
    match protocol.decode(text) {
        Decoded::Heartbeat => None,
        Decoded::Request(Request { route, verb, args, callbackname, page }) => {
            let result = if !budget.take(per_second) {
                let message = format!("more than {per_second} requests a second; slow down");
                Err(VerbError::new(ErrorCode::RateLimited, message))
            } else if route == SERVER_ROUTE {
                server_verb(engine, identity, session, &verb, &args)
            } else {
                engine.handle(session, &route, &verb, args, page).await
            };
            Some(protocol.reply(ReplyTo { callbackname: callbackname.as_deref(), verb: &verb, page }, result))
        }
        Decoded::Invalid(reply) => Some(reply),
    }
}

/// What [`answer`] checks a message against before the engine sees it: its size, the connection's request budget,
/// and (for `auth`) the server's keys.
pub struct Gate<'a> {
    pub identity: Option<&'a Identity>,
    pub budget: &'a mut RateLimit,
    /// Requests a second the budget refills at.
    pub per_second: u32,
    pub max_bytes: usize,
}

/// A connection's request budget: a token bucket holding up to one second's worth, refilled continuously.
#[derive(Debug)]
/// Eight bytes, as it lives in every connection's task: the refill time is milliseconds on a process-wide clock, and
/// the rate is the server's, given to each call.
pub struct RateLimit {
    tokens: f32,
    refilled_ms: u32,
}

/// Milliseconds since the first call, wrapping every 49 days (elapsed times are taken with wrapping arithmetic): a
/// four-byte timestamp for what every connection keeps.
pub fn clock_ms() -> u32 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u32
}

impl RateLimit {
    pub fn new(per_second: u32) -> RateLimit {
        // A burst of as many again as the rate: a page that opens with a flurry of subscriptions is not slowed.
        RateLimit { tokens: 2.0 * per_second as f32, refilled_ms: clock_ms() }
    }

    /// Spends one request at `per_second`; false when the budget is gone.
    fn take(&mut self, per_second: u32) -> bool {
        let now = clock_ms();
        let earned = now.wrapping_sub(self.refilled_ms) as f32 / 1000.0 * per_second as f32;
        self.tokens = (self.tokens + earned).min(2.0 * per_second as f32);
        self.refilled_ms = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The server's own verbs, on route `drakon`: `auth` signs the session in with a token.
fn server_verb(
    engine: &Engine,
    identity: Option<&Identity>,
    session: &mut Session,
    verb: &str,
    args: &drakon_protocol::Args,
) -> Result<Outcome, VerbError> {
    if verb != "auth" {
        return Err(VerbError::new(
            ErrorCode::UnknownVerb,
            format!("route `{SERVER_ROUTE}` has no verb `{verb}`; it has auth"),
        ));
    }
    let Some(token) = args.get("token").and_then(Json::as_str) else {
        return Err(VerbError::new(ErrorCode::InvalidArgs, "auth needs `token`, a signed JWT"));
    };
    let Some(identity) = identity else {
        return Err(VerbError::new(ErrorCode::PermissionDenied, "this server takes no tokens: configure [auth]"));
    };
    let user = identity.verify(token).map_err(|r| VerbError::new(r.code, r.message))?;
    // What a session holds was chosen by its user's rules; another user must start a new session.
    let same_user = session.principal.user().is_some_and(|u| u.id == user.id);
    if session.is_subscribed() && !same_user {
        return Err(VerbError::new(
            ErrorCode::PermissionDenied,
            "sign in before subscribing: a session's subscriptions belong to the user who made them",
        ));
    }
    let reply = json!({"user": user_json(&user), "expires": user.expires});
    session.act_for(engine.hub(), Principal::User(user));
    Ok(Outcome { data: Payload::Json(reply), client_context: None, channel: None })
}

/// A user as `auth` replies and the `signed_in` notice name them.
fn user_json(user: &drakon_core::User) -> Json {
    json!({"id": user.id, "roles": user.roles, "info": user.info})
}

/// drakon's native protocol (SwampDragon's `route`/`verb`/`args`/`callbackname` envelope).
#[derive(Debug)]
pub struct Native;

/// The one native protocol value every native session shares.
pub static NATIVE: Native = Native;

/// Where events keep their native bytes (see [`Encoding::slot`]).
const NATIVE_SLOT: usize = 0;

impl Encoding for Native {
    fn slot(&self) -> usize {
        NATIVE_SLOT
    }

    fn encode(&self, event: &Event) -> Bytes {
        match &event.body {
            EventBody::Row { action, data, offset, .. } => encode_publication(&event.channel, *action, data, *offset),
            EventBody::Message { data } => encode_channel_message(&event.channel, data),
            EventBody::Presence { action, data } => {
                drakon_protocol::encode_presence_event(&event.channel, action.as_str(), data)
            }
        }
    }
}

fn error_body(e: VerbError) -> ErrorBody {
    ErrorBody { code: e.code, message: e.message, fields: e.fields }
}

/// A payload as the native reply's `data`.
fn payload_json(payload: Payload) -> Json {
    match payload {
        Payload::Json(data) => data,
        Payload::Snapshot { rows, offset, reload: true } => json!({"reload": true, "rows": rows, "offset": offset}),
        Payload::Snapshot { rows, offset, reload: false } => json!({"rows": rows, "offset": offset}),
        Payload::Replay { events, offset } => {
            let events: Vec<Json> = events
                .iter()
                .map(|event| match &event.body {
                    EventBody::Row { action, data, offset, .. } => {
                        publication_value(&event.channel, *action, data, *offset)
                    }
                    EventBody::Message { data } => json!({"channel": &*event.channel, "data": &**data}),
                    EventBody::Presence { action, data } => {
                        json!({"channel": &*event.channel, "action": action.as_str(), "data": &**data})
                    }
                })
                .collect();
            json!({"events": events, "offset": offset})
        }
    }
}

impl Protocol for Native {
    fn decode(&self, text: &str) -> Decoded {
        match parse_frame(text) {
            Ok(ClientFrame::Request(request)) => Decoded::Request(request),
            Ok(ClientFrame::Heartbeat) => Decoded::Heartbeat,
            Err(e) => Decoded::Invalid(encode_error(&ErrorBody::from(&e), e.callbackname(), e.verb().unwrap_or(""))),
        }
    }

    fn reply(&self, to: ReplyTo<'_>, result: Result<Outcome, VerbError>) -> Bytes {
        match result {
            Ok(outcome) => {
                let ctx = ReplyContext {
                    client_callback_name: to.callbackname,
                    verb: to.verb,
                    state: State::Success,
                    client_context: outcome.client_context.as_ref(),
                    page: to.page,
                };
                let channel = outcome.channel.as_ref().map(|c| ChannelData {
                    local_channel: &c.local,
                    remote_channels: &c.remotes,
                    action: c.action,
                });
                encode_reply(&payload_json(outcome.data), &ctx, channel.as_ref())
            }
            Err(e) => encode_error(&error_body(e), to.callbackname, to.verb),
        }
    }

    fn refusal(&self, code: ErrorCode, message: &str) -> Bytes {
        encode_error(&ErrorBody::new(code, message), None, "")
    }

    fn heartbeat(&self) -> Bytes {
        encode_heartbeat()
    }

    fn token_expiring(&self, expires: u64) -> Bytes {
        Bytes::from(json!({"auth": "expiring", "expires": expires}).to_string())
    }

    fn signed_in(&self, user: &drakon_core::User) -> Bytes {
        Bytes::from(json!({"auth": "signed_in", "user": user_json(user), "expires": user.expires}).to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drakon_core::engine::ChannelChange;
    use drakon_core::event::Action;
    use drakon_protocol::ChannelAction;

    use super::*;

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    fn row(channel: &str, action: Action, data: Json, offset: u64) -> Event {
        let id = data["id"].as_i64().unwrap();
        Event::row(Arc::from(channel), action, id, data.as_object().unwrap().clone(), offset)
    }

    #[test]
    fn events_encode_as_publications_and_channel_messages() {
        let event = row("todo-item|todo_list__id:1", Action::Deleted, json!({"id": 1, "_type": "todo_item"}), 7);
        assert_eq!(
            text(&event.bytes(&NATIVE)),
            r#"{"channel":"todo-item|todo_list__id:1","action":"deleted","data":{"id":1,"_type":"todo_item"},"offset":7}"#
        );
        let message = Event::message(Arc::from("room"), Arc::new(json!({"text": "hi"})));
        assert_eq!(text(&message.bytes(&NATIVE)), r#"{"channel":"room","data":{"text":"hi"}}"#);
    }

    #[test]
    fn outcomes_encode_as_replies_with_their_callback_verb_and_channels() {
        let to = ReplyTo { callbackname: Some("cb_2"), verb: "subscribe", page: None };
        let snapshot = Outcome {
            data: Payload::Snapshot { rows: vec![json!({"id": 1, "_type": "todo_item"})], offset: 4, reload: false },
            client_context: None,
            channel: Some(ChannelChange {
                local: "items".into(),
                remotes: vec!["todo-item|todo_list__id:1".into()],
                action: ChannelAction::Subscribe,
            }),
        };
        assert_eq!(
            text(&NATIVE.reply(to, Ok(snapshot))),
            concat!(
                r#"{"data":{"rows":[{"id":1,"_type":"todo_item"}],"offset":4},"#,
                r#""context":{"client_callback_name":"cb_2","verb":"subscribe","state":"success"},"#,
                r#""channel_data":{"local_channel":"items","remote_channels":["todo-item|todo_list__id:1"],"action":"subscribe"}}"#
            )
        );
        let replay = Outcome {
            data: Payload::Replay {
                events: vec![row("c", Action::Updated, json!({"id": 1, "done": true}), 5)],
                offset: 6,
            },
            client_context: None,
            channel: None,
        };
        assert_eq!(
            text(&NATIVE.reply(to, Ok(replay))),
            concat!(
                r#"{"data":{"events":[{"channel":"c","action":"updated","data":{"id":1,"done":true},"offset":5}],"offset":6},"#,
                r#""context":{"client_callback_name":"cb_2","verb":"subscribe","state":"success"}}"#
            )
        );
        let reload = Outcome {
            data: Payload::Snapshot { rows: vec![], offset: 9, reload: true },
            client_context: None,
            channel: None,
        };
        assert!(text(&NATIVE.reply(to, Ok(reload))).starts_with(r#"{"data":{"reload":true,"rows":[],"offset":9},"#));
    }

    #[test]
    fn errors_keep_their_code_message_and_fields() {
        let to = ReplyTo { callbackname: Some("cb_1"), verb: "create", page: None };
        let fields = std::collections::BTreeMap::from([("text".to_owned(), vec!["this field is required".to_owned()])]);
        let error = VerbError::fields(ErrorCode::ValidationFailed, "text: this field is required", fields);
        assert_eq!(
            text(&NATIVE.reply(to, Err(error))),
            concat!(
                r#"{"data":{"code":"validation_failed","message":"text: this field is required","#,
                r#""fields":{"text":["this field is required"]}},"#,
                r#""context":{"client_callback_name":"cb_1","verb":"create","state":"error"}}"#
            )
        );
        assert!(matches!(NATIVE.decode(r#"{"heartbeat":"1"}"#), Decoded::Heartbeat));
        match NATIVE.decode("{not json") {
            Decoded::Invalid(reply) => assert!(text(&reply).starts_with(r#"{"data":{"code":"bad_json""#)),
            other => panic!("expected an error reply, got {other:?}"),
        }
    }
}
