//! The clock loop: a level-triggered reconciler that makes nodes and leases
//! match the calendar. It starts leases whose start came, ends those whose
//! end came, gives each node to the lease that holds it now, resets nodes
//! whose lease is over, and enrols new nodes; it also reminds owners of
//! leases ending soon (`notifications`).
//!
//! Each pass re-reads the database, so a restarted controller picks up
//! where the last one stopped; passes are idempotent, and woken both by the
//! clock (the next lease boundary or reminder, or the configured interval) and by
//! [`App::wake`]. It decides with `model` and acts through the
//! [`Conductor`](super::conductor::Conductor); it never touches a BMC.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::conductor::CheckOutcome;
use super::{App, AppResult};
use crate::db::{AllocationChange, NodeStatus};
use crate::model::lease::{self, LeaseAction, LeaseInput};
use crate::model::time::from_seconds;
use crate::model::{LeaseId, LeaseState, NodeId, NodeInput, NodeLifecycle, Seconds};

const ACTOR: &str = "system";

/// What one pass did (for tests and logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub leases_started: usize,
    pub leases_active: usize,
    pub leases_ending: usize,
    pub leases_finished: usize,
    pub nodes_moved: usize,
    /// Owners told their lease ends soon.
    pub leases_reminded: usize,
}

fn is_busy(state: NodeLifecycle) -> bool {
    matches!(state, NodeLifecycle::Reserved | NodeLifecycle::Deploying | NodeLifecycle::Deployed)
}

impl App {
    /// Runs the clock loop until `shutdown` turns true.
    pub async fn run_clock_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let interval = chrono::Duration::from_std(self.config.leases.reconcile_interval).unwrap_or(chrono::Duration::seconds(30));
        loop {
            let now = self.now();
            let span = tracing::info_span!("clock_loop", now = %from_seconds(now));
            let pass = async {
                match self.reconcile_once(now).await {
                    Ok(report) if report != PassReport::default() => tracing::info!(?report, "clock loop pass"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = ?anyhow::Error::from(e), "clock loop pass failed"),
                }
                let event = self.store.next_lease_event(now).await.ok().flatten();
                let reminder = self.next_reminder(now).await;
                event.into_iter().chain(reminder).min().map(from_seconds)
            };
            // Instrument, never `enter()` across an await: the span would
            // leak into whatever else runs on this thread.
            let next = tracing::Instrument::instrument(pass, span).await;
            let mut wake_at = self.clock.now() + interval;
            if let Some(t) = next {
                wake_at = wake_at.min(t);
            }
            tokio::select! {
                () = self.clock.sleep_until(wake_at) => {}
                () = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Brings leases and nodes in line with the calendar at `now`: passes
    /// until one changes nothing (a reset between two back-to-back leases
    /// takes two), at most a few.
    pub async fn reconcile_once(&self, now: Seconds) -> AppResult<PassReport> {
        let mut total = PassReport::default();
        for _ in 0..4 {
            let r = self.pass(now).await?;
            if r == PassReport::default() {
                break;
            }
            total.leases_started += r.leases_started;
            total.leases_active += r.leases_active;
            total.leases_ending += r.leases_ending;
            total.leases_finished += r.leases_finished;
            total.nodes_moved += r.nodes_moved;
        }
        total.leases_reminded = self.remind_ending_leases(now).await?;
        Ok(total)
    }

    async fn pass(&self, now: Seconds) -> AppResult<PassReport> {
        let mut report = PassReport::default();

        // 1. Leases whose boundary came.
        for l in self.store.leases_needing_action(now).await? {
            let input = match l.state {
                LeaseState::AwaitingApproval if l.start <= now => {
                    // An admin deciding at the same moment wins; the next
                    // pass sees the lease in its new state.
                    match self.expire_unapproved(l.id).await {
                        Ok(_) => report.leases_finished += 1,
                        Err(super::AppError::Conflict { message, .. }) => {
                            tracing::info!(lease = %l.id, %message, "lease decided meanwhile")
                        }
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                LeaseState::Pending if l.start <= now => LeaseInput::StartTimeReached,
                LeaseState::Starting | LeaseState::Active if l.end <= now => LeaseInput::EndTimeReached,
                _ => continue,
            };
            let (to, _) = lease::next(l.state, input).map_err(|e| super::AppError::Internal(e.into()))?;
            // Ending on time changes no allocation: it already ends now.
            self.store.transition_lease(l.id, l.state, to, AllocationChange::Keep, None, 0, now).await?;
            match to {
                LeaseState::Starting => report.leases_started += 1,
                LeaseState::Ending => report.leases_ending += 1,
                _ => {}
            }
        }

        // 2. Nodes: give each to the lease holding it now, reset those whose
        //    lease is over, enrol new ones.
        let held: HashMap<NodeId, LeaseId> = self.store.held_nodes(now).await?.into_iter().collect();
        let nodes = self.store.node_statuses().await?;
        let mut ended: Vec<(&NodeStatus, Option<LeaseId>)> = Vec::new();
        let mut started: Vec<(&NodeStatus, Option<LeaseId>)> = Vec::new();
        for n in &nodes {
            let holder = held.get(&n.id).copied();
            if is_busy(n.state) && (n.lease.is_none() || n.lease != holder) {
                ended.push((n, n.lease));
            } else if n.state == NodeLifecycle::Available && holder.is_some() {
                started.push((n, holder));
            }
        }
        report.nodes_moved += self.move_nodes(&ended, NodeInput::LeaseEnded, ACTOR, "lease over").await?;
        report.nodes_moved += self.move_nodes(&started, NodeInput::LeaseStarted, ACTOR, "lease started").await?;

        let nodes = self.store.node_statuses().await?;
        for n in &nodes {
            if !matches!(n.state, NodeLifecycle::Resetting | NodeLifecycle::Enrolling) {
                continue;
            }
            let row = self.store.get_node_by_id(n.id).await?;
            let (outcome, ok_input) = match n.state {
                NodeLifecycle::Resetting => (self.conductor.reset(self, &row).await, NodeInput::ResetDone),
                _ => (self.conductor.enroll(self, &row).await, NodeInput::Enrolled),
            };
            let (input, reason, lease) = match outcome {
                CheckOutcome::InProgress => continue,
                CheckOutcome::Clean => {
                    (ok_input, if ok_input == NodeInput::ResetDone { "reset and checked" } else { "enrolled" }.to_owned(), None)
                }
                CheckOutcome::Mismatch(why) => (NodeInput::CheckFailed, format!("check failed: {why}"), None),
                CheckOutcome::Unreachable(why) => (NodeInput::BmcUnreachable, format!("BMC unreachable: {why}"), None),
            };
            report.nodes_moved += self.move_nodes(&[(n, lease)], input, ACTOR, &reason).await?;
        }

        // 3. Leases whose nodes are ready, or all reset.
        let nodes = self.store.node_statuses().await?;
        let by_id: HashMap<NodeId, &NodeStatus> = nodes.iter().map(|n| (n.id, n)).collect();
        for l in self.store.leases_needing_action(now).await? {
            let mut reason = None;
            let input = match l.state {
                LeaseState::Starting => {
                    let taken = |id: &NodeId| by_id.get(id).is_some_and(|n| n.lease == Some(l.id) && is_busy(n.state));
                    // A node that went suspect or dead after the lease was
                    // booked is lost to it; the lease starts with the rest.
                    let lost: Vec<&str> = l
                        .nodes
                        .iter()
                        .filter(|(id, _)| by_id.get(id).is_none_or(|n| !n.state.is_allocatable()))
                        .map(|(_, name)| name.as_str())
                        .collect();
                    let ready = l.nodes.iter().filter(|(id, _)| taken(id)).count();
                    if ready + lost.len() < l.nodes.len() {
                        continue;
                    }
                    if !lost.is_empty() {
                        reason = Some(format!("unhealthy, not given to the lease: {}", lost.join(", ")));
                    }
                    if ready == 0 { LeaseInput::Failed } else { LeaseInput::NodesReady }
                }
                LeaseState::Ending => {
                    let still_held = l.nodes.iter().any(|(id, _)| by_id.get(id).is_some_and(|n| n.lease == Some(l.id)));
                    if still_held {
                        continue;
                    }
                    LeaseInput::NodesReset
                }
                _ => continue,
            };
            let (to, action) = lease::next(l.state, input).map_err(|e| super::AppError::Internal(e.into()))?;
            let change = match action {
                LeaseAction::EndAndReset => AllocationChange::CutAt(now.max(l.start + 1)),
                _ => AllocationChange::Keep,
            };
            // Without a new reason, keep the one that ended it (released by, pre-empted by).
            if change == AllocationChange::Keep {
                self.store.transition_lease(l.id, l.state, to, change, reason.as_deref(), 0, now).await?;
            } else {
                let mut cache = self.cache.lock().await;
                cache.refresh(self.store.as_ref(), now).await?;
                match self.store.transition_lease(l.id, l.state, to, change, reason.as_deref(), cache.generation, now).await {
                    Ok(generation) => {
                        super::leases::release_cut(&mut cache, &l, change, now);
                        cache.generation = generation;
                    }
                    // The calendar moved under us: the next pass retries.
                    Err(crate::db::DbError::StaleCalendar | crate::db::DbError::Raced { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            match to {
                LeaseState::Active => report.leases_active += 1,
                LeaseState::Finished | LeaseState::Failed => report.leases_finished += 1,
                _ => {}
            }
            if l.state == LeaseState::Starting && matches!(to, LeaseState::Active | LeaseState::Failed) {
                self.notify_start(l.id, to == LeaseState::Active).await;
            }
        }
        Ok(report)
    }
}
