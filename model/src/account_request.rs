//! The lifecycle of an account request ([`AccountRequestState`] and
//! [`AccountRequestState::next`], the one function that decides it): a
//! request waits, then an admin approves it (the user is created) or
//! rejects it, once.

use ferrum_api::accounts as api;

use super::names::{named, same_variants};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountRequestState {
    /// Waits for an admin.
    Pending,
    /// The user (and its project, if new) exists.
    Approved,
    /// Refused, with a reason.
    Rejected,
}

named!(AccountRequestState, "account request state", [Pending => "pending", Approved => "approved", Rejected => "rejected"]);
same_variants!(AccountRequestState, api::AccountRequestState, [Pending, Approved, Rejected]);

/// What an admin decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountRequestInput {
    Approve,
    Reject,
}

/// A transition `next` refuses: the request was decided already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an account request in state {from} cannot take {input:?}")]
pub struct InvalidRequestTransition {
    pub from: AccountRequestState,
    pub input: AccountRequestInput,
}

impl AccountRequestState {
    /// Decides the state after `input`: only a pending request is decided.
    pub fn next(self, input: AccountRequestInput) -> Result<AccountRequestState, InvalidRequestTransition> {
        use AccountRequestInput as I;
        use AccountRequestState as S;
        match (self, input) {
            (S::Pending, I::Approve) => Ok(S::Approved),
            (S::Pending, I::Reject) => Ok(S::Rejected),
            (from, input) => Err(InvalidRequestTransition { from, input }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pending_request_is_decided() {
        use AccountRequestInput as I;
        use AccountRequestState as S;
        assert_eq!(S::Pending.next(I::Approve), Ok(S::Approved));
        assert_eq!(S::Pending.next(I::Reject), Ok(S::Rejected));
        for &from in [S::Approved, S::Rejected].iter() {
            for input in [I::Approve, I::Reject] {
                assert_eq!(from.next(input), Err(InvalidRequestTransition { from, input }));
            }
        }
    }
}
