//! drakon's engine: the schema, typed values, filters (SQL and in-memory), the store and bus interfaces, the hub
//! and every verb. It knows nothing of sockets or HTTP; the server crate adapts transports onto [`engine::Engine`].

pub mod config;
pub mod engine;
pub mod filter;
pub mod hub;
pub mod image;
pub mod limits;
pub mod migration;
pub mod outbox;
pub mod schema;
pub mod store;
pub mod value;

pub use engine::{Engine, EngineLimits, Session, VerbContext, VerbError, custom_verb};
pub use filter::Filter;
pub use schema::{ChannelRoute, Field, FieldType, Model, ModelRoute, OnDelete, Schema, Verb};
pub use store::{BusMessage, Change, Store, StoreError};
pub use value::Value;

/// WebSocket close code when the server shuts down (RFC 6455 "going away"); clients reconnect elsewhere or later.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code when a connection sent nothing, not even a pong, for the idle timeout.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4000;
/// WebSocket close code for a subscriber whose outbound queue stayed full; it may reconnect and subscribe again.
pub const SLOW_CONSUMER_CLOSE_CODE: u16 = 4008;
