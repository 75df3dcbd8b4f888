//! Hardware inventory: what is really in this node, read from `/proc` and
//! `/sys` (no helper crate, no external program), as a
//! [`ferrum_api::inventory::InventoryReport`].
//!
//! One submodule per source: [`cpu`] (`/proc/cpuinfo`,
//! `/sys/devices/system/cpu`), [`memory`] (`/proc/meminfo`,
//! `/sys/devices/system/memory`), [`disks`] (`/sys/block`,
//! `/dev/disk/by-*`), [`net`] (`/sys/class/net`), [`pci`]
//! (`/sys/bus/pci/devices`, pci.ids names, GPUs and FPGAs), [`dmi`]
//! (`/sys/class/dmi/id`, SMBIOS memory devices). This module owns the
//! filesystem access they share ([`Fs`]: every path is read under a root, so
//! tests point it at a fake tree) and assembles the report.
//!
//! Collecting never fails because a fact is missing: many VMs have no DMI,
//! a ramdisk has no udev links, a down link has no speed. A missing file is
//! an absent fact; a file that exists but cannot be read is an absent fact
//! and a line in the report's `warnings`. Only the caller's own mistakes
//! fail ([`InventoryError`]: a root that is not a directory, a `--pci-ids`
//! file that cannot be read or is not a pci.ids file).
//!
//! This module reports; it must not judge. Comparing with a reference is
//! `ferrum_check::compare`.
//!
//! GPUs are found on the PCI bus and named with pci.ids; NVML is not used
//! and there is no `nvml` feature (memory size, compute capability and
//! the like are not collected).

mod cpu;
mod disks;
mod dmi;
mod memory;
mod net;
mod pci;

use std::cell::RefCell;
use std::io;
use std::path::{Component, Path, PathBuf};

use ferrum_api::inventory::{INVENTORY_SCHEMA_VERSION, InventoryReport, MainMemory, MemorySource};

use pci::PciIds;

/// What [`collect`] reads.
#[derive(Clone, Debug)]
pub struct Options {
    /// The directory holding `proc/`, `sys/`, `dev/` and `usr/share/`:
    /// `/` on a node, a fake tree in tests.
    pub root: PathBuf,
    /// A pci.ids file to name PCI devices with, whatever its version; when
    /// `None`, the node's own pci.ids (under `root`) is used if it is newer
    /// than the embedded database.
    pub pci_ids: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options { root: PathBuf::from("/"), pci_ids: None }
    }
}

/// Why no report could be made at all.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The root to read under is not a readable directory.
    #[error("inventory root {path} is not a readable directory")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The pci.ids file asked for could not be read.
    #[error("cannot read pci.ids file {path}")]
    PciIdsRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The pci.ids file asked for is not one.
    #[error("{path} is not a pci.ids file: {reason}")]
    PciIdsFormat { path: PathBuf, reason: String },
}

/// Collects the inventory of the machine whose `/proc` and `/sys` are under
/// `options.root`.
pub fn collect(options: &Options) -> Result<InventoryReport, InventoryError> {
    let fs = Fs::new(&options.root)?;
    let names = PciIds::select(&fs, options.pci_ids.as_deref())?;

    let (processor, architecture) = cpu::collect(&fs);
    let meminfo = memory::collect(&fs);
    let smbios = dmi::memory_devices(&fs);
    let (bios, chassis) = dmi::firmware(&fs);
    let pci_devices = pci::collect(&fs, &names);
    let (gpu_devices, other_devices) = pci::classify(&pci_devices, &names);
    let storage_devices = disks::collect(&fs);
    let network_adapters = net::collect(&fs, &pci_devices);

    let installed: u64 = smbios.iter().filter(|d| d.technology == "dram").map(|d| d.size).sum();
    let (ram_size, ram_size_source) = if installed > 0 {
        (Some(installed), Some(MemorySource::Smbios))
    } else if let Some(blocks) = meminfo.online_blocks {
        (Some(blocks), Some(MemorySource::MemoryBlocks))
    } else if let Some(total) = meminfo.mem_total {
        (Some(total), Some(MemorySource::Meminfo))
    } else {
        (None, None)
    };

    Ok(InventoryReport {
        schema_version: INVENTORY_SCHEMA_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        processor,
        architecture,
        main_memory: MainMemory { ram_size, ram_size_source, mem_total: meminfo.mem_total },
        memory_devices: smbios,
        storage_devices,
        network_adapters,
        gpu_devices,
        other_devices,
        bios,
        chassis,
        pci_devices,
        pci_ids_source: names.source().clone(),
        warnings: fs.into_warnings(),
    })
}

/// Read access to a node's filesystem under a root. Paths are given as the
/// node sees them (`/sys/block`); problems other than "not found" are kept
/// as warnings for the report.
#[derive(Debug)]
pub(crate) struct Fs {
    root: PathBuf,
    warnings: RefCell<Vec<String>>,
}

impl Fs {
    fn new(root: &Path) -> Result<Fs, InventoryError> {
        let root = root.canonicalize().map_err(|source| InventoryError::Root { path: root.to_path_buf(), source })?;
        if let Err(source) = std::fs::read_dir(&root) {
            return Err(InventoryError::Root { path: root, source });
        }
        Ok(Fs { root, warnings: RefCell::new(Vec::new()) })
    }

    /// Where the node path `path` is on this machine.
    pub(crate) fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Records a problem for the report.
    pub(crate) fn warn(&self, message: String) {
        let mut warnings = self.warnings.borrow_mut();
        if !warnings.contains(&message) {
            warnings.push(message);
        }
    }

    fn into_warnings(self) -> Vec<String> {
        self.warnings.into_inner()
    }

    fn note(&self, path: &str, error: &io::Error) {
        if error.kind() != io::ErrorKind::NotFound {
            self.warn(format!("{path}: {error}"));
        }
    }

    /// The file's bytes; `None` when absent or unreadable (warned).
    pub(crate) fn read_bytes(&self, path: &str) -> Option<Vec<u8>> {
        match std::fs::read(self.host_path(path)) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.note(path, &e);
                None
            }
        }
    }

    /// The file's bytes, and the error when it could not be read (not
    /// warned: the caller decides).
    pub(crate) fn try_read_bytes(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.host_path(path))
    }

    /// The file's text, trimmed; `None` when absent, empty or unreadable
    /// (warned).
    pub(crate) fn read(&self, path: &str) -> Option<String> {
        let bytes = self.read_bytes(path)?;
        non_empty(&String::from_utf8_lossy(&bytes))
    }

    /// Like [`Fs::read`] but never warns: for attributes whose read fails
    /// in normal operation (`speed` of a down link answers EINVAL).
    pub(crate) fn read_quiet(&self, path: &str) -> Option<String> {
        let bytes = std::fs::read(self.host_path(path)).ok()?;
        non_empty(&String::from_utf8_lossy(&bytes))
    }

    /// Whether the path exists (a symlink counts even when dangling).
    pub(crate) fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.host_path(path)).is_ok()
    }

    /// Names in a directory, sorted; empty when absent or unreadable
    /// (warned).
    pub(crate) fn list(&self, path: &str) -> Vec<String> {
        match std::fs::read_dir(self.host_path(path)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                names
            }
            Err(e) => {
                self.note(path, &e);
                Vec::new()
            }
        }
    }

    /// The last component of a symlink's target (`driver` → `i40e`).
    pub(crate) fn link_name(&self, path: &str) -> Option<String> {
        let target = std::fs::read_link(self.host_path(path)).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// The node path with every symlink resolved (`/sys/class/net/eth0/device`
    /// → `/sys/devices/pci0000:00/0000:00:03.0/virtio2`); `None` when absent
    /// or when it leads out of the root.
    pub(crate) fn canonical(&self, path: &str) -> Option<String> {
        let resolved = self.host_path(path).canonicalize().ok()?;
        let inside = resolved.strip_prefix(&self.root).ok()?;
        let mut out = String::new();
        for component in inside.components() {
            if let Component::Normal(part) = component {
                out.push('/');
                out.push_str(&part.to_string_lossy());
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Some(out)
    }
}

/// Trims and drops empty text.
pub(crate) fn non_empty(text: &str) -> Option<String> {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if trimmed.is_empty() { None } else { Some(trimmed.to_string()) }
}

/// Orders kernel names the way people count: `sdz` before `sdaa`,
/// `nvme2n1` before `nvme10n1` (shorter names first, then alphabetical).
pub(crate) fn kernel_name_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Whether a path component is a PCI address (`0000:3b:00.0`).
pub(crate) fn is_pci_address(text: &str) -> bool {
    let bytes = text.as_bytes();
    let hex = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_hexdigit);
    bytes.len() == 12
        && hex(0..4)
        && bytes[4] == b':'
        && hex(5..7)
        && bytes[7] == b':'
        && hex(8..10)
        && bytes[10] == b'.'
        && (b'0'..=b'7').contains(&bytes[11])
}

/// The PCI function a sysfs device *is*: the device itself when it is a
/// PCI function, or its parent when it is a virtio device on a PCI
/// transport. A device further down (a USB NIC under its xHCI controller)
/// has none: the nearest PCI address would name the wrong hardware.
pub(crate) fn pci_function_of(device_path: &str) -> Option<String> {
    let mut parts = device_path.rsplit('/');
    let last = parts.next()?;
    if is_pci_address(last) {
        return Some(last.to_string());
    }
    let parent = parts.next()?;
    let virtio = last.strip_prefix("virtio").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    (virtio && is_pci_address(parent)).then(|| parent.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_functions_are_recognised_in_device_paths() {
        assert_eq!(pci_function_of("/sys/devices/pci0000:00/0000:00:03.0/virtio2").as_deref(), Some("0000:00:03.0"));
        assert_eq!(pci_function_of("/sys/devices/pci0000:00/0000:00:01.0/0000:3b:00.1").as_deref(), Some("0000:3b:00.1"));
        assert_eq!(pci_function_of("/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0"), None);
        assert_eq!(pci_function_of("/sys/devices/platform/soc/eth0"), None);
        assert!(!is_pci_address("pci0000:00"));
    }

    #[test]
    fn kernel_names_sort_like_people_count() {
        let mut names = vec!["sdaa", "sdb", "nvme10n1", "sda", "nvme2n1"];
        names.sort_by(|a, b| kernel_name_order(a, b));
        assert_eq!(names, ["sda", "sdb", "sdaa", "nvme2n1", "nvme10n1"]);
    }
}
