//! The node agent's hardware inventory report (`ferrum-agent inventory`) and
//! the differences the check against a Grid'5000 reference description
//! answers.
//!
//! The report mirrors the shape of a Grid'5000 reference node description
//! (`processor`, `architecture`, `main_memory`, `storage_devices`,
//! `network_adapters`, `gpu_devices`, `other_devices`, `bios`, `chassis`)
//! with the same field names and units (bytes, bits per second, Hz), so the
//! two compare field by field. A few facts the reference does not have are
//! added (`schema_version`, `agent_version`, `pci_devices`,
//! `pci_ids_source`, `warnings`, and some extra fields noted as such).
//! Facts the agent could not read are absent, never guessed.
//!
//! The check itself (which facts of a reference a report contradicts) is
//! crate `ferrum-check`; its answer, [`Difference`], is here because the
//! API shows it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The version of the report's shape; bumped when a field changes meaning.
pub const INVENTORY_SCHEMA_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

/// What the agent found on a node, in the shape of a Grid'5000 reference
/// node description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InventoryReport {
    /// The report's shape version ([`INVENTORY_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The version of the `ferrum-agent` that wrote the report.
    pub agent_version: String,
    /// The CPU model (of the first CPU; nodes have one model).
    pub processor: Processor,
    /// Counts of sockets, cores and hardware threads.
    pub architecture: Architecture,
    /// How much RAM the node has.
    pub main_memory: MainMemory,
    /// Installed memory modules, from SMBIOS; empty when SMBIOS is
    /// unreadable (no DMI, not root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_devices: Vec<MemoryDevice>,
    /// Physical disks, in kernel name order (`id` `disk0`, `disk1`, ...).
    #[serde(default)]
    pub storage_devices: Vec<StorageDevice>,
    /// Physical network interfaces (those with a device behind them), in
    /// kernel name order.
    #[serde(default)]
    pub network_adapters: Vec<NetworkAdapter>,
    /// GPUs keyed like the reference: vendor prefix and index (`nvidia0`,
    /// `amd0`, `intel0`, `gpu0` for other vendors), in PCI address order.
    #[serde(default)]
    pub gpu_devices: BTreeMap<String, GpuDevice>,
    /// FPGAs and other accelerators keyed by type and index (`fpga0`,
    /// `accelerator0`), one per PCI slot, in PCI address order.
    #[serde(default)]
    pub other_devices: BTreeMap<String, OtherDevice>,
    /// Firmware, from DMI; absent when the node has no DMI (many VMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bios: Option<Bios>,
    /// The machine itself, from DMI; absent when the node has no DMI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis: Option<Chassis>,
    /// Extra (not in the reference): every PCI function, in address order.
    #[serde(default)]
    pub pci_devices: Vec<PciDevice>,
    /// Extra: which pci.ids database named the PCI devices.
    pub pci_ids_source: PciIdsSource,
    /// Extra: problems met while collecting (a file that exists but could
    /// not be read, a file that did not parse). Missing files are not
    /// problems and are not listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The CPU, as in the reference's `processor`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Processor {
    /// Family, the first two words of the cleaned model name: `Intel Xeon`,
    /// `AMD EPYC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The rest of the cleaned model name: `Gold 6126`, `7352`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Intel`, `AMD`, or the raw `vendor_id` of `/proc/cpuinfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// The full model name as the CPU reports it (`/proc/cpuinfo`'s
    /// `model name`), e.g. `Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_description: Option<String>,
    /// Nominal clock in Hz: from the model name (`@ 2.60GHz`), else cpufreq's
    /// base or maximum frequency, else `cpu MHz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_speed: Option<u64>,
    /// `x86-64`, `aarch64`, ... (the architecture the agent was built for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_set: Option<String>,
    /// L1 data cache per core, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_l1d: Option<u64>,
    /// L1 instruction cache per core, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_l1i: Option<u64>,
    /// L2 cache as seen by CPU 0, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_l2: Option<u64>,
    /// L3 cache as seen by CPU 0, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_l3: Option<u64>,
}

/// Sockets, cores and threads, as in the reference's `architecture`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Architecture {
    /// Number of sockets (distinct physical package ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nb_procs: Option<u32>,
    /// Number of physical cores, all sockets together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nb_cores: Option<u32>,
    /// Number of hardware threads (logical CPUs), all sockets together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nb_threads: Option<u32>,
    /// `x86_64`, `aarch64`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_type: Option<String>,
}

/// RAM, as in the reference's `main_memory`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MainMemory {
    /// Installed RAM in bytes, from the best source available (see
    /// `ram_size_source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_size: Option<u64>,
    /// Extra: where `ram_size` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_size_source: Option<MemorySource>,
    /// Extra: `MemTotal` of `/proc/meminfo` in bytes (what the kernel
    /// manages: installed RAM less firmware and kernel reservations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total: Option<u64>,
}

/// Where a RAM size comes from, most faithful first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemorySource {
    /// The sum of the SMBIOS memory devices (DIMMs) that are DRAM.
    Smbios,
    /// The online memory blocks of `/sys/devices/system/memory`.
    MemoryBlocks,
    /// `MemTotal` of `/proc/meminfo`.
    Meminfo,
}

/// A memory module, as in the reference's `memory_devices`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemoryDevice {
    /// `dimm_` and the firmware's locator, lowercase (`A1` → `dimm_a1`).
    pub device: String,
    /// Size in bytes.
    pub size: u64,
    /// `dram`, or `pmem` for non-volatile modules.
    pub technology: String,
}

/// A disk, as in the reference's `storage_devices`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StorageDevice {
    /// `disk0`, `disk1`, ... in kernel name order.
    pub id: String,
    /// Extra: the kernel name (`sda`, `nvme0n1`, `vda`).
    pub device: String,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Model string of the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vendor string of the device (SCSI vendor; `ATA` is a transport, not a
    /// vendor, and is left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Serial number when the kernel exposes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Firmware revision when the kernel exposes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    /// `HDD` (rotational) or `SSD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// `NVME`, `SATA`, `SAS`, `SCSI`, `USB`, `VIRTIO` or `MMC`, guessed from
    /// the device's sysfs path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// `/dev/disk/by-id/...` link to the disk (prefers `wwn-`), when udev made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_id: Option<String>,
    /// `/dev/disk/by-path/...` link to the disk, when udev made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_path: Option<String>,
    /// Extra: the partition table found on the disk (`gpt` or `dos`), absent
    /// on a blank or wiped disk. Not compared with the reference: a reset
    /// checks it is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_table: Option<String>,
}

/// A physical network interface, as in the reference's `network_adapters`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkAdapter {
    /// The kernel's interface name (`eth0`, `ens5f0`).
    pub device: String,
    /// MAC address, lowercase `aa:bb:cc:dd:ee:ff` (longer for InfiniBand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Kernel driver (`i40e`, `virtio_net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Link rate in bits per second; absent when the link is down or the
    /// driver does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// `Ethernet` or `InfiniBand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Device name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vendor name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Extra: PCI address of the function behind the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_address: Option<String>,
    /// Number of SR-IOV virtual functions the device supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sriov_totalvfs: Option<u32>,
}

/// A GPU, as in the reference's `gpu_devices` values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuDevice {
    /// Marketing name from pci.ids: the bracketed part of the device name
    /// when there is one (`GH100 [H100 SXM5 80GB]` → `H100 SXM5 80GB`),
    /// else the whole name; absent when pci.ids does not know the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `Nvidia`, `AMD`, `Intel`, or the pci.ids vendor name.
    pub vendor: String,
    /// Extra: PCI address.
    pub pci_address: String,
    /// Extra: PCI vendor id, 4 lowercase hex digits.
    pub vendor_id: String,
    /// Extra: PCI device id, 4 lowercase hex digits.
    pub device_id: String,
}

/// An FPGA or another accelerator, as in the reference's `other_devices`
/// values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OtherDevice {
    /// `fpga` or `accelerator`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Device name from pci.ids (of the slot's first function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `Xilinx`, `Altera`, or the pci.ids vendor name.
    pub vendor: String,
    /// Number of devices this entry stands for (1: one entry per slot).
    pub count: u32,
    /// Extra: PCI address of the slot's first function.
    pub pci_address: String,
    /// Extra: PCI vendor id, 4 lowercase hex digits.
    pub vendor_id: String,
    /// Extra: PCI device id, 4 lowercase hex digits.
    pub device_id: String,
}

/// Firmware, as in the reference's `bios`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bios {
    /// `bios_vendor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// `bios_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `bios_date`, as the firmware writes it (`09/12/2024`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_date: Option<String>,
}

/// The machine, as in the reference's `chassis`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Chassis {
    /// DMI `sys_vendor` (`Dell Inc.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// DMI `product_name` (`PowerEdge R740`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// DMI `product_serial` (readable by root only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A PCI function (extra: not in the reference).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PciDevice {
    /// `0000:3b:00.0`.
    pub address: String,
    /// Class code, 6 lowercase hex digits (`030200`).
    pub class: String,
    /// Vendor id, 4 lowercase hex digits.
    pub vendor_id: String,
    /// Device id, 4 lowercase hex digits.
    pub device_id: String,
    /// Subsystem vendor id, 4 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_vendor_id: Option<String>,
    /// Subsystem device id, 4 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_device_id: Option<String>,
    /// Revision, 2 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Class name (`3D controller`), from the embedded pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Vendor name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
    /// Device name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// Subsystem name from pci.ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem_name: Option<String>,
    /// Bound kernel driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// Which pci.ids database named the devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PciIdsSource {
    /// `embedded` (compiled into the agent) or `file` (a pci.ids on the node
    /// or given with `--pci-ids`, asked first, the embedded one filling gaps).
    pub origin: PciIdsOrigin,
    /// The file, for `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The database's `Version:` line (`2025.07.11`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// See [`PciIdsSource::origin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PciIdsOrigin {
    /// The database compiled into the agent.
    Embedded,
    /// A pci.ids file.
    File,
}

// ---------------------------------------------------------------------------
// The check's answer (the check itself is crate `ferrum-check`)
// ---------------------------------------------------------------------------

/// One fact of the reference that the report contradicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Difference {
    /// The field, in the reference's names: `gpu_devices.count`,
    /// `main_memory.ram_size`, `network_adapters[eth0].mac`,
    /// `storage_devices[disk2].size`, ...
    pub field: String,
    /// What the reference says.
    pub expected: Value,
    /// What the agent found (`null`: nothing).
    pub found: Value,
    /// One line for people: "reference says 4 GPUs NVIDIA A100-SXM4-40GB,
    /// agent found 3".
    pub message: String,
}
