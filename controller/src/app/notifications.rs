//! Notifications: what a lease's owner is told, in the portal and by mail
//! (issue 19, item 7): the lease approved or rejected, started (or failed
//! to start), ending soon (`[leases] notify_before` ahead, with the link to
//! the lease page, which has the extend form), a deployment done or failed.
//!
//! Each event is recorded once in the `notifications` table, keyed by
//! (user, lease, kind, `about`): whoever records it first (a replica, a
//! controller restarted mid-pass, the clock loop's next pass) mails it, the
//! others find it recorded and do nothing. The mail goes out on its own
//! task after the transition it reports, and its failure is logged (never
//! the server's password) and undoes nothing; the portal keeps the
//! notification either way. A crash between a transition and its record
//! loses that notification (the reminder excepted, which the clock loop
//! finds again): they report transitions, they never drive them.
//!
//! This module never decides a transition; the callers (`leases`,
//! `reconciler`, `operations`) tell it what happened.

use ferrum_api::deployment::DeploymentState;

use super::{Actor, App, AppResult};
use crate::db::{LeaseRow, NewNotification, NotificationRow};
use crate::model::time::from_seconds;
use crate::model::{LeaseId, NotificationKind, Seconds};

/// Notifications the portal lists at most.
const LISTED: i64 = 200;

/// A time as notifications write it.
fn when(t: Seconds) -> String {
    from_seconds(t).format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "lease 12" or "lease 12 (training run)".
fn label(lease: &LeaseRow) -> String {
    match &lease.name {
        Some(name) => format!("lease {} ({name})", lease.id),
        None => format!("lease {}", lease.id),
    }
}

fn nodes(n: usize) -> String {
    if n == 1 { "1 node".into() } else { format!("{n} nodes") }
}

impl App {
    /// Records an event of `lease` for its owner and, when this call
    /// recorded it and the owner has an e-mail address, mails it. Never
    /// fails its caller: a store error is logged.
    async fn notify(&self, lease: &LeaseRow, kind: NotificationKind, about: i64, subject: String, body: String) {
        let new = NewNotification { user_id: lease.owner_id, lease: lease.id, kind, about, subject, body, created_at: self.now() };
        match self.store.insert_notification(&new).await {
            Ok(true) => tracing::info!(lease = %lease.id, owner = %lease.owner, kind = %kind, "notification recorded"),
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(lease = %lease.id, kind = %kind, error = ?anyhow::Error::from(e), "notification not recorded");
                return;
            }
        }
        if !self.mailer.enabled() {
            return;
        }
        let email = match self.store.get_user(&lease.owner).await {
            Ok(user) => user.email,
            Err(e) => {
                tracing::warn!(lease = %lease.id, kind = %kind, error = ?anyhow::Error::from(e), "notification not mailed");
                None
            }
        };
        let Some(email) = email else { return };
        let link = format!("{}/leases/{}", self.config.web_base_url(), lease.id);
        let text = format!("Hello,\n\n{}\n\nThe lease's page: {link}\n", new.body);
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            mailer.send(&email, &new.subject, text).await;
        });
    }

    /// An admin's decision on a lease awaiting approval, or its expiry at
    /// its start (the lease's reason, as it is now, says which).
    pub(crate) async fn notify_decision(&self, lease: &LeaseRow, approved: bool) {
        let why = lease.reason.as_deref().unwrap_or_default();
        let (kind, subject, body) = if approved {
            (
                NotificationKind::LeaseApproved,
                format!("Your {} is approved", label(lease)),
                format!(
                    "Your {} ({}, {} to {}) was {why}. It starts on time; you will get another mail then.",
                    label(lease),
                    nodes(lease.nodes.len()),
                    when(lease.start),
                    when(lease.end)
                ),
            )
        } else {
            (
                NotificationKind::LeaseRejected,
                format!("Your {} is rejected", label(lease)),
                format!(
                    "Your {} ({}, {} to {}) will not run: {why}. Its nodes are free for others.",
                    label(lease),
                    nodes(lease.nodes.len()),
                    when(lease.start),
                    when(lease.end)
                ),
            )
        };
        self.notify(lease, kind, 0, subject, body).await;
    }

    /// A lease became active (its nodes are the owner's), or failed to
    /// start (none could be handed over).
    pub(crate) async fn notify_start(&self, id: LeaseId, started: bool) {
        let lease = match self.store.get_lease(id).await {
            Ok(lease) => lease,
            Err(e) => return tracing::warn!(lease = %id, error = ?anyhow::Error::from(e), "notification not recorded"),
        };
        let names: Vec<&str> = lease.nodes.iter().map(|(_, n)| n.as_str()).collect();
        let (kind, subject, body) = if started {
            (
                NotificationKind::LeaseStarted,
                format!("Your {} has started", label(&lease)),
                format!("Your {} has started: {} yours until {}.", label(&lease), names.join(", "), when(lease.end)),
            )
        } else {
            (
                NotificationKind::LeaseFailed,
                format!("Your {} could not start", label(&lease)),
                format!(
                    "Your {} could not start: none of its nodes could be handed over ({}).",
                    label(&lease),
                    lease.reason.as_deref().unwrap_or("no reason recorded")
                ),
            )
        };
        self.notify(&lease, kind, 0, subject, body).await;
    }

    /// Reminds the owners of active leases that end within `[leases]
    /// notify_before` (once per lease end: an extended lease is reminded
    /// again); how many were reminded now.
    pub(crate) async fn remind_ending_leases(&self, now: Seconds) -> AppResult<usize> {
        let Some(before) = self.reminder_lead() else { return Ok(0) };
        let mut reminded = 0;
        for id in self.store.leases_to_remind(now, before).await? {
            let lease = self.store.get_lease(id).await?;
            let minutes = (lease.end - now + 59) / 60;
            let body = format!(
                "Your {} ({}) ends at {}, in {minutes} minute{}. To keep its nodes longer, extend it on its page.",
                label(&lease),
                nodes(lease.nodes.len()),
                when(lease.end),
                if minutes == 1 { "" } else { "s" }
            );
            let subject = format!("Your {} ends in {minutes} minute{}", label(&lease), if minutes == 1 { "" } else { "s" });
            self.notify(&lease, NotificationKind::LeaseEndingSoon, lease.end, subject, body).await;
            reminded += 1;
        }
        Ok(reminded)
    }

    /// When the next reminder is due, if any (the clock loop wakes then).
    pub(crate) async fn next_reminder(&self, now: Seconds) -> Option<Seconds> {
        let before = self.reminder_lead()?;
        self.store.next_reminder_end(now, before).await.ok().flatten().map(|end| end - before)
    }

    /// `[leases] notify_before` in seconds; `None` when reminders are off.
    fn reminder_lead(&self) -> Option<Seconds> {
        Some(Seconds::try_from(self.config.leases.notify_before.as_secs()).unwrap_or(Seconds::MAX / 4)).filter(|s| *s > 0)
    }

    /// A deployment ended (every node's operation is over): done, or
    /// failed on some node; one cancelled, even in part, tells nothing (its
    /// owner or an admin asked for it, or its lease ended).
    pub(crate) async fn notify_deployment(&self, deployment: i64) {
        let (row, ops) = match self.store.deployment(deployment).await {
            Ok(d) => d,
            Err(e) => return tracing::warn!(deployment, error = ?anyhow::Error::from(e), "notification not recorded"),
        };
        if ops.iter().any(|o| o.state == crate::model::OperationState::Cancelled) {
            return;
        }
        let state = if row.error.is_some() { DeploymentState::Failed } else { DeploymentState::of(ops.iter().map(|o| o.state.into())) };
        let lease = match self.store.get_lease(row.lease).await {
            Ok(lease) => lease,
            Err(e) => return tracing::warn!(deployment, error = ?anyhow::Error::from(e), "notification not recorded"),
        };
        let what = format!("Deployment {deployment} of {} on your {}", row.environment, label(&lease));
        let (kind, subject, body) = match state {
            DeploymentState::Running | DeploymentState::Cancelled => return,
            DeploymentState::Done => (
                NotificationKind::DeploymentDone,
                format!("Deployment {deployment} is done"),
                format!("{what} is done on {}; the lease's page shows how to log in.", nodes(ops.len())),
            ),
            DeploymentState::Failed | DeploymentState::Partial => {
                let failed: Vec<String> = ops
                    .iter()
                    .filter(|o| o.state != crate::model::OperationState::Done)
                    .map(|o| format!("{}: {}", o.node_name, o.message.as_deref().unwrap_or(o.state.as_str())))
                    .collect();
                let why = match &row.error {
                    Some(error) => format!("could not start: {error}"),
                    None => format!("failed on {} of {}: {}", failed.len(), nodes(ops.len()), failed.join("; ")),
                };
                (NotificationKind::DeploymentFailed, format!("Deployment {deployment} failed"), format!("{what} {why}."))
            }
        };
        self.notify(&lease, kind, deployment, subject, body).await;
    }

    /// The caller's notifications, newest first.
    pub async fn notifications(&self, actor: &Actor) -> AppResult<Vec<NotificationRow>> {
        Ok(self.store.notifications(actor.user_id, LISTED).await?)
    }

    /// Marks all of the caller's notifications read.
    pub async fn mark_notifications_read(&self, actor: &Actor) -> AppResult<u64> {
        Ok(self.store.mark_notifications_read(actor.user_id, self.now()).await?)
    }
}
