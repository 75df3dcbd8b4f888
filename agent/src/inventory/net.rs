//! Network interfaces: every `/sys/class/net/*` with a `device` link (an
//! interface without one is virtual: loopback, bridges, bonds, ifb, veth,
//! tunnels), with MAC, driver, link rate, type, and the model and vendor of
//! the PCI function behind it.

use ferrum_api::inventory::{NetworkAdapter, PciDevice};

use super::{Fs, kernel_name_order, pci_function_of};

pub(super) fn collect(fs: &Fs, pci: &[PciDevice]) -> Vec<NetworkAdapter> {
    let mut names: Vec<String> =
        fs.list("/sys/class/net").into_iter().filter(|n| n != "lo" && fs.exists(&format!("/sys/class/net/{n}/device"))).collect();
    names.sort_by(|a, b| kernel_name_order(a, b));

    names
        .into_iter()
        .map(|name| {
            let dir = format!("/sys/class/net/{name}");
            let pci_address = fs.canonical(&format!("{dir}/device")).and_then(|path| pci_function_of(&path));
            let function = pci_address.as_ref().and_then(|a| pci.iter().find(|d| &d.address == a));
            NetworkAdapter {
                mac: fs.read(&format!("{dir}/address")).map(|m| m.to_ascii_lowercase()),
                driver: fs.link_name(&format!("{dir}/device/driver")),
                // `speed` answers EINVAL on a down link and -1 when unknown.
                rate: fs.read_quiet(&format!("{dir}/speed")).and_then(|s| rate_from_speed(&s)),
                interface: fs.read(&format!("{dir}/type")).and_then(|t| link_type(&t)).map(str::to_string),
                model: function.and_then(|f| f.device_name.clone()),
                vendor: function.and_then(|f| f.vendor_name.clone()),
                sriov_totalvfs: pci_address
                    .as_ref()
                    .and_then(|a| fs.read_quiet(&format!("/sys/bus/pci/devices/{a}/sriov_totalvfs")))
                    .and_then(|n| n.parse().ok()),
                pci_address,
                device: name,
            }
        })
        .collect()
}

/// `speed` (Mbit/s) → bits per second; `None` for unknown (`-1`, 0, junk).
pub(super) fn rate_from_speed(speed: &str) -> Option<u64> {
    let mbits: i64 = speed.trim().parse().ok()?;
    let mbits = u64::try_from(mbits).ok().filter(|m| *m > 0 && *m != u64::from(u32::MAX))?;
    mbits.checked_mul(1_000_000)
}

/// ARPHRD type → the reference's `interface`.
fn link_type(kind: &str) -> Option<&'static str> {
    match kind.trim() {
        "1" => Some("Ethernet"),
        "32" => Some("InfiniBand"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_become_bits_per_second() {
        assert_eq!(rate_from_speed("25000\n"), Some(25_000_000_000));
        assert_eq!(rate_from_speed("-1"), None);
        assert_eq!(rate_from_speed("4294967295"), None);
        assert_eq!(rate_from_speed("0"), None);
        assert_eq!(rate_from_speed(""), None);
    }
}
