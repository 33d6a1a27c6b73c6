//! Parsing of client → server frames: the SwampDragon request envelope and the app heartbeat.
//!
//! The envelope is `{"route","verb","args","callbackname"}` (docs/protocol.md, Client frames). Unlike SwampDragon, which aborted the
//! connection on any malformed frame, parsing here never panics and every failure is a [`FrameError`] that carries
//! an [`ErrorCode`] plus whatever `verb` and `callbackname` could still be read, so the server can address an error
//! reply to the callback that is waiting for it.

use serde_json::Value;

use crate::{Args, ErrorCode};

/// One text frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// The client's echo of the app heartbeat `{"heartbeat":"1"}`; it gets no reply.
    Heartbeat,
    /// A call of a verb on a route.
    Request(Request),
}

/// A call of `verb` on `route`, with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The route name, e.g. `todo-item`; never empty.
    pub route: String,
    /// The verb name, e.g. `get_list`; never empty.
    pub verb: String,
    /// The verb's arguments, without `_page`; empty when the client sent none or `null`.
    pub args: Args,
    /// Echoed as `context.client_callback_name` so the client can match the reply to its call.
    pub callbackname: Option<String>,
    /// The 1-based page requested with `args._page`, for paginated verbs.
    pub page: Option<u64>,
}

/// Which part of a frame was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameErrorKind {
    /// The frame is not JSON, or not a JSON object.
    BadJson,
    /// `route` is absent, `null`, empty or not a string.
    MissingRoute,
    /// `verb` is absent, `null`, empty or not a string.
    MissingVerb,
    /// `args`, `args._page` or `callbackname` has the wrong type or value.
    InvalidArgs,
}

impl FrameErrorKind {
    /// The wire code an error reply for this kind carries.
    pub const fn code(self) -> ErrorCode {
        match self {
            FrameErrorKind::BadJson => ErrorCode::BadJson,
            FrameErrorKind::MissingRoute => ErrorCode::MissingRoute,
            FrameErrorKind::MissingVerb => ErrorCode::MissingVerb,
            FrameErrorKind::InvalidArgs => ErrorCode::InvalidArgs,
        }
    }
}

/// A frame that is not a valid request, with what could still be recovered from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// What was wrong.
    pub kind: FrameErrorKind,
    /// A lowercase message for the client that says how to fix the frame.
    pub message: String,
    /// The frame's verb, if it was a valid string.
    pub verb: Option<String>,
    /// The frame's callback name, if it was valid, so the error reply reaches the waiting callback.
    pub callbackname: Option<String>,
}

impl FrameError {
    /// The wire code an error reply for this error carries.
    pub const fn code(&self) -> ErrorCode {
        self.kind.code()
    }

    /// The verb recovered from the frame, if any.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The callback name recovered from the frame, if any.
    pub fn callbackname(&self) -> Option<&str> {
        self.callbackname.as_deref()
    }
}

/// Parses one text frame from a client.
///
/// ```
/// use drakon_protocol::{parse_frame, ClientFrame};
///
/// let frame = r#"{"route":"todo-item","verb":"get_list","callbackname":"cb_6","args":{"_page":2,"list_id":1}}"#;
/// let ClientFrame::Request(req) = parse_frame(frame)? else { unreachable!() };
/// assert_eq!((req.route.as_str(), req.verb.as_str(), req.page), ("todo-item", "get_list", Some(2)));
/// assert!(!req.args.contains_key("_page"));
/// assert_eq!(parse_frame(r#"{"heartbeat":"1"}"#)?, ClientFrame::Heartbeat);
/// # Ok::<(), drakon_protocol::FrameError>(())
/// ```
pub fn parse_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let bad_json =
        |message: String| FrameError { kind: FrameErrorKind::BadJson, message, verb: None, callbackname: None };
    let mut map = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(bad_json("frame must be a JSON object".to_owned())),
        Err(e) => return Err(bad_json(format!("frame is not valid JSON: {e}"))),
    };
    if map.len() == 1 && map.get("heartbeat").is_some_and(is_heartbeat_value) {
        return Ok(ClientFrame::Heartbeat);
    }

    // Each error carries the verb and callbackname when they are readable, so the reply reaches the waiting callback.
    let callbackname = match map.remove("callbackname") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            let message = "callbackname must be a string or a number".to_owned();
            return Err(FrameError {
                kind: FrameErrorKind::InvalidArgs,
                message,
                verb: peek_verb(&map),
                callbackname: None,
            });
        }
    };
    let route = match non_empty_string(map.remove("route"), "route") {
        Ok(route) => route,
        Err(message) => {
            return Err(FrameError {
                kind: FrameErrorKind::MissingRoute,
                message,
                verb: peek_verb(&map),
                callbackname,
            });
        }
    };
    let verb = match non_empty_string(map.remove("verb"), "verb") {
        Ok(verb) => verb,
        Err(message) => {
            return Err(FrameError { kind: FrameErrorKind::MissingVerb, message, verb: None, callbackname });
        }
    };
    let invalid_args = |message: String| FrameError {
        kind: FrameErrorKind::InvalidArgs,
        message,
        verb: Some(verb.clone()),
        callbackname: callbackname.clone(),
    };
    let mut args = match map.remove("args") {
        None | Some(Value::Null) => Args::new(),
        Some(Value::Object(args)) => args,
        Some(_) => {
            return Err(invalid_args("args must be a JSON object or null".to_owned()));
        }
    };
    // shift_remove keeps the remaining args in the client's order, which error messages and logs follow.
    let page = match args.shift_remove("_page") {
        None => None,
        Some(value) => parse_page(value).map_err(invalid_args)?,
    };

    Ok(ClientFrame::Request(Request { route, verb, args, callbackname, page }))
}

fn peek_verb(map: &Args) -> Option<String> {
    let verb = map.get("verb")?.as_str()?;
    (!verb.is_empty()).then(|| verb.to_owned())
}

/// SwampDragon compares with `{'heartbeat': '1'}`; a number 1 is accepted too because hand-written clients send it.
fn is_heartbeat_value(value: &Value) -> bool {
    value.as_str() == Some("1") || value.as_u64() == Some(1)
}

fn non_empty_string(value: Option<Value>, name: &str) -> Result<String, String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        None | Some(Value::Null) => Err(format!("request has no {name}: add a \"{name}\" string")),
        Some(_) => Err(format!("{name} must be a non-empty string")),
    }
}

/// `null` means no page, like SwampDragon's `kwargs.pop('_page', None)`; numeric strings are accepted because the
/// reference clients pass `_page` through from URL query strings.
fn parse_page(value: Value) -> Result<Option<u64>, String> {
    let page = match &value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    match page {
        Some(page) if page >= 1 => Ok(Some(page)),
        _ => Err("_page must be a positive integer, counting from 1".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Unwraps the JSON text from a SockJS `["…"]` frame as SwampDragon's own client sends it.
    fn unsockjs(frame: &str) -> String {
        let mut texts: Vec<String> = serde_json::from_str(frame).unwrap();
        assert_eq!(texts.len(), 1);
        texts.remove(0)
    }

    fn request(text: &str) -> Request {
        match parse_frame(text) {
            Ok(ClientFrame::Request(req)) => req,
            other => panic!("expected a request from {text}, got {other:?}"),
        }
    }

    #[test]
    fn golden_frames_from_reference_4_2() {
        // (SockJS frame, route, verb, callbackname, args after _page is removed, page)
        let table = [
            (
                r#"["{\"route\": \"todo-item\", \"verb\": \"subscribe\", \"callbackname\": \"cb_0\", \"args\": {\"todo_list__id\": 1, \"channel\": \"todos\"}}"]"#,
                "todo-item",
                "subscribe",
                "cb_0",
                json!({"todo_list__id": 1, "channel": "todos"}),
                None,
            ),
            (
                r#"["{\"route\": \"todo-item\", \"verb\": \"get_list\", \"callbackname\": \"cb_6\", \"args\": {\"_page\": 2, \"list_id\": 1}}"]"#,
                "todo-item",
                "get_list",
                "cb_6",
                json!({"list_id": 1}),
                Some(2),
            ),
            (
                r#"["{\"route\": \"todo-item\", \"verb\": \"create\", \"callbackname\": \"cb_8\", \"args\": {\"text\": \"new via router\", \"todo_list\": 1}}"]"#,
                "todo-item",
                "create",
                "cb_8",
                json!({"text": "new via router", "todo_list": 1}),
                None,
            ),
            (
                r#"["{\"route\": \"todo-item\", \"verb\": \"update\", \"callbackname\": \"cb_9\", \"args\": {\"text\": \"item 0\", \"_type\": \"todoitem\", \"done\": true, \"id\": 1}}"]"#,
                "todo-item",
                "update",
                "cb_9",
                json!({"text": "item 0", "_type": "todoitem", "done": true, "id": 1}),
                None,
            ),
            (
                r#"["{\"route\": \"todo-item\", \"verb\": \"delete\", \"callbackname\": \"cb_18\", \"args\": {\"id\": 2}}"]"#,
                "todo-item",
                "delete",
                "cb_18",
                json!({"id": 2}),
                None,
            ),
            (
                r#"["{\"route\": \"todo-item\", \"verb\": \"unsubscribe\", \"callbackname\": \"cb_19\", \"args\": {\"todo_list__id\": 1, \"channel\": \"todos\"}}"]"#,
                "todo-item",
                "unsubscribe",
                "cb_19",
                json!({"todo_list__id": 1, "channel": "todos"}),
                None,
            ),
        ];
        for (frame, route, verb, callbackname, args, page) in table {
            let req = request(&unsockjs(frame));
            assert_eq!(req.route, route, "{frame}");
            assert_eq!(req.verb, verb, "{frame}");
            assert_eq!(req.callbackname.as_deref(), Some(callbackname), "{frame}");
            assert_eq!(Value::Object(req.args), args, "{frame}");
            assert_eq!(req.page, page, "{frame}");
        }
    }

    #[test]
    fn heartbeats() {
        let heartbeats = [r#"["{\"heartbeat\": \"1\"}"]"#, r#"["{\"heartbeat\":1}"]"#];
        for frame in heartbeats {
            assert_eq!(parse_frame(&unsockjs(frame)), Ok(ClientFrame::Heartbeat), "{frame}");
        }
        // Anything else that mentions heartbeat is an ordinary (here: malformed) request.
        for text in [r#"{"heartbeat":"2"}"#, r#"{"heartbeat":"1","verb":"x"}"#] {
            let err = parse_frame(text).unwrap_err();
            assert_eq!(err.code(), ErrorCode::MissingRoute, "{text}");
        }
    }

    #[test]
    fn optional_parts_and_lenient_shapes() {
        // (frame, args, callbackname, page)
        let table = [
            (r#"{"route":"r","verb":"v"}"#, json!({}), None, None),
            (r#"{"route":"r","verb":"v","args":null,"callbackname":null}"#, json!({}), None, None),
            (r#"{"route":"r","verb":"v","callbackname":7}"#, json!({}), Some("7"), None),
            (r#"{"route":"r","verb":"v","extra":[1],"args":{"_page":"3","a":1}}"#, json!({"a":1}), None, Some(3)),
            (r#"{"route":"r","verb":"v","args":{"_page":null}}"#, json!({}), None, None),
            (r#"{"route":"r","verb":"v","args":{"z":1,"_page":1,"a":2}}"#, json!({"z":1,"a":2}), None, Some(1)),
        ];
        for (text, args, callbackname, page) in table {
            let req = request(text);
            assert_eq!((req.route.as_str(), req.verb.as_str()), ("r", "v"), "{text}");
            assert_eq!(Value::Object(req.args.clone()), args, "{text}");
            assert_eq!(req.callbackname.as_deref(), callbackname, "{text}");
            assert_eq!(req.page, page, "{text}");
        }
        // Removing _page must not reorder the remaining args.
        let req = request(r#"{"route":"r","verb":"v","args":{"z":1,"_page":1,"a":2}}"#);
        assert_eq!(req.args.keys().collect::<Vec<_>>(), ["z", "a"]);
    }

    #[test]
    fn bad_frames() {
        use FrameErrorKind::*;
        // (frame, kind, recovered verb, recovered callbackname)
        let table = [
            ("", BadJson, None, None),
            ("{\"route\":", BadJson, None, None),
            ("not json", BadJson, None, None),
            (r#"["route","verb"]"#, BadJson, None, None),
            (r#""text""#, BadJson, None, None),
            (r#"{"verb":"get_list","callbackname":"cb_3"}"#, MissingRoute, Some("get_list"), Some("cb_3")),
            (r#"{"route":null,"verb":"v","callbackname":4}"#, MissingRoute, Some("v"), Some("4")),
            (r#"{"route":"","verb":"v"}"#, MissingRoute, Some("v"), None),
            (r#"{"route":5,"verb":"v"}"#, MissingRoute, Some("v"), None),
            (r#"{"callbackname":"cb_1"}"#, MissingRoute, None, Some("cb_1")),
            (r#"{"route":"r","callbackname":"cb_2"}"#, MissingVerb, None, Some("cb_2")),
            (r#"{"route":"r","verb":["v"]}"#, MissingVerb, None, None),
            (r#"{"route":"r","verb":"v","callbackname":{}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","callbackname":"c","args":[1]}"#, InvalidArgs, Some("v"), Some("c")),
            (r#"{"route":"r","verb":"v","args":"a=1"}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":0}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":-1}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":1.5}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":2.0}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":"0"}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":"two"}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":true}}"#, InvalidArgs, Some("v"), None),
            (r#"{"route":"r","verb":"v","args":{"_page":[2]}}"#, InvalidArgs, Some("v"), None),
        ];
        for (text, kind, verb, callbackname) in table {
            let err = parse_frame(text).unwrap_err();
            assert_eq!(err.kind, kind, "{text}");
            assert_eq!(err.code(), kind.code(), "{text}");
            assert_eq!(err.verb(), verb, "{text}");
            assert_eq!(err.callbackname(), callbackname, "{text}");
            let message = err.to_string();
            assert!(!message.is_empty() && !message.ends_with('.'), "{text}: {message}");
            assert!(!message.starts_with(char::is_uppercase), "{text}: {message}");
        }
    }

    #[test]
    fn kinds_map_to_codes() {
        let table = [
            (FrameErrorKind::BadJson, ErrorCode::BadJson),
            (FrameErrorKind::MissingRoute, ErrorCode::MissingRoute),
            (FrameErrorKind::MissingVerb, ErrorCode::MissingVerb),
            (FrameErrorKind::InvalidArgs, ErrorCode::InvalidArgs),
        ];
        for (kind, code) in table {
            assert_eq!(kind.code(), code);
        }
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::parse_frame;

    proptest! {
        /// Whatever arrives, the parser answers with a frame or an error; it never panics.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = parse_frame(&text);
        }

        #[test]
        fn arbitrary_envelopes_never_panic(
            route in prop::option::of(".{0,10}"),
            verb in prop::option::of(".{0,10}"),
            page in prop::option::of(any::<i64>()),
            callback in prop::option::of(any::<u32>()),
        ) {
            let mut frame = serde_json::Map::new();
            if let Some(r) = route { frame.insert("route".into(), r.into()); }
            if let Some(v) = verb { frame.insert("verb".into(), v.into()); }
            if let Some(c) = callback { frame.insert("callbackname".into(), c.into()); }
            let mut args = serde_json::Map::new();
            if let Some(p) = page { args.insert("_page".into(), p.into()); }
            frame.insert("args".into(), args.into());
            let _ = parse_frame(&serde_json::Value::Object(frame).to_string());
        }
    }
}
