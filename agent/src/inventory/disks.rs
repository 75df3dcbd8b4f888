//! Disks: every `/sys/block/*` that is a real disk, with size, model,
//! vendor, serial, firmware, rotational flag, interface guess and the
//! `/dev/disk/by-id` and `by-path` links when udev made them (a ramdisk
//! without udev has none).
//!
//! Left out: devices without a `device` link (virtual: dm-, md, zram,
//! loop, ...), the kinds named in [`SKIPPED_PREFIXES`] (optical drives,
//! RAM-backed and network block devices), and disks of size 0 (an empty
//! card reader, a BMC's unmounted virtual media).

use ferrum_api::inventory::StorageDevice;

use super::{Fs, kernel_name_order, non_empty};

/// Block devices that are never disks of the node, even with a `device`
/// link.
pub(super) const SKIPPED_PREFIXES: [&str; 11] = ["loop", "ram", "zram", "dm-", "sr", "md", "nbd", "fd", "drbd", "rbd", "zd"];

pub(super) fn collect(fs: &Fs) -> Vec<StorageDevice> {
    let mut names: Vec<String> = fs
        .list("/sys/block")
        .into_iter()
        .filter(|name| !SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p)))
        .filter(|name| fs.exists(&format!("/sys/block/{name}/device")))
        .collect();
    names.sort_by(|a, b| kernel_name_order(a, b));

    let by_id = links(fs, "/dev/disk/by-id");
    let by_path = links(fs, "/dev/disk/by-path");

    let mut disks = Vec::new();
    for name in names {
        let block = format!("/sys/block/{name}");
        let size = fs.read(&format!("{block}/size")).and_then(|s| s.parse::<u64>().ok()).map(|sectors| sectors.saturating_mul(512));
        if size == Some(0) {
            continue;
        }
        let device = format!("{block}/device");
        let model = fs.read(&format!("{device}/model"));
        let raw_vendor = fs.read(&format!("{device}/vendor"));
        let ata = raw_vendor.as_deref() == Some("ATA");
        let vendor = raw_vendor.filter(|v| !v.starts_with("0x") && v != "ATA");
        let serial = fs
            .read(&format!("{device}/serial"))
            .or_else(|| fs.read(&format!("{block}/serial")))
            .or_else(|| fs.try_read_bytes(&format!("{device}/vpd_pg80")).ok().and_then(|page| serial_from_vpd80(&page)));
        let firmware_version = fs.read(&format!("{device}/firmware_rev")).or_else(|| fs.read(&format!("{device}/rev")));
        let storage = fs.read(&format!("{block}/queue/rotational")).map(|r| if r == "1" { "HDD" } else { "SSD" }.to_string());
        let interface = fs.canonical(&block).and_then(|path| interface_of(&name, &path, ata)).map(str::to_string);
        let partition_table = partition_table(fs, &name);
        disks.push(StorageDevice {
            id: format!("disk{}", disks.len()),
            by_id: pick(&by_id, &name, &["wwn-", "nvme-eui.", "nvme-"]).map(|l| format!("/dev/disk/by-id/{l}")),
            by_path: pick(&by_path, &name, &[]).map(|l| format!("/dev/disk/by-path/{l}")),
            device: name,
            size,
            model,
            vendor,
            serial,
            firmware_version,
            storage,
            interface,
            partition_table,
        });
    }
    disks
}

/// The partition table at the start of the disk: `gpt` (an `EFI PART`
/// header in sector 1), `dos` (the 0x55AA boot signature with a non-empty
/// partition entry), or `None` (blank, wiped, or unreadable: `/dev` is not
/// there in a test tree). Reads 1 KiB, whatever the disk's size.
fn partition_table(fs: &Fs, name: &str) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 1024];
    let mut file = std::fs::File::open(fs.host_path(&format!("/dev/{name}"))).ok()?;
    file.read_exact(&mut head).ok()?;
    table_kind(&head).map(str::to_string)
}

/// What the first two 512-byte sectors of a disk say.
fn table_kind(head: &[u8; 1024]) -> Option<&'static str> {
    if &head[512..520] == b"EFI PART" {
        return Some("gpt");
    }
    let signed = head[510] == 0x55 && head[511] == 0xaa;
    // Four 16-byte entries from 446; an entry with a type byte is in use.
    let used = (0..4).any(|i| head[446 + i * 16 + 4] != 0);
    (signed && used).then_some("dos")
}

/// (link name, target's kernel name) for every link in a `/dev/disk/by-*`
/// directory.
fn links(fs: &Fs, dir: &str) -> Vec<(String, String)> {
    if !fs.exists(dir) {
        return Vec::new();
    }
    fs.list(dir).into_iter().filter_map(|link| Some((link.clone(), fs.link_name(&format!("{dir}/{link}"))?))).collect()
}

/// The link to `disk`, the first of the preferred prefixes winning, else
/// the first in name order.
fn pick(links: &[(String, String)], disk: &str, preferred: &[&str]) -> Option<String> {
    let mine: Vec<&String> = links.iter().filter(|(_, target)| target == disk).map(|(link, _)| link).collect();
    preferred.iter().find_map(|prefix| mine.iter().find(|l| l.starts_with(prefix))).or(mine.first()).map(|l| (*l).clone())
}

/// The interface a disk hangs on, guessed from its sysfs path (`name` helps
/// for NVMe, whose namespaces sit under the controller; `ata`, a SCSI
/// vendor of `ATA`, marks a SATA disk behind a SAS HBA).
pub(super) fn interface_of(name: &str, path: &str, ata: bool) -> Option<&'static str> {
    let has = |needle: &str| path.contains(needle);
    if name.starts_with("nvme") || has("/nvme/") {
        Some("NVME")
    } else if has("/usb") {
        Some("USB")
    } else if ata || has("/ata") {
        Some("SATA")
    } else if has("/end_device-") || has("/sas_") || has("/expander-") {
        Some("SAS")
    } else if has("/mmc") {
        Some("MMC")
    } else if has("/virtio") && !has("/host") {
        Some("VIRTIO")
    } else if has("/host") || has("/target") {
        Some("SCSI")
    } else {
        None
    }
}

/// The serial number in a SCSI VPD page 0x80 (Unit Serial Number): 4 header
/// bytes (page code at 1, length at 2..4), then ASCII.
pub(super) fn serial_from_vpd80(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let end = (4 + length).min(page.len());
    non_empty(&String::from_utf8_lossy(&page[4..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_tables_are_recognised_and_wiped_disks_have_none() {
        let mut head = [0u8; 1024];
        assert_eq!(table_kind(&head), None, "a blank disk");
        head[510] = 0x55;
        head[511] = 0xaa;
        assert_eq!(table_kind(&head), None, "a boot signature without partitions");
        head[446 + 4] = 0x83;
        assert_eq!(table_kind(&head), Some("dos"));
        head[512..520].copy_from_slice(b"EFI PART");
        assert_eq!(table_kind(&head), Some("gpt"));
    }

    #[test]
    fn interfaces_are_guessed_from_sysfs_paths() {
        let cases = [
            ("nvme0n1", "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", Some("NVME")),
            ("vda", "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", Some("VIRTIO")),
            ("sda", "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", Some("SATA")),
            ("sdb", "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb", Some("USB")),
            (
                "sdc",
                "/sys/devices/pci0000:17/0000:17:00.0/0000:18:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0/block/sdc",
                Some("SAS"),
            ),
            ("sdd", "/sys/devices/pci0000:00/0000:00:05.0/virtio3/host2/target2:0:0/2:0:0:0/block/sdd", Some("SCSI")),
            ("sde", "/sys/devices/pci0000:17/0000:17:00.0/0000:18:00.0/host0/target0:2:0/0:2:0:0/block/sde", Some("SCSI")),
            ("mmcblk0", "/sys/devices/platform/soc/mmc0/mmc0:0001/block/mmcblk0", Some("MMC")),
            ("xyz", "/sys/devices/platform/xyz", None),
        ];
        for (name, path, expected) in cases {
            assert_eq!(interface_of(name, path, false), expected, "{path}");
        }
        // A SATA disk behind a SAS HBA says `ATA` as its SCSI vendor.
        let behind_hba = "/sys/devices/pci0000:17/0000:17:00.0/0000:18:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0/block/sda";
        assert_eq!(interface_of("sda", behind_hba, true), Some("SATA"));
    }

    #[test]
    fn vpd_page_80_gives_the_serial() {
        let mut page = vec![0x00, 0x80, 0x00, 0x0a];
        page.extend_from_slice(b"  Z1Z2Z3Z4");
        assert_eq!(serial_from_vpd80(&page).as_deref(), Some("Z1Z2Z3Z4"));
        assert_eq!(serial_from_vpd80(&[0x00, 0x83, 0, 0]), None);
        assert_eq!(serial_from_vpd80(&[0x00, 0x80, 0x00, 0x00]), None);
    }

    #[test]
    fn by_id_prefers_wwn_links() {
        let links = vec![
            ("ata-SSDSC2KG480G7R_X".to_string(), "sda".to_string()),
            ("wwn-0x55cd2e414f2b2e47".to_string(), "sda".to_string()),
            ("wwn-0x55cd2e414f2b2e47-part1".to_string(), "sda1".to_string()),
        ];
        assert_eq!(pick(&links, "sda", &["wwn-"]).as_deref(), Some("wwn-0x55cd2e414f2b2e47"));
        assert_eq!(pick(&links, "sda", &[]).as_deref(), Some("ata-SSDSC2KG480G7R_X"));
        assert_eq!(pick(&links, "sdb", &["wwn-"]), None);
    }
}
