//! A simulated BMC, in memory: for fast unit tests and scale benchmarks
//! beside the real IPMI and Redfish peers, never instead of them.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{BootDevice, PowerAction, PowerDriver, PowerError, PowerState};

/// What a simulated BMC holds, and the failure it is told to show.
#[derive(Debug)]
pub struct SimBmc {
    pub name: String,
    state: Mutex<SimState>,
    /// The number of operations carried out, for observers (a simulated
    /// node that boots when its BMC powers it on).
    carried_out: watch::Sender<usize>,
    /// While true, power actions wait (a BMC slow to answer).
    held: watch::Sender<bool>,
}

#[derive(Debug)]
struct SimState {
    power: PowerState,
    next_boot: Option<BootDevice>,
    failure: Option<PowerError>,
    operations: Vec<String>,
}

impl SimBmc {
    pub fn new(name: &str) -> Self {
        SimBmc {
            name: name.to_owned(),
            state: Mutex::new(SimState { power: PowerState::Off, next_boot: None, failure: None, operations: Vec::new() }),
            carried_out: watch::channel(0).0,
            held: watch::channel(false).0,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut SimState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every later call fails with `error` (or succeeds again with `None`).
    pub fn fail_with(&self, error: Option<PowerError>) {
        self.with(|s| s.failure = error);
    }

    /// While `held`, power actions wait for its release (a request stays
    /// running as long as the test wants).
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    pub fn next_boot(&self) -> Option<BootDevice> {
        self.with(|s| s.next_boot)
    }

    /// The operations carried out, in order (`on`, `boot pxe`, ...).
    pub fn operations(&self) -> Vec<String> {
        self.with(|s| s.operations.clone())
    }

    /// Changes each time an operation is carried out (to the number of
    /// them so far): what a simulated node watches to boot.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.carried_out.subscribe()
    }

    fn announce(&self) {
        self.carried_out.send_replace(self.with(|s| s.operations.len()));
    }
}

#[async_trait]
impl PowerDriver for SimBmc {
    fn bmc(&self) -> String {
        self.name.clone()
    }

    async fn power_state(&self) -> Result<PowerState, PowerError> {
        self.with(|s| match &s.failure {
            Some(e) => Err(e.clone()),
            None => Ok(s.power),
        })
    }

    async fn power(&self, action: PowerAction) -> Result<(), PowerError> {
        // The sender lives as long as `self`: the wait ends on release.
        let _ = self.held.subscribe().wait_for(|held| !*held).await;
        self.with(|s| {
            if let Some(e) = &s.failure {
                return Err(e.clone());
            }
            s.power = match action {
                PowerAction::On | PowerAction::Cycle => PowerState::On,
                PowerAction::Off | PowerAction::SoftOff => PowerState::Off,
            };
            if matches!(action, PowerAction::On | PowerAction::Cycle) {
                // A boot consumes the one-time boot device.
                s.next_boot = None;
            }
            s.operations.push(action.as_str().to_owned());
            Ok(())
        })?;
        self.announce();
        Ok(())
    }

    async fn set_boot_device(&self, device: BootDevice) -> Result<(), PowerError> {
        self.with(|s| {
            if let Some(e) = &s.failure {
                return Err(e.clone());
            }
            s.next_boot = Some(device);
            s.operations.push(format!("boot {}", device.as_str()));
            Ok(())
        })?;
        self.announce();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeInput;

    #[tokio::test]
    async fn sim_follows_operations_and_fails_on_demand() {
        let bmc = SimBmc::new("127.0.0.1:623");
        let carried_out = bmc.watch();
        bmc.set_boot_device(BootDevice::Pxe).await.expect("boot");
        bmc.power(PowerAction::Cycle).await.expect("cycle");
        assert_eq!(bmc.power_state().await, Ok(PowerState::On));
        assert_eq!(bmc.next_boot(), None, "a boot consumes the one-time device");
        assert_eq!(bmc.operations(), ["boot pxe", "cycle"]);
        assert_eq!(*carried_out.borrow(), 2, "observers see each operation");
        bmc.fail_with(Some(PowerError::Unreachable { bmc: bmc.bmc(), tries: 3 }));
        let err = bmc.power(PowerAction::Off).await.expect_err("unreachable");
        assert_eq!(err.to_string(), "no answer from BMC 127.0.0.1:623 after 3 tries");
        assert_eq!(err.node_input(), NodeInput::BmcUnreachable);
        assert_eq!(PowerError::Auth { bmc: "b:1".into() }.node_input(), NodeInput::CheckFailed);
    }
}
