//! Account requests and project administration: students and start-ups
//! ask for an account without a token (validated, rate-limited per client
//! address and capped in all); an admin approves (the user is created, with
//! their project if it is new, and a first token shown once) or rejects
//! with a reason; a project's manager decides the requests to join it
//! (never a new project's, nor its class or quota, and without the token). Projects have members and a manager who may add and
//! remove them; class, quota and manager changes are admin actions.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::accounts::{new_token, token_hash, validate_name, validate_text};
use super::{Actor, App, AppError, AppResult};
use crate::db::{AccountRequestRow, Approval, DbError, NewAccountRequest, ProjectChange, ProjectRow, UserRow};
use crate::model::AccountRequestState;

/// Requests one client address may send per hour.
const PER_ADDRESS_PER_HOUR: u32 = 5;
/// Pending requests kept at most; beyond, new ones wait for decisions.
const MAX_PENDING: i64 = 1000;

pub(crate) type RequestLimiter = DefaultKeyedRateLimiter<IpAddr>;

pub(crate) fn limiter() -> RequestLimiter {
    RateLimiter::keyed(Quota::per_hour(NonZeroU32::new(PER_ADDRESS_PER_HOUR).unwrap_or(NonZeroU32::MIN)))
}

/// What someone asks for.
#[derive(Clone, Debug)]
pub struct AccountAsk {
    pub name: String,
    pub email: String,
    pub affiliation: String,
    pub project: String,
    pub class: Option<String>,
    pub motivation: String,
    pub status: Option<ferrum_api::accounts::RequesterStatus>,
}

/// What approving a request gave.
#[derive(Debug)]
pub struct Approved {
    pub request: AccountRequestRow,
    pub user: UserRow,
    /// The user's first API token, for an admin who approved.
    pub token: Option<String>,
    /// The activation link, when it was not mailed to the user.
    pub activation_url: Option<String>,
}

/// An e-mail address as far as a form can tell: one `@`, a local part, a
/// domain with a dot, no spaces.
pub(crate) fn validate_email(email: &str) -> AppResult<()> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if !ok {
        return Err(AppError::bad_request(format!("email: '{email}' is not an e-mail address")));
    }
    validate_text("email", email, 3, 254, false)
}

impl App {
    /// Stores a request from `source` (no token needed).
    pub async fn request_account(&self, source: IpAddr, ask: AccountAsk) -> AppResult<AccountRequestRow> {
        validate_name("user", &ask.name).map_err(|e| AppError::bad_request(format!("name: {e}")))?;
        validate_email(&ask.email)?;
        validate_text("affiliation", &ask.affiliation, 1, 200, false)?;
        validate_name("project", &ask.project).map_err(|e| AppError::bad_request(format!("project: {e}")))?;
        validate_text("motivation", &ask.motivation, 20, 4000, true)?;
        if let Some(class) = &ask.class {
            validate_text("class", class, 1, 64, false)?;
        }
        self.validate_class(ask.class.as_deref())?;
        if self.account_requests_limit.check_key(&source).is_err() {
            return Err(AppError::TooManyRequests(format!(
                "at most {PER_ADDRESS_PER_HOUR} account requests per hour from one address; try again later"
            )));
        }
        if self.store.count_pending_account_requests().await? >= MAX_PENDING {
            return Err(AppError::TooManyRequests("too many account requests wait for a decision; try again later".into()));
        }
        // The e-mail check: a one-time link mailed to the address given.
        let email_token = if self.mailer.enabled() { Some(new_token()?) } else { None };
        // Stored even when the login is taken or asked for already: the answer
        // must not tell which logins exist. The admin sees the clash.
        let row = self
            .store
            .insert_account_request(&NewAccountRequest {
                name: ask.name,
                email: ask.email,
                affiliation: ask.affiliation.trim().to_owned(),
                project: ask.project,
                project_class: ask.class,
                motivation: ask.motivation.trim().to_owned(),
                source: source.to_string(),
                created_at: self.now(),
                status: ask.status.map(|s| s.as_str().to_owned()),
                email_token_sha256: email_token.as_deref().map(token_hash),
            })
            .await?;
        tracing::info!(request = row.id, name = %row.name, project = %row.project, "account requested");
        if let Some(token) = email_token {
            let link = format!("{}/verify-email/{token}", self.config.web_base_url());
            let body = format!(
                "Hello,\n\nsomeone, probably you, asked for the account '{}' on this testbed (project {}).\n                 To confirm that this address is yours, open:\n\n{link}\n\n                 An admin then decides on the request; you will get another mail when they do.\n                 If you did not ask for an account, ignore this mail.\n",
                row.name, row.project
            );
            self.mailer.send(&row.email, "Confirm your e-mail address for your testbed account", body).await;
        }
        Ok(row)
    }

    /// Requests, each pending one with its clash if any (the login is a
    /// user's, or another pending request's, regardless of case).
    /// An admin sees every one; a project's manager those asking to join
    /// the projects they manage.
    pub async fn account_requests(
        &self,
        actor: &Actor,
        state: Option<AccountRequestState>,
    ) -> AppResult<Vec<(AccountRequestRow, Option<String>)>> {
        let deciders = Deciders::of(self, actor).await?;
        let rows = self.store.account_requests(state).await?;
        let clashes = Clashes::read(self).await?;
        Ok(rows
            .into_iter()
            .filter(|r| deciders.decide(r))
            .map(|r| {
                let clash = clashes.of(&r);
                (r, clash)
            })
            .collect())
    }

    pub async fn account_request(&self, actor: &Actor, id: i64) -> AppResult<(AccountRequestRow, Option<String>)> {
        let row = self.decidable_request(actor, id).await?;
        let clash = Clashes::read(self).await?.of(&row);
        Ok((row, clash))
    }

    /// Request `id`, if `actor` decides it; one they do not is not found
    /// (a manager learns nothing of other projects' requests).
    async fn decidable_request(&self, actor: &Actor, id: i64) -> AppResult<AccountRequestRow> {
        let deciders = Deciders::of(self, actor).await?;
        let row = self.store.account_request(id).await?;
        if !deciders.decide(&row) {
            return Err(AppError::NotFound(format!("no account request {id}")));
        }
        Ok(row)
    }

    /// Confirms a request's e-mail address (the link mailed to it); `None`
    /// for an unknown or used link.
    pub async fn verify_account_email(&self, token: &str) -> AppResult<Option<AccountRequestRow>> {
        Ok(self.store.verify_account_email(&token_hash(token), self.now()).await?)
    }

    /// Approves a request: creates the user (and the project if new, with
    /// the requester as manager) with a first token, and mails them the
    /// link where they set their portal password (or gives it to the admin
    /// when no mail goes).
    pub async fn approve_account_request(
        &self,
        actor: &Actor,
        id: i64,
        reason: Option<&str>,
        class: Option<&str>,
        quota: Option<i64>,
    ) -> AppResult<Approved> {
        let request = self.decidable_request(actor, id).await?;
        if !actor.is_admin && (class.is_some() || quota.is_some()) {
            return Err(AppError::Forbidden("a project's class and quota are set by admins".into()));
        }
        if quota.is_some_and(|q| q < 0) {
            return Err(AppError::bad_request("quota_node_hours: zero or more"));
        }
        if let Some(reason) = reason {
            validate_text("reason", reason, 1, 1000, false)?;
        }
        if let Some(class) = class {
            validate_text("project_class", class, 1, 64, false)?;
        }
        if request.state == AccountRequestState::Pending
            && let Some(taken) = self.user_named_alike(&request.name).await?
        {
            return Err(AppError::Conflict {
                message: format!(
                    "login '{}' clashes with existing user '{taken}' (user names are unique regardless of case); reject this request",
                    request.name
                ),
                earliest_start: None,
            });
        }
        let class = class.map(str::to_owned).or(request.project_class.clone());
        self.validate_class(class.as_deref())?;
        let token = new_token()?;
        let approval = Approval {
            decided_by: actor.name.clone(),
            reason: reason.map(str::to_owned),
            project_class: class,
            quota_node_hours: quota,
            token_sha256: token_hash(&token),
            at: self.now(),
        };
        let (request, user) = self.store.approve_account_request(id, &approval).await.map_err(decided)?;
        self.audit(
            actor,
            "account_request.approve",
            &format!("account-request/{id}"),
            serde_json::json!({ "user": user.name, "project": request.project, "reason": reason }),
        )
        .await;
        let link = self.new_activation_link(&user).await?;
        let body = format!(
            "Hello,\n\nyour account '{}' on this testbed is approved (project {}).\n             Set your password here (the link works once, until {}):\n\n{}\n\n             Then sign in at {}/login.\n",
            user.name,
            request.project,
            crate::model::time::from_seconds(link.expires_at).format("%Y-%m-%d %H:%M UTC"),
            link.url,
            self.config.web_base_url()
        );
        let mailed = self.mailer.send(&request.email, "Your testbed account is approved", body).await;
        // A user's token is theirs: a manager approving does not get it
        // (the user makes their own once signed in).
        let token = actor.is_admin.then_some(token);
        Ok(Approved { request, user, token, activation_url: (!mailed).then_some(link.url) })
    }

    pub async fn reject_account_request(&self, actor: &Actor, id: i64, reason: &str) -> AppResult<AccountRequestRow> {
        self.decidable_request(actor, id).await?;
        validate_text("reason", reason, 1, 1000, false)?;
        let row = self.store.reject_account_request(id, &actor.name, reason.trim(), self.now()).await.map_err(decided)?;
        self.audit(
            actor,
            "account_request.reject",
            &format!("account-request/{id}"),
            serde_json::json!({ "name": row.name, "reason": reason }),
        )
        .await;
        Ok(row)
    }

    /// Changes a project's class, quota or manager (admin).
    pub async fn update_project(&self, actor: &Actor, name: &str, change: ProjectChange) -> AppResult<ProjectRow> {
        actor.require_admin()?;
        if let Some(Some(class)) = &change.class {
            self.validate_class(Some(class))?;
        }
        if let Some(Some(q)) = change.quota_node_hours
            && q < 0
        {
            return Err(AppError::bad_request("quota_node_hours: zero or more"));
        }
        let before = self.project_row(name).await?;
        let after = self.store.update_project(name, &change).await?;
        self.audit(
            actor,
            "project.update",
            &format!("project/{name}"),
            serde_json::json!({
                "from": { "class": before.class, "quota_node_hours": before.quota_node_hours, "manager": before.manager },
                "to": { "class": after.class, "quota_node_hours": after.quota_node_hours, "manager": after.manager },
            }),
        )
        .await;
        Ok(after)
    }

    /// Adds or removes a member (admins, and the project's manager).
    pub async fn set_project_member(&self, actor: &Actor, project: &str, user: &str, member: bool) -> AppResult<ProjectRow> {
        let row = self.project_row(project).await?;
        if !actor.is_admin && row.manager.as_deref() != Some(actor.name.as_str()) {
            return Err(AppError::Forbidden(format!("members of project '{project}' are managed by admins and its manager")));
        }
        // The project is the path's resource (404 above); a user the body
        // names who does not exist is a bad body, named by its field.
        let after = match self.store.set_project_member(project, user, member).await {
            Err(crate::db::DbError::NotFound { what: "user", .. }) if member => {
                return Err(AppError::bad_request(format!("user: no user '{user}'")));
            }
            other => other?,
        };
        let action = if member { "project.member_add" } else { "project.member_remove" };
        self.audit(actor, action, &format!("project/{project}"), serde_json::json!({ "user": user })).await;
        Ok(after)
    }
}

/// Whose account requests a caller decides: every one (an admin), or
/// those asking to join a project they manage. A new project is an admin's
/// decision.
enum Deciders {
    Admin,
    Manager(Vec<String>),
}

impl Deciders {
    async fn of(app: &App, actor: &Actor) -> AppResult<Deciders> {
        if actor.is_admin {
            return Ok(Deciders::Admin);
        }
        let managed: Vec<String> = app
            .store
            .list_projects()
            .await?
            .into_iter()
            .filter(|p| p.manager.as_deref() == Some(actor.name.as_str()))
            .map(|p| p.name)
            .collect();
        if managed.is_empty() {
            return Err(AppError::Forbidden("account requests are decided by admins and by the managers of the projects asked for".into()));
        }
        Ok(Deciders::Manager(managed))
    }

    fn decide(&self, r: &AccountRequestRow) -> bool {
        match self {
            Deciders::Admin => true,
            Deciders::Manager(projects) => projects.contains(&r.project),
        }
    }
}

/// What pending requests clash with: users' and pending requests' logins,
/// case-folded.
struct Clashes {
    users: std::collections::HashMap<String, String>,
    pending: Vec<(i64, String)>,
}

impl Clashes {
    async fn read(app: &App) -> AppResult<Clashes> {
        let users = app.store.list_users().await?.into_iter().map(|u| (u.name.to_lowercase(), u.name)).collect();
        let pending = app
            .store
            .account_requests(Some(AccountRequestState::Pending))
            .await?
            .into_iter()
            .map(|r| (r.id, r.name.to_lowercase()))
            .collect();
        Ok(Clashes { users, pending })
    }

    /// Why `r` cannot be approved as it is, if it is pending.
    fn of(&self, r: &AccountRequestRow) -> Option<String> {
        if r.state != AccountRequestState::Pending {
            return None;
        }
        let folded = r.name.to_lowercase();
        if let Some(user) = self.users.get(&folded) {
            return Some(format!("login taken by user '{user}'"));
        }
        let others: Vec<String> = self.pending.iter().filter(|(id, n)| *id != r.id && *n == folded).map(|(id, _)| id.to_string()).collect();
        (!others.is_empty()).then(|| format!("login also asked for by pending request {}", others.join(", ")))
    }
}

/// A decision on a request decided already is a conflict.
fn decided(e: DbError) -> AppError {
    match e {
        DbError::Raced { .. } => AppError::Conflict { message: "this account request was already decided".into(), earliest_start: None },
        DbError::AlreadyExists { what: "user", name } => AppError::Conflict {
            message: format!("user '{name}' exists already (user names are unique regardless of case); reject this request"),
            earliest_start: None,
        },
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.fr", "first.last+tag@lab.example.org"] {
            assert!(validate_email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.fr", "a@@b.fr", "a b@c.fr", "a@.fr", "a@fr.", &format!("{}@b.fr", "x".repeat(260))] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
    }
}
