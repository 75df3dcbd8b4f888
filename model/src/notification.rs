//! What a notification tells a lease's owner ([`NotificationKind`]): the
//! events of a lease and of its deployments that users are told of, in
//! the portal and by mail. Which transition raises which kind is the
//! application's (`app::notifications`); this names them.

use super::names::named;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationKind {
    /// An admin approved the lease.
    LeaseApproved,
    /// An admin rejected the lease, or no admin decided before its start.
    LeaseRejected,
    /// The lease's nodes are the owner's (the lease is active).
    LeaseStarted,
    /// No node of the lease could be handed over at its start.
    LeaseFailed,
    /// The lease ends within `[leases] notify_before`.
    LeaseEndingSoon,
    /// Every node of a deployment is deployed.
    DeploymentDone,
    /// A deployment ended with at least one node not deployed, or could
    /// not start.
    DeploymentFailed,
}

named!(NotificationKind, "notification kind", [
    LeaseApproved => "lease_approved",
    LeaseRejected => "lease_rejected",
    LeaseStarted => "lease_started",
    LeaseFailed => "lease_failed",
    LeaseEndingSoon => "lease_ending_soon",
    DeploymentDone => "deployment_done",
    DeploymentFailed => "deployment_failed",
]);
