//! Integration tests of the boot network services with real clients: TFTP
//! on loopback (atftp, tftp-hpa, curl), DHCP and router advertisements
//! inside network namespaces the tests create (busybox udhcpc, ISC
//! dhclient, hand-built PXE packets). One binary, one module per service.

// Test code: a panic is a failed test (clippy.toml allows unwrap in #[test]
// functions; the helpers here are test code too).
#![allow(clippy::unwrap_used)]

mod it;
