//! The web portal (issue 19), served by `ferrumd` at `/` beside the API:
//! server-rendered HTML (askama templates in `controller/templates/`,
//! checked at compile time) over the same application layer as the API,
//! one stylesheet and four scripts (the live count of a filter's nodes,
//! shared by the hardware catalog's filter builder and the booking page;
//! those two pages' own; a lease's live deploy progress) embedded in the
//! binary (`controller/static/`); every page works without them. Pages take a browser session ([`session`]), never an
//! API token; `/api/v1` never takes the session cookie.
//!
//! Every answer carries a strict Content-Security-Policy (nothing but this
//! origin; no inline script or style; no framing) and
//! `Referrer-Policy: no-referrer` (an activation link holds a secret in its
//! path). Errors are pages too, in words, with the status the API would
//! give.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::app::web::WebSession;
use crate::app::{App, AppError};
use crate::http::limits::KeepBody;

pub mod admin;
pub mod admin_nodes;
pub mod book;
pub mod catalog;
pub mod gantt;
pub mod hardware;
pub mod inventory;
pub mod leases;
pub mod notifications;
pub mod pages;
pub mod session;
pub mod usage;

/// The portal's routes (merged into the public router).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/activate/{token}", get(pages::activate_form).post(pages::activate))
        .route("/request-account", get(pages::request_form).post(pages::request_account))
        .route("/verify-email/{token}", get(pages::verify_email_form).post(pages::verify_email))
        .route("/profile", get(pages::profile))
        .route("/profile/tokens", post(pages::create_token))
        .route("/profile/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/profile/keys", post(pages::add_key))
        .route("/profile/keys/{id}/delete", post(pages::remove_key))
        .route("/profile/export", get(pages::export_personal_data))
        .route("/book", get(book::form).post(book::submit))
        .route("/notifications", get(notifications::list))
        .route("/notifications/read", post(notifications::mark_read))
        .route("/calendar", get(gantt::calendar))
        .route("/calendar/book", post(gantt::book))
        .route("/usage", get(usage::usage))
        .route("/admin", get(admin::index))
        .route("/admin/account-requests", get(admin::account_requests))
        .route("/admin/account-requests/{id}/approve", post(admin::approve_account_request))
        .route("/admin/account-requests/{id}/reject", post(admin::reject_account_request))
        .route("/admin/leases", get(admin::leases))
        .route("/admin/leases/{id}/approve", post(admin::approve_lease))
        .route("/admin/leases/{id}/reject", post(admin::reject_lease))
        .route("/admin/nodes", get(admin_nodes::nodes))
        .route("/admin/nodes/{name}", get(admin_nodes::node))
        .route("/admin/nodes/{name}/maintenance", post(admin_nodes::maintenance))
        .route("/admin/nodes/{name}/power", post(admin_nodes::power))
        .route("/admin/audit", get(admin_nodes::audit))
        .route("/hardware", get(hardware::catalog))
        // `_count` is no cluster's name: enrolment and import refuse a
        // leading `_`.
        .route("/hardware/_count", get(hardware::count))
        .route("/hardware/{cluster}", get(hardware::cluster))
        .route("/hardware/nodes/{name}", get(hardware::node))
        .route("/leases", get(leases::list))
        .route("/leases/{id}", get(leases::detail))
        .route("/leases/{id}/events", get(leases::events))
        .route("/leases/{id}/extend", post(leases::extend))
        .route("/leases/{id}/end", post(leases::end))
        .route("/leases/{id}/deploy", post(leases::deploy))
        .route("/static/ferrum.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../../static/ferrum.css")) }))
        .route("/static/filter-count.js", get(|| async { asset(SCRIPT, include_str!("../../static/filter-count.js")) }))
        .route("/static/hardware.js", get(|| async { asset(SCRIPT, include_str!("../../static/hardware.js")) }))
        .route("/static/lease.js", get(|| async { asset(SCRIPT, include_str!("../../static/lease.js")) }))
        .route("/static/book.js", get(|| async { asset(SCRIPT, include_str!("../../static/book.js")) }))
        .layer(middleware::from_fn(page_headers))
        // Pages are text: gzip when the browser asks (the calendar of a
        // large site is megabytes of SVG). tower-http's default predicate
        // leaves small answers, images and event streams alone.
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}

/// Whether a path is the portal's (its 404 is a page, not JSON): not the
/// API's, nor one of the machine endpoints (`/healthz`, `/metrics`, and the
/// boot listener's `/boot/`, `/images/`, `/agent/`, which a client may try
/// here by mistake).
pub fn is_portal_path(path: &str) -> bool {
    const MACHINE: [&str; 7] = ["/api", "/stable", "/healthz", "/metrics", "/boot", "/images", "/agent"];
    !MACHINE.iter().any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

async fn page_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    // A refused form is a page in words: the API's error rewriting leaves
    // the portal's answers as they are.
    response.extensions_mut().insert(KeepBody);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A file of `controller/static/`, compiled in, cached an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

const SCRIPT: &str = "text/javascript; charset=utf-8";

/// What the navigation shows of the signed-in user.
#[derive(Clone, Debug)]
pub struct NavUser {
    pub name: String,
    pub is_admin: bool,
    /// For the sign-out form.
    pub csrf: String,
    /// Unread notifications (read with the session).
    pub unread: i64,
}

impl From<&WebSession> for NavUser {
    fn from(s: &WebSession) -> Self {
        NavUser { name: s.actor.name.clone(), is_admin: s.actor.is_admin, csrf: s.csrf.clone(), unread: s.unread }
    }
}

/// A time a person typed in a form, in UTC: RFC 3339, or `YYYY-MM-DD`
/// with `HH:MM` or `HH:MM:SS` after a space or a `T`, or a day alone.
/// A day alone is its first second, or with `day_ends` the first second
/// of the next day (a range's end that includes the day typed).
pub fn typed_utc(text: &str, day_ends: bool) -> Option<crate::model::Seconds> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let day = if day_ends { day.succ_opt()? } else { day };
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// The control of a form an application error concerns: the API's
/// messages start with the request field they name (`nodes.count: ...`),
/// which `controls` maps to the page's control (`""`, the form's top, for
/// any other).
pub fn control_of(message: &str, controls: &[(&str, &'static str)]) -> &'static str {
    let field = message.split_once(':').map_or("", |(f, _)| f);
    controls.iter().find(|(f, _)| *f == field).map_or("", |(_, c)| *c)
}

/// A page answer: the template rendered, or a 500 page.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => WebError::Internal(anyhow::anyhow!("rendering a page: {e}")).into_response(),
    }
}

/// A page with a heading, a sentence and a link.
#[derive(Debug, Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub nav: Option<NavUser>,
    pub active: &'static str,
    pub heading: String,
    pub text: String,
    pub is_error: bool,
    pub link: (String, String),
}

/// Why a page could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The page needs a session: sign in, then come back to `next`.
    #[error("sign in first")]
    SignInFirst { next: String },
    /// A form without the session's (or the page's) anti-forgery token.
    #[error("this form did not come from this site, or it expired: reload the page and try again")]
    Forgery,
    #[error(transparent)]
    App(#[from] AppError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, heading) = match &self {
            WebError::SignInFirst { next } => {
                let target = if safe_next(next) {
                    format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
                } else {
                    "/login".into()
                };
                return Redirect::to(&target).into_response();
            }
            WebError::Forgery => (StatusCode::FORBIDDEN, "Form refused"),
            WebError::App(e) => match e {
                AppError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "That did not work"),
                AppError::Unauthenticated | AppError::SignInRefused(_) => (StatusCode::UNAUTHORIZED, "Sign-in refused"),
                AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
                AppError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
                AppError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts"),
                AppError::Conflict { .. } => (StatusCode::CONFLICT, "That did not work"),
                AppError::Internal(cause) => {
                    tracing::error!(error = ?cause, "internal error on a portal page");
                    (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
                }
            },
            WebError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error on a portal page");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong")
            }
        };
        let text = match &self {
            WebError::App(AppError::Internal(_)) | WebError::Internal(_) => {
                "The server could not answer this page; the error is in its log.".to_owned()
            }
            other => other.to_string(),
        };
        let message =
            MessagePage { nav: None, active: "", heading: heading.into(), text, is_error: true, link: ("/".into(), "Home".into()) };
        let mut response = match message.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, "error").into_response(),
        };
        // The API's error rewriting leaves a page as it is (also outside
        // the portal's routes: its 404 page).
        response.extensions_mut().insert(KeepBody);
        response
    }
}

/// The 404 page of a portal path nothing answers.
pub async fn not_found() -> Response {
    WebError::App(AppError::NotFound("there is no page here".into())).into_response()
}

/// Whether `next` is a path of this site (`/x`), never another origin
/// (`//host`, `/\host`, `https://...`).
pub fn safe_next(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") && !next.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    #[test]
    fn typed_times_read_in_utc_and_a_day_ends_where_asked() {
        let at = |y, m, d, h, min| {
            chrono::NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(h, min, 0)).map(|t| t.and_utc().timestamp())
        };
        assert_eq!(super::typed_utc("2026-12-07 18:30", false), at(2026, 12, 7, 18, 30));
        assert_eq!(super::typed_utc(" 2026-12-07T18:30:00 ", false), at(2026, 12, 7, 18, 30));
        assert_eq!(super::typed_utc("2026-12-07T19:30:00+01:00", false), at(2026, 12, 7, 18, 30));
        assert_eq!(super::typed_utc("2026-12-07", false), at(2026, 12, 7, 0, 0));
        assert_eq!(super::typed_utc("2026-12-07", true), at(2026, 12, 8, 0, 0));
        assert_eq!(super::typed_utc("2026-12-07 18:30", true), at(2026, 12, 7, 18, 30), "a time is itself");
        for bad in ["", "soon", "07/12/2026", "2026-13-01"] {
            assert_eq!(super::typed_utc(bad, false), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn machine_paths_keep_json_errors() {
        for path in ["/api/v1/x", "/api", "/stable/sites", "/healthz", "/metrics", "/boot/ipxe", "/images/a.raw", "/agent/v1/command"] {
            assert!(!is_portal_path(path), "{path}");
        }
        for path in ["/", "/profile", "/no-such-page", "/apiary", "/bootstrap"] {
            assert!(is_portal_path(path), "{path}");
        }
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert!(safe_next("/profile"));
        assert!(safe_next("/leases?state=active"));
        assert!(!safe_next("//evil.example/"));
        assert!(!safe_next("/\\evil.example/"));
        assert!(!safe_next("https://evil.example/"));
        assert!(!safe_next("profile"));
        assert!(!safe_next("/a\r\nSet-Cookie: x=y"));
    }
}
