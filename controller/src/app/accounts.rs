//! Accounts: who is calling (API tokens), users, projects, and the first
//! admin created on an empty database.
//!
//! Tokens are random 32-byte secrets shown once; only their SHA-256 is
//! stored, and they are never logged.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{App, AppError, AppResult};
use crate::db::{ActorRow, DbError, ProjectRow, UserRow};
use crate::model::{ProjectId, UserId};

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
    /// Resolves a bearer token to its user.
    pub async fn authenticate(&self, token: &str) -> AppResult<Actor> {
        let generation = self.store.read_generation();
        let hash = token_hash(token);
        let read = async {
            match self.store.actor_by_token(&hash).await? {
                Some(actor) => Ok(actor),
                None => Err(AppError::Unauthenticated),
            }
        };
        Ok(ActorRow::clone(&*self.reads.tokens.get_or_read(generation, &hash, read).await?).into())
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
        if let Some(email) = email.filter(|e| !e.contains('@') || e.len() > 254) {
            return Err(AppError::bad_request(format!("email '{email}' is not an e-mail address")));
        }
        let token = new_token()?;
        let user = self.store.create_user(name, is_admin, email, projects, &token_hash(&token), self.now()).await.map_err(|e| match e {
            DbError::NotFound { what: "project", name } => {
                AppError::bad_request(format!("project '{name}' does not exist; create it first"))
            }
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

    /// A new token for `user`: admins for anyone, users for themselves.
    pub async fn create_token(&self, actor: &Actor, user: &str) -> AppResult<String> {
        if !actor.is_admin && actor.name != user {
            return Err(AppError::Forbidden("you may only create tokens for yourself".into()));
        }
        let row = self.store.get_user(user).await?;
        let token = new_token()?;
        self.store.add_token(row.id, &token_hash(&token), self.now()).await?;
        if actor.name != user {
            self.audit(actor, "token.create", &format!("user/{user}"), serde_json::Value::Null).await;
        }
        Ok(token)
    }
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
}
