//! The seam between the controller's rules and the hands that act on real
//! nodes: enrolment checks and the reset at lease end.
//!
//! The clock loop decides *when* a node is enrolled or reset; a
//! [`Conductor`] carries it out and reports how it went. The power (BMC),
//! boot-network and agent issues provide the real conductor; until then,
//! and for fast tests and scale benchmarks beside the real one, the
//! [`SimConductor`] reports every node clean at once.

use async_trait::async_trait;

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
}

#[async_trait]
pub trait Conductor: Send + Sync + std::fmt::Debug + 'static {
    /// Checks a newly enrolled node (power reachable, inventory read).
    async fn enroll(&self, node: &NodeRow) -> CheckOutcome;
    /// Powers off, wipes and checks a node after a lease.
    async fn reset(&self, node: &NodeRow) -> CheckOutcome;
}

/// Simulated hands: every node enrols and resets clean, instantly.
#[derive(Debug, Default)]
pub struct SimConductor;

#[async_trait]
impl Conductor for SimConductor {
    async fn enroll(&self, _node: &NodeRow) -> CheckOutcome {
        CheckOutcome::Clean
    }

    async fn reset(&self, _node: &NodeRow) -> CheckOutcome {
        CheckOutcome::Clean
    }
}
