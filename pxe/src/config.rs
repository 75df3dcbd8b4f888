//! Configuration of the boot network services, shared by `ferrumd` (its
//! `[boot]` table) and the standalone `ferrum-pxe --config FILE`.
//!
//! Owns: the typed, validated description of which services run where
//! (DHCP per interface in `full` or `proxy` mode, router advertisements,
//! TFTP). Parsing is strict (`deny_unknown_fields`); callers put the file
//! name in front of the errors. This module starts nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer};

/// Which DHCP role ferrum plays on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// Dedicated provisioning network: ferrum is the only DHCP server and
    /// gives every known node its inventory address.
    Full,
    /// Beside an existing DHCP server: ferrum gives no address, only the
    /// PXE boot information (port 67 offers and the port 4011 exchange).
    Proxy,
}

impl std::fmt::Display for DhcpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DhcpMode::Full => "full",
            DhcpMode::Proxy => "proxy",
        })
    }
}

/// DHCP on one provisioning interface (`[[boot.dhcp]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpInterface {
    /// Network interface the service answers on (e.g. `br-prov`). Replies
    /// leave through this interface only.
    pub interface: String,
    /// `full` or `proxy`.
    pub mode: DhcpMode,
    /// The provisioning subnet (`10.10.0.0/24`); required in `full` mode,
    /// where node addresses outside it are refused (and logged).
    #[serde(default)]
    pub subnet: Option<Ipv4Net>,
    /// This server's address on the interface (DHCP server identifier and
    /// TFTP next-server). Default: the interface's first IPv4 address.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// Default gateway given to nodes (`full` mode).
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// DNS servers given to nodes (`full` mode).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// DNS domain given to nodes (`full` mode).
    #[serde(default)]
    pub domain: Option<String>,
    /// Lease time of the addresses (`full` mode).
    #[serde(default = "default_lease_time", deserialize_with = "duration")]
    pub lease_time: Duration,
    /// Boot file for BIOS PXE firmware, fetched over TFTP (option 93 = 0).
    #[serde(default = "default_bios_boot_file")]
    pub bios_boot_file: String,
    /// Boot file for x86-64 UEFI PXE firmware (option 93 = 7 or 9).
    #[serde(default = "default_uefi_boot_file")]
    pub uefi_boot_file: String,
    /// Send IPv6 router advertisements on this interface. Without one, iPXE
    /// waits about 16 s for IPv6 autoconfiguration before it boots.
    #[serde(default = "yes")]
    pub router_advertisement: bool,
}

impl DhcpInterface {
    /// Checks what the types cannot: `full` mode needs a subnet, and the
    /// configured addresses must lie inside it. Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let at = |key: &str| format!("boot.dhcp[interface = \"{}\"].{key}", self.interface);
        if self.interface.is_empty() || self.interface.len() > 15 || self.interface.contains(['/', ' ']) {
            return Err(format!("{}: '{}' is not an interface name", at("interface"), self.interface));
        }
        if self.mode == DhcpMode::Full {
            let Some(subnet) = self.subnet else {
                return Err(format!("{}: full mode needs the provisioning subnet (e.g. \"10.10.0.0/24\")", at("subnet")));
            };
            for (key, addr) in [("address", self.address), ("router", self.router)] {
                if let Some(a) = addr
                    && !subnet.contains(&a)
                {
                    return Err(format!("{}: {a} is outside the subnet {subnet}", at(key)));
                }
            }
        }
        if self.lease_time < Duration::from_secs(60) {
            return Err(format!("{}: at least 60s", at("lease_time")));
        }
        Ok(())
    }
}

/// The read-only TFTP service (`[boot.tftp]`), for firmware without iPXE.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TftpConfig {
    /// Directory served (Debian's `ipxe` package puts `undionly.kpxe` and
    /// `ipxe.efi` in `/usr/lib/ipxe`).
    #[serde(default = "default_tftp_root")]
    pub root: PathBuf,
    /// Address and port.
    #[serde(default = "default_tftp_listen")]
    pub listen: SocketAddr,
}

fn default_lease_time() -> Duration {
    Duration::from_secs(3600)
}
fn default_bios_boot_file() -> String {
    "undionly.kpxe".into()
}
fn default_uefi_boot_file() -> String {
    "ipxe.efi".into()
}
fn default_tftp_root() -> PathBuf {
    PathBuf::from("/usr/lib/ipxe")
}
fn default_tftp_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 69))
}
fn yes() -> bool {
    true
}

/// Parses a humantime duration (`30s`, `1h`), naming the bad value.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("'{s}' is not a duration ({e}); use e.g. 30s, 5m, 2h")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DhcpInterface, String> {
        let i: DhcpInterface = toml::from_str(text).map_err(|e| e.to_string())?;
        i.validate()?;
        Ok(i)
    }

    #[test]
    fn full_mode_defaults_and_checks() {
        let i = parse("interface = \"br0\"\nmode = \"full\"\nsubnet = \"10.10.0.0/24\"\n").unwrap();
        assert_eq!(i.bios_boot_file, "undionly.kpxe");
        assert_eq!(i.uefi_boot_file, "ipxe.efi");
        assert_eq!(i.lease_time, Duration::from_secs(3600));
        assert!(i.router_advertisement);

        let e = parse("interface = \"br0\"\nmode = \"full\"\n").unwrap_err();
        assert!(e.contains("boot.dhcp[interface = \"br0\"].subnet"), "{e}");
        let e = parse("interface = \"br0\"\nmode = \"full\"\nsubnet = \"10.10.0.0/24\"\nrouter = \"10.11.0.1\"\n").unwrap_err();
        assert!(e.contains(".router: 10.11.0.1 is outside the subnet 10.10.0.0/24"), "{e}");
        let e = parse("interface = \"br0\"\nmode = \"fulll\"\n").unwrap_err();
        assert!(e.contains("unknown variant `fulll`"), "{e}");
        let e = parse("interface = \"br0\"\nmode = \"proxy\"\nleasetime = \"1h\"\n").unwrap_err();
        assert!(e.contains("unknown field `leasetime`"), "{e}");
        assert!(parse("interface = \"br0\"\nmode = \"proxy\"\n").is_ok());
    }
}
