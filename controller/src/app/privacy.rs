//! Personal data (GDPR articles 15, 17 and 20; issue 19): a user's export
//! of everything ferrum stores about him, and an admin's erasure of it.
//!
//! The export is the user's own (or any user's, for an admin): his
//! account, live tokens (names and dates, never a secret or a hash), SSH
//! public keys, the account requests that made the account, his leases
//! and his usage records. The erasure replaces the login with a pseudonym
//! (`erased-` and 16 random hex digits) wherever the database holds it as
//! text, removes e-mail addresses, affiliation and the rest of the account
//! request, disables the account, revokes its tokens, sessions, activation
//! links and SSH keys; leases and usage records stay, under the pseudonym,
//! so each project's accounting is unchanged. It is refused while the
//! user holds a lease that is not over (a human decides: release it
//! first). What the erasure rewrites, in one store transaction, is the
//! store's `erase_user`; this module decides who may and when. It never
//! logs or audits the erased data.

use super::accounts::Actor;
use super::{App, AppError, AppResult};
use crate::db::{AccountRequestRow, Erasure, LeaseRow, SshKeyRow, TokenRow, UsageRecordRow, UserRow};
use crate::model::Seconds;

/// The disabled reason an erased account shows.
pub const ERASED_REASON: &str = "personal data erased on request";

/// Everything stored about one user, as rows.
#[derive(Debug)]
pub struct PersonalData {
    pub exported_at: Seconds,
    pub user: UserRow,
    /// From the account requests that made the account, when it came from one.
    pub affiliation: Option<String>,
    pub status: Option<String>,
    pub tokens: Vec<TokenRow>,
    pub ssh_keys: Vec<SshKeyRow>,
    pub account_requests: Vec<AccountRequestRow>,
    pub leases: Vec<LeaseRow>,
    pub usage_records: Vec<UsageRecordRow>,
    pub notifications: Vec<crate::db::NotificationRow>,
}

/// A new pseudonym: `erased-` and 16 random hex digits (a valid login).
fn pseudonym() -> AppResult<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness for a pseudonym: {e}")))?;
    Ok(format!("erased-{}", hex::encode(bytes)))
}

impl App {
    /// `user`'s personal data: his own, or anyone's for an admin (another
    /// user gets the 403 of every own-or-admin route).
    pub async fn export_personal_data(&self, actor: &Actor, user: &str) -> AppResult<PersonalData> {
        let row = self.own_or_admin(actor, user, "export the personal data").await?;
        let account_requests = self.store.user_account_requests(row.id).await?;
        let made_by = account_requests.last();
        let data = PersonalData {
            exported_at: self.now(),
            affiliation: made_by.map(|r| r.affiliation.clone()),
            status: made_by.and_then(|r| r.status.clone()),
            tokens: self.store.list_tokens(row.id).await?,
            ssh_keys: self.store.ssh_keys(row.id).await?,
            leases: self.store.list_leases(Some(row.id), true).await?,
            usage_records: self.store.user_usage_records(&row.name).await?,
            notifications: self.store.notifications(row.id, i64::MAX).await?,
            account_requests,
            user: row,
        };
        if actor.name != user {
            self.audit(actor, "user.export", &format!("user/{user}"), serde_json::json!({})).await;
        }
        Ok(data)
    }

    /// Erases `user`'s personal data (admin; see the module). Not oneself,
    /// not the last admin, not while the user holds a lease not over (409
    /// naming them). Returns the pseudonym.
    pub async fn erase_user(&self, actor: &Actor, user: &str) -> AppResult<String> {
        actor.require_admin()?;
        if actor.name == user {
            return Err(AppError::Conflict { message: "you cannot erase yourself".into(), earliest_start: None });
        }
        let users = self.store.list_users().await?;
        let target = users.iter().find(|u| u.name == user).ok_or_else(|| AppError::NotFound(format!("user '{user}' does not exist")))?;
        if target.is_admin && target.disabled.is_none() && users.iter().filter(|u| u.is_admin && u.disabled.is_none()).count() <= 1 {
            return Err(AppError::Conflict { message: format!("'{user}' is the last admin; they cannot be erased"), earliest_start: None });
        }
        let open = self.store.list_leases(Some(target.id), false).await?;
        if !open.is_empty() {
            let ids = open.iter().map(|l| format!("{} ({})", l.id, l.state.as_str())).collect::<Vec<_>>().join(", ");
            return Err(AppError::Conflict {
                message: format!("user '{user}' holds leases that are not over: {ids}; release or cancel them first"),
                earliest_start: None,
            });
        }
        let mut emails: Vec<String> = target.email.iter().cloned().collect();
        emails.extend(self.store.user_account_requests(target.id).await?.into_iter().map(|r| r.email));
        emails.sort();
        emails.dedup();
        let pseudonym = pseudonym()?;
        let erasure = Erasure {
            user: target.id,
            name: target.name.clone(),
            emails,
            pseudonym: pseudonym.clone(),
            by: actor.name.clone(),
            at: self.now(),
            disabled_reason: ERASED_REASON.to_owned(),
        };
        self.store.erase_user(&erasure).await?;
        tracing::info!(user = %pseudonym, actor = %actor.name, "personal data erased");
        self.audit(actor, "user.erase", &format!("user/{pseudonym}"), serde_json::json!({})).await;
        Ok(pseudonym)
    }
}
