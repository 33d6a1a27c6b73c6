//! The `subscribe` and `unsubscribe` verbs on model and plain channels: the channel a client's filter names, the
//! snapshot or replay a subscribe answers with, and the references a filter needs the store to watch. Membership
//! itself is the session's (see `session`).

use std::collections::BTreeMap;
use std::sync::Arc;

use drakon_protocol::{Args, ChannelAction, ErrorCode, model_channel_name};
use serde_json::{Value as Json, json};

use super::fan_out::{BatchImages, resolve};
use super::routes::{CompiledRoute, FIELDS_NAME, RULE_NAME, Scope, check_plain_channel_name, parse_order};
use super::session::{Session, Target};
use super::{ChannelChange, Engine, Outcome, Payload, VerbError};
use crate::filter::{Filter, Lookup};
use crate::hub::{RouteView, replay_event};
use crate::limits;
use crate::rules::Principal;
use crate::schema::ChannelRoute;
use crate::store::{LogRead, row_to_json};

impl Engine {
    pub(super) fn take_local_channel(args: &mut Args) -> Result<String, VerbError> {
        match args.remove("channel") {
            Some(Json::String(s)) if !s.is_empty() => Ok(s),
            _ => Err(VerbError::fields(
                ErrorCode::InvalidArgs,
                "subscribe, unsubscribe, join_presence and leave_presence need `channel`, the client's local channel name",
                BTreeMap::from([("channel".to_owned(), vec!["a non-empty string is required".to_owned()])]),
            )),
        }
    }

    /// Subscribes; with `"snapshot": true` the reply also carries the matching rows and the offset they reflect.
    ///
    /// The hub registration comes before the read, so every change committed after the read is delivered; changes
    /// committed before it may be delivered too, and carry offsets at or below the snapshot's, which the client
    /// skips.
    pub(super) async fn subscribe_model(
        &self,
        session: &mut Session,
        route: &CompiledRoute,
        scope: &Scope,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        let snapshot = match args.remove("snapshot") {
            None | Some(Json::Bool(false)) => false,
            Some(Json::Bool(true)) => true,
            Some(_) => return Err(VerbError::new(ErrorCode::InvalidArgs, "`snapshot` takes true or false")),
        };
        let since = match args.remove("since") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                VerbError::new(ErrorCode::InvalidArgs, "`since` takes the last offset the client applied, an integer")
            })?),
        };
        if snapshot && since.is_some() {
            return Err(VerbError::new(ErrorCode::InvalidArgs, "ask for `snapshot` or `since`, not both"));
        }
        let order = parse_order(&route.view.model, &scope.view.publish, args.remove("_order"))?;
        let (filter, normalized) = self.inner.routes.filter(&self.inner.schema, route, scope, args)?;
        let (remote, visible) = channel_names(&route.name, normalized);
        let channel = ChannelChange::one(local.clone(), visible.clone(), ChannelAction::Subscribe);
        // Before anything can be missed: renames of referenced rows must log touches for this filter's references.
        for lookup in filter.remote_lookups() {
            self.watch_reference(&route.view.model.name, &lookup.hops[0].field).await?;
        }
        let hub = &self.inner.hub;
        let target = Target::Model(&scope.view, &filter, &visible);
        let fresh = session.join(hub, &local, &remote, target, self.inner.limits)?;
        if !snapshot && since.is_none() {
            return Ok(Outcome { data: Payload::Json(json!([])), client_context: None, channel });
        }
        if let Some(since) = since {
            match self.replay(route, &scope.view, &filter, &visible, since).await {
                Ok(Some(data)) => return Ok(Outcome { data, client_context: None, channel }),
                // The log no longer reaches back: answer with a fresh snapshot, marked as a reload.
                Ok(None) => {}
                Err(e) => {
                    if fresh {
                        session.leave(hub, &local, &remote)?;
                    }
                    return Err(e);
                }
            }
        }
        let max = limits::MAX_SNAPSHOT_ROWS as u64;
        let read = self.inner.store.list(&route.view.model, &filter, &order, max, 0).await.map_err(VerbError::from);
        let page = match read {
            Ok(page) if page.total <= max => page,
            failed => {
                if fresh {
                    session.leave(hub, &local, &remote)?;
                }
                return Err(failed.err().unwrap_or_else(|| {
                    VerbError::new(
                        ErrorCode::InvalidArgs,
                        format!("the filter matches more than {max} rows, too many for a snapshot; narrow it or page with get_list"),
                    )
                }));
            }
        };
        let rows: Vec<Json> =
            page.rows.iter().map(|r| row_to_json(&route.view.model, r, &scope.view.publish)).collect();
        let data = Payload::Snapshot { rows, offset: page.offset, reload: since.is_some() };
        Ok(Outcome { data, client_context: None, channel })
    }

    async fn watch_reference(&self, model: &str, field: &str) -> Result<(), VerbError> {
        let key = (model.to_owned(), field.to_owned());
        if self.inner.watched.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Ok(());
        }
        self.inner.store.watch_reference(model, field).await?;
        self.inner.watched.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
        Ok(())
    }

    /// The events a subscriber that last applied offset `since` missed, as a [`Payload::Replay`]; `None` when the
    /// log no longer reaches back that far.
    async fn replay(
        &self,
        route: &CompiledRoute,
        view: &RouteView,
        filter: &Filter,
        channel: &str,
        since: u64,
    ) -> Result<Option<Payload>, VerbError> {
        let model = &route.view.model;
        let (changes, head) = match self.inner.store.log_since(model, since, limits::MAX_REPLAY_CHANGES).await? {
            LogRead::Changes { changes, head } => (changes, head),
            LogRead::Gone { .. } => return Ok(None),
        };
        let lookups: Vec<Lookup> = filter.remote_lookups().into_iter().cloned().collect();
        let images = BatchImages::of(&changes);
        let channel: Arc<str> = Arc::from(channel);
        let mut events = Vec::new();
        for change in &changes {
            let remote_old = resolve(&self.inner, model, change, true, &lookups, &images.before).await;
            let remote_new = resolve(&self.inner, model, change, false, &lookups, &images.after).await;
            // Touches carry the referenced row before and after, so they replay like any change.
            if let Some(event) = replay_event(change, view, filter, &channel, &remote_old, &remote_new) {
                events.push(event);
            }
        }
        Ok(Some(Payload::Replay { events, offset: head }))
    }

    pub(super) fn unsubscribe_model(
        &self,
        session: &mut Session,
        route: &CompiledRoute,
        scope: &Scope,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        // Clients reuse their subscribe arguments; what only shapes the snapshot does not name the channel.
        args.remove("snapshot");
        args.remove("since");
        args.remove("_order");
        let (_, normalized) = self.inner.routes.filter(&self.inner.schema, route, scope, args)?;
        let (remote, visible) = channel_names(&route.name, normalized);
        session.leave(&self.inner.hub, &local, &remote)?;
        Ok(Outcome {
            data: Payload::Json(json!("unsubscribed")),
            client_context: None,
            channel: ChannelChange::one(local, visible, ChannelAction::Unsubscribe),
        })
    }

    pub(super) fn plain_channel_name(
        route_name: &str,
        spec: &ChannelRoute,
        args: &mut Args,
    ) -> Result<String, VerbError> {
        let name = match args.remove("name") {
            Some(Json::String(s)) => s,
            None if spec.channels.len() == 1 && !spec.channels[0].ends_with('*') => spec.channels[0].clone(),
            _ => {
                return Err(VerbError::new(
                    ErrorCode::InvalidArgs,
                    format!("route `{route_name}` needs `name`, the channel to subscribe to"),
                ));
            }
        };
        if let Some(extra) = args.keys().next() {
            return Err(VerbError::new(ErrorCode::InvalidArgs, format!("unknown argument `{extra}`")));
        }
        check_plain_channel_name(&name)?;
        if !spec.allows(&name) {
            return Err(VerbError::new(
                ErrorCode::PermissionDenied,
                format!("route `{route_name}` does not offer channel `{name}`"),
            ));
        }
        Ok(name)
    }

    /// Subscribes to or unsubscribes from a plain channel of a channel route.
    pub(super) fn plain(
        &self,
        session: &mut Session,
        route_name: &str,
        spec: &ChannelRoute,
        mut args: Args,
        action: ChannelAction,
    ) -> Result<Outcome, VerbError> {
        let local = Self::take_local_channel(&mut args)?;
        let remote = Self::plain_channel_name(route_name, spec, &mut args)?;
        let data = match action {
            ChannelAction::Subscribe => {
                if let Some(rule) = &spec.subscribe
                    && session.principal != Principal::Admin
                    && let Err(why) = rule.allows_channel(session.principal.user(), &remote)
                {
                    return Err(VerbError::new(ErrorCode::PermissionDenied, format!("route `{route_name}`: {why}")));
                }
                session.join(&self.inner.hub, &local, &remote, Target::Plain, self.inner.limits)?;
                "subscribed"
            }
            ChannelAction::Unsubscribe => {
                session.leave(&self.inner.hub, &local, &remote)?;
                "unsubscribed"
            }
        };
        Ok(Outcome {
            data: Payload::Json(json!(data)),
            client_context: None,
            channel: ChannelChange::one(local, remote, action),
        })
    }
}

/// A model channel's name in the hub, and the name its subscribers see. The hub's name carries the caller's rule
/// values ([`RULE_NAME`]) and the roles that add fields for them ([`FIELDS_NAME`]), so users under different rules,
/// or who see different fields, never share a channel or its index entries; the name the
/// client sees leaves them out, so an event that several users' channels receive alike (a change to a list they all
/// share) is one event, built and encoded once, whose bytes are the same for all of them. A session never holds two
/// channels of one visible name under different rules: its user cannot change while it is subscribed.
fn channel_names(route: &str, mut normalized: Args) -> (String, String) {
    let hub = model_channel_name(route, &normalized);
    let ruled = normalized.remove(RULE_NAME).is_some();
    let fielded = normalized.remove(FIELDS_NAME).is_some();
    if !ruled && !fielded {
        return (hub.clone(), hub);
    }
    (hub, model_channel_name(route, &normalized))
}
