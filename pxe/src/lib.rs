//! ferrum boot network services.
//!
//! This crate owns the network services a node needs to boot over the
//! network. Today that is a read-only TFTP server ([`tftp`]); DHCP and iPXE
//! scripts come later. It must not write into the directories it serves and
//! never serves a path outside the root it was given.

pub mod tftp;
