//! Several replicas on one database: which one runs the background loops,
//! and how the others' changes wake this one.
//!
//! API handlers are stateless (everything durable is in the database, the
//! calendar cache reloads when the database's generation moves), so every
//! replica serves the API. The background loops (the clock loop that
//! starts and ends leases, the power loop, the operations engine) run in
//! exactly one replica at a time, the leader, elected through the database
//! ([`crate::db::Datastore::try_lead`]: a PostgreSQL advisory lock; SQLite
//! has one process, always the leader). Followers campaign every
//! [`ELECTION_INTERVAL`]; the leader checks its hold as often and stops its
//! loops the moment it is lost. Every piece of work the loops do is
//! recorded in the database and resumable (operations, power requests,
//! lease transitions are compare-and-swap), so a new leader picks up where
//! a dead one stopped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use super::App;

/// How often a follower tries to lead and a leader checks its hold: the
/// longest a dead leader's work waits (after PostgreSQL has noticed the
/// death: at once for a killed process, whose connection closes).
pub const ELECTION_INTERVAL: Duration = Duration::from_secs(1);

impl App {
    /// Whether this replica runs the background loops now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// Campaigns for leadership until `shutdown`; while leading, runs the
    /// clock, power and operations loops.
    pub async fn run_background(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut pace = tokio::time::interval(ELECTION_INTERVAL);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut waiting_said = false;
        loop {
            // Campaign.
            let mut held = loop {
                match self.store.try_lead().await {
                    Ok(Some(held)) => break held,
                    Ok(None) if !waiting_said => {
                        tracing::info!("another replica runs the background loops; this one serves the API and stands by");
                        waiting_said = true;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = ?anyhow::Error::from(e), "leader election: cannot reach the database"),
                }
                tokio::select! {
                    _ = pace.tick() => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return;
                }
            };
            waiting_said = false;
            self.leading.store(true, Ordering::Relaxed);
            tracing::info!("this replica now runs the background loops (clock, power, operations)");
            let (stop_loops, loops_stopped) = watch::channel(false);
            let loops = [
                tokio::spawn(self.clone().run_clock_loop(loops_stopped.clone())),
                tokio::spawn(self.clone().run_power_loop(loops_stopped.clone())),
                tokio::spawn(self.clone().run_operations_loop(loops_stopped)),
            ];
            // Whatever changed while another replica led.
            self.wake.notify_one();
            let lost = loop {
                tokio::select! {
                    _ = pace.tick() => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    break false;
                }
                if !held.holds().await {
                    break true;
                }
            };
            stop_loops.send_replace(true);
            for task in loops {
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "a background loop panicked");
                }
            }
            self.leading.store(false, Ordering::Relaxed);
            // Only now, with the loops stopped, may another replica lead.
            drop(held);
            if !lost {
                return;
            }
            tracing::warn!("lost the leadership (the database stopped answering); background loops stopped");
        }
    }

    /// Wakes this replica's loops and long polls when another process
    /// commits a change they wait on, until `shutdown`.
    pub async fn run_change_listener(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = match self.store.listen_changes().await {
            Ok(Some(changes)) => changes,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = ?anyhow::Error::from(e), "cannot listen to other replicas' changes; loops wake on their own ticks");
                return;
            }
        };
        loop {
            let table = tokio::select! {
                t = changes.recv() => match t { Some(t) => t, None => return },
                _ = shutdown.changed() => return,
            };
            match table.as_str() {
                "leases" => self.wake.notify_one(),
                "nodes" | "node_macs" => {
                    self.wake.notify_one();
                    self.boot_hosts.changed.notify_one();
                }
                "power_requests" => {
                    self.power.wake.notify_one();
                    self.ops_wake.notify_one();
                }
                "agent_commands" => {
                    self.agent_wake.notify_waiters();
                    self.ops_wake.notify_one();
                }
                "node_inventories" | "node_operations" | "deployments" => self.ops_wake.notify_one(),
                _ => {}
            }
        }
    }
}
