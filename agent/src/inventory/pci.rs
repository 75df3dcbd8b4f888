//! The PCI bus: every function of `/sys/bus/pci/devices`, named with a
//! pci.ids database, and the GPUs, FPGAs and accelerators picked out of it.
//!
//! Names come from the database embedded in the `pci-ids` crate, unless a
//! pci.ids file is asked for (`--pci-ids`) or the node has one
//! (`/usr/share/misc/pci.ids`, `/usr/share/hwdata/pci.ids`) whose
//! `Version:` is newer than the embedded one: then that file is asked
//! first and the embedded database fills its gaps. The crate has no parser
//! for an external file, so [`PciIdsFile`] reads vendor, device and
//! subsystem lines (class names always come from the embedded database).
//!
//! What counts as a GPU: a display controller (class 0x03) from NVIDIA
//! (0x10de), AMD (0x1002) or Intel (0x8086), and an AMD processing
//! accelerator (class 0x12: Instinct cards). Display controllers of other
//! vendors (a BMC's ASPEED or Matrox VGA, QEMU's emulated cards) are not
//! GPUs. FPGAs: any function from Xilinx (0x10ee) or Altera (0x1172).
//! Accelerators: the other processing accelerators (class 0x12). FPGAs and
//! accelerators are counted once per slot (an Alveo card shows two
//! functions).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ferrum_api::inventory::{GpuDevice, OtherDevice, PciDevice, PciIdsOrigin, PciIdsSource};
use pci_ids::FromId;

use super::{Fs, InventoryError, is_pci_address};

/// The `Version:` of the pci.ids database compiled into `pci-ids` =0.2.6
/// (its `pciids/pci.ids`). Update with the crate.
pub const EMBEDDED_PCI_IDS_VERSION: &str = "2025.07.11";

/// Where a node keeps its own pci.ids.
const NODE_PCI_IDS: [&str; 2] = ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"];

/// The vendor, device and subsystem names of a pci.ids file.
#[derive(Debug, Default)]
pub struct PciIdsFile {
    version: Option<String>,
    vendors: HashMap<u16, String>,
    devices: HashMap<(u16, u16), String>,
    subsystems: HashMap<(u16, u16, u16, u16), String>,
}

impl PciIdsFile {
    /// Parses pci.ids text: `#` comments (one of them `Version: ...`),
    /// `vvvv  name` vendor lines, `\tdddd  name` device lines,
    /// `\t\tssss ssss  name` subsystem lines; the class section (`C cc  name`
    /// and its indented lines) is skipped, and so is any line of another
    /// shape. Fails when no vendor line was found.
    pub fn parse(text: &str) -> Result<PciIdsFile, String> {
        let mut file = PciIdsFile::default();
        let mut vendor: Option<u16> = None;
        let mut device: Option<u16> = None;
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix('#') {
                if file.version.is_none()
                    && let Some(version) = comment.trim().strip_prefix("Version:")
                {
                    file.version = Some(version.trim().to_string());
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with("C ") {
                // Class section: no vendor is current until the next vendor line.
                vendor = None;
                device = None;
                continue;
            }
            if let Some(rest) = line.strip_prefix("\t\t") {
                let (Some(v), Some(d)) = (vendor, device) else { continue };
                let Some((ids, name)) = split_id_line(rest, 9) else { continue };
                let Some((sv, sd)) = ids.split_once(' ') else { continue };
                if let (Some(sv), Some(sd)) = (hex16(sv), hex16(sd)) {
                    file.subsystems.insert((v, d, sv, sd), name);
                }
            } else if let Some(rest) = line.strip_prefix('\t') {
                let Some(v) = vendor else { continue };
                let Some((id, name)) = split_id_line(rest, 4) else { continue };
                if let Some(id) = hex16(id) {
                    file.devices.insert((v, id), name);
                    device = Some(id);
                }
            } else if let Some((id, name)) = split_id_line(line, 4) {
                match hex16(id) {
                    Some(id) => {
                        file.vendors.insert(id, name);
                        vendor = Some(id);
                        device = None;
                    }
                    None => vendor = None,
                }
            }
        }
        if file.vendors.is_empty() {
            return Err("no vendor lines".to_string());
        }
        Ok(file)
    }

    /// The `Version:` comment, when there is one.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

/// The `Version:` of the comment block that opens a pci.ids file.
fn header_version(text: &str) -> Option<&str> {
    text.lines()
        .take_while(|line| line.starts_with('#') || line.trim().is_empty())
        .find_map(|line| line.trim_start_matches('#').trim().strip_prefix("Version:"))
        .map(str::trim)
}

/// `10de  NVIDIA Corporation` → (`10de`, `NVIDIA Corporation`): an id of
/// `width` characters, whitespace, a non-empty name.
fn split_id_line(line: &str, width: usize) -> Option<(&str, String)> {
    let id = line.get(..width)?;
    let rest = line.get(width..)?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let name = rest.trim();
    if name.is_empty() { None } else { Some((id, name.to_string())) }
}

fn hex16(text: &str) -> Option<u16> {
    if text.len() == 4 { u16::from_str_radix(text, 16).ok() } else { None }
}

/// `2025.07.11` → (2025, 7, 11).
fn parse_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let date = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() { None } else { Some(date) }
}

/// PCI names: a pci.ids file first when there is one, the embedded
/// database otherwise and for what the file lacks.
#[derive(Debug)]
pub struct PciIds {
    file: Option<PciIdsFile>,
    source: PciIdsSource,
}

impl PciIds {
    /// The embedded database alone.
    pub fn embedded() -> PciIds {
        PciIds {
            file: None,
            source: PciIdsSource { origin: PciIdsOrigin::Embedded, path: None, version: Some(EMBEDDED_PCI_IDS_VERSION.to_string()) },
        }
    }

    fn with_file(file: PciIdsFile, path: String) -> PciIds {
        let version = file.version().map(str::to_string);
        PciIds { file: Some(file), source: PciIdsSource { origin: PciIdsOrigin::File, path: Some(path), version } }
    }

    /// The database to name devices with: `explicit` (a path on this
    /// machine, not under the root) whatever its version; else the newest
    /// of the node's own files if newer than the embedded one; else the
    /// embedded one. A node file that cannot be read or parsed is a warning.
    pub(super) fn select(fs: &Fs, explicit: Option<&Path>) -> Result<PciIds, InventoryError> {
        if let Some(path) = explicit {
            let text = std::fs::read_to_string(path).map_err(|source| InventoryError::PciIdsRead { path: path.to_path_buf(), source })?;
            let file = PciIdsFile::parse(&text).map_err(|reason| InventoryError::PciIdsFormat { path: path.to_path_buf(), reason })?;
            return Ok(PciIds::with_file(file, path.display().to_string()));
        }
        // The newest node file newer than the embedded database; only the
        // chosen one is parsed beyond its header.
        let mut best: Option<((u32, u32, u32), &str, String)> = None;
        for path in NODE_PCI_IDS {
            let Some(bytes) = fs.read_bytes(path) else { continue };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let Some(version) = header_version(&text).and_then(parse_version) else { continue };
            let floor = best.as_ref().map(|(v, _, _)| *v).or(parse_version(EMBEDDED_PCI_IDS_VERSION));
            if floor.is_none_or(|floor| version > floor) {
                best = Some((version, path, text));
            }
        }
        let best = match best {
            Some((_, path, text)) => match PciIdsFile::parse(&text) {
                Ok(file) => Some((file, path.to_string())),
                Err(reason) => {
                    fs.warn(format!("{path}: not a pci.ids file ({reason}); ignored"));
                    None
                }
            },
            None => None,
        };
        Ok(match best {
            Some((file, path)) => PciIds::with_file(file, path),
            None => PciIds::embedded(),
        })
    }

    /// Which database this is.
    pub fn source(&self) -> &PciIdsSource {
        &self.source
    }

    /// Vendor name.
    pub fn vendor(&self, vendor: u16) -> Option<String> {
        self.file
            .as_ref()
            .and_then(|f| f.vendors.get(&vendor).cloned())
            .or_else(|| pci_ids::Vendor::from_id(vendor).map(|v| v.name().to_string()))
    }

    /// Device name.
    pub fn device(&self, vendor: u16, device: u16) -> Option<String> {
        self.file
            .as_ref()
            .and_then(|f| f.devices.get(&(vendor, device)).cloned())
            .or_else(|| pci_ids::Device::from_vid_pid(vendor, device).map(|d| d.name().to_string()))
    }

    /// Subsystem name.
    pub fn subsystem(&self, vendor: u16, device: u16, subvendor: u16, subdevice: u16) -> Option<String> {
        self.file.as_ref().and_then(|f| f.subsystems.get(&(vendor, device, subvendor, subdevice)).cloned()).or_else(|| {
            pci_ids::Device::from_vid_pid(vendor, device)?
                .subsystems()
                .find(|s| s.subvendor() == subvendor && s.subdevice() == subdevice)
                .map(|s| s.name().to_string())
        })
    }

    /// Class name of a 24-bit class code: the subclass's, else the class's
    /// (embedded database).
    pub fn class(&self, class: u32) -> Option<String> {
        let [_, base, sub, _] = class.to_be_bytes();
        pci_ids::Subclass::from_cid_sid(base, sub)
            .map(|s| s.name().to_string())
            .or_else(|| pci_ids::Class::from_id(base).map(|c| c.name().to_string()))
    }
}

/// Every PCI function, in address order.
pub(super) fn collect(fs: &Fs, names: &PciIds) -> Vec<PciDevice> {
    let base = "/sys/bus/pci/devices";
    let mut devices = Vec::new();
    for address in fs.list(base).into_iter().filter(|a| is_pci_address(a)) {
        let dir = format!("{base}/{address}");
        let hex = |name: &str| fs.read(&format!("{dir}/{name}")).and_then(|t| u32::from_str_radix(t.trim_start_matches("0x"), 16).ok());
        let id16 = |name: &str| hex(name).and_then(|v| u16::try_from(v).ok());
        let (Some(vendor), Some(device), Some(class)) = (id16("vendor"), id16("device"), hex("class")) else {
            fs.warn(format!("{dir}: no vendor, device or class; skipped"));
            continue;
        };
        let subsystem = id16("subsystem_vendor").zip(id16("subsystem_device"));
        devices.push(PciDevice {
            address: address.clone(),
            class: format!("{class:06x}"),
            vendor_id: format!("{vendor:04x}"),
            device_id: format!("{device:04x}"),
            subsystem_vendor_id: subsystem.map(|(sv, _)| format!("{sv:04x}")),
            subsystem_device_id: subsystem.map(|(_, sd)| format!("{sd:04x}")),
            revision: hex("revision").map(|r| format!("{r:02x}")),
            class_name: names.class(class),
            vendor_name: names.vendor(vendor),
            device_name: names.device(vendor, device),
            subsystem_name: subsystem.and_then(|(sv, sd)| names.subsystem(vendor, device, sv, sd)),
            driver: fs.link_name(&format!("{dir}/driver")),
        });
    }
    devices
}

/// What a PCI function is, for the report's device maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Gpu,
    Fpga,
    Accelerator,
    Other,
}

/// The rule of the module documentation.
pub(super) fn role(vendor: u16, class: u32) -> Role {
    let base = class >> 16;
    match (vendor, base) {
        (0x10de | 0x1002 | 0x8086, 0x03) | (0x1002, 0x12) => Role::Gpu,
        (0x10ee | 0x1172, _) => Role::Fpga,
        (_, 0x12) => Role::Accelerator,
        _ => Role::Other,
    }
}

/// The GPUs (`gpu_devices`) and FPGAs and accelerators (`other_devices`).
pub(super) fn classify(devices: &[PciDevice], names: &PciIds) -> (BTreeMap<String, GpuDevice>, BTreeMap<String, OtherDevice>) {
    let mut gpus = BTreeMap::new();
    let mut others = BTreeMap::new();
    let mut counters: HashMap<&'static str, usize> = HashMap::new();
    let mut slots_seen: Vec<&str> = Vec::new();
    for device in devices {
        let (Ok(vendor), Ok(class)) = (u16::from_str_radix(&device.vendor_id, 16), u32::from_str_radix(&device.class, 16)) else {
            continue;
        };
        let vendor_label =
            short_vendor(vendor).map(str::to_string).or_else(|| names.vendor(vendor)).unwrap_or_else(|| device.vendor_id.clone());
        match role(vendor, class) {
            Role::Gpu => {
                let prefix = match vendor {
                    0x10de => "nvidia",
                    0x1002 => "amd",
                    0x8086 => "intel",
                    _ => "gpu",
                };
                let index = next(&mut counters, prefix);
                gpus.insert(
                    format!("{prefix}{index}"),
                    GpuDevice {
                        model: device.device_name.as_deref().map(marketing_name),
                        vendor: vendor_label,
                        pci_address: device.address.clone(),
                        vendor_id: device.vendor_id.clone(),
                        device_id: device.device_id.clone(),
                    },
                );
            }
            role @ (Role::Fpga | Role::Accelerator) => {
                // One entry per slot: `0000:3b:00.0` and `0000:3b:00.1` are one card.
                let slot = device.address.rsplit_once('.').map(|(slot, _)| slot).unwrap_or(&device.address);
                if slots_seen.contains(&slot) {
                    continue;
                }
                slots_seen.push(slot);
                let kind = if role == Role::Fpga { "fpga" } else { "accelerator" };
                let index = next(&mut counters, kind);
                others.insert(
                    format!("{kind}{index}"),
                    OtherDevice {
                        kind: kind.to_string(),
                        model: device.device_name.clone(),
                        vendor: vendor_label,
                        count: 1,
                        pci_address: device.address.clone(),
                        vendor_id: device.vendor_id.clone(),
                        device_id: device.device_id.clone(),
                    },
                );
            }
            Role::Other => {}
        }
    }
    (gpus, others)
}

fn next(counters: &mut HashMap<&'static str, usize>, key: &'static str) -> usize {
    let counter = counters.entry(key).or_insert(0);
    let index = *counter;
    *counter += 1;
    index
}

/// The vendor spellings of Grid'5000 reference descriptions.
fn short_vendor(vendor: u16) -> Option<&'static str> {
    Some(match vendor {
        0x10de => "Nvidia",
        0x1002 => "AMD",
        0x8086 => "Intel",
        0x10ee => "Xilinx",
        0x1172 => "Altera",
        _ => return None,
    })
}

/// `GH100 [H100 SXM5 80GB]` → `H100 SXM5 80GB`; a name without brackets is
/// kept whole.
pub(super) fn marketing_name(name: &str) -> String {
    match (name.find('['), name.rfind(']')) {
        (Some(open), Some(close)) if open < close => {
            let inner = name[open + 1..close].trim();
            if inner.is_empty() { name.to_string() } else { inner.to_string() }
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#\n#\tList of PCI ID's\n#\n#\tVersion: 2031.01.02\n#\tDate:    2031-01-02 03:15:02\n#\n\
        # Syntax:\n# vendor  vendor_name\n\
        10de  NVIDIA Corporation\n\
        \t2330  GH100 [H100 SXM5 80GB]\n\
        \t\t10de 16c1  H100 SXM5 80GB\n\
        \t9999  GX999 [Future 999 192GB]\n\
        # a comment between entries\n\
        10ee  Xilinx Corporation\n\
        \t5000  Alveo U200 XDMA Platform\n\
        zzzz  not an id line\n\
        \tabcd  device of a bad vendor\n\
        \n\
        C 03  Display controller\n\
        \t02  3D controller\n\
        \t\t00  not a subsystem\n";

    #[test]
    fn pci_ids_file_gives_vendors_devices_subsystems_and_version() {
        let file = PciIdsFile::parse(SAMPLE).expect("parses");
        assert_eq!(file.version(), Some("2031.01.02"));
        assert_eq!(file.vendors.get(&0x10de).map(String::as_str), Some("NVIDIA Corporation"));
        assert_eq!(file.devices.get(&(0x10de, 0x9999)).map(String::as_str), Some("GX999 [Future 999 192GB]"));
        assert_eq!(file.subsystems.get(&(0x10de, 0x2330, 0x10de, 0x16c1)).map(String::as_str), Some("H100 SXM5 80GB"));
        assert_eq!(file.devices.get(&(0x10ee, 0x5000)).map(String::as_str), Some("Alveo U200 XDMA Platform"));
        // The bad vendor line resets the vendor: its devices are not filed under Xilinx.
        assert!(!file.devices.contains_key(&(0x10ee, 0xabcd)));
        // Class lines are not devices or subsystems.
        assert_eq!(file.vendors.len(), 2);
        assert_eq!(file.devices.len(), 3);
        assert_eq!(file.subsystems.len(), 1);
    }

    #[test]
    fn pci_ids_file_without_vendors_is_refused() {
        assert!(PciIdsFile::parse("# only comments\n").is_err());
        assert!(PciIdsFile::parse("<html>not found</html>\n").is_err());
    }

    #[test]
    fn file_names_come_first_and_the_embedded_database_fills_gaps() {
        let names = PciIds::with_file(PciIdsFile::parse(SAMPLE).expect("parses"), "test".to_string());
        assert_eq!(names.device(0x10de, 0x9999).as_deref(), Some("GX999 [Future 999 192GB]"));
        // Not in the file: from the embedded database.
        assert_eq!(names.device(0x10de, 0x15f8).as_deref(), Some("GP100GL [Tesla P100 PCIe 16GB]"));
        assert_eq!(names.vendor(0x1af4).as_deref(), Some("Red Hat, Inc."));
        assert_eq!(names.class(0x030200).as_deref(), Some("3D controller"));
        assert_eq!(names.source().version.as_deref(), Some("2031.01.02"));
    }

    #[test]
    fn embedded_database_knows_the_accelerators_of_the_fixtures() {
        let names = PciIds::embedded();
        assert_eq!(names.device(0x10de, 0x2330).as_deref(), Some("GH100 [H100 SXM5 80GB]"));
        assert_eq!(names.device(0x10ee, 0x5000).as_deref(), Some("Alveo U200 XDMA Platform"));
        assert_eq!(names.class(0x120000).as_deref(), Some("Processing accelerators"));
        assert!(parse_version(EMBEDDED_PCI_IDS_VERSION).is_some());
    }

    #[test]
    fn the_header_gives_the_version() {
        assert_eq!(header_version(SAMPLE), Some("2031.01.02"));
        assert_eq!(header_version("10de  NVIDIA\n#\tVersion: 2031.01.02\n"), None);
    }

    #[test]
    fn versions_compare_as_dates() {
        assert!(parse_version("2025.07.11") > parse_version("2023.04.10"));
        assert!(parse_version("2025.10.01") > parse_version("2025.07.11"));
        assert_eq!(parse_version("2025.07"), None);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn roles_follow_vendor_and_class() {
        assert_eq!(role(0x10de, 0x030200), Role::Gpu);
        assert_eq!(role(0x10de, 0x030000), Role::Gpu);
        assert_eq!(role(0x1002, 0x120000), Role::Gpu);
        assert_eq!(role(0x1a03, 0x030000), Role::Other); // ASPEED BMC VGA
        assert_eq!(role(0x1234, 0x030000), Role::Other); // QEMU stdvga
        assert_eq!(role(0x10ee, 0x058000), Role::Fpga);
        assert_eq!(role(0x1da3, 0x120000), Role::Accelerator);
        assert_eq!(role(0x10de, 0x040300), Role::Other); // a GPU's audio function
    }

    #[test]
    fn marketing_names_are_the_bracketed_part() {
        assert_eq!(marketing_name("GH100 [H100 SXM5 80GB]"), "H100 SXM5 80GB");
        assert_eq!(marketing_name("Aldebaran/MI200 [Instinct MI210]"), "Instinct MI210");
        assert_eq!(marketing_name("Alveo U200 XDMA Platform"), "Alveo U200 XDMA Platform");
        assert_eq!(marketing_name("odd ] [ name"), "odd ] [ name");
    }
}
