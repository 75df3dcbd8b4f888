//! The lease lifecycle (SPEC §4) and [`LeaseState::next`], the one function
//! that decides its transitions.

use ferrum_api as api;

use super::names::named;

/// Where a lease stands (SPEC §4). The API's enum is the same set today,
/// converted at the edge (`From`) so the two may part ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Larger than the approval threshold: waits for an admin.
    AwaitingApproval,
    /// Placed on the calendar, not started.
    Pending,
    /// Its start time came: taking (and deploying) its nodes.
    Starting,
    /// Its nodes are the holder's.
    Active,
    /// Over: its nodes are being reset.
    Ending,
    /// Over, nodes reset.
    Finished,
    /// Refused by an admin.
    Rejected,
    /// Released before it started, or pre-empted before it ran.
    Cancelled,
    /// Could not be carried out.
    Failed,
}

named!(LeaseState, "lease state", [
    AwaitingApproval => "awaiting_approval",
    Pending => "pending",
    Starting => "starting",
    Active => "active",
    Ending => "ending",
    Finished => "finished",
    Rejected => "rejected",
    Cancelled => "cancelled",
    Failed => "failed",
]);

/// What a lease is for (SPEC §4, OAR's job types).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LeaseType {
    /// Nodes with the default environment.
    #[default]
    Default,
    /// Nodes on which the holder deploys their own image with root access.
    Deploy,
    /// Idle nodes, pre-empted when a normal lease needs them.
    Besteffort,
}

named!(LeaseType, "lease type", [Default => "default", Deploy => "deploy", Besteffort => "besteffort"]);

/// Both ways between a domain enum and the API's one of the same variants.
macro_rules! same_variants {
    ($domain:ident, $api:path, [$($variant:ident),+ $(,)?]) => {
        impl From<$domain> for $api {
            fn from(value: $domain) -> Self {
                match value {
                    $($domain::$variant => <$api>::$variant),+
                }
            }
        }

        impl From<$api> for $domain {
            fn from(value: $api) -> Self {
                match value {
                    $(<$api>::$variant => $domain::$variant),+
                }
            }
        }
    };
}

same_variants!(LeaseState, api::LeaseState, [AwaitingApproval, Pending, Starting, Active, Ending, Finished, Rejected, Cancelled, Failed]);
same_variants!(LeaseType, api::LeaseType, [Default, Deploy, Besteffort]);

/// Something that happened to a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseInput {
    /// The start time came.
    StartTimeReached,
    /// Every node is ready (reserved, or deployed for deploy leases).
    NodesReady,
    /// The end time came.
    EndTimeReached,
    /// The holder (or an admin) ends it now.
    Released,
    /// A normal lease needs the nodes of this besteffort lease.
    Preempted,
    /// Every node finished its reset.
    NodesReset,
    /// An admin approved a lease awaiting approval.
    Approved,
    /// An admin rejected it.
    Rejected,
    /// The lease could not be carried out.
    Failed,
}

/// What the caller must do after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nothing: the lease is already there.
    AlreadyDone,
    /// Record the new state; nothing else changes.
    Record,
    /// Take the nodes (they move to `reserved`).
    TakeNodes,
    /// Free the calendar after now, and start resetting the nodes.
    EndAndReset,
    /// Remove the lease's allocation from the calendar (it never ran).
    DropAllocation,
}

/// A transition `next` refuses; the message is fit for API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a lease in state '{}' cannot be {}", from.as_str(), verb(*input))]
pub struct InvalidLeaseTransition {
    pub from: LeaseState,
    pub input: LeaseInput,
}

fn verb(input: LeaseInput) -> &'static str {
    match input {
        LeaseInput::StartTimeReached => "started",
        LeaseInput::NodesReady => "made active",
        LeaseInput::EndTimeReached => "ended",
        LeaseInput::Released => "released or cancelled",
        LeaseInput::Preempted => "pre-empted",
        LeaseInput::NodesReset => "finished",
        LeaseInput::Approved => "approved",
        LeaseInput::Rejected => "rejected",
        LeaseInput::Failed => "failed",
    }
}

/// Decides the state after `input` and what to do about it.
pub fn next(from: LeaseState, input: LeaseInput) -> Result<(LeaseState, LeaseAction), InvalidLeaseTransition> {
    use LeaseAction as A;
    use LeaseInput as I;
    use LeaseState as S;
    Ok(match (from, input) {
        (S::AwaitingApproval, I::Approved) => (S::Pending, A::Record),
        (S::AwaitingApproval, I::Rejected) => (S::Rejected, A::DropAllocation),
        (S::AwaitingApproval | S::Pending, I::Released) => (S::Cancelled, A::DropAllocation),
        (S::Pending, I::Preempted) => (S::Cancelled, A::DropAllocation),
        (S::Pending, I::StartTimeReached) => (S::Starting, A::TakeNodes),
        (S::Starting, I::StartTimeReached) => (S::Starting, A::AlreadyDone),
        (S::Starting, I::NodesReady) => (S::Active, A::Record),
        (S::Active, I::NodesReady) => (S::Active, A::AlreadyDone),
        (S::Starting | S::Active, I::EndTimeReached | I::Released | I::Preempted) => (S::Ending, A::EndAndReset),
        (S::Ending, I::EndTimeReached | I::Released | I::Preempted) => (S::Ending, A::AlreadyDone),
        (S::Ending, I::NodesReset) => (S::Finished, A::Record),
        (S::Starting | S::Active, I::Failed) => (S::Failed, A::EndAndReset),
        (S::Pending | S::AwaitingApproval, I::Failed) => (S::Failed, A::DropAllocation),
        (S::Finished | S::Cancelled | S::Rejected | S::Failed, I::Released) => (from, A::AlreadyDone),
        (from, input) => return Err(InvalidLeaseTransition { from, input }),
    })
}

/// Whether the lease still holds (or will hold) calendar time.
pub fn holds_slot(state: LeaseState) -> bool {
    matches!(state, LeaseState::Pending | LeaseState::Starting | LeaseState::Active)
}

/// Over for good (what the API's `include_over` adds).
pub const TERMINAL: [LeaseState; 4] = [LeaseState::Finished, LeaseState::Cancelled, LeaseState::Rejected, LeaseState::Failed];

/// Waiting for their start time (approved or not).
pub const WAITING: [LeaseState; 2] = [LeaseState::Pending, LeaseState::AwaitingApproval];

/// Holding their nodes: started and not ending.
pub const RUNNING: [LeaseState; 2] = [LeaseState::Starting, LeaseState::Active];

/// Half-way through a move the clock loop completes.
pub const MOVING: [LeaseState; 2] = [LeaseState::Starting, LeaseState::Ending];

/// Whether the lease is over for good.
pub fn is_terminal(state: LeaseState) -> bool {
    TERMINAL.contains(&state)
}

pub fn parse_state(s: &str) -> Option<LeaseState> {
    s.parse().ok()
}

pub fn parse_type(s: &str) -> Option<LeaseType> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_life() {
        let mut s = LeaseState::Pending;
        let mut actions = vec![];
        for input in [LeaseInput::StartTimeReached, LeaseInput::NodesReady, LeaseInput::EndTimeReached, LeaseInput::NodesReset] {
            let (to, action) = next(s, input).expect("valid");
            s = to;
            actions.push(action);
        }
        assert_eq!(s, LeaseState::Finished);
        assert_eq!(actions, [LeaseAction::TakeNodes, LeaseAction::Record, LeaseAction::EndAndReset, LeaseAction::Record]);
    }

    #[test]
    fn cancel_before_start_and_release_after() {
        assert_eq!(next(LeaseState::Pending, LeaseInput::Released), Ok((LeaseState::Cancelled, LeaseAction::DropAllocation)));
        assert_eq!(next(LeaseState::Active, LeaseInput::Released), Ok((LeaseState::Ending, LeaseAction::EndAndReset)));
        assert_eq!(next(LeaseState::Finished, LeaseInput::Released), Ok((LeaseState::Finished, LeaseAction::AlreadyDone)));
    }

    #[test]
    fn refusals_read_well() {
        let err = next(LeaseState::Finished, LeaseInput::Approved).expect_err("not awaiting approval");
        assert_eq!(err.to_string(), "a lease in state 'finished' cannot be approved");
    }

    #[test]
    fn names_round_trip() {
        for &s in LeaseState::ALL {
            assert_eq!(parse_state(s.as_str()), Some(s));
        }
    }
}
