//! drakon's native wire protocol: client frames, replies, publications, error codes and channel names.
//!
//! The protocol is SwampDragon's envelope with its bugs fixed (docs/protocol.md, and its
//! "Differences from SwampDragon"). This crate only turns text into typed frames and typed values into bytes; it does no I/O and knows nothing
//! of sockets, runtimes or stores, so every codec here is tested against literal frames.

pub mod channel;
pub mod error_code;
pub mod frame;
pub mod publication;
pub mod reply;
pub mod websocket;

pub use channel::{ChannelNameError, model_channel_name, parse_model_channel_name};
pub use error_code::ErrorCode;
pub use frame::{ClientFrame, FrameError, FrameErrorKind, Request, parse_frame};
pub use publication::{Action, encode_channel_message, encode_presence_event, encode_publication, publication_value};
pub use reply::{
    ChannelAction, ChannelData, ErrorBody, ReplyContext, State, encode_error, encode_heartbeat, encode_reply,
};

/// Verb arguments and filters: a JSON object that keeps the client's key order.
pub type Args = serde_json::Map<String, serde_json::Value>;
