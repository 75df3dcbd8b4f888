//! Handlers of `/api/v1/leases`, `/api/v1/availability` and
//! `/api/v1/calendar`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferrum_api as api;
use ferrum_api::ErrorBody;

use super::error::ApiResult;
use super::extract::{Body, Caller, Params, PathParam};
use super::views;
use crate::app::App;
use crate::model::time::{from_seconds, to_seconds};

/// Reserve nodes: by count and filter or by names, at a start time or as
/// soon as possible.
#[utoipa::path(post, path = "/api/v1/leases", operation_id = "leases_create", tag = "leases", request_body = api::LeaseCreate,
    responses((status = 201, body = api::Lease), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "the slot is taken; `error.earliest_start` says when it would fit", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Body(req): Body<api::LeaseCreate>,
) -> ApiResult<(StatusCode, Json<api::Lease>)> {
    let row = app.create_lease(&actor, req).await?;
    Ok((StatusCode::CREATED, Json(views::lease(row))))
}

/// The caller's leases (all leases for admins), newest first.
#[utoipa::path(get, path = "/api/v1/leases", operation_id = "leases_list", tag = "leases", params(api::LeaseListQuery),
    responses((status = 200, body = Vec<api::Lease>), (status = 403, description = "`owner` names another user, and the caller is no admin", body = ErrorBody),
        (status = 404, description = "`owner` names no user", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Params(q): Params<api::LeaseListQuery>,
) -> ApiResult<Json<Vec<api::Lease>>> {
    let (state, all) = (q.state.map(Into::into), q.all.unwrap_or(false));
    let rows = match q.owner.as_deref() {
        Some(owner) => app.list_leases_of(&actor, owner, state, all).await?,
        None => app.list_leases(&actor, state, all).await?,
    };
    Ok(Json(rows.into_iter().map(views::lease).collect()))
}

/// One lease.
#[utoipa::path(get, path = "/api/v1/leases/{id}", operation_id = "leases_show", tag = "leases", params(("id" = i64, Path)),
    responses((status = 200, body = api::Lease), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(State(app): State<Arc<App>>, Caller(actor): Caller, PathParam(id): PathParam<i64>) -> ApiResult<Json<api::Lease>> {
    Ok(Json(views::lease(app.get_lease(&actor, id).await?)))
}

/// Approve a lease awaiting approval (admin): it becomes `pending` and
/// starts on time.
#[utoipa::path(post, path = "/api/v1/leases/{id}/approve", operation_id = "leases_approve", tag = "leases", params(("id" = i64, Path)), request_body = api::usage::LeaseDecision,
    responses((status = 200, body = api::Lease), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
    Body(req): Body<api::usage::LeaseDecision>,
) -> ApiResult<Json<api::Lease>> {
    Ok(Json(views::lease(app.decide_lease(&actor, id, true, req.reason.as_deref()).await?)))
}

/// Reject a lease awaiting approval (admin): its tentative slot is freed;
/// the reason is shown to the requester.
#[utoipa::path(post, path = "/api/v1/leases/{id}/reject", operation_id = "leases_reject", tag = "leases", params(("id" = i64, Path)), request_body = api::usage::LeaseDecision,
    responses((status = 200, body = api::Lease), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reject(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
    Body(req): Body<api::usage::LeaseDecision>,
) -> ApiResult<Json<api::Lease>> {
    Ok(Json(views::lease(app.decide_lease(&actor, id, false, req.reason.as_deref()).await?)))
}

/// Extend a lease (move its end later) when its nodes are free.
#[utoipa::path(patch, path = "/api/v1/leases/{id}", operation_id = "leases_extend", tag = "leases", params(("id" = i64, Path)), request_body = api::LeasePatch,
    responses((status = 200, body = api::Lease), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn extend(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
    Body(req): Body<api::LeasePatch>,
) -> ApiResult<Json<api::Lease>> {
    Ok(Json(views::lease(app.extend_lease(&actor, id, to_seconds(req.end)).await?)))
}

/// End a lease now: cancelled if it had not started, released otherwise.
#[utoipa::path(delete, path = "/api/v1/leases/{id}", operation_id = "leases_end", tag = "leases", params(("id" = i64, Path)),
    responses((status = 200, body = api::Lease), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn end(State(app): State<Arc<App>>, Caller(actor): Caller, PathParam(id): PathParam<i64>) -> ApiResult<Json<api::Lease>> {
    Ok(Json(views::lease(app.end_lease(&actor, id).await?)))
}

/// Earliest slots for `count` nodes matching `filter` for `duration`
/// (OAR-style first fit): the first one, then each next one after the
/// previous one ends.
#[utoipa::path(get, path = "/api/v1/availability", operation_id = "availability", tag = "calendar", params(api::AvailabilityQuery),
    responses((status = 200, body = api::Availability), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn availability(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Params(q): Params<api::AvailabilityQuery>,
) -> ApiResult<Json<api::Availability>> {
    let slots = app.availability(&actor, &q).await?;
    Ok(Json(api::Availability {
        slots: slots
            .into_iter()
            .map(|(start, end, nodes)| api::Slot { start: from_seconds(start), end: from_seconds(end), nodes })
            .collect(),
    }))
}

/// Busy intervals per node (for Gantt charts).
#[utoipa::path(get, path = "/api/v1/calendar", operation_id = "calendar", tag = "calendar", params(api::CalendarQuery),
    responses((status = 200, body = api::Calendar), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn calendar(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Params(q): Params<api::CalendarQuery>,
) -> ApiResult<Json<api::Calendar>> {
    let (from, to, nodes) = app.calendar_view(q.from.map(to_seconds), q.to.map(to_seconds), q.filter.as_deref()).await?;
    Ok(Json(api::Calendar {
        from: from_seconds(from),
        to: from_seconds(to),
        nodes: nodes
            .into_iter()
            .map(|(n, busy)| api::NodeCalendar {
                state: crate::model::node::shown_state(n.state, n.policy),
                node: n.name,
                busy: busy.into_iter().map(|b| views::busy(b, &actor)).collect(),
            })
            .collect(),
    }))
}
