//! The web portal's accounts: passwords set through one-time activation
//! links, sign-in with throttling, browser sessions, users' SSH keys.
//!
//! - A password is set only through an activation link: an admin makes one
//!   (`ferrum admin user activation-link NAME`, also for the first admin),
//!   an approved account request gets one. A link works once, expires
//!   (`[web] activation_lifetime`), and a newer link for the same user
//!   replaces it; using it ends the user's sessions.
//! - Passwords are hashed with argon2id (PHC strings, the crate's
//!   defaults), off the async threads.
//! - Sign-in is throttled per account and per client address (governor,
//!   in memory: each replica counts its own); a refused attempt says when
//!   to retry. A failed sign-in never tells whether the name exists.
//! - A session is a random 32-byte token in an `HttpOnly` cookie, stored as
//!   its SHA-256 with an anti-forgery (CSRF) token of its own; a new one is
//!   made at every sign-in (an old cookie is never adopted), and it dies
//!   at its expiry, at sign-out, with a new password, or when its user is
//!   disabled. Sessions open the portal only: `/api/v1` takes tokens.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::accounts::{new_token, token_hash};
use super::{Actor, App, AppError, AppResult};
use crate::db::{DbError, SessionRow, SshKeyRow, UserRow};
use crate::model::{Seconds, UserId};

/// The shortest password taken.
pub const MIN_PASSWORD: usize = 10;
/// The longest (hashing cost does not grow with it, but a bound is kept).
pub const MAX_PASSWORD: usize = 1024;

/// Sign-in throttles, per account name and per client address.
#[derive(Debug)]
pub(crate) struct LoginLimits {
    accounts: DefaultKeyedRateLimiter<String>,
    addresses: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginLimits {
    pub(crate) fn new(per_account: u32, per_address: u32) -> Self {
        let burst = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        LoginLimits {
            accounts: RateLimiter::keyed(Quota::per_minute(NonZeroU32::MIN).allow_burst(burst(per_account))),
            addresses: RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(10)).unwrap_or(Quota::per_second(NonZeroU32::MIN)).allow_burst(burst(per_address)),
            ),
        }
    }
}

/// A session just opened: the cookie's token (shown once) and its expiry.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub expires_at: Seconds,
}

/// The caller of a portal page: the session's user and its CSRF token.
#[derive(Clone, Debug)]
pub struct WebSession {
    pub actor: Actor,
    /// The anti-forgery token as pages show it: masked afresh for each
    /// answer ([`mask`]), so a compressed page never
    /// repeats the same secret bytes (BREACH).
    pub csrf: String,
    /// The session's anti-forgery secret, compared with what forms post
    /// once unmasked; never written into a page.
    pub csrf_key: String,
    pub expires_at: Seconds,
    /// The user's unread notifications.
    pub unread: i64,
}

impl From<SessionRow> for WebSession {
    fn from(r: SessionRow) -> Self {
        WebSession {
            actor: Actor { user_id: r.user_id, name: r.name, is_admin: r.is_admin, projects: r.projects },
            csrf: mask(&r.csrf),
            csrf_key: r.csrf,
            expires_at: r.expires_at,
            unread: r.unread,
        }
    }
}

/// A new activation link.
#[derive(Debug)]
pub struct ActivationLink {
    pub url: String,
    pub expires_at: Seconds,
}

/// Why a password is refused, or `None`.
pub fn password_error(password: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Some(format!("at least {MIN_PASSWORD} characters"));
    }
    if n > MAX_PASSWORD {
        return Some(format!("at most {MAX_PASSWORD} characters"));
    }
    None
}

/// Hashes a password (argon2id, PHC string), off the async threads.
async fn hash_password(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("password hashing stopped: {e}")))?
        .map_err(|e| AppError::Internal(anyhow::anyhow!("password hashing failed: {e}")))
}

/// Whether `password` matches the stored hash (`None`: no password set, a
/// hash computed all the same so that timing does not tell).
async fn verify_password(password: String, stored: Option<String>) -> AppResult<bool> {
    tokio::task::spawn_blocking(move || {
        let argon = Argon2::default();
        match stored.as_deref().map(PasswordHash::new) {
            Some(Ok(hash)) => argon.verify_password(password.as_bytes(), &hash).is_ok(),
            Some(Err(_)) | None => {
                let _ = argon.hash_password(password.as_bytes());
                false
            }
        }
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("password check stopped: {e}")))
}

/// The OpenSSH fingerprint (`SHA256:...`) of a public key line, or why it
/// is not one.
pub fn ssh_key_fingerprint(line: &str) -> Result<String, String> {
    let key = russh::keys::PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("not an OpenSSH public key ({e}); expected 'ssh-ed25519 AAAA... comment'"))?;
    Ok(key.fingerprint(russh::keys::HashAlg::Sha256).to_string())
}

impl App {
    /// A one-time link where `user` sets a password (admins only); the
    /// user's earlier unused links stop working.
    pub async fn activation_link(&self, actor: &Actor, user: &str) -> AppResult<ActivationLink> {
        actor.require_admin()?;
        let row = self.store.get_user(user).await?;
        self.new_activation_link(&row).await
    }

    /// Makes an activation link for `user` (the caller has checked who may).
    pub(crate) async fn new_activation_link(&self, user: &UserRow) -> AppResult<ActivationLink> {
        if user.disabled.is_some() {
            return Err(AppError::Conflict { message: format!("user '{}' is disabled", user.name), earliest_start: None });
        }
        let token = new_token()?;
        let now = self.now();
        let expires_at = now.saturating_add(seconds(self.config.web.activation_lifetime));
        self.store.insert_activation(user.id, &token_hash(&token), now, expires_at).await?;
        Ok(ActivationLink { url: format!("{}/activate/{token}", self.config.web_base_url()), expires_at })
    }

    /// The user an activation link is for, while it is usable.
    pub async fn activation_user(&self, token: &str) -> AppResult<Option<UserRow>> {
        Ok(self.store.activation_user(&token_hash(token), self.now()).await?)
    }

    /// Sets the password of the link's user and spends the link.
    pub async fn activate(&self, token: &str, password: &str) -> AppResult<String> {
        if let Some(why) = password_error(password) {
            return Err(AppError::bad_request(format!("password: {why}")));
        }
        let Some(user) = self.activation_user(token).await? else {
            return Err(AppError::NotFound("this activation link is unknown, used or expired: ask for a new one".into()));
        };
        let hash = hash_password(password.to_owned()).await?;
        match self.store.use_activation(&token_hash(token), &hash, self.now()).await? {
            Some(_) => {
                self.audit_as(&user.name, "user.password_set", &user.name, serde_json::json!({})).await;
                Ok(user.name)
            }
            None => Err(AppError::NotFound("this activation link is unknown, used or expired: ask for a new one".into())),
        }
    }

    /// Signs `name` in with `password` from `client`: a new session.
    pub async fn sign_in(&self, name: &str, password: &str, client: IpAddr) -> AppResult<NewSession> {
        let limits = &self.login_limits;
        if let Err(not_until) = limits.addresses.check_key(&client) {
            return Err(too_many(not_until));
        }
        if let Err(not_until) = limits.accounts.check_key(&name.to_lowercase()) {
            return Err(too_many(not_until));
        }
        let refused = || AppError::SignInRefused("wrong user name or password".into());
        if password.chars().count() > MAX_PASSWORD || name.len() > ferrum_api::limits::NAME {
            return Err(refused());
        }
        let login = self.store.login_user(name).await?;
        let (user, stored, disabled) = match login {
            Some(l) => (Some(l.user_id), l.password_hash, l.disabled),
            None => (None, None, false),
        };
        let matches = verify_password(password.to_owned(), stored).await?;
        let (Some(user), true, false) = (user, matches, disabled) else {
            tracing::info!(user = name, %client, "portal sign-in refused");
            return Err(refused());
        };
        let session = self.open_session(user).await?;
        self.audit_as(name, "user.sign_in", name, serde_json::json!({ "client": client.to_string() })).await;
        Ok(session)
    }

    async fn open_session(&self, user: UserId) -> AppResult<NewSession> {
        let token = new_token()?;
        let csrf = new_token()?;
        let now = self.now();
        let expires_at = now.saturating_add(seconds(self.config.web.session_lifetime));
        self.store.insert_session(user, &token_hash(&token), &csrf, now, expires_at).await?;
        Ok(NewSession { token, expires_at })
    }

    /// The live session a cookie's token opens.
    pub async fn web_session(&self, token: &str) -> AppResult<Option<WebSession>> {
        Ok(self.store.session(&token_hash(token), self.now()).await?.map(WebSession::from))
    }

    /// Ends the session of a cookie's token.
    pub async fn sign_out(&self, token: &str) -> AppResult<()> {
        Ok(self.store.delete_session(&token_hash(token)).await?)
    }

    /// Registers an SSH public key of `user` (the user themselves, or an
    /// admin).
    pub async fn add_ssh_key(&self, actor: &Actor, user: &str, name: Option<&str>, key: &str) -> AppResult<SshKeyRow> {
        let owner = self.own_or_admin(actor, user, "add SSH keys").await?;
        if let Some(n) = name {
            super::one_line("name", n, ferrum_api::limits::NAME)?;
        }
        super::one_line("public_key", key.trim(), ferrum_api::limits::SSH_KEY)?;
        let fingerprint = ssh_key_fingerprint(key).map_err(|e| AppError::bad_request(format!("public_key: {e}")))?;
        if self.store.ssh_keys(owner.id).await?.len() >= ferrum_api::limits::SSH_KEYS {
            return Err(AppError::Conflict {
                message: format!("at most {} SSH keys per user: remove one first", ferrum_api::limits::SSH_KEYS),
                earliest_start: None,
            });
        }
        let row = self.store.add_ssh_key(owner.id, name, key.trim(), &fingerprint, self.now()).await.map_err(|e| match e {
            DbError::AlreadyExists { .. } => {
                AppError::Conflict { message: format!("this key ({fingerprint}) is registered already"), earliest_start: None }
            }
            other => other.into(),
        })?;
        self.audit(actor, "user.ssh_key_added", user, serde_json::json!({ "fingerprint": fingerprint })).await;
        Ok(row)
    }

    /// The SSH keys of `user` (the user themselves, or an admin).
    pub async fn ssh_keys(&self, actor: &Actor, user: &str) -> AppResult<Vec<SshKeyRow>> {
        let owner = self.own_or_admin(actor, user, "list SSH keys").await?;
        Ok(self.store.ssh_keys(owner.id).await?)
    }

    /// Removes an SSH key of `user` (the user themselves, or an admin).
    pub async fn remove_ssh_key(&self, actor: &Actor, user: &str, id: i64) -> AppResult<SshKeyRow> {
        let owner = self.own_or_admin(actor, user, "remove SSH keys").await?;
        let missing = || AppError::NotFound(format!("user '{user}' has no SSH key {id}"));
        let key = self.store.ssh_keys(owner.id).await?.into_iter().find(|k| k.id == id).ok_or_else(missing)?;
        if !self.store.delete_ssh_key(owner.id, id).await? {
            return Err(missing());
        }
        self.audit(actor, "user.ssh_key_removed", user, serde_json::json!({ "fingerprint": key.fingerprint })).await;
        Ok(key)
    }
}

fn seconds(d: Duration) -> Seconds {
    Seconds::try_from(d.as_secs()).unwrap_or(Seconds::MAX)
}

fn too_many(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> AppError {
    use governor::clock::Clock;
    let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
    AppError::TooManyRequests(format!("too many sign-in attempts: try again in {} s", wait.as_secs().max(1)))
}

/// `secret` as a page shows it: a random pad of its length, then the
/// secret XOR the pad, in hex. Each answer shows different bytes.
pub fn mask(secret: &str) -> String {
    let mut pad = vec![0u8; secret.len()];
    // Without randomness the pad is zeros: the token shows as itself,
    // which is what pages showed before masking.
    if let Err(e) = getrandom::fill(&mut pad) {
        tracing::warn!(error = %e, "no randomness to mask a form token");
    }
    let masked: Vec<u8> = secret.bytes().zip(&pad).map(|(b, p)| b ^ p).collect();
    format!("{}{}", hex::encode(pad), hex::encode(masked))
}

/// The secret a [`mask`]ed value holds; `None` for anything else.
pub fn unmask(posted: &str) -> Option<Vec<u8>> {
    let bytes = hex::decode(posted).ok()?;
    if bytes.is_empty() || bytes.len() % 2 != 0 {
        return None;
    }
    let (pad, masked) = bytes.split_at(bytes.len() / 2);
    Some(pad.iter().zip(masked).map(|(p, m)| p ^ m).collect())
}
