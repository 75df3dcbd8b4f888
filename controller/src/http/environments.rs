//! `/api/v1/environments`: the environment catalog, and `/images/`, the
//! controller's images directory (HTTP Range, for agents).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferrum_api::ErrorBody;
use ferrum_api::environment::{Environment, EnvironmentDescriptor, EnvironmentQuery};

use super::error::ApiResult;
use super::extract::{Body, Caller, Params, PathParam};
use crate::app::App;

/// The environments you can see, newest version first per name.
#[utoipa::path(get, path = "/api/v1/environments", operation_id = "environments_list", tag = "environments",
    responses((status = 200, body = Vec<Environment>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(State(app): State<Arc<App>>, Caller(actor): Caller) -> ApiResult<Json<Vec<Environment>>> {
    Ok(Json(app.list_environments(&actor).await?))
}

/// Add an environment descriptor (`public` ones: admins only).
#[utoipa::path(post, path = "/api/v1/environments", operation_id = "environments_create", tag = "environments", request_body = EnvironmentDescriptor,
    responses((status = 201, body = Environment), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "this name and version exist", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Body(d): Body<EnvironmentDescriptor>,
) -> ApiResult<(StatusCode, Json<Environment>)> {
    Ok((StatusCode::CREATED, Json(app.add_environment(&actor, d).await?)))
}

/// One environment: `NAME` resolves to your own, else the public one, else
/// the one shared with your projects (never another user's private one);
/// `?owner=` (or `OWNER%2FNAME`) names the owner; newest version unless
/// `?version=`.
#[utoipa::path(get, path = "/api/v1/environments/{name}", operation_id = "environments_show", tag = "environments", params(("name" = String, Path), EnvironmentQuery),
    responses((status = 200, body = Environment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the name is published by several owners: name one", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Params(q): Params<EnvironmentQuery>,
) -> ApiResult<Json<Environment>> {
    Ok(Json(app.get_environment(&actor, &name, q.owner.as_deref(), q.version).await?))
}
