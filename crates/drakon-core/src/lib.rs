//! drakon's engine: the schema, typed values, filters (SQL and in-memory), the store, bus and node-liveness
//! interfaces, the hub and every verb. It knows nothing of sockets or HTTP; the server crate adapts transports onto
//! [`engine::Engine`].

pub mod accounts;
pub mod bus;
pub mod config;
pub mod engine;
pub mod event;
pub mod filter;
pub mod hub;
pub mod image;
pub mod limits;
pub mod migration;
pub mod node;
pub mod outbox;
pub mod presence;
pub mod rules;
pub mod schema;
pub mod store;
pub mod value;
mod verb;

pub use bus::{Bus, LocalBus};
pub use engine::{ChannelChange, Engine, EngineLimits, Outcome, Payload, Session, VerbContext, VerbError, custom_verb};
pub use event::{Encoding, Event, EventBody};
pub use filter::Filter;
pub use rules::{Principal, Rule, Rules, User};
pub use schema::{
    ChannelRoute, CheckedSchema, Field, FieldType, Model, ModelRoute, OnDelete, PresenceSpec, Schema, Verb,
};
pub use store::{BusMessage, Change, Store, StoreError};
pub use value::Value;

/// Seconds since the Unix epoch (0 on a clock set before it): the time of login sessions, admin logins and their
/// expiry.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 on a clock set before it): when a presence state was set.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
