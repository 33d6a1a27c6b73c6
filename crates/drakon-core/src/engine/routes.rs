//! Route compilation and the rules every verb applies before it reads or writes: which route a name means, how a
//! client's arguments become a filter (route params, `filter_fields`, fields a client may not see), the canonical
//! spelling that names a channel, and `_order`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use drakon_protocol::{Args, ErrorCode};
use serde_json::Value as Json;

use super::VerbError;
use crate::filter::{Filter, Lookup};
use crate::hub::RouteView;
use crate::limits;
use crate::rules::{Access, Action, Principal, RowFilter, User};
use crate::schema::{ChannelRoute, CheckedSchema, FieldType, Model, ModelRoute, RouteKind, Schema, user_filter};
use crate::store::OrderBy;
use crate::value::Value;

pub use crate::schema::ADMIN_ROUTE_PREFIX;

/// The entry of a channel's name that holds the caller's rule values (see [`Scope::names`]): part of the hub's name
/// of the channel, never of the name its subscribers see.
pub(super) const RULE_NAME: &str = "@rule";

/// The entry of a channel's hub name that holds the roles whose extra fields its subscribers see (see
/// `publish_fields_for`): users who see different fields never share a channel.
pub(super) const FIELDS_NAME: &str = "@fields";

/// Refuses a plain channel name that could not be published to: empty, or holding `|`, which separates a model
/// channel's filter.
pub(super) fn check_plain_channel_name(name: &str) -> Result<(), VerbError> {
    if name.is_empty() || name.contains('|') {
        return Err(VerbError::new(ErrorCode::InvalidArgs, "channel names must be non-empty and may not contain `|`"));
    }
    Ok(())
}

/// A model route, ready to serve.
pub(super) struct CompiledRoute {
    pub(super) name: String,
    pub(super) view: Arc<RouteView>,
    pub(super) spec: ModelRoute,
    pub(super) fixed: Filter,
    /// Admin routes may filter on every field of every model.
    pub(super) admin: bool,
    /// `filter_fields`, parsed: the only lookups client filters may use, when set.
    pub(super) filter_paths: Option<HashSet<Lookup>>,
    /// The views of users whose roles add fields (`publish_fields_for`), by the sorted roles that add them, made
    /// when first needed.
    role_views: std::sync::Mutex<HashMap<Vec<String>, Arc<RouteView>>>,
}

impl CompiledRoute {
    /// The roles of `principal` that add fields on this route (every such role for the admin), sorted.
    fn extra_roles(&self, principal: &Principal) -> Vec<String> {
        let mut roles: Vec<String> = match principal {
            Principal::Admin => self.spec.publish_fields_for.keys().cloned().collect(),
            Principal::User(user) => {
                self.spec.publish_fields_for.keys().filter(|role| user.has_role(role)).cloned().collect()
            }
            Principal::Anonymous => Vec::new(),
        };
        roles.sort();
        roles
    }

    /// What `roles` see of the route: `publish_fields` and the fields the roles add, in the model's order.
    fn view_for(&self, roles: Vec<String>) -> Arc<RouteView> {
        if roles.is_empty() {
            return self.view.clone();
        }
        let mut views = self.role_views.lock().unwrap_or_else(|e| e.into_inner());
        views
            .entry(roles)
            .or_insert_with_key(|roles| {
                let model = &self.view.model;
                let extra: HashSet<usize> = roles
                    .iter()
                    .flat_map(|role| &self.spec.publish_fields_for[role])
                    .filter_map(|field| model.field_index(field))
                    .collect();
                let mut publish: Vec<usize> = self.view.publish.iter().copied().chain(extra).collect();
                publish.sort_unstable();
                publish.dedup();
                Arc::new(RouteView { name: self.view.name.clone(), model: model.clone(), publish })
            })
            .clone()
    }
}

/// What one principal may touch on a route: the route's fixed filter ANDed with their rule's row filters, and the
/// rule's values as they name a channel (keys `@<n>.<lookup>`, which no client filter can spell).
#[derive(Debug, Clone)]
pub(super) struct Scope {
    pub(super) filter: Filter,
    names: Args,
    /// The fields the principal sees: the route's `publish_fields`, and those their roles add.
    pub(super) view: Arc<RouteView>,
}

impl Scope {
    /// Every row of the route (its fixed filter only), seen through its `publish_fields`.
    pub(super) fn whole(route: &CompiledRoute) -> Scope {
        Scope { filter: route.fixed.clone(), names: Args::new(), view: route.view.clone() }
    }

    /// Whether a rule narrowed the route's rows.
    pub(super) fn is_ruled(&self) -> bool {
        self.names.contains_key(RULE_NAME)
    }
}

/// A rule's rows for `user` (`None`: anonymous, whose rules name no user variable) as one filter.
fn compile_rows(
    schema: &Schema,
    model: &Model,
    rows: &RowFilter,
    user: Option<&User>,
) -> Result<Filter, crate::filter::FilterError> {
    Ok(match rows {
        RowFilter::Where(args) => match user {
            Some(user) => user_filter(schema, model, args, user)?,
            None => Filter::parse(schema, model, args)?,
        },
        RowFilter::All(all) => {
            let mut filter = Filter::default();
            for rows in all {
                filter = filter.and(compile_rows(schema, model, rows, user)?);
            }
            filter
        }
        RowFilter::Any(any) => {
            Filter::either(any.iter().map(|rows| compile_rows(schema, model, rows, user)).collect::<Result<_, _>>()?)
        }
    })
}

/// Every route of a schema, compiled.
pub(super) struct Routes {
    model: HashMap<String, CompiledRoute>,
    /// `admin:<model>` for every model: every field visible and writable, for the admin page only.
    admin: HashMap<String, CompiledRoute>,
    pub(super) channel: HashMap<String, ChannelRoute>,
    /// Per model, the fields some (non-admin) route publishes, plus `id`: what a client filter may read through
    /// a reference. Filtering on a hidden field would let a client learn its value by counting rows.
    visible: HashMap<String, HashSet<String>>,
}

impl Routes {
    /// Compiles the routes of a checked schema, plus an admin route for each of `models`.
    pub(super) fn compile(checked: &CheckedSchema, models: &HashMap<String, Arc<Model>>) -> Routes {
        let mut model_routes = HashMap::new();
        let mut channel_routes = HashMap::new();
        for route in &checked.schema().routes {
            match &route.kind {
                RouteKind::Model(spec) => {
                    // A checked schema has compiled every model route.
                    let Some(compiled) = checked.model_route(&route.name) else { continue };
                    let model = compiled.model.clone();
                    let publish = spec.publish_fields.iter().filter_map(|f| model.field_index(f)).collect();
                    let view = Arc::new(RouteView { name: route.name.clone(), model, publish });
                    model_routes.insert(
                        route.name.clone(),
                        CompiledRoute {
                            name: route.name.clone(),
                            view,
                            filter_paths: compiled.filter_paths.clone(),
                            spec: spec.clone(),
                            fixed: compiled.fixed.clone(),
                            admin: false,
                            role_views: Default::default(),
                        },
                    );
                }
                RouteKind::Channel(spec) => {
                    channel_routes.insert(route.name.clone(), spec.clone());
                }
            }
        }
        let mut admin_routes = HashMap::new();
        for model in models.values() {
            let name = format!("{ADMIN_ROUTE_PREFIX}{}", model.name);
            let fields: Vec<&str> = model.fields.iter().skip(1).map(|f| f.name.as_str()).collect();
            let mut spec = ModelRoute::new(model.name.clone()).publish(&fields).update(&fields).create(&fields);
            spec.page_size = limits::ADMIN_PAGE_SIZE;
            let publish = (1..model.fields.len()).collect();
            let view = Arc::new(RouteView { name: name.clone(), model: model.clone(), publish });
            admin_routes.insert(
                name.clone(),
                CompiledRoute {
                    name,
                    view,
                    spec,
                    fixed: Filter::default(),
                    admin: true,
                    filter_paths: None,
                    role_views: Default::default(),
                },
            );
        }
        let mut visible: HashMap<String, HashSet<String>> = HashMap::new();
        for route in model_routes.values() {
            let fields =
                visible.entry(route.view.model.name.clone()).or_insert_with(|| HashSet::from(["id".to_owned()]));
            fields.extend(route.spec.publish_fields.iter().cloned());
        }
        Routes { model: model_routes, admin: admin_routes, channel: channel_routes, visible }
    }

    /// The model route `name`; admin routes only when `admin_allowed`, and to anyone else they do not exist.
    pub(super) fn model(&self, name: &str, admin_allowed: bool) -> Result<&CompiledRoute, VerbError> {
        match self.model.get(name) {
            Some(route) => Ok(route),
            None => self
                .admin
                .get(name)
                .filter(|_| admin_allowed)
                .ok_or_else(|| VerbError::new(ErrorCode::UnknownRoute, format!("there is no route named `{name}`"))),
        }
    }

    /// What `principal` may touch on `route` for `action`: the route's fixed filter and the rule's, as a [`Scope`].
    /// A principal the rule refuses gets `permission_denied`, saying what would let them in; `None` (an in-process
    /// caller) and the admin may touch every row.
    pub(super) fn scope(
        &self,
        schema: &Schema,
        route: &CompiledRoute,
        action: Action,
        principal: Option<&Principal>,
    ) -> Result<Scope, VerbError> {
        let mut scope = Scope::whole(route);
        if let Some(principal) = principal {
            let roles = route.extra_roles(principal);
            if !roles.is_empty() {
                scope.names.insert(FIELDS_NAME.to_owned(), Json::from(roles.clone()));
                scope.view = route.view_for(roles);
            }
        }
        let (Some(rule), Some(principal)) = (route.spec.rules.for_action(action), principal) else { return Ok(scope) };
        if *principal == Principal::Admin {
            return Ok(scope);
        }
        let denied =
            |why: String| VerbError::new(ErrorCode::PermissionDenied, format!("route `{}`: {why}", route.name));
        let rows = match rule.resolve(principal.user()) {
            Access::Denied(why) => return Err(denied(why.to_string())),
            Access::Rows(None) => return Ok(scope),
            Access::Rows(Some(rows)) => rows,
        };
        // A rule checked with the schema fails here only for this user (an id that is not a number where the field
        // holds numbers): they may touch no row.
        let filter = compile_rows(schema, &route.view.model, &rows, principal.user()).map_err(|e| {
            tracing::debug!(route = %route.name, error = %e.message, "a rule does not apply to this user");
            denied("this rule lets you touch no row".into())
        })?;
        scope.filter = scope.filter.and(filter);
        scope.names.insert(RULE_NAME.to_owned(), rows.to_json(principal.user()));
        Ok(scope)
    }

    /// Maps route params to lookups, checks `filter_fields`, and parses the client's filter; returns the effective
    /// filter (the scope's and the client's) and the client's filter in canonical form plus the scope's rule
    /// values (for channel names; see [`canonical_args`]): clients whose rules differ never share a channel.
    pub(super) fn filter(
        &self,
        schema: &Schema,
        route: &CompiledRoute,
        scope: &Scope,
        args: Args,
    ) -> Result<(Filter, Args), VerbError> {
        let mut normalized = Args::new();
        for (key, value) in args {
            if key.starts_with('_') {
                return Err(VerbError::new(ErrorCode::InvalidArgs, format!("unknown argument `{key}`")));
            }
            let key = route.spec.params.get(&key).cloned().unwrap_or(key);
            normalized.insert(key, value);
        }
        let client = Filter::parse(schema, &route.view.model, &normalized)?;
        if let Some(allowed) = &route.filter_paths {
            // Compared as parsed lookups, so `tag`, `tag__id` and `tag__id__in` all count as the allowed `tag`.
            for (key, cond) in normalized.keys().zip(&client.conds) {
                if !allowed.contains(&cond.lookup) {
                    let path = lookup_path_without_op(key);
                    return Err(VerbError::new(
                        ErrorCode::InvalidFilter,
                        format!("route `{}` does not allow filtering on `{path}`", route.name),
                    ));
                }
            }
        }
        if !route.admin && route.filter_paths.is_none() {
            for (key, cond) in normalized.keys().zip(&client.conds) {
                self.check_visible(route, &scope.view, key, &cond.lookup)?;
            }
        }
        let mut canonical = canonical_args(&client)?;
        canonical.extend(scope.names.clone());
        Ok((scope.filter.clone().and(client), canonical))
    }

    /// Refuses a lookup that reads a field the client cannot see: on the route's model, a field outside what
    /// `view` publishes to them; behind a reference, a field no route publishes to everyone. It answers as for a
    /// field that does not exist, so the refusal reveals nothing either.
    fn check_visible(
        &self,
        route: &CompiledRoute,
        view: &RouteView,
        key: &str,
        lookup: &Lookup,
    ) -> Result<(), VerbError> {
        let first = lookup.hops.first().map_or(&lookup.field, |h| &h.field);
        let model = &route.view.model;
        let on_route = first == "id" || model.field_index(first).is_some_and(|i| view.publish.contains(&i));
        let mut hidden = (!on_route).then(|| (model.name.as_str(), first.as_str()));
        for (i, hop) in lookup.hops.iter().enumerate() {
            let field = lookup.hops.get(i + 1).map_or(&lookup.field, |next| &next.field);
            let seen = self.visible.get(&hop.to_model).is_some_and(|f| f.contains(field));
            if hidden.is_none() && !seen {
                hidden = Some((hop.to_model.as_str(), field.as_str()));
            }
        }
        match hidden {
            None => Ok(()),
            Some((model, field)) => Err(VerbError::fields(
                ErrorCode::UnknownField,
                format!("filter `{key}`: model `{model}` has no field `{field}`"),
                BTreeMap::from([(key.to_owned(), vec![format!("model `{model}` has no field `{field}`")])]),
            )),
        }
    }
}

/// The client's filter in one spelling, for channel names: operators spelled out only when not `eq`, a reference
/// compared by id as `ref__id`, values as their field type gives them (`1.0` for a float). Filters that mean the
/// same thing share one channel; one condition given twice is refused, since one name must mean one filter.
pub(super) fn canonical_args(filter: &Filter) -> Result<Args, VerbError> {
    let mut out = Args::new();
    for cond in &filter.conds {
        let mut key = cond.lookup.path();
        if matches!(cond.lookup.ty, FieldType::Ref { .. }) && cond.lookup.field != "id" {
            key.push_str("__id");
        }
        if cond.op != crate::filter::Op::Eq {
            key.push_str("__");
            key.push_str(cond.op.as_str());
        }
        let value = match &cond.operand {
            crate::filter::Operand::One(v) => v.to_json(),
            crate::filter::Operand::List(vs) => Json::Array(vs.iter().map(Value::to_json).collect()),
            crate::filter::Operand::Flag(b) => Json::Bool(*b),
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(VerbError::new(ErrorCode::InvalidFilter, format!("the condition `{key}` is given twice")));
        }
    }
    Ok(out)
}

fn lookup_path_without_op(key: &str) -> &str {
    match key.rsplit_once("__") {
        Some((path, op)) if crate::filter::Op::ALL.iter().any(|o| o.as_str() == op) => path,
        _ => key,
    }
}

pub(super) fn parse_order(model: &Model, publish: &[usize], order: Option<Json>) -> Result<Vec<OrderBy>, VerbError> {
    let keys: Vec<String> = match order {
        None => Vec::new(),
        Some(Json::String(s)) => vec![s],
        Some(Json::Array(items)) => {
            items.into_iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<_>>().ok_or_else(|| {
                VerbError::new(ErrorCode::InvalidArgs, "`_order` takes a field name or a list of them")
            })?
        }
        Some(_) => return Err(VerbError::new(ErrorCode::InvalidArgs, "`_order` takes a field name or a list of them")),
    };
    if keys.len() > limits::MAX_ORDER_TERMS {
        return Err(VerbError::new(
            ErrorCode::LimitExceeded,
            format!("`_order` may name at most {} fields", limits::MAX_ORDER_TERMS),
        ));
    }
    let mut out = Vec::with_capacity(keys.len() + 1);
    for key in keys {
        let (name, descending) = key.strip_prefix('-').map_or((key.as_str(), false), |k| (k, true));
        match model.field_index(name) {
            Some(i) if i == 0 || publish.contains(&i) => out.push(OrderBy { field: i, descending }),
            _ => {
                return Err(VerbError::new(
                    ErrorCode::InvalidArgs,
                    format!("cannot order by `{name}`: not a published field"),
                ));
            }
        }
    }
    if !out.iter().any(|o| o.field == 0) {
        out.push(OrderBy { field: 0, descending: false });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use drakon_protocol::model_channel_name;
    use serde_json::json;

    use super::super::fixture;
    use super::*;

    fn args(json: Json) -> Args {
        json.as_object().expect("an object").clone()
    }

    /// The code the client filter `filter` on `todo-item` gets, or the channel name it subscribes to.
    fn check(routes: &Routes, schema: &Schema, filter: Json) -> Result<String, ErrorCode> {
        let route = routes.model("todo-item", false).expect("the route");
        routes
            .filter(schema, route, &Scope::whole(route), args(filter))
            .map(|(_, canonical)| model_channel_name("todo-item", &canonical))
            .map_err(|e| e.code)
    }

    #[test]
    fn filters_that_mean_the_same_name_one_channel_and_hidden_fields_do_not_exist() {
        let (checked, routes) = fixture::routes();
        let schema = checked.schema();
        let table = [
            (json!({"list_id": 1}), Ok("todo-item|todo_list__id:1")),
            (json!({"todo_list": 1}), Ok("todo-item|todo_list__id:1")),
            (json!({"todo_list__id": 1}), Ok("todo-item|todo_list__id:1")),
            (json!({"done": false, "todo_list": 2}), Ok("todo-item|done:false|todo_list__id:2")),
            (json!({"todo_list__name": "home"}), Ok("todo-item|todo_list__name:\"home\"")),
            // Not published by this route, nor (through the reference) by any route.
            (json!({"secret": "x"}), Err(ErrorCode::UnknownField)),
            (json!({"todo_list__note": "x"}), Err(ErrorCode::UnknownField)),
            (json!({"todo_list": 1, "todo_list__id": 1}), Err(ErrorCode::InvalidFilter)),
            (json!({"_page": 1}), Err(ErrorCode::InvalidArgs)),
            (json!({"done": "no"}), Err(ErrorCode::WrongType)),
        ];
        for (filter, want) in table {
            assert_eq!(check(&routes, schema, filter.clone()).as_deref(), want.as_ref().map(|s| *s), "{filter}");
        }
    }

    #[test]
    fn admin_routes_exist_only_for_admins_and_see_every_field() {
        let (checked, routes) = fixture::routes();
        assert_eq!(routes.model("admin:todo_item", false).err().map(|e| e.code), Some(ErrorCode::UnknownRoute));
        let admin = routes.model("admin:todo_item", true).expect("an admin route");
        assert!(routes.filter(checked.schema(), admin, &Scope::whole(admin), args(json!({"secret": "x"}))).is_ok());
        assert_eq!(routes.model("nope", true).err().map(|e| e.code), Some(ErrorCode::UnknownRoute));
    }

    #[test]
    fn order_takes_published_fields_and_always_ends_with_id() {
        let (_, routes) = fixture::routes();
        let view = &routes.model("todo-item", false).expect("the route").view;
        let order = parse_order(&view.model, &view.publish, Some(json!(["-text", "done"]))).expect("an order");
        let got: Vec<(usize, bool)> = order.iter().map(|o| (o.field, o.descending)).collect();
        assert_eq!(got, [(1, true), (2, false), (0, false)]);
        assert_eq!(parse_order(&view.model, &view.publish, Some(json!("-id"))).map(|o| o.len()), Ok(1));
        let long: Vec<&str> = ["text", "-done"].into_iter().cycle().take(limits::MAX_ORDER_TERMS + 1).collect();
        assert_eq!(
            parse_order(&view.model, &view.publish, Some(json!(long))).err().map(|e| e.code),
            Some(ErrorCode::LimitExceeded)
        );
        for bad in [json!("secret"), json!("nope"), json!(3), json!([1])] {
            assert_eq!(
                parse_order(&view.model, &view.publish, Some(bad)).err().map(|e| e.code),
                Some(ErrorCode::InvalidArgs)
            );
        }
    }
}
