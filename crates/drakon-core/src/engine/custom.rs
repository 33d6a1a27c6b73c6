//! Custom verbs: async functions a Rust program adds to a model route, called like the built-in verbs.

use std::future::Future;
use std::pin::Pin;

use drakon_protocol::{Args, ErrorCode};
use serde_json::Value as Json;

use super::{Engine, VerbError};
use crate::hub::ConnId;
use crate::rules::Principal;
pub use crate::verb::CustomVerb;

/// A boxed future, as custom verbs return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a [`CustomVerb`] wraps: an async function of the calling context and the client's args.
type VerbFn = dyn Fn(VerbContext, Args) -> BoxFuture<Result<Json, VerbError>> + Send + Sync;

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
    let verb: Box<VerbFn> = Box::new(move |ctx, args| Box::pin(f(ctx, args)));
    CustomVerb::new(verb)
}

// The schema holds a custom verb without knowing its type (so that it need not know the engine); here, where the
// type is known, the handle becomes the function again.
impl CustomVerb {
    /// Calls the verb. `custom_verb` makes every handle, always of a `Box<VerbFn>`; anything else would be a bug,
    /// answered as one rather than a panic.
    pub(crate) fn call(&self, ctx: VerbContext, args: Args) -> BoxFuture<Result<Json, VerbError>> {
        match self.get::<Box<VerbFn>>() {
            Some(f) => f(ctx, args),
            None => Box::pin(async { Err(VerbError::new(ErrorCode::Internal, "this custom verb cannot be called")) }),
        }
    }
}

/// What a custom verb can see and use.
#[derive(Debug, Clone)]
pub struct VerbContext {
    pub engine: Engine,
    pub route: String,
    /// The calling connection, when the call came over a socket.
    pub conn: Option<ConnId>,
    /// Who called, when the call came over a socket: rules are the verb's own to apply.
    pub principal: Option<Principal>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_the_function_it_was_made_from_again() {
        let verb = custom_verb(|_ctx, _args| async { Ok(Json::Null) });
        let copy = verb.clone();
        // `call` is the one place that names the handle's hidden type; a clone holds the very same function.
        let (a, b) = (verb.get::<Box<VerbFn>>().expect("made by custom_verb"), copy.get::<Box<VerbFn>>().unwrap());
        assert!(std::ptr::addr_eq(&**a as *const VerbFn, &**b as *const VerbFn));
        assert!(CustomVerb::new(42u8).get::<Box<VerbFn>>().is_none(), "a handle of anything else is not a verb");
    }
}
