//! The built-in verbs that read and write rows: `get_list`, `get_single`, `create`, `update`, `delete`. Each
//! checks its arguments against the route (what a client may see, set and filter on) before the store sees them.

use std::collections::{BTreeMap, BTreeSet};

use drakon_protocol::{Args, ErrorCode};
use serde_json::{Value as Json, json};

use super::error::read_only;
use super::routes::{CompiledRoute, Scope, parse_order};
use super::{Engine, Outcome, Payload, VerbError};
use crate::filter::Filter;
use crate::rules::User;
use crate::schema::Model;
use crate::store::{Assignment, Change, Row, StoreError, WriteOp, row_to_json};
use crate::value::Value;

impl Engine {
    pub(super) async fn get_list(
        &self,
        route: &CompiledRoute,
        scope: &Scope,
        mut args: Args,
        page: Option<u64>,
    ) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let order = parse_order(model, &scope.view.publish, args.remove("_order"))?;
        let (filter, _) = self.inner.routes.filter(&self.inner.schema, route, scope, args)?;
        let page_size = u64::from(route.spec.page_size);
        let number = page.unwrap_or(1);
        // A page so far out that its first row's position does not fit the database's integers is past the last
        // page whatever the table holds: read only the count, and say so below.
        let skip = number.saturating_sub(1).checked_mul(page_size).filter(|&skip| skip <= i64::MAX as u64);
        let limit = if skip.is_some() { page_size } else { 0 };
        let result = self.inner.store.list(model, &filter, &order, limit, skip.unwrap_or(0)).await?;
        let page_count = result.total.div_ceil(page_size).max(1);
        if number > page_count {
            return Err(VerbError::new(
                ErrorCode::PageOutOfRange,
                format!("page {number} is past the last page, {page_count}"),
            ));
        }
        let data = result.rows.iter().map(|r| row_to_json(model, r, &scope.view.publish)).collect();
        let info = json!({"page": {
            "page": number, "page_count": page_count, "page_size": page_size, "total": result.total,
            "has_next": number < page_count, "has_previous": number > 1,
        }});
        Ok(Outcome { data: Payload::Json(Json::Array(data)), client_context: Some(info), channel: None })
    }

    pub(super) async fn get_single(
        &self,
        route: &CompiledRoute,
        scope: &Scope,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let id = take_id(&mut args)?;
        args.remove("_type");
        let (filter, _) = self.inner.routes.filter(&self.inner.schema, route, scope, args)?;
        let row = self.fetch(route, id, filter).await?;
        Ok(Outcome::data(row_to_json(&route.view.model, &row, &scope.view.publish)))
    }

    pub(super) async fn fetch(&self, route: &CompiledRoute, id: i64, filter: Filter) -> Result<Row, VerbError> {
        let model = &route.view.model;
        let by_id = Filter::parse(&self.inner.schema, model, &Args::from_iter([("id".to_owned(), json!(id))]))?;
        let page = self.inner.store.list(model, &filter.and(by_id), &[], 1, 0).await?;
        page.rows
            .into_iter()
            .next()
            .ok_or_else(|| VerbError::new(ErrorCode::NotFound, format!("no {} with id {id}", model.name)))
    }

    /// Creates a row, which must fall within `scope` once written (the create rule, checked after the write).
    /// Refuses with `permission_denied` when row `id`, which the caller may read, is outside `scope` (a write rule).
    async fn allowed(&self, route: &CompiledRoute, id: i64, scope: &Scope, verb: &str) -> Result<(), VerbError> {
        if !scope.is_ruled() {
            return Ok(());
        }
        match self.fetch(route, id, scope.filter.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == ErrorCode::NotFound => Err(VerbError::new(
                ErrorCode::PermissionDenied,
                format!("route `{}`: you may not {verb} this {}", route.name, route.view.model.name),
            )),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn create(
        &self,
        route: &CompiledRoute,
        scope: Scope,
        user: Option<&User>,
        args: Args,
    ) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let mut values = create_values(route, args)?;
        values.extend(server_set_values(route, user)?);
        let (ruled, view) = (scope.is_ruled(), scope.view);
        let changes = self
            .inner
            .store
            .write(WriteOp::Create { model: model.name.clone(), values, guard: scope.filter })
            .await
            .map_err(|e| hide_missing_refs(ruled, e))?;
        let row = primary_image(&changes, |c| c.new.as_ref())?;
        Ok(Outcome::data(row_to_json(model, row, &view.publish)))
    }

    /// Updates a row the caller may read and update (`before`: a row outside it is not found), which must still fall
    /// within `after` (the update rule) once written.
    pub(super) async fn update(
        &self,
        route: &CompiledRoute,
        before: Scope,
        after: Scope,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let id = take_id(&mut args)?;
        let current = self.fetch(route, id, before.filter).await?;
        self.allowed(route, id, &after, "update").await?;
        let values = update_values(route, &current, args)?;
        let ident = row_to_json(model, &current, &[]);
        if values.is_empty() {
            return Ok(Outcome::data(ident));
        }
        let ruled = after.is_ruled();
        let changes = self
            .inner
            .store
            .write(WriteOp::Update { model: model.name.clone(), id, values, guard: after.filter })
            .await
            .map_err(|e| hide_missing_refs(ruled, e))?;
        let Some(change) = changes.first() else { return Ok(Outcome::data(ident)) };
        let (old, new) = (change.old.as_ref(), change.new.as_ref());
        let changed: Vec<usize> =
            before.view.publish.iter().copied().filter(|&i| old.map(|o| &o[i]) != new.map(|n| &n[i])).collect();
        let row = new.ok_or_else(|| VerbError::new(ErrorCode::Internal, "update returned no row"))?;
        Ok(Outcome::data(row_to_json(model, row, &changed)))
    }

    /// Deletes a row the caller may read (any other is not found) and delete (`permission_denied` otherwise).
    pub(super) async fn delete(
        &self,
        route: &CompiledRoute,
        read: &Scope,
        scope: &Scope,
        mut args: Args,
    ) -> Result<Outcome, VerbError> {
        let model = &route.view.model;
        let id = take_id(&mut args)?;
        args.remove("_type");
        // Other arguments are conditions the row must meet, as in get_single.
        let (visible, _) = self.inner.routes.filter(&self.inner.schema, route, read, args.clone())?;
        self.fetch(route, id, visible).await?;
        self.allowed(route, id, scope, "delete").await?;
        let (guard, _) = self.inner.routes.filter(&self.inner.schema, route, scope, args)?;
        let changes = self.inner.store.write(WriteOp::Delete { model: model.name.clone(), id, guard }).await?;
        let row = changes
            .iter()
            .find(|c| *c.model == model.name && c.id == id)
            .and_then(|c| c.old.as_ref())
            .ok_or_else(|| VerbError::new(ErrorCode::Internal, "the store reported no change"))?;
        Ok(Outcome::data(row_to_json(model, row, &read.view.publish)))
    }
}

/// The values a `create` with `args` writes, checked against the route: only `create_fields`, every required field,
/// each value of its field's type. Every problem is reported at once.
/// Under a rule, a reference to a row that does not exist fails like one to a row the caller may not use: both
/// leave the rule unmet. Otherwise "does not exist" against "not yours" would tell whether a hidden row exists.
fn hide_missing_refs(ruled: bool, e: StoreError) -> StoreError {
    match e {
        StoreError::MissingRef { .. } if ruled => StoreError::OutsideRoute,
        e => e,
    }
}

fn create_values(route: &CompiledRoute, mut args: Args) -> Result<Vec<Assignment>, VerbError> {
    let model = &route.view.model;
    args.remove("_type");
    if args.get("id").is_some_and(|v| !v.is_null()) {
        return Err(read_only("id", "the store assigns ids"));
    }
    args.remove("id");
    let mut errors = FieldErrors::default();
    let mut values = Vec::new();
    let mut given = BTreeSet::new();
    for (key, json) in &args {
        let Some(index) = model.field_index(key) else {
            errors.add(ErrorCode::UnknownField, key, format!("{} has no field `{key}`", model.name));
            continue;
        };
        if !route.spec.create_fields.contains(key) {
            // A field the route does not publish is one the client does not know of.
            if route.view.publish.contains(&index) {
                let message = format!("route `{}` does not let clients set `{key}`", route.name);
                errors.add(ErrorCode::ReadOnlyField, key, message);
            } else {
                errors.add(ErrorCode::UnknownField, key, format!("{} has no field `{key}`", model.name));
            }
            continue;
        }
        if let Some(v) = errors.typed(model, index, json) {
            given.insert(index);
            values.push((index, v));
        }
    }
    for (index, field) in model.fields.iter().enumerate().skip(1) {
        let server_set = route.spec.set.contains_key(&field.name);
        if !given.contains(&index) && !field.has_fallback() && !server_set && !errors.has(&field.name) {
            errors.add(ErrorCode::ValidationFailed, &field.name, "this field is required".into());
        }
    }
    errors.into_result()?;
    Ok(values)
}

/// The values the route's `set` gives a new row: the caller's user id for `"$user.id"`, else the value as written.
fn server_set_values(route: &CompiledRoute, user: Option<&User>) -> Result<Vec<Assignment>, VerbError> {
    let model = &route.view.model;
    let mut values = Vec::new();
    for (field, value) in &route.spec.set {
        // The schema check made sure the field exists.
        let Some(index) = model.field_index(field) else { continue };
        let json = if value == crate::rules::USER_ID {
            let user = user.ok_or_else(|| {
                VerbError::new(ErrorCode::PermissionDenied, format!("route `{}`: sign in first", route.name))
            })?;
            match (&model.fields[index].ty, user.id.parse::<i64>()) {
                (crate::schema::FieldType::Int | crate::schema::FieldType::Ref { .. }, Ok(n)) => Json::from(n),
                _ => Json::String(user.id.clone()),
            }
        } else {
            value.clone()
        };
        let value = Value::from_json(&model.fields[index].ty, &json).map_err(|e| {
            VerbError::new(ErrorCode::PermissionDenied, format!("`{field}` cannot hold your user id: {}", e.0))
        })?;
        values.push((index, value));
    }
    Ok(values)
}

/// The values an `update` with `args` changes on row `current`: only `update_fields` that differ from what the row
/// holds. A client sends whole objects back, so a published read-only field is accepted when unchanged.
fn update_values(route: &CompiledRoute, current: &Row, mut args: Args) -> Result<Vec<Assignment>, VerbError> {
    let model = &route.view.model;
    args.remove("_type");
    let mut errors = FieldErrors::default();
    let mut values = Vec::new();
    for (key, json) in &args {
        let index = model
            .field_index(key)
            .filter(|&i| route.view.publish.contains(&i) || route.spec.update_fields.contains(key));
        let Some(index) = index else {
            errors.add(ErrorCode::UnknownField, key, format!("{} has no field `{key}`", model.name));
            continue;
        };
        let Some(value) = errors.typed(model, index, json) else { continue };
        if route.spec.update_fields.contains(key) {
            if value != current[index] {
                values.push((index, value));
            }
        } else if value != current[index] {
            // Clients send back whole objects; an unchanged read-only field is fine, a changed one is not.
            errors.add(
                ErrorCode::ReadOnlyField,
                key,
                format!("route `{}` does not let clients change `{key}`", route.name),
            );
        }
    }
    errors.into_result()?;
    Ok(values)
}

fn take_id(args: &mut Args) -> Result<i64, VerbError> {
    match args.remove("id") {
        Some(v) => v.as_i64().ok_or_else(|| {
            VerbError::fields(
                ErrorCode::WrongType,
                "`id` must be an integer",
                BTreeMap::from([("id".to_owned(), vec!["expected an integer id".to_owned()])]),
            )
        }),
        None => Err(VerbError::fields(
            ErrorCode::InvalidArgs,
            "this verb needs `id`",
            BTreeMap::from([("id".to_owned(), vec!["this field is required".to_owned()])]),
        )),
    }
}

fn primary_image<'a>(
    changes: &'a [Change],
    pick: impl Fn(&'a Change) -> Option<&'a Row>,
) -> Result<&'a Row, VerbError> {
    changes.first().and_then(pick).ok_or_else(|| VerbError::new(ErrorCode::Internal, "the store reported no change"))
}

/// Collects per-field errors so that one reply lists them all.
#[derive(Default)]
struct FieldErrors {
    fields: BTreeMap<String, Vec<String>>,
    code: Option<ErrorCode>,
}

impl FieldErrors {
    fn add(&mut self, code: ErrorCode, field: &str, message: String) {
        // The first kind of problem names the error; a mix of kinds is a validation failure.
        self.code = Some(match self.code {
            None => code,
            Some(c) if c == code => c,
            Some(_) => ErrorCode::ValidationFailed,
        });
        self.fields.entry(field.to_owned()).or_default().push(message);
    }

    fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    fn typed(&mut self, model: &Model, index: usize, json: &Json) -> Option<Value> {
        let field = &model.fields[index];
        match Value::from_json(&field.ty, json) {
            Ok(Value::Null) if !field.optional => {
                self.add(ErrorCode::ValidationFailed, &field.name, "this field may not be null".into());
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                self.add(ErrorCode::WrongType, &field.name, e.0);
                None
            }
        }
    }

    fn into_result(self) -> Result<(), VerbError> {
        let Some(code) = self.code else { return Ok(()) };
        let summary = self.fields.iter().map(|(f, m)| format!("{f}: {}", m.join("; "))).collect::<Vec<_>>().join(", ");
        Err(VerbError::fields(code, summary, self.fields))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture;
    use super::*;

    fn args(json: Json) -> Args {
        json.as_object().expect("an object").clone()
    }

    /// The code a `create` with `given` gets, with the fields it names; or the (field, value) pairs it writes.
    fn create(given: Json) -> Result<Vec<Assignment>, (ErrorCode, Vec<String>)> {
        let (_, routes) = fixture::routes();
        let route = routes.model("todo-item", false).expect("the route");
        create_values(route, args(given))
            .map_err(|e| (e.code, e.fields.map(|f| f.keys().cloned().collect()).unwrap_or_default()))
    }

    #[test]
    fn create_takes_create_fields_of_their_type_and_lists_every_problem() {
        let fields = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            create(json!({"text": "milk", "todo_list": 1, "_type": "todo_item"})),
            Ok(vec![(1, Value::Text("milk".into())), (4, Value::Int(1))]),
            "`done` has a default, `_type` is what clients send back"
        );
        let table = [
            (json!({"todo_list": 1}), ErrorCode::ValidationFailed, fields(&["text"])),
            (json!({"text": "a", "todo_list": 1, "secret": "s"}), ErrorCode::UnknownField, fields(&["secret"])),
            (json!({"text": "a", "todo_list": 1, "id": 9}), ErrorCode::ReadOnlyField, fields(&["id"])),
            (json!({"text": 3, "todo_list": 1}), ErrorCode::WrongType, fields(&["text"])),
            (json!({"text": null, "todo_list": 1}), ErrorCode::ValidationFailed, fields(&["text"])),
            // Two kinds of problem at once: a validation failure naming both fields.
            (json!({"text": 3, "nope": 1}), ErrorCode::ValidationFailed, fields(&["nope", "text", "todo_list"])),
        ];
        for (given, code, named) in table {
            assert_eq!(create(given.clone()), Err((code, named)), "{given}");
        }
    }

    #[test]
    fn update_changes_only_what_differs_and_accepts_unchanged_read_only_fields() {
        let (_, routes) = fixture::routes();
        let route = routes.model("todo-item", false).expect("the route");
        let current =
            vec![Value::Int(7), Value::Text("milk".into()), Value::Bool(false), Value::Text("s".into()), Value::Int(1)];
        // What a client sends back, but `id`, which the verb takes first.
        let whole = json!({"_type": "todo_item", "text": "milk", "done": true, "todo_list": 1});
        assert_eq!(update_values(route, &current, args(whole)), Ok(vec![(2, Value::Bool(true))]));
        let moved = update_values(route, &current, args(json!({"todo_list": 2}))).unwrap_err();
        assert_eq!((moved.code, moved.fields.unwrap().contains_key("todo_list")), (ErrorCode::ReadOnlyField, true));
        let hidden = update_values(route, &current, args(json!({"secret": "t"}))).unwrap_err();
        assert_eq!(hidden.code, ErrorCode::UnknownField, "a field the route does not publish does not exist");
    }
}
