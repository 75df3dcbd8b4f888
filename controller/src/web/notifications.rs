//! The notifications page (`/notifications`): the signed-in user's own
//! notifications, newest first, and the form that marks them all read.
//! The navigation's unread count comes with the session (no query here).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::when;
use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::App;

/// One notification as the page shows it.
#[derive(Debug)]
pub struct Line {
    pub subject: String,
    pub body: String,
    pub lease: i64,
    pub at: String,
    pub unread: bool,
}

#[derive(Debug, Template)]
#[template(path = "notifications.html")]
pub struct NotificationsPage {
    pub nav: Option<NavUser>,
    pub active: &'static str,
    pub csrf: String,
    pub lines: Vec<Line>,
    pub unread: usize,
}

pub async fn list(State(app): State<Arc<App>>, s: SignedIn) -> Result<Response, WebError> {
    let lines: Vec<Line> = app
        .notifications(&s.0.actor)
        .await?
        .into_iter()
        .map(|n| Line { subject: n.subject, body: n.body, lease: n.lease.0, at: when(n.created_at), unread: n.read_at.is_none() })
        .collect();
    let unread = lines.iter().filter(|l| l.unread).count();
    let view = NotificationsPage { nav: Some(NavUser::from(&s.0)), active: "notifications", csrf: s.0.csrf.clone(), lines, unread };
    Ok(page(StatusCode::OK, &view))
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Marks all of the user's notifications read.
pub async fn mark_read(State(app): State<Arc<App>>, s: SignedIn, Form(form): Form<CsrfForm>) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    app.mark_notifications_read(&s.0.actor).await?;
    Ok(Redirect::to("/notifications").into_response())
}
