//! The lifecycle of a command for a node's agent ([`AgentCommandState`]
//! and [`AgentCommandState::next`], the one function that decides its
//! transitions).
//!
//! A command is queued, sent to an agent generation (sent again, or taken
//! over by a newer generation, while unanswered), and ends done or failed;
//! a new operation fails the node's unfinished ones. The datastore writes
//! the states `next` gives.

use super::names::named;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentCommandState {
    /// Waits for the node's agent to ask.
    Queued,
    /// Handed to an agent generation, unanswered.
    Sent,
    Done,
    /// The agent failed it, or it was cancelled before it ended (`error` says).
    Failed,
}

named!(AgentCommandState, "agent command state", [Queued => "queued", Sent => "sent", Done => "done", Failed => "failed"]);

impl AgentCommandState {
    /// Not finished: an agent may still take these, and a new operation
    /// cancels them.
    pub const UNFINISHED: [AgentCommandState; 2] = [AgentCommandState::Queued, AgentCommandState::Sent];

    pub fn is_unfinished(self) -> bool {
        Self::UNFINISHED.contains(&self)
    }
}

/// Something that happened to an agent command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentCommandInput {
    /// An agent took it (again, if its answer was lost).
    Handed,
    /// The agent reported it done.
    Succeeded,
    /// The agent reported it failed.
    Failed,
    /// A new operation (or an abandoned one) drops it.
    Cancelled,
}

/// A transition `next` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an agent command in state {from} cannot take {input:?}")]
pub struct InvalidCommandTransition {
    pub from: AgentCommandState,
    pub input: AgentCommandInput,
}

impl AgentCommandState {
    /// Decides the state after `input`. Only a sent command is answered.
    pub fn next(self, input: AgentCommandInput) -> Result<AgentCommandState, InvalidCommandTransition> {
        use AgentCommandInput as I;
        use AgentCommandState as S;
        Ok(match (self, input) {
            (S::Queued | S::Sent, I::Handed) => S::Sent,
            (S::Sent, I::Succeeded) => S::Done,
            (S::Sent, I::Failed) => S::Failed,
            (S::Queued | S::Sent, I::Cancelled) => S::Failed,
            (from, input) => return Err(InvalidCommandTransition { from, input }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sent_command_is_answered() {
        let sent = AgentCommandState::Queued.next(AgentCommandInput::Handed).expect("handed");
        assert_eq!(sent.next(AgentCommandInput::Handed), Ok(AgentCommandState::Sent), "sent again");
        assert_eq!(sent.next(AgentCommandInput::Succeeded), Ok(AgentCommandState::Done));
        assert!(AgentCommandState::Queued.next(AgentCommandInput::Succeeded).is_err());
        assert_eq!(AgentCommandState::Queued.next(AgentCommandInput::Cancelled), Ok(AgentCommandState::Failed));
        assert!(AgentCommandState::Done.next(AgentCommandInput::Cancelled).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in AgentCommandState::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
            assert_eq!(s.is_unfinished(), AgentCommandState::UNFINISHED.contains(s));
        }
    }
}
