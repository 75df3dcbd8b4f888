//! Power and boot control of nodes through their BMCs: the [`PowerDriver`]
//! trait, its errors, and the choice of driver from a node's BMC address.
//!
//! A driver speaks one BMC protocol (IPMI v2.0 lanplus, Redfish) and turns
//! every failure into a [`PowerError`] that names the BMC (host:port, never
//! the password) and the cause. Drivers do not decide what a failure means
//! for the node: [`PowerError::node_input`] says which lifecycle input the
//! caller records (`dead` for a BMC that does not answer, `suspect` for one
//! that answers wrongly). Drivers never log or return credentials.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::NodeInput;
pub use crate::model::power::{BootDevice, PowerAction};

pub mod ipmi;
pub mod redfish;
pub mod sim;

/// Observed power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        }
    }
}

/// A BMC failure. `bmc` is `host:port`; no variant ever holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    #[error("BMC {bmc} refused the credentials")]
    Auth { bmc: String },
    #[error("no answer from BMC {bmc} after {tries} tries")]
    Unreachable { bmc: String, tries: u32 },
    #[error("BMC {bmc} did not finish {operation} within {after:?}")]
    Timeout { bmc: String, operation: &'static str, after: Duration },
    #[error("BMC {bmc} answered wrongly to {operation}: {detail}")]
    Protocol { bmc: String, operation: &'static str, detail: String },
    #[error("BMC {bmc} does not support {what}")]
    Unsupported { bmc: String, what: String },
    #[error("BMC {bmc}: {detail}")]
    Tls { bmc: String, detail: String },
}

impl PowerError {
    /// The node lifecycle input this failure means: a BMC that does not
    /// answer makes the node `dead`; one that answers wrongly, refuses the
    /// credentials or lacks a feature makes it `suspect`.
    pub fn node_input(&self) -> NodeInput {
        match self {
            PowerError::Unreachable { .. } | PowerError::Timeout { .. } => NodeInput::BmcUnreachable,
            PowerError::Auth { .. } | PowerError::Protocol { .. } | PowerError::Unsupported { .. } | PowerError::Tls { .. } => {
                NodeInput::CheckFailed
            }
        }
    }
}

/// Timeouts and retries shared by the drivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reliability {
    /// Deadline of one request to the BMC.
    pub request_timeout: Duration,
    /// Attempts per operation (1 = no retry).
    pub attempts: u32,
    /// First backoff between attempts; doubles each time.
    pub backoff: Duration,
    /// How long to poll for a power change to show (Redfish applies them
    /// seconds later).
    pub settle_timeout: Duration,
}

impl Default for Reliability {
    fn default() -> Self {
        Reliability {
            request_timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(200),
            settle_timeout: Duration::from_secs(30),
        }
    }
}

/// A driver for `bmc`, chosen by its scheme.
pub fn connect(bmc: &crate::model::BmcAddress, reliability: Reliability) -> Result<std::sync::Arc<dyn PowerDriver>, PowerError> {
    use crate::model::bmc::BmcDriver;
    Ok(match bmc.driver {
        BmcDriver::Ipmi => std::sync::Arc::new(ipmi::IpmiDriver::new(bmc, reliability)),
        BmcDriver::Redfish => std::sync::Arc::new(redfish::RedfishDriver::new(bmc, reliability)?),
    })
}

/// Power and boot control of one node's BMC. Implementations serialise
/// nothing themselves: the caller runs one operation at a time per BMC.
#[async_trait]
pub trait PowerDriver: Send + Sync + fmt::Debug {
    /// `host:port` of the BMC, for messages.
    fn bmc(&self) -> String;
    async fn power_state(&self) -> Result<PowerState, PowerError>;
    /// Carries out `action`; returns once the BMC accepted it (and, where
    /// the protocol applies changes later, once the state shows it or the
    /// settle deadline passed, which is a `Timeout`).
    async fn power(&self, action: PowerAction) -> Result<(), PowerError>;
    /// Sets the device the node boots from next time (once).
    async fn set_boot_device(&self, device: BootDevice) -> Result<(), PowerError>;
}
