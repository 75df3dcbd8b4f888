//! Project membership rules: a project's manager is one of its members, and
//! a member who leaves stops managing. Pure; the stores write what these
//! functions return, in the transaction of the change.

use super::UserId;

/// What a change of a project's manager or members writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipWrites {
    /// The new manager, when it changes (`Some(None)`: no manager).
    pub manager: Option<Option<UserId>>,
    /// A user who joins the members (kept when already one).
    pub join: Option<UserId>,
    /// A user who leaves the members.
    pub leave: Option<UserId>,
}

/// Naming a project's manager (or none): a named manager joins the members.
pub fn set_manager(manager: Option<UserId>) -> MembershipWrites {
    MembershipWrites { manager: Some(manager), join: manager, leave: None }
}

/// `user` joins (`member`) or leaves a project managed by `manager`; a
/// manager who leaves stops managing.
pub fn set_member(manager: Option<UserId>, user: UserId, member: bool) -> MembershipWrites {
    if member {
        MembershipWrites { join: Some(user), ..MembershipWrites::default() }
    } else {
        MembershipWrites { leave: Some(user), manager: (manager == Some(user)).then_some(None), join: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);

    #[test]
    fn a_manager_is_a_member() {
        assert_eq!(set_manager(Some(ANN)), MembershipWrites { manager: Some(Some(ANN)), join: Some(ANN), leave: None });
        // No manager: nobody joins, nobody leaves (the old manager stays a member).
        assert_eq!(set_manager(None), MembershipWrites { manager: Some(None), join: None, leave: None });
    }

    #[test]
    fn joining_leaves_the_manager_alone() {
        assert_eq!(set_member(Some(ANN), BOB, true), MembershipWrites { join: Some(BOB), ..MembershipWrites::default() });
        assert_eq!(set_member(Some(ANN), ANN, true), MembershipWrites { join: Some(ANN), ..MembershipWrites::default() });
    }

    #[test]
    fn a_manager_who_leaves_stops_managing() {
        assert_eq!(set_member(Some(ANN), ANN, false), MembershipWrites { manager: Some(None), join: None, leave: Some(ANN) });
        assert_eq!(set_member(Some(ANN), BOB, false), MembershipWrites { leave: Some(BOB), ..MembershipWrites::default() });
        assert_eq!(set_member(None, BOB, false), MembershipWrites { leave: Some(BOB), ..MembershipWrites::default() });
    }
}
