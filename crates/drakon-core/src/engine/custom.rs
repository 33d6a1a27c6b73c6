//! Custom verbs: async functions a Rust program adds to a model route, called like the built-in verbs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use drakon_protocol::Args;
use serde_json::Value as Json;

use super::{Engine, VerbError};
use crate::hub::ConnId;

/// A boxed future, as custom verbs return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A custom verb: an async function of the calling context and the client's args.
pub type CustomVerb = Arc<dyn Fn(VerbContext, Args) -> BoxFuture<Result<Json, VerbError>> + Send + Sync>;

/// Wraps an async function as a [`CustomVerb`].
///
/// ```
/// use drakon_core::engine::{custom_verb, VerbContext};
/// use serde_json::json;
/// let hello = custom_verb(|_ctx: VerbContext, args| async move { Ok(json!({"hello": args.get("name")})) });
/// # let _ = hello;
/// ```
pub fn custom_verb<F, Fut>(f: F) -> CustomVerb
where
    F: Fn(VerbContext, Args) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Json, VerbError>> + Send + 'static,
{
    Arc::new(move |ctx, args| Box::pin(f(ctx, args)))
}

/// What a custom verb can see and use.
#[derive(Debug, Clone)]
pub struct VerbContext {
    pub engine: Engine,
    pub route: String,
    /// The calling connection, when the call came over a socket.
    pub conn: Option<ConnId>,
}
