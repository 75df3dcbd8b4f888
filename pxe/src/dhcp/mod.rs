//! DHCPv4 for network boot: `full` mode (static addresses from the
//! inventory) and `proxy` mode (boot information only, beside another DHCP
//! server), both answering only MAC addresses the inventory knows.
//!
//! Owns: the decision of what to answer ([`answer`], a pure function of the
//! request, the interface's configuration and the inventory) and the
//! sockets that carry it ([`server`]). Must not: assign an address that is
//! not in the inventory, answer an unknown MAC, send a reply through any
//! interface other than the one the request came in on, or wait on anything
//! (no address-conflict probe: parallel first boots must all be answered
//! within iPXE's window).

pub mod answer;
pub mod server;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An Ethernet MAC address as DHCP carries it (`chaddr`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(|| format!("'{s}' is not a MAC address"))?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| format!("'{s}' is not a MAC address"))?;
        }
        if parts.next().is_some() {
            return Err(format!("'{s}' is not a MAC address"));
        }
        Ok(Mac(out))
    }
}

/// Decodes a DHCP packet from the wire, or says why not.
///
/// dhcproto 0.15 trusts its input in two places: `Message::chaddr()` slices
/// with the packet's `hlen` (a remote panic when `hlen > 16`), and some
/// option decoders `debug_assert!` their length (80, 81, 94, 152 to 155;
/// the cargo-fuzz target found them). Both are checked here before
/// decoding; any other panic of the decoder is caught and reported as an
/// undecodable packet (builds that abort on panic rely on the checks).
pub fn decode(bytes: &[u8]) -> Result<dhcproto::v4::Message, String> {
    use dhcproto::v4::Decodable as _;
    match bytes.get(2) {
        Some(&hlen) if hlen <= 16 => {}
        Some(&hlen) => return Err(format!("hardware address length {hlen} > 16")),
        None => return Err("packet too short".to_owned()),
    }
    check_option_lengths(bytes)?;
    match std::panic::catch_unwind(|| dhcproto::v4::Message::from_bytes(bytes)) {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("malformed options (the decoder gave up)".to_owned()),
    }
}

/// Refuses options whose length dhcproto asserts (see [`decode`]).
fn check_option_lengths(bytes: &[u8]) -> Result<(), String> {
    // Options start after the fixed header (236 bytes) and the magic cookie.
    let mut i = 240;
    while let Some(&code) = bytes.get(i) {
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = bytes.get(i + 1) else { break };
        let ok = match code {
            80 => len == 0,
            81 => len >= 3,
            94 => len == 3,
            152..=155 => len == 4,
            _ => true,
        };
        if !ok {
            return Err(format!("option {code} has length {len}"));
        }
        i += 2 + usize::from(len);
    }
    Ok(())
}

/// What the inventory says about a MAC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The node's name (DHCP option 12 in full mode).
    pub name: String,
    /// The node's address on the provisioning network (full mode).
    pub ip: Option<Ipv4Addr>,
}

/// What a client told us about itself in its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub mac: Mac,
    /// PXE firmware (option 60 starts with `PXEClient`).
    pub pxe: bool,
    /// Already running iPXE (option 77 user class `iPXE`): give it the HTTP
    /// script, not iPXE again (the chain-load loop).
    pub ipxe: bool,
    /// Client system architecture (option 93, RFC 4578); absent means BIOS.
    pub arch: Option<u16>,
}

/// The inventory as the DHCP service sees it. Implemented by `ferrumd`
/// (its node cache, so the database stays the one source of truth) and by
/// the standalone `ferrum-pxe` (a copy refreshed from the controller).
///
/// Lookups are synchronous and must not block: they run for every packet.
pub trait Directory: Send + Sync {
    /// The node owning `mac`, if any.
    fn lookup(&self, mac: Mac) -> Option<Host>;
    /// Called for requests from MACs the inventory does not know (after
    /// rate limiting is the implementation's business). Default: nothing.
    fn unknown(&self, _client: &Client, _interface: &str) {}
}

/// A fixed table, for tests and small setups.
impl Directory for std::collections::HashMap<Mac, Host> {
    fn lookup(&self, mac: Mac) -> Option<Host> {
        self.get(&mac).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_what_would_crash_the_decoder() {
        let mut packet = vec![0u8; 240];
        packet[0] = 1;
        packet[1] = 1;
        packet[2] = 200; // hlen
        packet[236..240].copy_from_slice(&[99, 130, 83, 99]);
        assert_eq!(decode(&packet).unwrap_err(), "hardware address length 200 > 16");
        // Option 81 (client FQDN) of length 1: the decoder subtracts 3 from it.
        packet[2] = 6;
        let mut fqdn = packet.clone();
        fqdn.extend_from_slice(&[53, 1, 1, 81, 1, 0, 255]);
        assert_eq!(decode(&fqdn).unwrap_err(), "option 81 has length 1");
        // Option 153 must be 4 bytes long.
        let mut blq = packet.clone();
        blq.extend_from_slice(&[0, 153, 2, 0, 0, 255]);
        assert_eq!(decode(&blq).unwrap_err(), "option 153 has length 2");
        // A well-formed packet still decodes.
        let mut fine = packet.clone();
        fine.extend_from_slice(&[53, 1, 1, 255]);
        assert!(decode(&fine).is_ok());
        assert!(decode(&[1, 1]).is_err());
    }

    #[test]
    fn mac_round_trip() {
        let m: Mac = "52:54:00:AB:cd:01".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:01");
        assert_eq!("52-54-00-ab-cd-01".parse::<Mac>().unwrap(), m);
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:01:02", "5:54:00:ab:cd:01", "zz:54:00:ab:cd:01"] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
