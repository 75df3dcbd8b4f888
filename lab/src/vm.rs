//! A lab node's power and boot device, modelled on a QEMU process that
//! runs for the whole life of the lab:
//!
//! - off = `stop` + `system_reset` (the next "on" boots from scratch);
//! - on = `system_reset` + `cont`;
//! - reset and cycle = `system_reset` + `cont` (a node that was off comes on);
//! - soft off = `system_powerdown` (ACPI: the guest decides);
//! - a paused VM, or one whose guest powered off (`-no-shutdown`: status
//!   `shutdown`), reads OFF; a running one ON;
//! - boot device: `pxe` / `disk` reorder the `bootindex` of the NIC
//!   (`nic0`) and the disk (`disk0`) with `qom-set`, keeping the values
//!   unique by going through temporary ones; QEMU rewrites the firmware's
//!   boot order at the next reset.
//!
//! Owns: the node's only QMP connection (reconnected once when it breaks).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{LabError, Result};
use crate::qmp::Qmp;

/// A node's power as a BMC reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    On,
    Off,
}

/// Where a node boots first.
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
}

/// One QEMU node, as the supervisor drives it.
#[derive(Debug)]
pub struct Vm {
    pub name: String,
    qmp_path: PathBuf,
    state: Mutex<VmState>,
}

#[derive(Debug)]
struct VmState {
    qmp: Option<Qmp>,
    boot: BootDevice,
}

/// How long a reset may take to leave the `shutdown` state.
const RESET_SETTLE: Duration = Duration::from_secs(5);

impl Vm {
    /// A node whose QEMU serves QMP at `qmp_path`, started with the NIC
    /// first in the boot order.
    pub fn new(name: &str, qmp_path: PathBuf) -> Vm {
        Vm { name: name.to_owned(), qmp_path, state: Mutex::new(VmState { qmp: None, boot: BootDevice::Pxe }) }
    }

    /// Runs `f` with a connected QMP session; on a broken connection it
    /// reconnects once and retries.
    fn with_qmp<T>(&self, f: impl Fn(&mut Qmp) -> Result<T>) -> Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..2 {
            if state.qmp.is_none() {
                state.qmp = Some(Qmp::connect(&self.name, &self.qmp_path, Instant::now() + Duration::from_secs(10))?);
            }
            let Some(qmp) = state.qmp.as_mut() else { continue };
            match f(qmp) {
                Ok(value) => return Ok(value),
                Err(err) => {
                    let broken = matches!(&err, LabError::Qmp { message, .. } if message.starts_with("reading") || message.starts_with("sending") || message.contains("closed"));
                    if broken && attempt == 0 {
                        state.qmp = None;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(LabError::Qmp { node: self.name.clone(), message: "QMP connection lost twice".into() })
    }

    /// Connects now (the supervisor checks every node at start).
    pub fn connect(&self) -> Result<()> {
        self.with_qmp(|_| Ok(()))
    }

    fn run_status(qmp: &mut Qmp) -> Result<String> {
        let status = qmp.execute("query-status", None)?;
        Ok(status.get("status").and_then(Value::as_str).unwrap_or("unknown").to_owned())
    }

    /// The power state: running is ON, anything else OFF.
    pub fn power(&self) -> Result<Power> {
        self.with_qmp(|qmp| Ok(if Self::run_status(qmp)? == "running" { Power::On } else { Power::Off }))
    }

    /// Resets and runs (no-op when already running and `only_if_off`).
    fn start(&self, only_if_off: bool) -> Result<()> {
        let name = self.name.clone();
        self.with_qmp(|qmp| {
            if only_if_off && Self::run_status(qmp)? == "running" {
                return Ok(());
            }
            qmp.execute("system_reset", None)?;
            // A guest that powered off (`shutdown`) must be reset before
            // `cont`; QEMU handles the reset request in its main loop.
            let deadline = Instant::now() + RESET_SETTLE;
            loop {
                let status = Self::run_status(qmp)?;
                if status != "shutdown" && status != "internal-error" && status != "guest-panicked" {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(LabError::Qmp { node: name.clone(), message: format!("still `{status}` after system_reset") });
                }
                // Justified sleep: paces a bounded poll of QEMU's run state.
                std::thread::sleep(Duration::from_millis(20));
            }
            if Self::run_status(qmp)? != "running" {
                qmp.execute("cont", None)?;
            }
            Ok(())
        })
    }

    pub fn power_on(&self) -> Result<()> {
        self.start(true)
    }

    /// Hard off: the CPUs stop and the machine is reset, so the next "on"
    /// boots from the firmware.
    pub fn power_off(&self) -> Result<()> {
        self.with_qmp(|qmp| {
            qmp.execute("stop", None)?;
            qmp.execute("system_reset", None)?;
            Ok(())
        })
    }

    /// Reset (or power cycle): boots again from the firmware, on.
    pub fn reset(&self) -> Result<()> {
        self.start(false)
    }

    /// ACPI power button.
    pub fn soft_off(&self) -> Result<()> {
        self.with_qmp(|qmp| qmp.execute("system_powerdown", None).map(|_| ()))
    }

    /// Stops QEMU (`quit`).
    pub fn quit(&self) -> Result<()> {
        self.with_qmp(|qmp| qmp.execute("quit", None).map(|_| ()))
    }

    pub fn boot_device(&self) -> BootDevice {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).boot
    }

    /// Puts `device` first in the boot order (effective at the next reset).
    pub fn set_boot_device(&self, device: BootDevice) -> Result<()> {
        let (first, second) = match device {
            BootDevice::Pxe => ("nic0", "disk0"),
            BootDevice::Disk => ("disk0", "nic0"),
        };
        self.with_qmp(|qmp| {
            let set = |qmp: &mut Qmp, id: &str, index: i64| {
                qmp.execute(
                    "qom-set",
                    Some(json!({ "path": format!("/machine/peripheral/{id}"), "property": "bootindex", "value": index })),
                )
            };
            // Values must stay unique (a device's own value counts too):
            // park both on temporaries, then assign.
            set(qmp, first, 98)?;
            set(qmp, second, 99)?;
            set(qmp, first, 1)?;
            set(qmp, second, 2)?;
            Ok(())
        })?;
        self.state.lock().unwrap_or_else(|e| e.into_inner()).boot = device;
        Ok(())
    }
}
