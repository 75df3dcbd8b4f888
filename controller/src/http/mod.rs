//! The HTTP API (axum): routes, the OpenAPI document, `/healthz` and
//! `/metrics`.
//!
//! Handlers are thin: parse (the extractors of [`extract`]), authorise
//! (the [`extract::Caller`] token check; roles are checked by the
//! application layer), call one `App` function, convert with [`views`].
//! Handlers never touch SQL or BMCs.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::app::App;

pub mod account_requests;
pub mod accounts;
pub mod agent;
pub mod boot;
pub mod deployments;
pub mod environments;
pub mod error;
pub mod extract;
pub mod leases;
pub mod limits;
pub mod metrics;
pub mod nodes;
pub mod tls;
pub mod usage;
pub mod views;

use error::ApiError;

/// Imports of a whole Grid'5000 reference (about 940 nodes, ~16 MB of
/// JSON) fit in one request.
const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The OpenAPI document, generated from the handlers and API types.
#[derive(OpenApi)]
#[openapi(
    info(title = "ferrum API", description = "Bare-metal testbed reservations, deployments and inventory.", version = "1"),
    paths(
        health, openapi_json,
        nodes::list, nodes::create, nodes::import, nodes::show, nodes::maintenance, nodes::repaired, nodes::sites, nodes::events, nodes::power, nodes::boot_device, nodes::boot_target, boot::unknown_macs, boot::hosts, boot::create_token,
        agent::node_inventory, agent::create_command, agent::list_commands,
        environments::list, environments::create, environments::show,
        deployments::create, deployments::list, deployments::show, deployments::cancel, deployments::node_operations,
        leases::create, leases::list, leases::show, leases::extend, leases::end, leases::approve, leases::reject, leases::availability, leases::calendar,
        usage::report, usage::records, usage::audit, usage::quota,
        account_requests::create, account_requests::list, account_requests::show, account_requests::approve, account_requests::reject,
        account_requests::update_project, account_requests::add_member, account_requests::remove_member,
        accounts::create_project, accounts::list_projects, accounts::create_user, accounts::list_users, accounts::me, accounts::create_token,
        accounts::list_tokens, accounts::revoke_token, accounts::disable_user, accounts::enable_user, accounts::activation_link,
        accounts::list_ssh_keys, accounts::add_ssh_key, accounts::remove_ssh_key, accounts::export_me, accounts::export_user, accounts::erase_user,
    ),
    components(schemas(ferrum_api::ErrorBody, ferrum_api::usage::ExportFormat)),
    modifiers(&BearerAuth, &CommonResponses, &ClosedVariants),
    tags((name = "nodes"), (name = "leases"), (name = "calendar"), (name = "accounts"), (name = "environments"), (name = "usage"), (name = "deployments"), (name = "boot"), (name = "agent"), (name = "meta"))
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The answers that the extractors and the router give for every operation
/// of a kind, added where an annotation does not say them already: 401
/// (`Caller`) where a token is taken, 400 (`PathParam`, `Params`, `Body`)
/// where a parameter or a body is read, 404 where a path names a resource,
/// 413 where a body is read. Responses left without a description get the
/// status's reason phrase (a description is required by OpenAPI).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let names_a_resource = path.contains('{');
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in operations.into_iter().flatten() {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = op.request_body.is_some();
                let responses = &mut op.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| error(description));
                };
                if secured {
                    add("401", "no token, or an unknown, expired or revoked one");
                }
                if has_params || has_body {
                    add("400", "a malformed parameter or body; the message names it");
                }
                if names_a_resource {
                    add("404", "no such resource, or one the caller may not see");
                }
                if has_body {
                    add("413", "request body too large");
                }
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        let reason =
                            status.parse::<u16>().ok().and_then(|s| StatusCode::from_u16(s).ok()).and_then(|s| s.canonical_reason());
                        response.description = reason.unwrap_or("answer").to_owned();
                    }
                }
            }
        }
    }
}

/// The variants with fields of an internally tagged enum that refuses
/// unknown fields (`#[serde(tag, deny_unknown_fields)]`) are closed
/// objects, which utoipa does not say by itself. Unit variants (only the
/// tag) stay open: serde's `deny_unknown_fields` does not reach them.
/// And a closed type flattened into another is open there.
struct ClosedVariants;

impl utoipa::Modify for ClosedVariants {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else { return };
        for name in ["AgentAction"] {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
                for variant in &mut one_of.items {
                    if let RefOr::T(Schema::Object(object)) = variant
                        && object.properties.len() > 1
                    {
                        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
        // A closed type (`deny_unknown_fields`) flattened into another
        // (`Environment` holds an `EnvironmentDescriptor`) is open there:
        // under `allOf`, its `additionalProperties: false` would refuse the
        // outer type's own fields. Such an item is inlined without it.
        let closed: std::collections::BTreeMap<String, Schema> = components
            .schemas
            .iter()
            .filter_map(|(name, schema)| match schema {
                RefOr::T(Schema::Object(o))
                    if matches!(o.additional_properties.as_deref(), Some(AdditionalProperties::FreeForm(false))) =>
                {
                    let mut open = o.clone();
                    open.additional_properties = None;
                    Some((format!("#/components/schemas/{name}"), Schema::Object(open)))
                }
                _ => None,
            })
            .collect();
        for schema in components.schemas.values_mut() {
            if let RefOr::T(Schema::AllOf(all_of)) = schema {
                for item in &mut all_of.items {
                    if let RefOr::Ref(r) = item
                        && let Some(open) = closed.get(&r.ref_location)
                    {
                        *item = RefOr::T(open.clone());
                    }
                }
            }
        }
    }
}

/// The OpenAPI document as committed at `api-spec/openapi.yaml`.
pub fn openapi_yaml() -> String {
    ApiDoc::openapi().to_yaml().unwrap_or_default()
}

/// The router of the whole HTTP API (the public listener). The boot and
/// agent endpoints are not here: they are [`boot_router`]'s.
pub fn router(app: Arc<App>, metrics: Arc<metrics::Metrics>) -> Router {
    let api = Router::new()
        .route("/nodes", get(nodes::list).post(nodes::create))
        .route("/nodes/import", post(nodes::import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)))
        .route("/nodes/{name}", get(nodes::show))
        .route("/nodes/{name}/maintenance", post(nodes::maintenance))
        .route("/nodes/{name}/events", get(nodes::events))
        .route("/nodes/{name}/repaired", post(nodes::repaired))
        .route("/sites", get(nodes::sites))
        .route("/nodes/{name}/power", post(nodes::power))
        .route("/nodes/{name}/boot-device", axum::routing::put(nodes::boot_device))
        .route("/nodes/{name}/boot-target", axum::routing::put(nodes::boot_target))
        .route("/nodes/{name}/inventory", get(agent::node_inventory))
        .route("/nodes/{name}/agent-commands", get(agent::list_commands).post(agent::create_command))
        .route("/nodes/{name}/operations", get(deployments::node_operations))
        .route("/leases", get(leases::list).post(leases::create))
        .route("/leases/{id}", get(leases::show).patch(leases::extend).delete(leases::end))
        .route("/leases/{id}/approve", post(leases::approve))
        .route("/leases/{id}/reject", post(leases::reject))
        .route("/leases/{id}/deployments", get(deployments::list).post(deployments::create))
        .route("/deployments/{id}", get(deployments::show).delete(deployments::cancel))
        .route("/availability", get(leases::availability))
        .route("/calendar", get(leases::calendar))
        .route("/projects", get(accounts::list_projects).post(accounts::create_project))
        .route("/users", get(accounts::list_users).post(accounts::create_user))
        .route("/users/me", get(accounts::me))
        .route("/users/me/export", get(accounts::export_me))
        .route("/users/{name}/export", get(accounts::export_user))
        .route("/users/{name}/erase", post(accounts::erase_user))
        .route("/users/{name}/tokens", get(accounts::list_tokens).post(accounts::create_token))
        .route("/users/{name}/tokens/{id}", axum::routing::delete(accounts::revoke_token))
        .route("/users/{name}/disable", post(accounts::disable_user))
        .route("/users/{name}/enable", post(accounts::enable_user))
        .route("/users/{name}/activation-link", post(accounts::activation_link))
        .route("/users/{name}/ssh-keys", get(accounts::list_ssh_keys).post(accounts::add_ssh_key))
        .route("/users/{name}/ssh-keys/{id}", axum::routing::delete(accounts::remove_ssh_key))
        .route("/boot/unknown-macs", get(boot::unknown_macs))
        .route("/boot/hosts", get(boot::hosts))
        .route("/boot/tokens", post(boot::create_token))
        .route("/environments", get(environments::list).post(environments::create))
        .route("/environments/{name}", get(environments::show))
        .route("/usage", get(usage::report))
        .route("/usage/records", get(usage::records))
        .route("/audit", get(usage::audit))
        .route("/projects/{name}/quota", get(usage::quota))
        .route("/projects/{name}", axum::routing::patch(account_requests::update_project))
        .route("/projects/{name}/members", post(account_requests::add_member))
        .route("/projects/{name}/members/{user}", axum::routing::delete(account_requests::remove_member))
        .route("/account-requests", get(account_requests::list).post(account_requests::create))
        .route("/account-requests/{id}", get(account_requests::show))
        .route("/account-requests/{id}/approve", post(account_requests::approve))
        .route("/account-requests/{id}/reject", post(account_requests::reject))
        .route("/openapi.json", get(openapi_json));
    let routes = Router::new()
        .nest(ferrum_api::API_BASE, api)
        .merge(crate::web::routes())
        .merge(crate::g5k::routes())
        .route("/healthz", get(health))
        .route("/metrics", get(metrics::serve).with_state(metrics.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(metrics, track));
    // Every error JSON, and the URI and header limits (see `limits`).
    limits::harden(routes).with_state(app)
}

/// The router of the boot listener(s) (`[boot] listen`, the provisioning
/// network): iPXE scripts, the ramdisk files, images, the agent protocol,
/// and `/healthz`. Nothing of `/api/v1`.
pub fn boot_router(app: Arc<App>, metrics: Arc<metrics::Metrics>) -> Router {
    let routes = Router::new()
        .merge(boot::routes(&app))
        .merge(agent::routes())
        .route("/healthz", get(health))
        .fallback(not_found_boot)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(metrics, track));
    // The same limits and JSON errors as the API's (the iPXE script of an
    // unknown MAC keeps its text: `KeepBody`).
    limits::harden(routes).with_state(app)
}

async fn not_found_boot(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no endpoint at {} (this is the boot listener: /boot/, /images/, /agent/v1/)", uri.path()),
        earliest_start: None,
    }
}

/// Liveness: 200 once the server serves.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "meta", responses((status = 200, body = ferrum_api::Health)))]
pub async fn health() -> Json<ferrum_api::Health> {
    Json(ferrum_api::Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ApiDoc::openapi().to_json().unwrap_or_default()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if crate::web::is_portal_path(uri.path()) {
        return crate::web::not_found().await;
    }
    not_found_api(&uri).into_response()
}

fn not_found_api(uri: &axum::http::Uri) -> ApiError {
    let path = uri.path();
    let hint = if path.starts_with(ferrum_api::API_BASE) { "see /api/v1/openapi.json" } else { "the API lives under /api/v1" };
    ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: format!("no endpoint at {path} ({hint})"), earliest_start: None }
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this endpoint does not take that method".into(),
        earliest_start: None,
    }
}

/// Records the latency of every request, by route, in `/metrics`, inside a
/// span that carries the method and route.
async fn track(State(metrics): State<Arc<metrics::Metrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let span = tracing::info_span!("request", %method, %route);
    let started = Instant::now();
    let response = tracing::Instrument::instrument(next.run(req), span).await;
    metrics.observe(method.as_str(), &route, response.status().as_u16(), started.elapsed());
    response
}
