//! The portal's pages: home, sign-in and sign-out, activation (setting a
//! password), and the profile (API tokens, SSH keys, the download of
//! one's personal data). Each handler reads
//! its form, calls one `App` function and renders a template; a refused
//! form comes back with the error in words beside it.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use super::session::{self, ClientAddr, MaybeSignedIn, SignedIn};
use super::{MessagePage, NavUser, WebError, page, safe_next};
use crate::app::account_requests::AccountAsk;
use crate::app::accounts::TokenAsk;
use crate::app::web::MIN_PASSWORD;
use crate::app::{App, AppError};
use crate::model::{AccountRequestState, Seconds, lease};
use ferrum_api::accounts::RequesterStatus;

/// A time as pages show it: `2026-12-07 14:00 UTC`.
pub(super) fn when(t: Seconds) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Option<NavUser>,
    active: &'static str,
    projects: Vec<String>,
    leases: Vec<super::leases::LeaseLine>,
    /// For a project's manager (not an admin, who has the admin pages):
    /// the requests to join their projects waiting for a decision.
    waiting_requests: Option<usize>,
}

pub async fn home(State(app): State<Arc<App>>, MaybeSignedIn(session): MaybeSignedIn) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(page(
            StatusCode::OK,
            &HomePage { nav: None, active: "home", projects: Vec::new(), leases: Vec::new(), waiting_requests: None },
        ));
    };
    let actor = &session.actor;
    let leases = app
        .list_leases(actor, None, false)
        .await?
        .into_iter()
        .filter(|l| l.owner_id == actor.user_id && !lease::is_terminal(l.state))
        .map(|l| super::leases::line(&l))
        .collect();
    let projects = actor.projects.iter().map(|(_, n)| n.clone()).collect();
    let waiting_requests = match actor.is_admin {
        true => None,
        false => match app.account_requests(actor, Some(AccountRequestState::Pending)).await {
            Ok(requests) => Some(requests.len()),
            // Not a manager.
            Err(AppError::Forbidden(_)) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let nav = Some(NavUser::from(&session));
    Ok(page(StatusCode::OK, &HomePage { nav, active: "home", projects, leases, waiting_requests }))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<NavUser>,
    active: &'static str,
    form_token: String,
    next: String,
    name: String,
    note: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    activated: Option<String>,
}

pub async fn login_form(State(app): State<Arc<App>>, Query(q): Query<LoginQuery>, jar: CookieJar) -> Result<Response, WebError> {
    let (form_token, cookie) = session::form_token(&app)?;
    let note = q.activated.map(|name| format!("Your password is set, {name}: sign in with it."));
    let next = q.next.filter(|n| safe_next(n)).unwrap_or_else(|| "/".into());
    let name = String::new();
    let body = page(StatusCode::OK, &LoginPage { nav: None, active: "login", form_token, next, name, note, error: None });
    Ok((jar.add(cookie), body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(app): State<Arc<App>>,
    ClientAddr(client): ClientAddr,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    if !session::form_token_matches(&jar, &form.form_token) {
        return Err(WebError::Forgery);
    }
    let next = if safe_next(&form.next) { form.next.clone() } else { "/".into() };
    match app.sign_in(form.name.trim(), &form.password, client).await {
        Ok(new) => {
            // Any session cookie the browser held is replaced, never adopted.
            let jar = jar.add(session::session_cookie(&app, new.token)).remove(session::FORM_COOKIE);
            Ok((jar, Redirect::to(&next)).into_response())
        }
        Err(e @ (AppError::SignInRefused(_) | AppError::TooManyRequests(_))) => {
            let status = if matches!(e, AppError::TooManyRequests(_)) { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::UNAUTHORIZED };
            let (form_token, cookie) = session::form_token(&app)?;
            let body = LoginPage { nav: None, active: "login", form_token, next, name: form.name, note: None, error: Some(e.to_string()) };
            Ok((jar.add(cookie), page(status, &body)).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(app): State<Arc<App>>,
    signed_in: SignedIn,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    signed_in.check_csrf(&form.csrf)?;
    if let Some(token) = jar.get(session::SESSION_COOKIE).map(|c| c.value().to_owned()) {
        app.sign_out(&token).await?;
    }
    Ok((jar.add(session::session_removal(&app)), Redirect::to("/login")).into_response())
}

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage {
    nav: Option<NavUser>,
    active: &'static str,
    token: String,
    user: String,
    form_token: String,
    min: usize,
    error: Option<String>,
}

fn link_gone() -> WebError {
    WebError::App(AppError::NotFound("this activation link is unknown, used or expired: ask an admin for a new one".into()))
}

pub async fn activate_form(State(app): State<Arc<App>>, Path(token): Path<String>, jar: CookieJar) -> Result<Response, WebError> {
    let Some(user) = app.activation_user(&token).await? else { return Err(link_gone()) };
    let (form_token, cookie) = session::form_token(&app)?;
    let body = ActivatePage { nav: None, active: "", token, user: user.name, form_token, min: MIN_PASSWORD, error: None };
    Ok((jar.add(cookie), page(StatusCode::OK, &body)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ActivateForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn activate(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    jar: CookieJar,
    Form(form): Form<ActivateForm>,
) -> Result<Response, WebError> {
    if !session::form_token_matches(&jar, &form.form_token) {
        return Err(WebError::Forgery);
    }
    let Some(user) = app.activation_user(&token).await? else { return Err(link_gone()) };
    let refused = if form.password == form.confirm {
        match app.activate(&token, &form.password).await {
            Ok(name) => {
                let target = format!("/login?activated={}", url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>());
                return Ok((jar.remove(session::SESSION_COOKIE).remove(session::FORM_COOKIE), Redirect::to(&target)).into_response());
            }
            Err(AppError::BadRequest { message, .. }) => message,
            Err(other) => return Err(other.into()),
        }
    } else {
        "confirm: the two passwords differ".to_owned()
    };
    let (form_token, cookie) = session::form_token(&app)?;
    let body = ActivatePage { nav: None, active: "", token, user: user.name, form_token, min: MIN_PASSWORD, error: Some(refused) };
    Ok((jar.add(cookie), page(StatusCode::BAD_REQUEST, &body)).into_response())
}

/// A token line of the profile.
#[derive(Debug)]
pub struct TokenLine {
    pub id: i64,
    pub name: String,
    pub created: String,
    pub expires: String,
    pub access: &'static str,
}

/// A key line of the profile.
#[derive(Debug)]
pub struct KeyLine {
    pub id: i64,
    pub name: String,
    pub fingerprint: String,
    pub added: String,
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    nav: Option<NavUser>,
    active: &'static str,
    csrf: String,
    tokens: Vec<TokenLine>,
    keys: Vec<KeyLine>,
    new_token: Option<String>,
    refusal: Refusal,
}

/// A refusal of one of the profile's forms: the control it concerns
/// (`token`/`key`: the form's, `token-name`, `key-text`, ...), its words,
/// and what was typed, shown again.
#[derive(Debug, Default)]
struct Refusal {
    control: &'static str,
    message: Option<String>,
    token_name: String,
    token_expires: String,
    key_name: String,
    key_text: String,
}

impl ProfilePage {
    fn error_for(&self, control: &str) -> Option<&str> {
        self.refusal.message.as_deref().filter(|_| self.refusal.control == control)
    }
}

/// The profile page, with what the last form did.
async fn profile_page(
    app: &App,
    s: &SignedIn,
    status: StatusCode,
    new_token: Option<String>,
    refusal: Refusal,
) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    let now = app.now();
    let tokens = app
        .list_tokens(actor, &actor.name)
        .await?
        .into_iter()
        .filter(|t| crate::model::tokens::is_live(t.expires_at, now))
        .map(|t| TokenLine {
            id: t.id,
            name: t.name.unwrap_or_else(|| "-".into()),
            created: when(t.created_at),
            expires: t.expires_at.map_or_else(|| "never".to_owned(), when),
            access: if t.read_only { "read-only" } else { "read and write" },
        })
        .collect();
    let keys = app
        .ssh_keys(actor, &actor.name)
        .await?
        .into_iter()
        .map(|k| KeyLine { id: k.id, name: k.name.unwrap_or_else(|| "-".into()), fingerprint: k.fingerprint, added: when(k.created_at) })
        .collect();
    let body = ProfilePage { nav: Some(NavUser::from(&s.0)), active: "profile", csrf: s.0.csrf.clone(), tokens, keys, new_token, refusal };
    Ok(page(status, &body))
}

pub async fn profile(State(app): State<Arc<App>>, s: SignedIn) -> Result<Response, WebError> {
    profile_page(&app, &s, StatusCode::OK, None, Refusal::default()).await
}

/// The signed-in user's personal data as a JSON file to download (GDPR
/// articles 15 and 20): what `GET /api/v1/users/me/export` answers.
pub async fn export_personal_data(State(app): State<Arc<App>>, s: SignedIn) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    let data = crate::http::views::personal_data(app.export_personal_data(actor, &actor.name).await?);
    let body = serde_json::to_vec_pretty(&data).map_err(|e| WebError::Internal(e.into()))?;
    let file = format!("ferrum-personal-data-{}.json", actor.name);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/json".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        body,
    )
        .into_response())
}

/// Renders a refusal the user can act on beside the field it names in
/// `form` (`token` or `key`), with what was typed; anything else is an
/// error page.
async fn refused_on_profile(app: &App, s: &SignedIn, e: AppError, form: &'static str, typed: Refusal) -> Result<Response, WebError> {
    let status = match &e {
        AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        AppError::Conflict { .. } => StatusCode::CONFLICT,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => return Err(e.into()),
    };
    let message = e.to_string();
    let controls: &[(&str, &'static str)] = match form {
        "token" => &[("name", "token-name"), ("expires_in", "token-expires"), ("expires_at", "token-expires")],
        _ => &[("name", "key-name"), ("public_key", "key-text")],
    };
    let control = match super::control_of(&message, controls) {
        "" => form,
        control => control,
    };
    profile_page(app, s, status, None, Refusal { control, message: Some(message), ..typed }).await
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    expires_in: String,
    read_only: Option<String>,
}

pub async fn create_token(State(app): State<Arc<App>>, s: SignedIn, Form(form): Form<TokenForm>) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let non_empty = |t: &str| Some(t.trim().to_owned()).filter(|t| !t.is_empty());
    let ask = TokenAsk {
        name: non_empty(&form.name),
        expires_in: non_empty(&form.expires_in),
        expires_at: None,
        read_only: form.read_only.is_some(),
    };
    match app.create_token(&s.0.actor, &s.0.actor.name, ask).await {
        Ok((_, secret)) => profile_page(&app, &s, StatusCode::CREATED, Some(secret), Refusal::default()).await,
        Err(e) => {
            let typed = Refusal { token_name: form.name, token_expires: form.expires_in, ..Refusal::default() };
            refused_on_profile(&app, &s, e, "token", typed).await
        }
    }
}

pub async fn revoke_token(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    match app.revoke_token(&s.0.actor, &s.0.actor.name, id).await {
        Ok(_) => Ok(Redirect::to("/profile#tokens").into_response()),
        Err(e) => refused_on_profile(&app, &s, e, "tokens", Refusal::default()).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    public_key: String,
}

pub async fn add_key(State(app): State<Arc<App>>, s: SignedIn, Form(form): Form<KeyForm>) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let name = Some(form.name.trim()).filter(|n| !n.is_empty());
    match app.add_ssh_key(&s.0.actor, &s.0.actor.name, name, &form.public_key).await {
        Ok(_) => Ok(Redirect::to("/profile#keys").into_response()),
        Err(e) => {
            let typed = Refusal { key_name: form.name, key_text: form.public_key, ..Refusal::default() };
            refused_on_profile(&app, &s, e, "key", typed).await
        }
    }
}

pub async fn remove_key(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    match app.remove_ssh_key(&s.0.actor, &s.0.actor.name, id).await {
        Ok(_) => Ok(Redirect::to("/profile#keys").into_response()),
        Err(e) => refused_on_profile(&app, &s, e, "keys", Refusal::default()).await,
    }
}

/// The account request form's fields, as typed (kept when refused).
#[derive(Debug, Default, Deserialize)]
pub struct RequestForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    affiliation: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    motivation: String,
}

#[derive(Template)]
#[template(path = "request_account.html")]
struct RequestPage {
    nav: Option<NavUser>,
    active: &'static str,
    form_token: String,
    form: RequestForm,
    statuses: Vec<(&'static str, &'static str)>,
    /// A refusal: the control it concerns (`""`: the form's), its words.
    error: Option<(&'static str, String)>,
}

impl RequestPage {
    fn error_for(&self, control: &str) -> Option<&str> {
        self.error.as_ref().filter(|(c, _)| *c == control).map(|(_, m)| m.as_str())
    }
}

fn statuses() -> Vec<(&'static str, &'static str)> {
    RequesterStatus::ALL.iter().map(|s| (s.as_str(), s.label())).collect()
}

pub async fn request_form(
    State(app): State<Arc<App>>,
    MaybeSignedIn(session): MaybeSignedIn,
    jar: CookieJar,
) -> Result<Response, WebError> {
    let (form_token, cookie) = session::form_token(&app)?;
    let nav = session.as_ref().map(NavUser::from);
    let body = RequestPage { nav, active: "request", form_token, form: RequestForm::default(), statuses: statuses(), error: None };
    Ok((jar.add(cookie), page(StatusCode::OK, &body)).into_response())
}

pub async fn request_account(
    State(app): State<Arc<App>>,
    ClientAddr(client): ClientAddr,
    jar: CookieJar,
    Form(form): Form<RequestForm>,
) -> Result<Response, WebError> {
    if !session::form_token_matches(&jar, &form.form_token) {
        return Err(WebError::Forgery);
    }
    let refused = match RequesterStatus::parse(&form.status) {
        None => "status: choose what you are".to_owned(),
        Some(status) => {
            let ask = AccountAsk {
                name: form.name.trim().to_owned(),
                email: form.email.trim().to_owned(),
                affiliation: form.affiliation.clone(),
                project: form.project.trim().to_owned(),
                class: None,
                motivation: form.motivation.clone(),
                status: Some(status),
            };
            match app.request_account(client, ask).await {
                Ok(_) => {
                    let text = if app.mailer.enabled() {
                        format!(
                            "We sent a mail to {}: follow its link to confirm your address. An admin then decides on your request.",
                            form.email.trim()
                        )
                    } else {
                        "An admin decides on your request and sends you the link where you set your password.".to_owned()
                    };
                    let done = done_page(StatusCode::ACCEPTED, "Request sent", text);
                    return Ok((jar.remove(session::FORM_COOKIE), done).into_response());
                }
                Err(AppError::BadRequest { message, .. }) | Err(AppError::TooManyRequests(message)) => message,
                Err(other) => return Err(other.into()),
            }
        }
    };
    let controls = ["name", "email", "affiliation", "status", "project", "motivation"].map(|c| (c, c));
    let error = Some((super::control_of(&refused, &controls), refused));
    let (form_token, cookie) = session::form_token(&app)?;
    let body = RequestPage { nav: None, active: "request", form_token, form, statuses: statuses(), error };
    Ok((jar.add(cookie), page(StatusCode::BAD_REQUEST, &body)).into_response())
}

#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyPage {
    nav: Option<NavUser>,
    active: &'static str,
    token: String,
    form_token: String,
}

pub async fn verify_email_form(State(app): State<Arc<App>>, Path(token): Path<String>, jar: CookieJar) -> Result<Response, WebError> {
    // Following the link changes nothing (mail scanners open links); the
    // button does.
    let (form_token, cookie) = session::form_token(&app)?;
    let body = VerifyPage { nav: None, active: "", token, form_token };
    Ok((jar.add(cookie), page(StatusCode::OK, &body)).into_response())
}

pub async fn verify_email(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    jar: CookieJar,
    Form(form): Form<CsrflessForm>,
) -> Result<Response, WebError> {
    if !session::form_token_matches(&jar, &form.form_token) {
        return Err(WebError::Forgery);
    }
    match app.verify_account_email(&token).await? {
        Some(request) => {
            let text =
                format!("Thank you: {} is confirmed for the request of '{}'. An admin decides on it next.", request.email, request.name);
            Ok((jar.remove(session::FORM_COOKIE), done_page(StatusCode::OK, "Address confirmed", text)).into_response())
        }
        None => Err(WebError::App(AppError::NotFound("this confirmation link is unknown or was used already".into()))),
    }
}

/// A form before sign-in that carries only its form token.
#[derive(Debug, Deserialize)]
pub struct CsrflessForm {
    #[serde(default)]
    form_token: String,
}

/// A page that says a form did what it asked, to someone not signed in.
fn done_page(status: StatusCode, heading: &str, text: String) -> Response {
    let message = MessagePage { nav: None, active: "", heading: heading.into(), text, is_error: false, link: ("/".into(), "Home".into()) };
    page(status, &message)
}
