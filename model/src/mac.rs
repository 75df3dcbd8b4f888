//! MAC addresses of boot NICs, normalised to lowercase `aa:bb:cc:dd:ee:ff`.

use std::fmt;
use std::str::FromStr;

/// A validated 48-bit MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a MAC address (expected six hex octets such as 3c:fd:fe:c1:70:90)")]
pub struct MacParseError {
    pub input: String,
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Accepts `:` or `-` separated octets, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError { input: s.to_owned() };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut octets = [0u8; 6];
        for (octet, part) in octets.iter_mut().zip(parts) {
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl MacAddr {
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether a NIC can carry this address: not all-zero, not broadcast,
    /// not a group (multicast) address. `Err` says why, for messages.
    pub fn check_unicast(&self) -> Result<(), &'static str> {
        if self.0 == [0; 6] {
            Err("is the all-zero address, which no NIC carries")
        } else if self.0 == [0xff; 6] {
            Err("is the broadcast address, which no NIC carries")
        } else if self.0[0] & 1 == 1 {
            Err("is a multicast address (the I/G bit of its first octet is set), which no NIC carries")
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let mac: MacAddr = "3C-FD-FE-C1-70-90".parse().expect("valid");
        assert_eq!(mac.to_string(), "3c:fd:fe:c1:70:90");
        assert_eq!("3c:fd:fe:c1:70:90".parse::<MacAddr>(), Ok(mac));
    }

    #[test]
    fn only_unicast_non_zero_addresses_are_assignable() {
        for ok in ["3c:fd:fe:c1:70:90", "02:00:00:00:00:01", "fe:ff:ff:ff:ff:ff"] {
            assert_eq!(ok.parse::<MacAddr>().expect(ok).check_unicast(), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("00:00:00:00:00:00", "all-zero"),
            ("ff:ff:ff:ff:ff:ff", "broadcast"),
            ("01:00:5e:00:00:01", "multicast"),
            ("33:33:00:00:00:01", "multicast"),
            ("03:00:00:00:00:00", "multicast"),
        ] {
            let err = bad.parse::<MacAddr>().expect(bad).check_unicast().expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "3c:fd:fe:c1:70", "3c:fd:fe:c1:70:9", "3c:fd:fe:c1:70:zz", "3c:fd:fe:c1:70:90:00", "+1:fd:fe:c1:70:90"] {
            let err = bad.parse::<MacAddr>().expect_err(bad);
            assert!(err.to_string().contains("is not a MAC address"), "{err}");
        }
    }
}
