//! The Grid'5000 REST API (`/stable`), over the same application layer as
//! `/api/v1`: what unmodified python-grid5000 and EnOSlib scripts call
//! (the contract: `shared/g5k/API-SUBSET.md`, summed up in
//! docs/grid5000-api.md).
//!
//! This module owns the wire rules that differ from `/api/v1` (API-SUBSET
//! §1): HTTP Basic auth with the user name and one of the user's tokens
//! ([`G5kUser`]), errors as `{"code", "title", "message"}` with no `error`
//! key ([`G5kError`]), `application/json` bodies, collections with
//! `total`/`offset`/`items`/`links` ([`Collection`]), `links` under
//! `/stable`, node names `<node>.<site>.<domain>` ([`fqdn`]), and an access
//! log line per request (python-grid5000 silently falls back to the public
//! Grid'5000 when its configuration is broken: the log shows whether a
//! request reached ferrum). Each resource lives in its own file and only
//! translates: every rule is the application layer's.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::{Actor, App, AppError};
use crate::model::LeaseState;

mod deployments;
mod environments;
mod jobs;
mod reference;
mod status;

/// Where the API lives.
pub const BASE: &str = "/stable";

/// The item and collection media types, written only inside `links`
/// (API-SUBSET §1.3: the `Content-Type` header stays `application/json`).
pub const ITEM: &str = "application/vnd.grid5000.item+json";
pub const COLLECTION: &str = "application/vnd.grid5000.collection+json";

/// The routes under [`BASE`].
pub fn routes() -> Router<Arc<App>> {
    let api = Router::new()
        .merge(reference::routes())
        .merge(status::routes())
        .merge(environments::routes())
        .merge(jobs::routes())
        .merge(deployments::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn(|req, next| access_log(BASE, req, next)));
    // The root is `/stable/` to python-grid5000 (`uri + "/"`); a nested
    // router's `/` is `/stable` only.
    let root =
        Router::new().route(&format!("{BASE}/"), get(reference::root)).layer(middleware::from_fn(|req, next| access_log("", req, next)));
    Router::new().nest(BASE, api).merge(root)
}

/// An unknown path: 404, once the caller is known. As behind
/// Grid'5000's front proxy, every request authenticates first (401), and a
/// read-only token is refused anything but a read (403) wherever it goes.
async fn no_route(G5kUser(_): G5kUser, uri: axum::http::Uri) -> G5kError {
    G5kError::not_found(format!("No route matches {}{}", BASE, uri.path()))
}

/// A method a path does not take: 405, once the caller is known.
async fn no_method(G5kUser(_): G5kUser) -> G5kError {
    G5kError::new(StatusCode::METHOD_NOT_ALLOWED, "This resource does not take that method")
}

/// One log line per request, at info level: method, path, status and the
/// user name of the `Authorization` header (never its secret).
/// `prefix` is what a nested router no longer sees of the path.
async fn access_log(prefix: &'static str, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = format!("{prefix}{}", req.uri().path());
    let user = basic_credentials(req.headers()).map(|(u, _)| u);
    let response = next.run(req).await;
    tracing::info!(target: "ferrum::g5k", %method, %path, status = response.status().as_u16(), user = user.as_deref().unwrap_or("-"), "grid5000 api");
    response
}

/// An error answer (API-SUBSET §1.4): `{"code": 404, "title": "Not Found",
/// "message": "..."}`. python-grid5000 shows `"<code>: <message>"`, and
/// EnOSlib matches its patterns in the message.
#[derive(Debug)]
pub struct G5kError {
    pub status: StatusCode,
    pub message: String,
}

impl G5kError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        G5kError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        G5kError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        G5kError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        G5kError::new(StatusCode::FORBIDDEN, message)
    }
}

impl IntoResponse for G5kError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = serde_json::json!({ "code": self.status.as_u16(), "title": title, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ferrum\""));
        }
        response
    }
}

/// The application's refusals keep their class; an expected condition is
/// never a 5xx (clients retry 500, 502 and 504 five times).
impl From<AppError> for G5kError {
    fn from(e: AppError) -> Self {
        let status = match &e {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated | AppError::SignInRefused(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        G5kError::new(status, e.to_string())
    }
}

pub type G5kResult<T> = Result<T, G5kError>;

/// `user:password` of `Authorization: Basic ...`, if well formed.
fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The caller (API-SUBSET §1.2): `Authorization: Basic base64(user:token)`,
/// where `user` must be the token's user, or `Authorization: Bearer
/// <token>` for curl users. A read-only token may only read.
#[derive(Debug)]
pub struct G5kUser(pub Actor);

impl FromRequestParts<Arc<App>> for G5kUser {
    type Rejection = G5kError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let unauthorized = |m: &str| G5kError::new(StatusCode::UNAUTHORIZED, m);
        let (claimed, token) = match (basic_credentials(&parts.headers), crate::http::extract::bearer(parts)) {
            (Some((user, token)), _) => (Some(user), token),
            (None, Some(token)) => (None, token.to_owned()),
            (None, None) => {
                return Err(unauthorized(
                    "You must authenticate: HTTP Basic with your ferrum user name and one of your API tokens as the password",
                ));
            }
        };
        let who = app.authenticate(&token).await.map_err(|_| unauthorized("Invalid user name or token"))?;
        if claimed.is_some_and(|u| u != who.actor.name) {
            return Err(unauthorized("Invalid user name or token"));
        }
        if who.read_only && !matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD) {
            return Err(G5kError::forbidden(format!("This token is read-only: it may only read (GET), not {}", parts.method)));
        }
        Ok(G5kUser(who.actor))
    }
}

/// A JSON object body; a malformed one is a 400 in this API's shape. The
/// `Content-Type` may be left out (python-grid5000 always sends it).
#[derive(Debug)]
pub struct G5kBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for G5kBody<T> {
    type Rejection = G5kError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| G5kError::new(e.status(), format!("Cannot read the request body: {}", e.body_text())))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| G5kError::bad_request(format!("The request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(G5kError::bad_request("The request body must be a JSON object"));
        }
        serde_json::from_value(value).map(G5kBody).map_err(|e| G5kError::bad_request(format!("Invalid request body: {e}")))
    }
}

/// Query parameters; unknown ones are ignored (API-SUBSET §1.5), a bad
/// value of a known one is a 400.
#[derive(Debug)]
pub struct G5kQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for G5kQuery<T> {
    type Rejection = G5kError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| G5kQuery(v))
            .map_err(|e| G5kError::bad_request(format!("Invalid query parameters: {}", e.body_text())))
    }
}

/// Path parameters, with this API's 400.
#[derive(Debug)]
pub struct G5kPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for G5kPath<T> {
    type Rejection = G5kError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| G5kPath(v))
            .map_err(|e| G5kError::bad_request(format!("Invalid path: {}", e.body_text())))
    }
}

/// One link of a document's `links`.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub rel: String,
    pub href: String,
    #[serde(rename = "type")]
    pub media_type: &'static str,
}

impl Link {
    /// A link to an item at `path` (relative to [`BASE`], starting with `/`).
    pub fn item(rel: &str, path: &str) -> Link {
        Link { rel: rel.into(), href: format!("{BASE}{path}"), media_type: ITEM }
    }

    /// A link to a collection at `path`.
    pub fn collection(rel: &str, path: &str) -> Link {
        Link { rel: rel.into(), href: format!("{BASE}{path}"), media_type: COLLECTION }
    }
}

/// An item's `self` and `parent` links.
pub fn item_links(path: &str, parent: &str) -> Vec<Link> {
    vec![Link::item("self", path), Link::item("parent", parent)]
}

/// A collection (API-SUBSET §1.5). Reference collections and environments
/// give everything with `offset: 0`; jobs and deployments page.
#[derive(Debug, Serialize)]
pub struct Collection<T> {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<T>,
    pub links: Vec<Link>,
}

impl<T> Collection<T> {
    /// Every item, at `path`.
    pub fn all(path: &str, items: Vec<T>) -> Self {
        Collection { total: items.len(), offset: 0, items, links: vec![Link::collection("self", path)] }
    }
}

/// Jobs' and deployments' paging (API-SUBSET §1.5): `limit` 50 by
/// default, at most 500; `offset` 0.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    offset: usize,
    limit: usize,
}

impl Page {
    pub fn of(offset: Option<usize>, limit: Option<usize>) -> G5kResult<Page> {
        const DEFAULT_LIMIT: usize = 50;
        const MAX_LIMIT: usize = 500;
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit > MAX_LIMIT {
            return Err(G5kError::bad_request(format!("limit: at most {MAX_LIMIT}")));
        }
        Ok(Page { offset: offset.unwrap_or(0), limit })
    }
}

impl<T> Collection<T> {
    /// `page` of `all` (in their order), the collection `what` of `site`.
    pub fn page(site: &str, what: &str, all: Vec<T>, page: Page) -> Self {
        let total = all.len();
        let items = all.into_iter().skip(page.offset).take(page.limit).collect();
        let links = vec![Link::collection("self", &format!("/sites/{site}/{what}")), Link::item("parent", &format!("/sites/{site}"))];
        Collection { total, offset: page.offset, items, links }
    }
}

/// `response` with `Location: /stable<path>` (creations and deletions).
pub fn located(mut response: Response, path: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("{BASE}{path}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

impl<T: Serialize> IntoResponse for Collection<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// The fully qualified name of node `node` of site `site`
/// (`<node>.<site>.<domain>`, the domain of `[sites.<site>]`).
pub fn fqdn(app: &App, node: &str, site: &str) -> String {
    app.config.site(site).fqdn(node, site)
}

/// The node name of a fully qualified one (its first label), or the name
/// itself.
pub fn node_of_fqdn(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// A lease's state as an OAR job state (API-SUBSET §4): waiting (awaiting
/// approval too: EnOSlib's reload looks only at waiting, launching and
/// running), launching, running, finishing, terminated; a lease that
/// ended otherwise (cancelled, refused, failed) is `error`, OAR's state of
/// a killed job.
pub fn oar_state(state: LeaseState) -> &'static str {
    match state {
        LeaseState::AwaitingApproval | LeaseState::Pending => "waiting",
        LeaseState::Starting => "launching",
        LeaseState::Active => "running", // tidy:not-a-state (OAR's word)
        LeaseState::Ending => "finishing",
        LeaseState::Finished => "terminated",
        LeaseState::Cancelled | LeaseState::Rejected | LeaseState::Failed => "error",
    }
}
