//! The lease lifecycle (SPEC §4) and [`LeaseState::next`], the one function
//! that decides its transitions; [`use_change`], when a transition starts
//! or ends the holder's use of the nodes; and [`cut_at`], what ending a
//! lease early does to its allocation rows.

use ferrum_api as api;

use super::names::{named, same_variants};
use super::{NodeId, Seconds};

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

/// What a lease's state change does to its holder's use of the nodes,
/// besides the state: the store writes it in the same transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseChange {
    /// Nothing besides the state.
    None,
    /// The lease starts: its actual start (`started_at`) is now.
    Begins,
    /// A running lease stops using its nodes: its usage records are
    /// written (before its allocation is cut) and `ended_at` is now.
    Ends,
}

/// What the transition `from` → `to` does to the holder's use: a pending
/// lease that starts begins it; a running one (`starting`, `active`) that
/// moves to `ending` or `failed` ends it.
pub fn use_change(from: LeaseState, to: LeaseState) -> UseChange {
    match (from, to) {
        (LeaseState::Pending, LeaseState::Starting) => UseChange::Begins,
        (LeaseState::Starting | LeaseState::Active, LeaseState::Ending | LeaseState::Failed) => UseChange::Ends,
        _ => UseChange::None,
    }
}

/// One allocation row of a lease: a node held over `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub node: NodeId,
    pub start: Seconds,
    pub end: Seconds,
}

/// What cutting a lease's allocation at a time writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cut {
    /// Rows that start at or after the cut: they go.
    pub removed: Vec<NodeId>,
    /// Rows that start before the cut and end after it: they end at it.
    pub shortened: Vec<NodeId>,
    /// The lease's new end, when the cut falls strictly inside it.
    pub lease_end: Option<Seconds>,
}

/// Cuts a lease spanning `lease` (start, end), whose allocation is `rows`,
/// at `t`: from `t` on it holds nothing. Rows already over by `t` stay as
/// they are (they are the record of what it held).
pub fn cut_at(lease: (Seconds, Seconds), rows: &[Allocation], t: Seconds) -> Cut {
    let mut cut = Cut::default();
    for r in rows {
        if r.start >= t {
            cut.removed.push(r.node);
        } else if r.end > t {
            cut.shortened.push(r.node);
        }
    }
    cut.lease_end = (lease.0 < t && t < lease.1).then_some(t);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_begins_at_the_start_and_ends_once_when_a_running_lease_stops() {
        use LeaseState as S;
        for &from in LeaseState::ALL {
            for &to in LeaseState::ALL {
                let expected = match (from, to) {
                    (S::Pending, S::Starting) => UseChange::Begins,
                    (S::Starting | S::Active, S::Ending | S::Failed) => UseChange::Ends,
                    _ => UseChange::None,
                };
                assert_eq!(use_change(from, to), expected, "{from:?} -> {to:?}");
            }
        }
        // Every transition `next` makes that ends a running lease's use.
        for from in [S::Starting, S::Active] {
            for input in [LeaseInput::EndTimeReached, LeaseInput::Released, LeaseInput::Preempted, LeaseInput::Failed] {
                let (to, _) = next(from, input).expect("valid");
                assert_eq!(use_change(from, to), UseChange::Ends, "{from:?} {input:?}");
            }
        }
        // A lease already ending, or one that never started, records nothing.
        assert_eq!(use_change(S::Ending, S::Finished), UseChange::None);
        assert_eq!(use_change(S::Pending, S::Failed), UseChange::None);
        assert_eq!(use_change(S::Pending, S::Cancelled), UseChange::None);
    }

    fn row(node: i64, start: Seconds, end: Seconds) -> Allocation {
        Allocation { node: NodeId(node), start, end }
    }

    #[test]
    fn cut_inside_shortens_rows_and_lease() {
        let cut = cut_at((100, 500), &[row(1, 100, 500), row(2, 100, 500)], 300);
        assert_eq!(cut, Cut { removed: vec![], shortened: vec![NodeId(1), NodeId(2)], lease_end: Some(300) });
    }

    #[test]
    fn cut_before_the_start_removes_everything_and_keeps_the_lease_end() {
        let cut = cut_at((100, 500), &[row(1, 100, 500)], 50);
        assert_eq!(cut, Cut { removed: vec![NodeId(1)], shortened: vec![], lease_end: None });
    }

    #[test]
    fn cut_at_the_edges() {
        // At the start: a row starting exactly then goes; the lease's end stays.
        assert_eq!(cut_at((100, 500), &[row(1, 100, 500)], 100), Cut { removed: vec![NodeId(1)], ..Cut::default() });
        // At the end: nothing runs past it, nothing changes.
        assert_eq!(cut_at((100, 500), &[row(1, 100, 500)], 500), Cut::default());
        // After the end: nothing changes.
        assert_eq!(cut_at((100, 500), &[row(1, 100, 500)], 900), Cut::default());
        // One second in: the shortest row left.
        assert_eq!(cut_at((100, 500), &[row(1, 100, 500)], 101).shortened, vec![NodeId(1)]);
    }

    #[test]
    fn cut_treats_each_row_on_its_own() {
        // Rows that differ from the lease (an earlier cut, an extension).
        let rows = [row(1, 100, 200), row(2, 100, 400), row(3, 350, 500)];
        let cut = cut_at((100, 500), &rows, 300);
        assert_eq!(cut, Cut { removed: vec![NodeId(3)], shortened: vec![NodeId(2)], lease_end: Some(300) });
        assert_eq!(cut_at((100, 500), &[], 300), Cut { lease_end: Some(300), ..Cut::default() });
    }

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
