//! The audit log: every admin action (approvals, quota changes,
//! maintenance, power, enrolment, accounts) with who did it and when.
//! Entries are written after the action commits; the log is append-only
//! (the database refuses changes) and readable by admins only.

use super::{Actor, App, AppResult};
use crate::db::{AuditFilter, AuditRow};

impl App {
    /// Records an admin action. `detail` is a JSON object that must never
    /// hold a secret. A failure to write is logged, not returned: the action
    /// itself already happened.
    pub async fn audit(&self, actor: &Actor, action: &str, target: &str, detail: serde_json::Value) {
        self.audit_as(&actor.name, action, target, detail).await;
    }

    /// [`App::audit`] for an action whose actor is known by name only (a
    /// sign-in, a password set through an activation link).
    pub async fn audit_as(&self, actor: &str, action: &str, target: &str, detail: serde_json::Value) {
        let detail = if detail.is_null() { "{}".to_owned() } else { detail.to_string() };
        if let Err(e) = self.store.insert_audit(self.now(), actor, action, target, &detail).await {
            tracing::error!(error = ?anyhow::Error::from(e), actor, action, target, "audit entry not written");
        }
    }

    /// Audit entries, newest first (admin).
    pub async fn audit_log(&self, actor: &Actor, filter: AuditFilter) -> AppResult<Vec<AuditRow>> {
        actor.require_admin()?;
        if !(1..=10_000).contains(&filter.limit) {
            return Err(super::AppError::bad_request("limit: must be between 1 and 10000"));
        }
        Ok(self.store.audit_log(&filter).await?)
    }
}
