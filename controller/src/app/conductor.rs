//! The seam between the controller's rules and the hands that act on real
//! nodes: enrolment checks and the reset at lease end.
//!
//! The clock loop decides *when* a node is enrolled or reset; a
//! [`Conductor`] carries it out and reports how it went. The power (BMC),
//! real one is [`NodeConductor`] (resets through the operations engine);
//! for fast tests and scale benchmarks beside it, the [`SimConductor`]
//! reports every node clean at once.

use async_trait::async_trait;

use super::App;
use crate::db::NodeRow;

/// How a reset or check went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The node matches its reference and is clean.
    Clean,
    /// The node differs from its reference (the reason lists how).
    Mismatch(String),
    /// The node's BMC did not answer.
    Unreachable(String),
    /// Still running: ask again at the next pass.
    InProgress,
}

#[async_trait]
pub trait Conductor: Send + Sync + std::fmt::Debug + 'static {
    /// Checks a newly enrolled node (power reachable, inventory read).
    async fn enroll(&self, app: &App, node: &NodeRow) -> CheckOutcome;
    /// Powers off, wipes and checks a node after a lease. Called at each
    /// clock-loop pass while the node is `resetting`: starts the reset the
    /// first time, answers `InProgress` until it is over.
    async fn reset(&self, app: &App, node: &NodeRow) -> CheckOutcome;
}

/// The real hands: resets run through the operations engine (BMC power
/// off, deploy ramdisk, wipe, inventory checked against the reference).
/// Enrolment accepts a new node (the power sweep marks one whose BMC does
/// not answer `dead`), but resets one that left a lease without a clean
/// reset (its BMC failed, a check failed, an admin repaired it): its disk
/// may still hold the last tenant's system and keys.
#[derive(Debug, Default)]
pub struct NodeConductor;

#[async_trait]
impl Conductor for NodeConductor {
    async fn enroll(&self, app: &App, node: &NodeRow) -> CheckOutcome {
        match app.store.needs_reset(node.id).await {
            Ok(false) => CheckOutcome::Clean,
            Ok(true) => app.reset_node(node).await,
            Err(e) => {
                tracing::error!(node = %node.name, error = ?anyhow::Error::from(e), "enrolment: cannot read the node");
                CheckOutcome::InProgress
            }
        }
    }

    async fn reset(&self, app: &App, node: &NodeRow) -> CheckOutcome {
        app.reset_node(node).await
    }
}

/// Simulated hands: every node enrols and resets clean, instantly.
#[derive(Debug, Default)]
pub struct SimConductor;

#[async_trait]
impl Conductor for SimConductor {
    async fn enroll(&self, _app: &App, _node: &NodeRow) -> CheckOutcome {
        CheckOutcome::Clean
    }

    async fn reset(&self, _app: &App, _node: &NodeRow) -> CheckOutcome {
        CheckOutcome::Clean
    }
}
