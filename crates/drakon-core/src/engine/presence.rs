//! The presence verbs of routes with `[presence]`: `join_presence`, `leave_presence`, `set_presence` and
//! `get_presence`, on an object of a model route (`id`) or a channel of a channel route (`name`).
//!
//! Joining needs what reading needs: the object must be one the caller may read (or it is `not_found`, as
//! `get_single` would say), the channel one the caller may subscribe to. A member shows their id, the keys of their
//! user info the route lists in `fields`, and the state they set. Anonymous sessions join only where the route says
//! `anonymous = true`, each as a member of its own.

use std::sync::Arc;

use drakon_protocol::{Args, ChannelAction, ErrorCode};
use serde_json::{Map, Value as Json};

use super::routes::{CompiledRoute, Scope};
use super::{ChannelChange, Engine, Outcome, Payload, Principal, Session, VerbError};
use crate::limits;
use crate::presence::{Joining, PresenceLimits};
use crate::schema::{ChannelRoute, PresenceSpec};

/// The presence verbs, as routes list them.
pub(super) const VERBS: [&str; 4] = ["join_presence", "leave_presence", "set_presence", "get_presence"];

/// Most members one `get_presence` page holds.
const MAX_PAGE: usize = 1000;

impl Engine {
    /// A presence verb on object `id` of a model route; `scope` is what the caller may read.
    pub(super) async fn model_presence(
        &self,
        session: &mut Session,
        route: &CompiledRoute,
        scope: &Scope,
        verb: &str,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let spec = route.spec.presence.as_ref().expect("dispatched for routes with presence");
        let id = match args.remove("id") {
            Some(id) => id.as_i64().ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "`id` must be an integer"))?,
            None => return Err(VerbError::new(ErrorCode::InvalidArgs, format!("{verb} needs `id`, the object's id"))),
        };
        let room: Arc<str> = Arc::from(format!("presence:{}:{id}", route.name));
        // Only joining and listing read the object: a member may leave, or set its state, whatever happened to it.
        if matches!(verb, "join_presence" | "get_presence") {
            let (filter, _) = self.inner.routes.filter(&self.inner.schema, route, scope, Args::new())?;
            self.fetch(route, id, filter).await?;
        }
        self.presence_verb(session, spec, room, verb, args)
    }

    /// A presence verb on a channel of a channel route, under the route's subscribe rule.
    pub(super) fn channel_presence(
        &self,
        session: &mut Session,
        route_name: &str,
        spec: &ChannelRoute,
        verb: &str,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let presence = spec.presence.as_ref().expect("dispatched for routes with presence");
        let mut rest = Args::new();
        for key in ["channel", "state", "after", "limit"] {
            if let Some(value) = args.remove(key) {
                rest.insert(key.to_owned(), value);
            }
        }
        let name = Self::plain_channel_name(route_name, spec, &mut args)?;
        if matches!(verb, "join_presence" | "get_presence")
            && let Some(rule) = &spec.subscribe
            && session.principal != Principal::Admin
            && let Err(why) = rule.allows_channel(session.principal.user(), &name)
        {
            return Err(VerbError::new(ErrorCode::PermissionDenied, format!("route `{route_name}`: {why}")));
        }
        self.presence_verb(session, presence, Arc::from(format!("presence:{route_name}:{name}")), verb, rest)
    }

    fn presence_verb(
        &self,
        session: &mut Session,
        spec: &PresenceSpec,
        room: Arc<str>,
        verb: &str,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let presence = &self.inner.presence;
        let limits = PresenceLimits { large_room: spec.large_room };
        match verb {
            "join_presence" => {
                let local = Self::take_local_channel(&mut args)?;
                let state = take_state(&mut args)?;
                no_more(&args)?;
                let joining = self.joining(session, spec, state)?;
                let snapshot = session.join_room(presence, &room, &local, limits, joining)?;
                Ok(Outcome {
                    data: Payload::Json(snapshot.to_json(&room)),
                    client_context: None,
                    channel: ChannelChange::one(local, room.to_string(), ChannelAction::Subscribe),
                })
            }
            "leave_presence" => {
                let local = Self::take_local_channel(&mut args)?;
                no_more(&args)?;
                session.leave_room(presence, &room, &local)?;
                Ok(Outcome {
                    data: Payload::Json(Json::from("left")),
                    client_context: None,
                    channel: ChannelChange::one(local, room.to_string(), ChannelAction::Unsubscribe),
                })
            }
            "set_presence" => {
                let state = take_state(&mut args)?
                    .ok_or_else(|| VerbError::new(ErrorCode::InvalidArgs, "set_presence needs `state`, an object"))?;
                no_more(&args)?;
                if !session.in_room(&room) {
                    return Err(not_joined(&room));
                }
                presence.set(&room, session.conn, state).map_err(|_| not_joined(&room))?;
                Ok(Outcome::data(Json::from("set")))
            }
            _ => {
                let after = match args.remove("after") {
                    None | Some(Json::Null) => None,
                    Some(Json::String(after)) => Some(after),
                    Some(_) => return Err(VerbError::new(ErrorCode::InvalidArgs, "`after` must be a member id")),
                };
                let limit = match args.remove("limit") {
                    None => spec.large_room.min(MAX_PAGE),
                    Some(n) => match n.as_u64() {
                        Some(n @ 1..) => (n as usize).min(MAX_PAGE),
                        _ => return Err(VerbError::new(ErrorCode::InvalidArgs, "`limit` must be a positive integer")),
                    },
                };
                no_more(&args)?;
                let page = presence.members(&room, after.as_deref(), limit).unwrap_or(crate::presence::Snapshot {
                    members: Vec::new(),
                    count: 0,
                    large: false,
                });
                Ok(Outcome::data(page.to_json(&room)))
            }
        }
    }

    /// Who `session` joins as: its user, with the info keys the route shows; or, where the route allows it, an
    /// anonymous member of its own.
    fn joining(&self, session: &Session, spec: &PresenceSpec, state: Option<Arc<Json>>) -> Result<Joining, VerbError> {
        match &session.principal {
            Principal::User(user) => {
                let info: Map<String, Json> = spec
                    .fields
                    .iter()
                    .filter_map(|key| user.info.get(key).map(|value| (key.clone(), value.clone())))
                    .collect();
                Ok(Joining { user: Arc::from(user.id.as_str()), info: Arc::new(Json::Object(info)), state })
            }
            Principal::Admin => {
                Ok(Joining { user: Arc::from("admin"), info: Arc::new(Json::Object(Map::new())), state })
            }
            Principal::Anonymous if spec.anonymous => Ok(Joining {
                user: Arc::from(format!("anonymous:{}:{}", self.inner.presence.node(), session.conn)),
                info: Arc::new(Json::Object(Map::new())),
                state,
            }),
            Principal::Anonymous => Err(VerbError::new(
                ErrorCode::PermissionDenied,
                "sign in to join presence here: the route is for users",
            )),
        }
    }
}

fn take_state(args: &mut Args) -> Result<Option<Arc<Json>>, VerbError> {
    match args.remove("state") {
        None | Some(Json::Null) => Ok(None),
        Some(state @ Json::Object(_)) => {
            let size = serde_json::to_vec(&state).map_or(usize::MAX, |bytes| bytes.len());
            if size > limits::PRESENCE_STATE_BYTES {
                return Err(VerbError::new(
                    ErrorCode::InvalidArgs,
                    format!("`state` is {size} bytes of JSON; at most {} are kept", limits::PRESENCE_STATE_BYTES),
                ));
            }
            Ok(Some(Arc::new(state)))
        }
        Some(_) => {
            Err(VerbError::new(ErrorCode::InvalidArgs, "`state` must be an object, such as {\"editing\": true}"))
        }
    }
}

fn no_more(args: &Args) -> Result<(), VerbError> {
    match args.keys().next() {
        Some(extra) => Err(VerbError::new(ErrorCode::InvalidArgs, format!("unknown argument `{extra}`"))),
        None => Ok(()),
    }
}

fn not_joined(room: &str) -> VerbError {
    VerbError::new(
        ErrorCode::NotSubscribed,
        format!("this connection is not in presence `{room}`; join_presence first"),
    )
}
