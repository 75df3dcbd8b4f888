//! Shared harness and the per-resource test modules.

pub mod harness;

mod accounts;
mod api;
mod leases;
mod nodes;
mod tidy;
