//! Power requests: what one asks of a node's BMC ([`PowerOperation`]) and
//! its lifecycle ([`PowerRequestState`] and [`PowerRequestState::next`],
//! the one function that decides its transitions).
//!
//! A request is queued (a row, so a restarted controller carries it out),
//! runs, and ends done or failed; one dropped before it ran ends failed
//! with the reason. The datastore writes the states `next` gives.
//!
//! [`PowerAction`] and [`BootDevice`] are the power drivers' vocabulary too
//! (the controller's `power` re-exports them).

use std::str::FromStr;

use super::names::{UnknownName, named};

/// A power operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    On,
    /// Hard power off.
    Off,
    /// ACPI soft off (the OS shuts down).
    SoftOff,
    /// Power cycle / reset: the node restarts (and is on afterwards).
    Cycle,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::On => "on",
            PowerAction::Off => "off",
            PowerAction::SoftOff => "soft-off",
            PowerAction::Cycle => "cycle",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PowerAction::On, PowerAction::Off, PowerAction::SoftOff, PowerAction::Cycle].into_iter().find(|a| a.as_str() == s)
    }
}

/// One-time boot device (applies to the next boot only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDevice {
    Pxe,
    Disk,
}

impl BootDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [BootDevice::Pxe, BootDevice::Disk].into_iter().find(|d| d.as_str() == s)
    }
}

/// The operations a request may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOperation {
    Power(PowerAction),
    Status,
    Boot(BootDevice),
}

impl PowerOperation {
    /// The stored and shown name (`on`, `off`, `soft-off`, `cycle`,
    /// `status`, `boot-pxe`, `boot-disk`).
    pub fn as_str(self) -> &'static str {
        match self {
            PowerOperation::Power(a) => a.as_str(),
            PowerOperation::Status => "status",
            PowerOperation::Boot(BootDevice::Pxe) => "boot-pxe",
            PowerOperation::Boot(BootDevice::Disk) => "boot-disk",
        }
    }
}

impl FromStr for PowerOperation {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "status" => Ok(PowerOperation::Status),
            "boot-pxe" => Ok(PowerOperation::Boot(BootDevice::Pxe)),
            "boot-disk" => Ok(PowerOperation::Boot(BootDevice::Disk)),
            other => PowerAction::parse(other)
                .map(PowerOperation::Power)
                .ok_or_else(|| UnknownName { what: "power operation", name: s.to_owned() }),
        }
    }
}

impl std::fmt::Display for PowerOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a power request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerRequestState {
    /// Waits for the power loop.
    Queued,
    /// A driver call runs (or ran when a controller died: it runs again).
    Running,
    Done,
    /// The BMC failed it, or it was dropped before it ran (`error` says).
    Failed,
}

named!(PowerRequestState, "power request state", [Queued => "queued", Running => "running", Done => "done", Failed => "failed"]);

impl PowerRequestState {
    /// Not finished: the power loop carries these out, in request order.
    pub const PENDING: [PowerRequestState; 2] = [PowerRequestState::Queued, PowerRequestState::Running];

    pub fn is_finished(self) -> bool {
        matches!(self, PowerRequestState::Done | PowerRequestState::Failed)
    }
}

/// Something that happened to a power request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerInput {
    /// The power loop took it (under its BMC's lock).
    Started,
    /// The BMC did it.
    Succeeded,
    /// The BMC (or the node's BMC address) failed it.
    Failed,
    /// Dropped before it ran (superseded, abandoned, skipped).
    Dropped,
}

/// A transition `next` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a power request in state {from} cannot take {input:?}")]
pub struct InvalidPowerTransition {
    pub from: PowerRequestState,
    pub input: PowerInput,
}

impl PowerRequestState {
    /// Decides the state after `input`. A request that ran is never
    /// dropped; one that never ran may still fail (its node has no BMC).
    pub fn next(self, input: PowerInput) -> Result<PowerRequestState, InvalidPowerTransition> {
        use PowerInput as I;
        use PowerRequestState as S;
        Ok(match (self, input) {
            (S::Queued | S::Running, I::Started) => S::Running,
            (S::Queued | S::Running, I::Succeeded) => S::Done,
            (S::Queued | S::Running, I::Failed) => S::Failed,
            (S::Queued, I::Dropped) => S::Failed,
            (from, input) => return Err(InvalidPowerTransition { from, input }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_runs_then_ends() {
        let running = PowerRequestState::Queued.next(PowerInput::Started).expect("starts");
        assert_eq!(running.next(PowerInput::Succeeded), Ok(PowerRequestState::Done));
        assert_eq!(running.next(PowerInput::Failed), Ok(PowerRequestState::Failed));
        assert_eq!(PowerRequestState::Queued.next(PowerInput::Dropped), Ok(PowerRequestState::Failed));
        assert!(running.next(PowerInput::Dropped).is_err(), "a running request is not dropped");
        assert!(PowerRequestState::Done.next(PowerInput::Started).is_err());
        assert!(PowerRequestState::PENDING.iter().all(|s| !s.is_finished()));
    }

    #[test]
    fn names_round_trip() {
        for s in PowerRequestState::ALL {
            assert_eq!(s.as_str().parse(), Ok(*s));
        }
        for op in [
            PowerOperation::Power(PowerAction::On),
            PowerOperation::Power(PowerAction::Off),
            PowerOperation::Power(PowerAction::SoftOff),
            PowerOperation::Power(PowerAction::Cycle),
            PowerOperation::Status,
            PowerOperation::Boot(BootDevice::Pxe),
            PowerOperation::Boot(BootDevice::Disk),
        ] {
            assert_eq!(op.as_str().parse(), Ok(op));
        }
        assert!("reboot".parse::<PowerOperation>().is_err());
    }
}
