//! Accounts: who is calling (API tokens), users, projects, and the first
//! admin created on an empty database.
//!
//! Tokens are random 32-byte secrets shown once; only their SHA-256 is
//! stored, and they are never logged. A token has an optional name and
//! expiry and may be read-only (GET only); its owner lists and revokes
//! them, and holds at most `[accounts] max_tokens_per_user` live ones. An
//! admin disables a user: the user's tokens stop working at the next
//! request and their leases end, with the admin's reason.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{App, AppError, AppResult};
use crate::db::{ActorRow, DbError, Disabled, NewToken, ProjectRow, TokenRow, UserRow};
use crate::model::{ProjectId, Seconds, UserId};

/// The longest a token may live: ten years.
const MAX_TOKEN_LIFETIME: Seconds = 10 * 366 * 86_400;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: UserId,
    pub name: String,
    pub is_admin: bool,
    pub projects: Vec<(ProjectId, String)>,
}

impl From<ActorRow> for Actor {
    fn from(r: ActorRow) -> Self {
        Actor { user_id: r.user_id, name: r.name, is_admin: r.is_admin, projects: r.projects }
    }
}

/// A bearer token's caller, and what the token itself allows.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub actor: Actor,
    pub token_id: i64,
    /// The token may only read (`GET`).
    pub read_only: bool,
}

/// What a new token should be.
#[derive(Clone, Debug, Default)]
pub struct TokenAsk {
    pub name: Option<String>,
    /// A duration from now (`30d`, `12h`), or `expires_at`; not both.
    pub expires_in: Option<String>,
    pub expires_at: Option<Seconds>,
    pub read_only: bool,
}

impl Actor {
    pub fn require_admin(&self) -> AppResult<()> {
        if self.is_admin { Ok(()) } else { Err(AppError::Forbidden("this operation is for admins".into())) }
    }
}

/// A new random token: `ferrum_` followed by 64 hex digits.
pub fn new_token() -> AppResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness for a token: {e}")))?;
    Ok(format!("ferrum_{}", hex::encode(bytes)))
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Unicode's format characters (category Cf: bidi overrides and
/// isolates, zero-width characters, ...), which reorder or hide text in a
/// listing. The list is Unicode 15's.
fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// A free-text field: `min` to `max` characters once trimmed, no control
/// (Cc) or format (Cf) characters, except line feeds where `multiline`.
/// Errors start with the field's name.
pub fn validate_text(field: &str, text: &str, min: usize, max: usize, multiline: bool) -> AppResult<()> {
    if let Some(c) = text.chars().find(|&c| (c.is_control() && !(multiline && c == '\n')) || is_format_char(c)) {
        return Err(AppError::bad_request(format!(
            "{field}: control and bidirectional formatting characters are not allowed (found U+{:04X})",
            c as u32
        )));
    }
    let n = text.trim().chars().count();
    if n < min || n > max {
        return Err(AppError::bad_request(format!("{field}: {min} to {max} characters of text")));
    }
    Ok(())
}

/// Names of users and projects: what a shell, a URL and a Unix account all
/// accept.
pub fn validate_name(what: &str, name: &str) -> AppResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "{what} name '{name}' is invalid: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

impl App {
    /// Resolves a bearer token to its user: not revoked, not expired, its
    /// user not disabled.
    pub async fn authenticate(&self, token: &str) -> AppResult<Authenticated> {
        let generation = self.store.read_generation();
        let hash = token_hash(token);
        let read = async {
            match self.store.actor_by_token(&hash).await? {
                Some(actor) => Ok(actor),
                None => Err(AppError::Unauthenticated),
            }
        };
        let row = ActorRow::clone(&*self.reads.tokens.get_or_read(generation, &hash, read).await?);
        // Expiry is checked here, not in the store: a cached answer outlives it.
        if !crate::model::tokens::is_live(row.expires_at, self.now()) {
            return Err(AppError::Unauthenticated);
        }
        Ok(Authenticated { token_id: row.token_id, read_only: row.read_only, actor: row.into() })
    }

    /// On an empty database, creates the user `admin` and writes its token
    /// to `path` (mode 0600). Returns whether it did.
    pub async fn bootstrap_admin(&self, path: &Path) -> anyhow::Result<bool> {
        if self.store.count_users().await? > 0 {
            return Ok(false);
        }
        let token = new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
        write_secret_file(path, &format!("{token}\n"))?;
        self.store.create_user("admin", true, None, &[], &token_hash(&token), self.now()).await?;
        Ok(true)
    }

    pub async fn create_project(&self, actor: &Actor, name: &str, class: Option<&str>, quota: Option<i64>) -> AppResult<ProjectRow> {
        actor.require_admin()?;
        validate_name("project", name)?;
        if quota.is_some_and(|q| q < 0) {
            return Err(AppError::bad_request("quota_node_hours must be zero or more"));
        }
        self.validate_class(class)?;
        let row = self.store.create_project(name, class, quota, self.now()).await?;
        self.audit(actor, "project.create", &format!("project/{name}"), serde_json::json!({ "class": class, "quota_node_hours": quota }))
            .await;
        Ok(row)
    }

    /// A project's class must be one of `[policy.classes]` when any is
    /// configured (a typo would silently escape the class's limits).
    pub fn validate_class(&self, class: Option<&str>) -> AppResult<()> {
        if let Some(c) = class {
            super::one_line("class", c, ferrum_api::limits::NAME)?;
        }
        let classes = &self.config.policy.classes;
        match class {
            Some(c) if !classes.is_empty() && !classes.contains_key(c) => Err(AppError::bad_request(format!(
                "class: '{c}' is not a configured policy class ({})",
                classes.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))),
            _ => Ok(()),
        }
    }

    pub async fn list_projects(&self, actor: &Actor) -> AppResult<Vec<ProjectRow>> {
        let mut projects = self.store.list_projects().await?;
        if !actor.is_admin {
            projects.retain(|p| actor.projects.iter().any(|(id, _)| *id == p.id));
        }
        Ok(projects)
    }

    /// Creates a user and returns it with its first token.
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        is_admin: bool,
        email: Option<&str>,
        projects: &[String],
    ) -> AppResult<(UserRow, String)> {
        actor.require_admin()?;
        validate_name("user", name)?;
        if let Some(email) = email {
            super::account_requests::validate_email(email)?;
        }
        if let Some(taken) = self.user_named_alike(name).await? {
            return Err(name_taken(name, &taken));
        }
        let token = new_token()?;
        let user = self.store.create_user(name, is_admin, email, projects, &token_hash(&token), self.now()).await.map_err(|e| match e {
            DbError::NotFound { what: "project", name } => {
                AppError::bad_request(format!("project '{name}' does not exist; create it first"))
            }
            DbError::AlreadyExists { what: "user", .. } => name_taken(name, name),
            other => other.into(),
        })?;
        self.audit(actor, "user.create", &format!("user/{name}"), serde_json::json!({ "admin": is_admin, "projects": projects })).await;
        Ok((user, token))
    }

    pub async fn list_users(&self, actor: &Actor) -> AppResult<Vec<UserRow>> {
        actor.require_admin()?;
        Ok(self.store.list_users().await?)
    }

    pub async fn me(&self, actor: &Actor) -> AppResult<UserRow> {
        Ok(self.store.get_user(&actor.name).await?)
    }

    /// The existing user whose name equals `name` regardless of case.
    pub(crate) async fn user_named_alike(&self, name: &str) -> AppResult<Option<String>> {
        let folded = name.to_lowercase();
        Ok(self.store.list_users().await?.into_iter().map(|u| u.name).find(|n| n.to_lowercase() == folded))
    }

    /// `user`'s row, if the caller is that user or an admin.
    /// The user `user`, when the caller is that user or an admin; `what`
    /// says what the caller may do with their own (`create tokens`).
    pub(crate) async fn own_or_admin(&self, actor: &Actor, user: &str, what: &str) -> AppResult<UserRow> {
        if !actor.is_admin && actor.name != user {
            return Err(AppError::Forbidden(format!("you may only {what} of your own")));
        }
        Ok(self.store.get_user(user).await?)
    }

    /// A new token for `user`: admins for anyone, users for themselves.
    pub async fn create_token(&self, actor: &Actor, user: &str, ask: TokenAsk) -> AppResult<(TokenRow, String)> {
        let row = self.own_or_admin(actor, user, "create tokens").await?;
        if let Some(name) = &ask.name {
            validate_text("name", name, 1, 64, false)?;
        }
        let now = self.now();
        let expires_at = match (&ask.expires_in, ask.expires_at) {
            (Some(_), Some(_)) => return Err(AppError::bad_request("expires_in: give either expires_in or expires_at, not both")),
            (Some(d), None) => Some(now.saturating_add(super::leases::parse_duration("expires_in", d)?)),
            (None, Some(at)) if at <= now => return Err(AppError::bad_request("expires_at: must be in the future")),
            (None, at) => at,
        };
        if expires_at.is_some_and(|at| at > now.saturating_add(MAX_TOKEN_LIFETIME)) {
            return Err(AppError::bad_request("expires_in: a token lives at most 10 years"));
        }
        if row.disabled.is_some() {
            return Err(AppError::Conflict { message: format!("user '{user}' is disabled; enable them first"), earliest_start: None });
        }
        let token = new_token()?;
        let cap = i64::from(self.config.accounts.max_tokens_per_user);
        let new =
            NewToken { sha256: token_hash(&token), name: ask.name.map(|n| n.trim().to_owned()), expires_at, read_only: ask.read_only };
        let Some(created) = self.store.add_token(row.id, &new, now, cap).await? else {
            return Err(AppError::Conflict {
                message: format!(
                    "user '{user}' holds {cap} live tokens, the most allowed ([accounts] max_tokens_per_user); revoke one first \
                     (ferrum token list, ferrum token revoke ID)"
                ),
                earliest_start: None,
            });
        };
        self.audit(
            actor,
            "token.create",
            &format!("user/{user}"),
            serde_json::json!({ "id": created.id, "name": created.name, "read_only": created.read_only, "expires_at": created.expires_at }),
        )
        .await;
        Ok((created, token))
    }

    /// A user's tokens not revoked (never their secrets): the user's own, or
    /// anyone's for admins.
    pub async fn list_tokens(&self, actor: &Actor, user: &str) -> AppResult<Vec<TokenRow>> {
        let row = self.own_or_admin(actor, user, "list tokens").await?;
        Ok(self.store.list_tokens(row.id).await?)
    }

    /// Revokes one of `user`'s tokens: it stops working at once.
    pub async fn revoke_token(&self, actor: &Actor, user: &str, id: i64) -> AppResult<TokenRow> {
        let row = self.own_or_admin(actor, user, "revoke tokens").await?;
        let missing = || AppError::NotFound(format!("user '{user}' has no token {id} (or it is revoked already)"));
        let token = self.store.list_tokens(row.id).await?.into_iter().find(|t| t.id == id).ok_or_else(missing)?;
        if !self.store.revoke_token(row.id, id, self.now()).await? {
            return Err(missing());
        }
        self.audit(actor, "token.revoke", &format!("user/{user}"), serde_json::json!({ "id": id, "name": token.name })).await;
        Ok(token)
    }

    /// Disables a user (admin): their tokens stop working at once and their
    /// leases end (running ones released, later ones cancelled) with the
    /// reason. An admin cannot disable themselves or the last admin.
    pub async fn disable_user(&self, actor: &Actor, name: &str, reason: &str) -> AppResult<UserRow> {
        actor.require_admin()?;
        validate_text("reason", reason, 1, 1000, false)?;
        if actor.name == name {
            return Err(AppError::Conflict { message: "you cannot disable yourself".into(), earliest_start: None });
        }
        let users = self.store.list_users().await?;
        let target = users.iter().find(|u| u.name == name).ok_or_else(|| AppError::NotFound(format!("user '{name}' does not exist")))?;
        if target.is_admin && target.disabled.is_none() && users.iter().filter(|u| u.is_admin && u.disabled.is_none()).count() <= 1 {
            return Err(AppError::Conflict {
                message: format!("'{name}' is the last admin; they cannot be disabled"),
                earliest_start: None,
            });
        }
        let reason = reason.trim();
        let user = self.store.set_user_disabled(name, Some(&Disabled { at: self.now(), reason: reason.to_owned() })).await?;
        let why = format!("user '{name}' disabled by {}: {reason}", actor.name);
        let mut ended = Vec::new();
        for lease in self.store.list_leases(Some(user.id), false).await? {
            match self.end_lease_with_reason(lease.id, &why).await {
                Ok(l) => ended.push(l.id.0),
                // Ended meanwhile by the clock loop or its holder: nothing to do.
                Err(AppError::Conflict { message, .. }) => {
                    tracing::warn!(lease = %lease.id, %message, "lease of a disabled user not ended")
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(user = %name, actor = %actor.name, leases = ended.len(), "user disabled");
        self.audit(actor, "user.disable", &format!("user/{name}"), serde_json::json!({ "reason": reason, "leases_ended": ended })).await;
        Ok(user)
    }

    /// Enables a disabled user again (admin): their tokens work again
    /// (those not revoked or expired); ended leases stay ended.
    pub async fn enable_user(&self, actor: &Actor, name: &str) -> AppResult<UserRow> {
        actor.require_admin()?;
        let user = self.store.set_user_disabled(name, None).await?;
        self.audit(actor, "user.enable", &format!("user/{name}"), serde_json::Value::Null).await;
        Ok(user)
    }
}

/// A user name taken, regardless of case.
fn name_taken(name: &str, taken: &str) -> AppError {
    let message = if name == taken {
        format!("user '{name}' already exists")
    } else {
        format!("user name '{name}' is taken by '{taken}' (user names are unique regardless of case)")
    };
    AppError::Conflict { message, earliest_start: None }
}

/// Writes a secret to a new file readable by its owner only.
fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token().expect("randomness");
        let b = new_token().expect("randomness");
        assert_ne!(a, b);
        assert!(a.starts_with("ferrum_") && a.len() == 7 + 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn names() {
        assert!(validate_name("user", "alice").is_ok());
        assert!(validate_name("project", "p-vision_2.0").is_ok());
        for bad in ["", "-x", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(validate_name("user", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn free_text_refuses_control_and_bidi_characters() {
        assert!(validate_text("affiliation", "Université de Lille", 1, 200, false).is_ok());
        assert!(validate_text("motivation", "line one\nline two", 1, 200, true).is_ok());
        assert!(validate_text("affiliation", "line one\nline two", 1, 200, false).is_err());
        for bad in ["evil\u{202E}txt", "a\u{2066}b", "zero\u{200B}width", "bell\u{7}", "tag\u{E0041}", "bom\u{FEFF}"] {
            let e = validate_text("affiliation", bad, 1, 200, true).expect_err(bad).to_string();
            assert!(e.starts_with("affiliation: control and bidirectional"), "{e}");
        }
        assert!(validate_text("reason", "  ", 1, 10, false).is_err());
        assert!(validate_text("reason", &"x".repeat(11), 1, 10, false).is_err());
    }
}
