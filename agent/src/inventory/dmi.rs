//! Firmware tables: BIOS and machine identity from `/sys/class/dmi/id`, and
//! memory modules from the raw SMBIOS type 17 entries in
//! `/sys/firmware/dmi/entries` (readable by root only). Many VMs have no
//! DMI at all: then everything here is absent, silently.

use ferrum_api::inventory::{Bios, Chassis, MemoryDevice};

use super::Fs;

const ID: &str = "/sys/class/dmi/id";
const ENTRIES: &str = "/sys/firmware/dmi/entries";

/// BIOS and chassis; each `None` when none of its fields could be read.
pub(super) fn firmware(fs: &Fs) -> (Option<Bios>, Option<Chassis>) {
    if !fs.exists(ID) {
        return (None, None);
    }
    let field = |name: &str| fs.read(&format!("{ID}/{name}"));
    let bios = Bios { vendor: field("bios_vendor"), version: field("bios_version"), release_date: field("bios_date") };
    let chassis = Chassis { manufacturer: field("sys_vendor"), name: field("product_name"), serial: field("product_serial") };
    let bios = (bios != Bios::default()).then_some(bios);
    let chassis = (chassis != Chassis::default()).then_some(chassis);
    (bios, chassis)
}

/// Installed memory modules (empty slots left out), in SMBIOS order.
pub(super) fn memory_devices(fs: &Fs) -> Vec<MemoryDevice> {
    if !fs.exists(ENTRIES) {
        return Vec::new();
    }
    let mut entries: Vec<(u32, String)> = fs
        .list(ENTRIES)
        .into_iter()
        .filter_map(|name| {
            let index = name.strip_prefix("17-")?.parse().ok()?;
            Some((index, name))
        })
        .collect();
    entries.sort();
    let mut devices = Vec::new();
    for (_, name) in entries {
        let path = format!("{ENTRIES}/{name}/raw");
        match fs.try_read_bytes(&path) {
            Ok(raw) => devices.extend(parse_memory_device(&raw)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                fs.warn(format!("{ENTRIES}: {e} (memory modules need root)"));
                return Vec::new();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => fs.warn(format!("{path}: {e}")),
        }
    }
    devices
}

/// Decodes one raw SMBIOS type 17 (Memory Device) structure; `None` for an
/// empty slot, an unknown size, or a malformed structure.
///
/// Layout (SMBIOS 3.x, 7.18): 0x00 type, 0x01 length of the formatted
/// area, 0x0C size (u16: 0 empty, 0xFFFF unknown, 0x7FFF see 0x1C; bit 15
/// set means KiB, else MiB), 0x10 device locator (string number), 0x12
/// memory type, 0x13 type detail (u16, bit 12: non-volatile), 0x1C extended
/// size (u32, MiB); strings follow the formatted area, NUL-terminated,
/// numbered from 1.
pub(super) fn parse_memory_device(raw: &[u8]) -> Option<MemoryDevice> {
    if raw.len() < 0x15 || raw[0] != 17 {
        return None;
    }
    let length = usize::from(raw[1]);
    if length < 0x15 || raw.len() < length {
        return None;
    }
    let word = |at: usize| u16::from_le_bytes([raw[at], raw[at + 1]]);
    let size = match word(0x0C) {
        0 | 0xFFFF => return None,
        0x7FFF => {
            if length < 0x20 {
                return None;
            }
            let extended = u32::from_le_bytes([raw[0x1C], raw[0x1D], raw[0x1E], raw[0x1F]]) & 0x7FFF_FFFF;
            u64::from(extended) << 20
        }
        s if s & 0x8000 != 0 => u64::from(s & 0x7FFF) << 10,
        s => u64::from(s) << 20,
    };
    let strings: Vec<&[u8]> = raw[length..].split(|b| *b == 0).take_while(|s| !s.is_empty()).collect();
    let string = |number: u8| -> Option<String> {
        let s = strings.get(usize::from(number).checked_sub(1)?)?;
        super::non_empty(&String::from_utf8_lossy(s))
    };
    let locator = string(raw[0x10]).unwrap_or_else(|| "unknown".to_string());
    let non_volatile = word(0x13) & (1 << 12) != 0 || raw[0x12] == 0x1F;
    Some(MemoryDevice { device: dimm_name(&locator), size, technology: if non_volatile { "pmem" } else { "dram" }.to_string() })
}

/// `A1` → `dimm_a1`; `DIMM 0` → `dimm_0`; `CPU1_DIMM_A1` → `dimm_cpu1_dimm_a1`.
fn dimm_name(locator: &str) -> String {
    let mut name: String = locator.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    name = name.trim_matches('_').to_string();
    if name.starts_with("dimm") { name } else { format!("dimm_{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A type 17 structure of SMBIOS 3.x length (0x28) with the given size
    /// word, extended size, type detail and locator.
    fn type17(size: u16, extended: u32, detail: u16, locator: &str) -> Vec<u8> {
        let mut raw = vec![0u8; 0x28];
        raw[0] = 17;
        raw[1] = 0x28;
        raw[0x0C..0x0E].copy_from_slice(&size.to_le_bytes());
        raw[0x10] = 1;
        raw[0x11] = 2;
        raw[0x12] = 0x1A;
        raw[0x13..0x15].copy_from_slice(&detail.to_le_bytes());
        raw[0x1C..0x20].copy_from_slice(&extended.to_le_bytes());
        raw.extend_from_slice(locator.as_bytes());
        raw.push(0);
        raw.extend_from_slice(b"NODE 1\0\0");
        raw
    }

    #[test]
    fn memory_devices_decode_sizes_and_locators() {
        let dimm = parse_memory_device(&type17(16384, 0, 0x80, "A1")).expect("a 16 GiB DIMM");
        assert_eq!(dimm, MemoryDevice { device: "dimm_a1".into(), size: 16 << 30, technology: "dram".into() });
        let big = parse_memory_device(&type17(0x7FFF, 65536, 0, "DIMM_B2")).expect("a 64 GiB DIMM");
        assert_eq!((big.device.as_str(), big.size), ("dimm_b2", 64 << 30));
        let kib = parse_memory_device(&type17(0x8000 | 512, 0, 0, "DIMM 0")).expect("a 512 KiB module");
        assert_eq!((kib.device.as_str(), kib.size), ("dimm_0", 512 << 10));
        let pmem = parse_memory_device(&type17(0x7FFF, 131072, 1 << 12, "A7")).expect("a PMem module");
        assert_eq!(pmem.technology, "pmem");
    }

    #[test]
    fn empty_slots_and_garbage_are_skipped() {
        assert_eq!(parse_memory_device(&type17(0, 0, 0, "A2")), None);
        assert_eq!(parse_memory_device(&type17(0xFFFF, 0, 0, "A2")), None);
        assert_eq!(parse_memory_device(&[17, 0x28, 0]), None);
        let mut other = type17(16384, 0, 0, "A1");
        other[0] = 16;
        assert_eq!(parse_memory_device(&other), None);
    }
}
