//! Deployments (SPEC §5): a lease's nodes get an environment written and
//! booted, each node on its own (one failing does not fail the others), with
//! its progress visible phase by phase.
//!
//! `POST /api/v1/leases/{id}/deployments` takes a [`crate::DeploymentCreate`];
//! `GET /api/v1/deployments/{id}` answers a [`Deployment`];
//! `DELETE /api/v1/deployments/{id}` cancels what still runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A step of a node operation (a deploy or a reset), in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reset: the BMC powers the node off.
    PowerOff,
    /// Next boot → the deploy ramdisk; the BMC sets PXE and power-cycles.
    BootRamdisk,
    /// Firmware, iPXE and the ramdisk boot; its agent registers and reports
    /// its inventory.
    WaitAgent,
    /// Deploy: the agent streams, checks and writes the image.
    WriteImage,
    /// Deploy: the agent installs the SSH keys and the hostname.
    InstallKeys,
    /// Deploy: next boot → local disk; the node reboots (or kexecs) into
    /// the image.
    BootSystem,
    /// Deploy: the controller logs in as root over SSH and runs a command.
    SshCheck,
    /// Reset: the agent erases partition tables and signatures.
    Wipe,
    /// Reset: the agent reads the hardware again; the controller compares
    /// it with the node's reference description.
    Inventory,
    /// Reset: next boot → local disk; the BMC powers the node off.
    Shutdown,
    /// Over (see the operation's state).
    Finished,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::PowerOff,
        Phase::BootRamdisk,
        Phase::WaitAgent,
        Phase::WriteImage,
        Phase::InstallKeys,
        Phase::BootSystem,
        Phase::SshCheck,
        Phase::Wipe,
        Phase::Inventory,
        Phase::Shutdown,
        Phase::Finished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PowerOff => "power_off",
            Phase::BootRamdisk => "boot_ramdisk",
            Phase::WaitAgent => "wait_agent",
            Phase::WriteImage => "write_image",
            Phase::InstallKeys => "install_keys",
            Phase::BootSystem => "boot_system",
            Phase::SshCheck => "ssh_check",
            Phase::Wipe => "wipe",
            Phase::Inventory => "inventory",
            Phase::Shutdown => "shutdown",
            Phase::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Where a node operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Running,
    Done,
    Failed,
    Cancelled,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Running => "running",
            OperationState::Done => "done",
            OperationState::Failed => "failed",
            OperationState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<OperationState> {
        [OperationState::Running, OperationState::Done, OperationState::Failed, OperationState::Cancelled]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The whole deployment: `running` while any node runs, then `done` (every
/// node deployed), `partial` (some), `failed` (none) or `cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Running,
    Done,
    Partial,
    Failed,
    Cancelled,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Running => "running",
            DeploymentState::Done => "done",
            DeploymentState::Partial => "partial",
            DeploymentState::Failed => "failed",
            DeploymentState::Cancelled => "cancelled",
        }
    }

    /// The deployment's state from its nodes' states.
    pub fn of(nodes: impl IntoIterator<Item = OperationState>) -> DeploymentState {
        let (mut running, mut done, mut cancelled, mut total) = (0, 0, 0, 0);
        for s in nodes {
            total += 1;
            match s {
                OperationState::Running => running += 1,
                OperationState::Done => done += 1,
                OperationState::Cancelled => cancelled += 1,
                OperationState::Failed => {}
            }
        }
        if running > 0 {
            DeploymentState::Running
        } else if done == total {
            DeploymentState::Done
        } else if cancelled > 0 && done == 0 {
            DeploymentState::Cancelled
        } else if done > 0 {
            DeploymentState::Partial
        } else {
            DeploymentState::Failed
        }
    }
}

/// When a node entered a phase, and how long it stayed (until the next one,
/// or until now for the current one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhaseTime {
    pub phase: Phase,
    pub started_at: DateTime<Utc>,
    pub seconds: f64,
}

/// One node's part of a deployment (or of a reset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeOperation {
    pub node: String,
    /// `deploy` or `reset`.
    pub kind: String,
    pub state: OperationState,
    pub phase: Phase,
    /// 1 for the first try; a retry power-cycles the node again.
    pub attempt: u32,
    /// Seconds spent in the current phase.
    pub phase_seconds: f64,
    /// When the current phase gives up (retry or failure).
    pub deadline: DateTime<Utc>,
    /// Image bytes written so far, while writing (and after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Why it failed, or what the last check found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The node's SSH host key fingerprint, once the controller logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// Where to log in (`root@ADDRESS`), once deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// Every phase so far, in order.
    pub phases: Vec<PhaseTime>,
    /// Milliseconds the controller itself spent deciding and recording
    /// (the rest is firmware, BMCs, the agent and the network).
    pub controller_ms: u64,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/deployments/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub id: i64,
    pub lease: i64,
    /// The environment's name, as resolved when the deployment was created.
    pub environment: String,
    pub version: u64,
    /// Exactly what was deployed: the catalog entry's id and owner, and the
    /// image's sha256 (absent when the deployment could not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    /// Why the deployment could not start (its nodes were left as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub requested_by: String,
    pub state: DeploymentState,
    pub created_at: DateTime<Utc>,
    pub nodes: Vec<NodeOperation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::Value::String(p.as_str().into()));
        }
    }

    #[test]
    fn deployment_state_from_nodes() {
        use OperationState::*;
        assert_eq!(DeploymentState::of([Done, Running]), DeploymentState::Running);
        assert_eq!(DeploymentState::of([Done, Done]), DeploymentState::Done);
        assert_eq!(DeploymentState::of([Done, Failed]), DeploymentState::Partial);
        assert_eq!(DeploymentState::of([Failed, Failed]), DeploymentState::Failed);
        assert_eq!(DeploymentState::of([Cancelled, Failed]), DeploymentState::Cancelled);
    }
}
