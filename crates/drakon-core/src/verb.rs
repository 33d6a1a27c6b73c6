//! The handle a model route keeps for each custom verb.
//!
//! A custom verb is an async function of the engine's calling context (see `engine::custom_verb`), but a schema
//! only stores verbs and checks their names. The handle hides the function's type, so that the schema needs nothing
//! of the engine; the engine, which makes every handle, is the one that calls through it. This module imports
//! neither.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// A custom verb as a [`ModelRoute`](crate::schema::ModelRoute) holds it; made by `engine::custom_verb` and called
/// like the function it wraps, `verb(ctx, args)`.
#[derive(Clone)]
pub struct CustomVerb(Arc<dyn Any + Send + Sync>);

impl CustomVerb {
    /// Wraps `f`, the engine's one function type for custom verbs.
    pub(crate) fn new<F: Any + Send + Sync>(f: F) -> CustomVerb {
        CustomVerb(Arc::new(f))
    }

    /// The function inside, when it is an `F`.
    pub(crate) fn get<F: Any>(&self) -> Option<&F> {
        self.0.downcast_ref()
    }
}

// Functions have no useful Debug; a route's Debug lists its verbs by name.
impl fmt::Debug for CustomVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomVerb")
    }
}
