//! Encoding of server → client replies: the SwampDragon `{"data","context","channel_data"}` envelope (docs/protocol.md, Replies).
//!
//! Replies are written straight from borrowed structs into one buffer and handed out as [`Bytes`], so a reply is
//! never built as a `serde_json::Value` tree first. Key order is fixed (`data`, `context`, `channel_data`) so the
//! bytes are reproducible and testable; clients never depend on it. Errors differ from SwampDragon on purpose: their
//! `data` is always `{"code","message","fields"?}` (docs/protocol.md, Error body) instead of a free-form dict.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{ErrorCode, FrameError};

/// The outcome of a request, as `context.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The verb ran; `data` is its result.
    Success,
    /// The verb failed; `data` is an [`ErrorBody`].
    Error,
    /// The verb needs an authenticated connection; `data` is `null`.
    LoginRequired,
}

/// The `context` object of a reply: who asked and how it went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReplyContext<'a> {
    /// The request's `callbackname`, sent as `null` when the request had none.
    pub client_callback_name: Option<&'a str>,
    /// The request's verb.
    pub verb: &'a str,
    /// Success, error or login required.
    pub state: State,
    /// Extra context for the client (e.g. pagination); sent only when it is a non-empty object, as in SwampDragon.
    #[serde(skip_serializing_if = "is_empty_context")]
    pub client_context: Option<&'a Value>,
    /// The page that was asked for with `_page`; sent only when the request had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
}

fn is_empty_context(value: &Option<&Value>) -> bool {
    !matches!(value, Some(Value::Object(map)) if !map.is_empty())
}

/// Whether a reply's channels were joined or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelAction {
    /// The connection now receives the remote channels.
    Subscribe,
    /// The connection no longer receives the remote channels.
    Unsubscribe,
}

/// The `channel_data` of a `subscribe`/`unsubscribe` reply: which server channels back a client-local channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChannelData<'a> {
    /// The client's name for the subscription (`args.channel`).
    pub local_channel: &'a str,
    /// The server channel names, which publications carry in their `channel` key.
    pub remote_channels: &'a [String],
    /// Joined or left.
    pub action: ChannelAction,
}

/// The `data` of an error reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// A lowercase message that says what to do.
    pub message: String,
    /// Per-field messages, `{field: [message, …]}`, for validation errors; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
}

impl ErrorBody {
    /// An error without per-field messages.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fields: None }
    }
}

impl From<&FrameError> for ErrorBody {
    fn from(err: &FrameError) -> Self {
        Self::new(err.code(), err.message.clone())
    }
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    data: &'a T,
    context: &'a ReplyContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_data: Option<&'a ChannelData<'a>>,
}

/// Encodes a reply to a request.
///
/// ```
/// use drakon_protocol::{encode_reply, ReplyContext, State};
///
/// let ctx = ReplyContext {
///     client_callback_name: Some("cb_16"),
///     verb: "chat",
///     state: State::Success,
///     client_context: None,
///     page: None,
/// };
/// let bytes = encode_reply(&serde_json::json!({"status": "ok"}), &ctx, None);
/// assert_eq!(
///     &bytes[..],
///     br#"{"data":{"status":"ok"},"context":{"client_callback_name":"cb_16","verb":"chat","state":"success"}}"#
/// );
/// ```
pub fn encode_reply(data: &Value, ctx: &ReplyContext, channel_data: Option<&ChannelData>) -> Bytes {
    encode(&Envelope { data, context: ctx, channel_data })
}

/// Encodes an error reply (`state:"error"`) addressed to `callbackname`.
///
/// ```
/// use drakon_protocol::{encode_error, ErrorBody, ErrorCode};
///
/// let err = ErrorBody::new(ErrorCode::UnknownRoute, "no route named todo; check the route name");
/// let bytes = encode_error(&err, Some("cb_1"), "get_list");
/// assert!(bytes.starts_with(br#"{"data":{"code":"unknown_route","#));
/// ```
pub fn encode_error(err: &ErrorBody, callbackname: Option<&str>, verb: &str) -> Bytes {
    let ctx = ReplyContext {
        client_callback_name: callbackname,
        verb,
        state: State::Error,
        client_context: None,
        page: None,
    };
    encode(&Envelope { data: err, context: &ctx, channel_data: None })
}

/// The app heartbeat the server sends and the client echoes (docs/protocol.md).
pub fn encode_heartbeat() -> Bytes {
    Bytes::from_static(br#"{"heartbeat":"1"}"#)
}

/// Serializes into a fresh buffer; shared by every encoder in this crate.
pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    // Writing to a Vec cannot fail, and every type encoded here has string keys, so serialization cannot either.
    Bytes::from(serde_json::to_vec(value).expect("protocol types always serialize to JSON"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx<'a>(callback: &'a str, verb: &'a str) -> ReplyContext<'a> {
        ReplyContext {
            client_callback_name: Some(callback),
            verb,
            state: State::Success,
            client_context: None,
            page: None,
        }
    }

    fn check(bytes: Bytes, expected: &str) {
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), expected);
        // Every golden must also be valid JSON, or the expected string itself is wrong.
        serde_json::from_slice::<Value>(&bytes).unwrap();
    }

    #[test]
    fn golden_subscribe_and_unsubscribe_replies() {
        // Reference §5.2, with drakon's channel names and key order.
        let todos = ["todo-item|todo_list__id:1".to_owned()];
        let lists = ["todolist|".to_owned()];
        let chat = ["chatroom".to_owned()];
        let plain = ["plain|number__gt:5".to_owned()];
        let extra = json!({"extra": "ctx-subscribe"});
        let subscribe = |local, remote| ChannelData {
            local_channel: local,
            remote_channels: remote,
            action: ChannelAction::Subscribe,
        };
        let table = [
            (
                json!([]),
                ctx("cb_0", "subscribe"),
                subscribe("todos", &todos),
                r#"{"data":[],"context":{"client_callback_name":"cb_0","verb":"subscribe","state":"success"},"channel_data":{"local_channel":"todos","remote_channels":["todo-item|todo_list__id:1"],"action":"subscribe"}}"#,
            ),
            (
                json!([]),
                ctx("cb_1", "subscribe"),
                subscribe("lists", &lists),
                r#"{"data":[],"context":{"client_callback_name":"cb_1","verb":"subscribe","state":"success"},"channel_data":{"local_channel":"lists","remote_channels":["todolist|"],"action":"subscribe"}}"#,
            ),
            (
                json!("subscribed"),
                ctx("cb_2", "subscribe"),
                subscribe("chat", &chat),
                r#"{"data":"subscribed","context":{"client_callback_name":"cb_2","verb":"subscribe","state":"success"},"channel_data":{"local_channel":"chat","remote_channels":["chatroom"],"action":"subscribe"}}"#,
            ),
            (
                json!([]),
                ReplyContext { client_context: Some(&extra), ..ctx("cb_4", "subscribe") },
                subscribe("plainchan", &plain),
                r#"{"data":[],"context":{"client_callback_name":"cb_4","verb":"subscribe","state":"success","client_context":{"extra":"ctx-subscribe"}},"channel_data":{"local_channel":"plainchan","remote_channels":["plain|number__gt:5"],"action":"subscribe"}}"#,
            ),
            (
                json!("unsubscribed"),
                ctx("cb_19", "unsubscribe"),
                ChannelData { action: ChannelAction::Unsubscribe, ..subscribe("todos", &todos) },
                r#"{"data":"unsubscribed","context":{"client_callback_name":"cb_19","verb":"unsubscribe","state":"success"},"channel_data":{"local_channel":"todos","remote_channels":["todo-item|todo_list__id:1"],"action":"unsubscribe"}}"#,
            ),
        ];
        for (data, ctx, channel_data, expected) in table {
            check(encode_reply(&data, &ctx, Some(&channel_data)), expected);
        }
    }

    #[test]
    fn golden_plain_replies() {
        let page1 = json!({"page": {"has_next": true, "page_count": 2, "has_previous": false, "page": 1}});
        let page2 = json!({"page": {"has_next": false, "page_count": 3, "has_previous": true, "page": 2}});
        let empty = json!({});
        let table = [
            (
                json!([{"_type": "todoitem", "text": "item 0", "todo_list": 1, "done": false, "id": 1}]),
                ReplyContext { client_context: Some(&page1), ..ctx("cb_5", "get_list") },
                r#"{"data":[{"_type":"todoitem","text":"item 0","todo_list":1,"done":false,"id":1}],"context":{"client_callback_name":"cb_5","verb":"get_list","state":"success","client_context":{"page":{"has_next":true,"page_count":2,"has_previous":false,"page":1}}}}"#,
            ),
            (
                json!([{"_type": "todoitem", "text": "item 2", "todo_list": 1, "done": false, "id": 3}]),
                ReplyContext { client_context: Some(&page2), page: Some(2), ..ctx("cb_6", "get_list") },
                r#"{"data":[{"_type":"todoitem","text":"item 2","todo_list":1,"done":false,"id":3}],"context":{"client_callback_name":"cb_6","verb":"get_list","state":"success","client_context":{"page":{"has_next":false,"page_count":3,"has_previous":true,"page":2}},"page":2}}"#,
            ),
            (
                json!({"_type": "todolist", "description": "first", "id": 1, "name": "List one"}),
                ctx("cb_7", "get_single"),
                r#"{"data":{"_type":"todolist","description":"first","id":1,"name":"List one"},"context":{"client_callback_name":"cb_7","verb":"get_single","state":"success"}}"#,
            ),
            (
                json!({"_type": "todoitem", "done": true, "id": 1}),
                // An empty client_context is left out, like SwampDragon's default get_client_context.
                ReplyContext { client_context: Some(&empty), ..ctx("cb_9", "update") },
                r#"{"data":{"_type":"todoitem","done":true,"id":1},"context":{"client_callback_name":"cb_9","verb":"update","state":"success"}}"#,
            ),
            (
                Value::Null,
                ReplyContext { client_callback_name: None, state: State::LoginRequired, ..ctx("", "secret") },
                r#"{"data":null,"context":{"client_callback_name":null,"verb":"secret","state":"login_required"}}"#,
            ),
        ];
        for (data, ctx, expected) in table {
            check(encode_reply(&data, &ctx, None), expected);
        }
    }

    #[test]
    fn golden_error_replies() {
        let mut fields = Map::new();
        fields.insert("text".to_owned(), json!(["text may not be bad"]));
        let table = [
            (
                ErrorBody {
                    fields: Some(fields),
                    ..ErrorBody::new(ErrorCode::ValidationFailed, "the object is not valid; see fields")
                },
                Some("cb_10"),
                "update",
                r#"{"data":{"code":"validation_failed","message":"the object is not valid; see fields","fields":{"text":["text may not be bad"]}},"context":{"client_callback_name":"cb_10","verb":"update","state":"error"}}"#,
            ),
            (
                ErrorBody::new(ErrorCode::BadJson, "frame must be a JSON object"),
                None,
                "",
                r#"{"data":{"code":"bad_json","message":"frame must be a JSON object"},"context":{"client_callback_name":null,"verb":"","state":"error"}}"#,
            ),
        ];
        for (body, callback, verb, expected) in table {
            check(encode_error(&body, callback, verb), expected);
        }
    }

    #[test]
    fn frame_errors_become_addressed_error_replies() {
        let err = crate::parse_frame(r#"{"verb":"get_list","callbackname":"cb_3"}"#).unwrap_err();
        let bytes = encode_error(&ErrorBody::from(&err), err.callbackname(), err.verb().unwrap_or(""));
        let reply: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(reply["data"]["code"], "missing_route");
        assert_eq!(reply["data"]["message"], err.message.as_str());
        assert_eq!(reply["context"], json!({"client_callback_name": "cb_3", "verb": "get_list", "state": "error"}));
    }

    #[test]
    fn heartbeat() {
        check(encode_heartbeat(), r#"{"heartbeat":"1"}"#);
    }
}
