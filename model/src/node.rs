//! The node lifecycle: observed state ([`NodeLifecycle`]), operator intent
//! ([`NodePolicy`]), and [`NodeLifecycle::next`], the one function that
//! decides every transition.
//!
//! Nothing else in the controller may change a node's observed state: the
//! datastore records a transition only as the outcome of `next`, together
//! with an event (time, actor, reason).

use ferrum_api as api;

/// What the controller observes a node to be doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeLifecycle {
    /// Known, not yet checked (first inventory, power reachable).
    Enrolling,
    /// Idle and clean: may be given to a lease.
    Available,
    /// Held by a running lease.
    Reserved,
    /// The lease's image is being written.
    Deploying,
    /// The lease's image is running.
    Deployed,
    /// Being powered off, wiped and checked after a lease.
    Resetting,
    /// A check or reset failed: needs an operator.
    Suspect,
    /// The BMC does not answer.
    Dead,
}

/// What the operator wants of a node, independent of what it is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodePolicy {
    InService,
    Maintenance,
    Retired,
}

/// Something that happened to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeInput {
    /// Enrolment checks passed.
    Enrolled,
    /// A lease holding the node started.
    LeaseStarted,
    /// A deployment began writing the node.
    DeployStarted,
    /// The deployed system answered.
    DeployDone,
    /// The deployment of the node failed or was cancelled: the lease keeps
    /// the node (it may deploy again).
    DeployFailed,
    /// The lease holding the node ended (on time, released or pre-empted).
    LeaseEnded,
    /// The reset after a lease finished and the node matched its reference.
    ResetDone,
    /// A check found the node differs from its reference, or a reset failed.
    CheckFailed,
    /// The BMC stopped answering.
    BmcUnreachable,
    /// An operator declares the node repaired: check it again.
    Repaired,
}

/// A transition `next` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node in state {from:?} cannot take {input:?}")]
pub struct InvalidTransition {
    pub from: NodeLifecycle,
    pub input: NodeInput,
}

impl NodeLifecycle {
    /// Decides the state after `input`. `Ok(self)` means the input is
    /// already reflected (idempotent re-delivery), which callers record as
    /// nothing.
    pub fn next(self, input: NodeInput) -> Result<NodeLifecycle, InvalidTransition> {
        use NodeInput as I;
        use NodeLifecycle as S;
        let to = match (self, input) {
            (S::Enrolling, I::Enrolled) => S::Available,
            (S::Available, I::Enrolled) => S::Available,
            (S::Available, I::LeaseStarted) => S::Reserved,
            (S::Reserved, I::LeaseStarted) => S::Reserved,
            (S::Reserved | S::Deployed, I::DeployStarted) => S::Deploying,
            (S::Deploying, I::DeployStarted) => S::Deploying,
            (S::Deploying, I::DeployDone) => S::Deployed,
            (S::Deployed, I::DeployDone) => S::Deployed,
            (S::Deploying, I::DeployFailed) => S::Reserved,
            (S::Reserved, I::DeployFailed) => S::Reserved,
            (S::Reserved | S::Deploying | S::Deployed, I::LeaseEnded) => S::Resetting,
            (S::Resetting, I::LeaseEnded) => S::Resetting,
            (S::Resetting, I::ResetDone) => S::Available,
            (S::Available, I::ResetDone) => S::Available,
            (_, I::CheckFailed) => S::Suspect,
            (_, I::BmcUnreachable) => S::Dead,
            (S::Suspect | S::Dead, I::Repaired) => S::Enrolling,
            (from, input) => return Err(InvalidTransition { from, input }),
        };
        Ok(to)
    }

    /// Whether a lease starting now may take the node.
    pub fn is_allocatable(self) -> bool {
        !matches!(self, NodeLifecycle::Suspect | NodeLifecycle::Dead)
    }

    /// The stored name, the same as the API's.
    pub fn as_str(self) -> &'static str {
        api::NodeState::from(self).as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enrolling" => NodeLifecycle::Enrolling,
            "available" => NodeLifecycle::Available,
            "reserved" => NodeLifecycle::Reserved,
            "deploying" => NodeLifecycle::Deploying,
            "deployed" => NodeLifecycle::Deployed,
            "resetting" => NodeLifecycle::Resetting,
            "suspect" => NodeLifecycle::Suspect,
            "dead" => NodeLifecycle::Dead,
            _ => return None,
        })
    }
}

impl NodePolicy {
    /// The stored and shown name (the API's).
    pub fn as_str(self) -> &'static str {
        api::NodePolicy::from(self).as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_service" => NodePolicy::InService,
            "maintenance" => NodePolicy::Maintenance,
            "retired" => NodePolicy::Retired,
            _ => return None,
        })
    }

    /// Whether new leases may be placed on the node.
    pub fn offers_node(self) -> bool {
        self == NodePolicy::InService
    }
}

/// What a node boots next over the network (stored as the API's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootTarget {
    Local,
    Ramdisk,
}

impl From<BootTarget> for api::BootTarget {
    fn from(t: BootTarget) -> Self {
        match t {
            BootTarget::Local => api::BootTarget::Local,
            BootTarget::Ramdisk => api::BootTarget::Ramdisk,
        }
    }
}

impl From<api::BootTarget> for BootTarget {
    fn from(t: api::BootTarget) -> Self {
        match t {
            api::BootTarget::Local => BootTarget::Local,
            api::BootTarget::Ramdisk => BootTarget::Ramdisk,
        }
    }
}

impl BootTarget {
    pub fn as_str(self) -> &'static str {
        api::BootTarget::from(self).as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        [BootTarget::Local, BootTarget::Ramdisk].into_iter().find(|t| t.as_str() == s)
    }
}

/// The one state the API shows (SPEC §3): operator intent wins once the node
/// is idle; while a lease runs, its observed state shows.
pub fn shown_state(state: NodeLifecycle, policy: NodePolicy) -> api::NodeState {
    let idle = matches!(state, NodeLifecycle::Available | NodeLifecycle::Enrolling);
    match (policy, state) {
        (NodePolicy::Retired, _) if idle || matches!(state, NodeLifecycle::Suspect | NodeLifecycle::Dead) => api::NodeState::Retired,
        (NodePolicy::Maintenance, _) if idle => api::NodeState::Maintenance,
        _ => api::NodeState::from(state),
    }
}

impl From<NodeLifecycle> for api::NodeState {
    fn from(s: NodeLifecycle) -> Self {
        match s {
            NodeLifecycle::Enrolling => api::NodeState::Enrolling,
            NodeLifecycle::Available => api::NodeState::Available,
            NodeLifecycle::Reserved => api::NodeState::Reserved,
            NodeLifecycle::Deploying => api::NodeState::Deploying,
            NodeLifecycle::Deployed => api::NodeState::Deployed,
            NodeLifecycle::Resetting => api::NodeState::Resetting,
            NodeLifecycle::Suspect => api::NodeState::Suspect,
            NodeLifecycle::Dead => api::NodeState::Dead,
        }
    }
}

impl From<NodePolicy> for api::NodePolicy {
    fn from(p: NodePolicy) -> Self {
        match p {
            NodePolicy::InService => api::NodePolicy::InService,
            NodePolicy::Maintenance => api::NodePolicy::Maintenance,
            NodePolicy::Retired => api::NodePolicy::Retired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_cycle() {
        let mut s = NodeLifecycle::Enrolling;
        for input in [
            NodeInput::Enrolled,
            NodeInput::LeaseStarted,
            NodeInput::DeployStarted,
            NodeInput::DeployDone,
            NodeInput::LeaseEnded,
            NodeInput::ResetDone,
        ] {
            s = s.next(input).expect("valid transition");
        }
        assert_eq!(s, NodeLifecycle::Available);
    }

    #[test]
    fn refuses_skipping_the_reset() {
        let err = NodeLifecycle::Deployed.next(NodeInput::ResetDone).expect_err("must reset first");
        assert_eq!(err.from, NodeLifecycle::Deployed);
        assert!(NodeLifecycle::Suspect.next(NodeInput::LeaseStarted).is_err());
        assert!(NodeLifecycle::Dead.next(NodeInput::Enrolled).is_err());
    }

    #[test]
    fn failed_checks_never_return_to_the_pool_silently() {
        let s = NodeLifecycle::Resetting.next(NodeInput::CheckFailed).expect("valid");
        assert_eq!(s, NodeLifecycle::Suspect);
        assert_eq!(s.next(NodeInput::Repaired), Ok(NodeLifecycle::Enrolling));
    }

    #[test]
    fn intent_shows_only_when_idle() {
        assert_eq!(shown_state(NodeLifecycle::Available, NodePolicy::Maintenance), api::NodeState::Maintenance);
        assert_eq!(shown_state(NodeLifecycle::Reserved, NodePolicy::Maintenance), api::NodeState::Reserved);
        assert_eq!(shown_state(NodeLifecycle::Dead, NodePolicy::Retired), api::NodeState::Retired);
        assert_eq!(shown_state(NodeLifecycle::Suspect, NodePolicy::InService), api::NodeState::Suspect);
    }

    #[test]
    fn names_round_trip() {
        for s in [
            NodeLifecycle::Enrolling,
            NodeLifecycle::Available,
            NodeLifecycle::Reserved,
            NodeLifecycle::Deploying,
            NodeLifecycle::Deployed,
            NodeLifecycle::Resetting,
            NodeLifecycle::Suspect,
            NodeLifecycle::Dead,
        ] {
            assert_eq!(NodeLifecycle::parse(s.as_str()), Some(s));
        }
        for p in [NodePolicy::InService, NodePolicy::Maintenance, NodePolicy::Retired] {
            assert_eq!(NodePolicy::parse(p.as_str()), Some(p));
        }
    }
}
