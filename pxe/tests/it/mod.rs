//! The per-service test modules.

mod dhcp;
mod tftp;
