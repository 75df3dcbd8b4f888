//! RAM as the kernel sees it: `MemTotal` of `/proc/meminfo` and the online
//! blocks of `/sys/devices/system/memory` (which add up to the installed
//! amount more closely than `MemTotal`, which lacks what firmware and the
//! kernel reserve). The SMBIOS module list is [`super::dmi`]'s; choosing
//! the reported size is the caller's.

use super::Fs;

/// What the kernel says about RAM.
#[derive(Debug, Default)]
pub(super) struct KernelMemory {
    /// `MemTotal`, bytes.
    pub(super) mem_total: Option<u64>,
    /// Online memory blocks × block size, bytes.
    pub(super) online_blocks: Option<u64>,
}

pub(super) fn collect(fs: &Fs) -> KernelMemory {
    let mem_total = fs.read("/proc/meminfo").and_then(|text| mem_total(&text));
    KernelMemory { mem_total, online_blocks: online_blocks(fs) }
}

/// `MemTotal:  24683656 kB` → bytes.
pub(super) fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

fn online_blocks(fs: &Fs) -> Option<u64> {
    let base = "/sys/devices/system/memory";
    // `block_size_bytes` is hexadecimal without a prefix (`8000000`).
    let block_size = u64::from_str_radix(fs.read(&format!("{base}/block_size_bytes"))?.trim_start_matches("0x"), 16).ok()?;
    let online = fs
        .list(base)
        .into_iter()
        .filter(|name| name.strip_prefix("memory").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|name| match fs.read_quiet(&format!("{base}/{name}/online")) {
            Some(flag) => flag == "1",
            None => fs.read_quiet(&format!("{base}/{name}/state")).as_deref() == Some("online"),
        })
        .count();
    if online == 0 {
        return None;
    }
    block_size.checked_mul(u64::try_from(online).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       24683656 kB\nMemFree:        13416784 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_683_656 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
    }
}
