//! ferrum boot network services.
//!
//! This crate owns the network services a node needs to boot over the
//! network: DHCPv4 in full or proxy mode ([`dhcp`]), IPv6 router
//! advertisements that keep iPXE from waiting ([`ra`]), and a read-only TFTP
//! server ([`tftp`]), started together by [`services`], inside `ferrumd` or
//! alone with the inventory fetched from the controller ([`standalone`]). The per-node iPXE
//! script is not here: the controller generates it from its database
//! (`GET /boot/ipxe?mac=`), so "what does this node boot next" has one
//! source of truth. This crate must not write into the directories it
//! serves, never serves a path outside the root it was given, and answers
//! only MAC addresses its [`dhcp::Directory`] knows.

pub mod config;
pub mod dhcp;
pub mod ra;
pub mod services;
pub mod standalone;
pub mod tftp;
