//! The admin's approval queues (issue 19): account requests waiting for a
//! decision and leases awaiting approval, each approved or rejected on its
//! page. Handlers only read the form, check the session's anti-forgery
//! token and call the `App` function the API calls
//! (`approve_account_request`, `reject_account_request`, `decide_lease`):
//! who may decide and what a decision needs (a rejection's reason, no
//! clash of logins) are the application layer's, and a refusal comes back
//! in words beside the form it concerns.
//!
//! Must not: show an approval's first API token (the new user makes their
//! own on their profile) or put a secret in a URL (the activation link is
//! shown on the answer to the approval's POST, never redirected to).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::when;
use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::policy::fmt_hours;
use crate::app::{App, AppError};
use crate::model::node::shown_state;
use crate::model::{AccountRequestState, LeaseState};
use ferrum_api::NodeState;
use ferrum_api::accounts::RequesterStatus;

/// A decision form: the session's anti-forgery token and, where the form
/// has one, the reason typed.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// What the last decision did, for the note at the top of a queue (the
/// id only: the page says the rest).
#[derive(Debug, Deserialize)]
pub struct DoneQuery {
    approved: Option<String>,
    rejected: Option<String>,
}

impl DoneQuery {
    /// `(decided id, approved)`, if the query names a decision.
    fn decided(&self) -> Option<(i64, bool)> {
        let id = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
        id(&self.approved).map(|i| (i, true)).or_else(|| id(&self.rejected).map(|i| (i, false)))
    }
}

/// Which of an item's two forms a refusal concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Approve,
    Reject,
}

/// A decision the application layer refused, shown beside its form with
/// what was typed.
#[derive(Debug)]
struct Refusal {
    id: i64,
    decision: Decision,
    message: String,
    typed: String,
}

/// The status of a refusal the admin can act on; anything else is an
/// error page.
pub(super) fn refusal_status(e: &AppError) -> Option<StatusCode> {
    match e {
        AppError::BadRequest { .. } => Some(StatusCode::BAD_REQUEST),
        AppError::Conflict { .. } => Some(StatusCode::CONFLICT),
        AppError::NotFound(_) => Some(StatusCode::NOT_FOUND),
        _ => None,
    }
}

/// The parts of an item's forms a refusal fills in.
#[derive(Debug, Default)]
pub struct FormState {
    pub approve_error: Option<String>,
    pub reject_error: Option<String>,
    pub approve_typed: String,
    pub reject_typed: String,
}

/// Puts a refusal beside its item's form; one for an item no longer in
/// the queue (decided meanwhile, or unknown) is the page's.
fn place_refusal(refusal: Option<Refusal>, items: &mut [(i64, &mut FormState)]) -> Option<String> {
    let refusal = refusal?;
    let Some((_, state)) = items.iter_mut().find(|(id, _)| *id == refusal.id) else {
        return Some(refusal.message);
    };
    match refusal.decision {
        Decision::Approve => {
            state.approve_error = Some(refusal.message);
            state.approve_typed = refusal.typed;
        }
        Decision::Reject => {
            state.reject_error = Some(refusal.message);
            state.reject_typed = refusal.typed;
        }
    }
    None
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    nav: Option<NavUser>,
    active: &'static str,
    requests: usize,
    leases: usize,
    nodes: usize,
    troubled: usize,
    maintenance: usize,
}

pub async fn index(State(app): State<Arc<App>>, s: SignedIn) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    actor.require_admin()?;
    let requests = app.account_requests(actor, Some(AccountRequestState::Pending)).await?.len();
    let leases = app.list_leases(actor, Some(LeaseState::AwaitingApproval), false).await?.len();
    let shown: Vec<_> = app.list_nodes(None).await?.iter().map(|n| shown_state(n.state, n.policy)).collect();
    let count = |states: &[NodeState]| shown.iter().filter(|s| states.contains(s)).count();
    let (troubled, maintenance) = (count(&[NodeState::Suspect, NodeState::Dead]), count(&[NodeState::Maintenance]));
    let body = AdminPage { nav: Some(NavUser::from(&s.0)), active: "admin", requests, leases, nodes: shown.len(), troubled, maintenance };
    Ok(page(StatusCode::OK, &body))
}

/// One pending account request.
#[derive(Debug)]
pub struct RequestLine {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub verified: String,
    pub affiliation: String,
    pub status: &'static str,
    pub project: String,
    pub class: Option<String>,
    pub motivation: String,
    pub asked: String,
    /// Why it cannot be approved as it is (a login taken or asked twice).
    pub clash: Option<String>,
    pub form: FormState,
}

#[derive(Template)]
#[template(path = "admin_account_requests.html")]
struct RequestsPage {
    nav: Option<NavUser>,
    active: &'static str,
    csrf: String,
    note: Option<String>,
    error: Option<String>,
    requests: Vec<RequestLine>,
}

async fn requests_page(
    app: &App,
    s: &SignedIn,
    status: StatusCode,
    note: Option<String>,
    refusal: Option<Refusal>,
) -> Result<Response, WebError> {
    let mailer = app.mailer.enabled();
    let mut requests: Vec<RequestLine> = app
        .account_requests(&s.0.actor, Some(AccountRequestState::Pending))
        .await?
        .into_iter()
        .map(|(r, clash)| RequestLine {
            id: r.id,
            verified: match r.email_verified_at {
                Some(t) => format!("yes, on {}", when(t)),
                None if mailer => "not yet".into(),
                None => "no: no mail server is configured".into(),
            },
            status: r.status.as_deref().and_then(RequesterStatus::parse).map_or("-", RequesterStatus::label),
            asked: when(r.created_at),
            name: r.name,
            email: r.email,
            affiliation: r.affiliation,
            project: r.project,
            class: r.project_class,
            motivation: r.motivation,
            clash,
            form: FormState::default(),
        })
        .collect();
    let mut forms: Vec<(i64, &mut FormState)> = requests.iter_mut().map(|r| (r.id, &mut r.form)).collect();
    let error = place_refusal(refusal, &mut forms);
    let body = RequestsPage { nav: Some(NavUser::from(&s.0)), active: "admin-requests", csrf: s.0.csrf.clone(), note, error, requests };
    Ok(page(status, &body))
}

pub async fn account_requests(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<DoneQuery>) -> Result<Response, WebError> {
    let note =
        q.decided().map(|(id, approved)| if approved { format!("Request {id} approved.") } else { format!("Request {id} rejected.") });
    requests_page(&app, &s, StatusCode::OK, note, None).await
}

#[derive(Template)]
#[template(path = "admin_approved.html")]
struct ApprovedPage {
    nav: Option<NavUser>,
    active: &'static str,
    id: i64,
    user: String,
    project: String,
    email: String,
    activation_url: Option<String>,
    mail_server: bool,
}

pub async fn approve_account_request(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    match app.approve_account_request(&s.0.actor, id, None, None, None).await {
        Ok(approved) => {
            let body = ApprovedPage {
                nav: Some(NavUser::from(&s.0)),
                active: "admin-requests",
                id,
                user: approved.user.name,
                project: approved.request.project,
                email: approved.request.email,
                activation_url: approved.activation_url,
                mail_server: app.mailer.enabled(),
            };
            let mut response = page(StatusCode::CREATED, &body);
            // The activation link is a secret: kept out of caches.
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Err(e) => match refusal_status(&e) {
            Some(status) => {
                let refusal = Refusal { id, decision: Decision::Approve, message: e.to_string(), typed: String::new() };
                requests_page(&app, &s, status, None, Some(refusal)).await
            }
            None => Err(e.into()),
        },
    }
}

pub async fn reject_account_request(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    match app.reject_account_request(&s.0.actor, id, &form.reason).await {
        Ok(_) => Ok(Redirect::to(&format!("/admin/account-requests?rejected={id}")).into_response()),
        Err(e) => match refusal_status(&e) {
            Some(status) => {
                let refusal = Refusal { id, decision: Decision::Reject, message: e.to_string(), typed: form.reason };
                requests_page(&app, &s, status, None, Some(refusal)).await
            }
            None => Err(e.into()),
        },
    }
}

/// One lease awaiting approval.
#[derive(Debug)]
pub struct WaitingLease {
    pub id: i64,
    pub name: Option<String>,
    pub owner: String,
    pub project: String,
    pub count: usize,
    pub nodes: String,
    pub filter: Option<String>,
    pub start: String,
    pub end: String,
    pub node_hours: String,
    /// Why it waits (the policy's words at creation).
    pub why: String,
    pub asked: String,
    pub form: FormState,
}

#[derive(Template)]
#[template(path = "admin_leases.html")]
struct LeasesPage {
    nav: Option<NavUser>,
    active: &'static str,
    csrf: String,
    note: Option<String>,
    error: Option<String>,
    leases: Vec<WaitingLease>,
}

async fn leases_page(
    app: &App,
    s: &SignedIn,
    status: StatusCode,
    note: Option<String>,
    refusal: Option<Refusal>,
) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    // Every lease is listed to an admin only: the queue is theirs.
    actor.require_admin()?;
    let mut leases: Vec<WaitingLease> = app
        .list_leases(actor, Some(LeaseState::AwaitingApproval), false)
        .await?
        .into_iter()
        .map(|l| WaitingLease {
            id: l.id.0,
            count: l.nodes.len(),
            nodes: l.nodes.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", "),
            node_hours: fmt_hours(i64::try_from(l.nodes.len()).unwrap_or(i64::MAX).saturating_mul(l.end - l.start)),
            start: when(l.start),
            end: when(l.end),
            asked: when(l.created_at),
            why: l.reason.unwrap_or_else(|| "-".into()),
            project: l.project.unwrap_or_else(|| "-".into()),
            name: l.name,
            owner: l.owner,
            filter: l.filter,
            form: FormState::default(),
        })
        .collect();
    let mut forms: Vec<(i64, &mut FormState)> = leases.iter_mut().map(|l| (l.id, &mut l.form)).collect();
    let error = place_refusal(refusal, &mut forms);
    let body = LeasesPage { nav: Some(NavUser::from(&s.0)), active: "admin-leases", csrf: s.0.csrf.clone(), note, error, leases };
    Ok(page(status, &body))
}

pub async fn leases(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<DoneQuery>) -> Result<Response, WebError> {
    let note = q.decided().map(|(id, approved)| {
        if approved {
            format!("Lease {id} approved: it starts on time.")
        } else {
            format!("Lease {id} rejected: its nodes are free again.")
        }
    });
    leases_page(&app, &s, StatusCode::OK, note, None).await
}

async fn decide_lease(app: &App, s: &SignedIn, id: i64, decision: Decision, form: DecisionForm) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let approve = decision == Decision::Approve;
    let reason = Some(form.reason.as_str()).filter(|r| !r.trim().is_empty());
    match app.decide_lease(&s.0.actor, id, approve, reason).await {
        Ok(_) => {
            let done = if approve { format!("/admin/leases?approved={id}") } else { format!("/admin/leases?rejected={id}") };
            Ok(Redirect::to(&done).into_response())
        }
        Err(e) => match refusal_status(&e) {
            Some(status) => {
                let refusal = Refusal { id, decision, message: e.to_string(), typed: form.reason };
                leases_page(app, s, status, None, Some(refusal)).await
            }
            None => Err(e.into()),
        },
    }
}

pub async fn approve_lease(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    decide_lease(&app, &s, id, Decision::Approve, form).await
}

pub async fn reject_lease(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    decide_lease(&app, &s, id, Decision::Reject, form).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_a_decided_id_and_nothing_else() {
        let q = |approved: Option<&str>, rejected: Option<&str>| DoneQuery {
            approved: approved.map(str::to_owned),
            rejected: rejected.map(str::to_owned),
        };
        assert_eq!(q(Some("5"), None).decided(), Some((5, true)));
        assert_eq!(q(None, Some("7")).decided(), Some((7, false)));
        assert_eq!(q(Some("<b>5</b>"), None).decided(), None);
        assert_eq!(q(None, None).decided(), None);
    }

    #[test]
    fn a_refusal_goes_beside_its_form_or_to_the_top() {
        let refusal = |id, decision| Refusal { id, decision, message: format!("no {id}"), typed: "typed".into() };
        let (mut one, mut two) = (FormState::default(), FormState::default());
        let top = place_refusal(Some(refusal(2, Decision::Reject)), &mut [(1, &mut one), (2, &mut two)]);
        assert_eq!(top, None);
        assert_eq!((two.reject_error.as_deref(), two.reject_typed.as_str()), (Some("no 2"), "typed"));
        assert!(two.approve_error.is_none() && one.reject_error.is_none());
        // An item no longer in the queue (decided meanwhile): the page's.
        let top = place_refusal(Some(refusal(3, Decision::Approve)), &mut [(1, &mut one), (2, &mut two)]);
        assert_eq!(top.as_deref(), Some("no 3"));
        assert_eq!(place_refusal(None, &mut [(1, &mut one)]), None);
    }
}
