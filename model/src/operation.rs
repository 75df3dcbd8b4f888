//! Node operations (a deploy or a reset of one node): their kind, their
//! lifecycle ([`OperationState`] and [`OperationState::next`], the one
//! function that decides how an operation ends), their phases and a
//! reset's verdict ([`ResetOutcome`]).
//!
//! The stored names are the ones below (`as_str`); the datastore reads them
//! back with `FromStr`, and an unknown name is a corrupt row, never a
//! default. The API's `OperationState` and `Phase` are converted at the
//! edge (`From`), so a stored name and a shown one may part ways.

use ferrum_api::deployment as api;

use super::names::named;

/// What an operation does to its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationKind {
    /// Writes a deployment's image and boots it (SPEC §5).
    Deploy,
    /// Powers off, wipes, checks (and restores) a node after a lease (SPEC §6).
    Reset,
}

named!(OperationKind, "operation kind", [Deploy => "deploy", Reset => "reset"]);

/// Where an operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationState {
    /// A phase runs (at most one running operation per node).
    Running,
    Done,
    Failed,
    /// Ended from outside: a user cancelled it, or its node moved on.
    Cancelled,
}

named!(OperationState, "operation state", [Running => "running", Done => "done", Failed => "failed", Cancelled => "cancelled"]);

/// How an operation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationInput {
    /// Its last phase succeeded.
    Succeeded,
    /// A phase failed for good (no try left, or nothing to retry).
    Failed,
    /// A user cancelled it, or its node is no longer its to work on.
    Cancelled,
}

/// A transition `next` refuses: an ended operation never runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an operation in state {from} cannot take {input:?}")]
pub struct InvalidOperationTransition {
    pub from: OperationState,
    pub input: OperationInput,
}

impl OperationState {
    /// Decides the state after `input`. `Ok(self)` means the input is
    /// already reflected (an end delivered twice).
    pub fn next(self, input: OperationInput) -> Result<OperationState, InvalidOperationTransition> {
        use OperationInput as I;
        use OperationState as S;
        Ok(match (self, input) {
            (S::Running | S::Done, I::Succeeded) => S::Done,
            (S::Running | S::Failed, I::Failed) => S::Failed,
            (S::Running | S::Cancelled, I::Cancelled) => S::Cancelled,
            (from, input) => return Err(InvalidOperationTransition { from, input }),
        })
    }
}

impl From<OperationState> for api::OperationState {
    fn from(s: OperationState) -> Self {
        match s {
            OperationState::Running => api::OperationState::Running,
            OperationState::Done => api::OperationState::Done,
            OperationState::Failed => api::OperationState::Failed,
            OperationState::Cancelled => api::OperationState::Cancelled,
        }
    }
}

/// A step of an operation; which ones a kind runs, and in which order, is
/// the operations engine's table (`app::operations`). An ended operation
/// keeps its last phase; its history records `finished`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    PowerOff,
    BootRamdisk,
    WaitAgent,
    WriteImage,
    InstallKeys,
    BootSystem,
    SshCheck,
    Wipe,
    Inventory,
    Shutdown,
}

// The API's names (`ferrum_api::deployment::Phase`), which the stored ones
// have always been.
named!(Phase, "operation phase", [
    PowerOff => "power_off",
    BootRamdisk => "boot_ramdisk",
    WaitAgent => "wait_agent",
    WriteImage => "write_image",
    InstallKeys => "install_keys",
    BootSystem => "boot_system",
    SshCheck => "ssh_check",
    Wipe => "wipe",
    Inventory => "inventory",
    Shutdown => "shutdown",
]);

impl From<Phase> for api::Phase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::PowerOff => api::Phase::PowerOff,
            Phase::BootRamdisk => api::Phase::BootRamdisk,
            Phase::WaitAgent => api::Phase::WaitAgent,
            Phase::WriteImage => api::Phase::WriteImage,
            Phase::InstallKeys => api::Phase::InstallKeys,
            Phase::BootSystem => api::Phase::BootSystem,
            Phase::SshCheck => api::Phase::SshCheck,
            Phase::Wipe => api::Phase::Wipe,
            Phase::Inventory => api::Phase::Inventory,
            Phase::Shutdown => api::Phase::Shutdown,
        }
    }
}

/// A reset's verdict, which the clock loop turns into the node's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetOutcome {
    /// Wiped, and the inventory matches the reference.
    Clean,
    /// The inventory differs from the reference (or a disk kept a table).
    Mismatch,
    /// The BMC failed the reset's power sequence.
    Bmc,
    /// Anything else failed it.
    Error,
}

// The serde names above (stored inside a reset's phase data) are these.
named!(ResetOutcome, "reset outcome", [Clean => "clean", Mismatch => "mismatch", Bmc => "bmc", Error => "error"]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_ends_once() {
        assert_eq!(OperationState::Running.next(OperationInput::Succeeded), Ok(OperationState::Done));
        assert_eq!(OperationState::Running.next(OperationInput::Cancelled), Ok(OperationState::Cancelled));
        assert_eq!(OperationState::Failed.next(OperationInput::Failed), Ok(OperationState::Failed));
        let err = OperationState::Done.next(OperationInput::Cancelled).expect_err("ended");
        assert_eq!(err.to_string(), "an operation in state done cannot take Cancelled");
    }

    #[test]
    fn names_round_trip() {
        for k in OperationKind::ALL {
            assert_eq!(k.as_str().parse(), Ok(*k));
        }
        for s in OperationState::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
            assert_eq!(api::OperationState::from(*s).as_str(), s.as_str());
        }
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse(), Ok(*p));
            assert_eq!(api::Phase::from(*p).as_str(), p.as_str());
        }
        for o in ResetOutcome::ALL {
            assert_eq!(o.as_str().parse(), Ok(*o));
            assert_eq!(serde_json::to_string(o).expect("serialises"), format!("\"{o}\""));
        }
        let err = "over".parse::<OperationState>().expect_err("unknown");
        assert_eq!(err.to_string(), "unknown operation state 'over'");
    }
}
