//! Shared harness and the per-resource test modules.

pub mod harness;

mod account_requests;
mod accounts;
mod agent;
mod api;
mod boot;
mod deployments;
mod environments;
mod g5k;
mod g5k_jobs;
pub mod ipmi_sim;
mod leases;
mod nodes;
mod notifications;
mod operations;
mod personal_data;
mod policy;
mod power;
mod power_ipmi;
mod power_redfish;
mod privacy;
mod reads;
mod secrets;
pub mod sim_agent;
pub mod smtp;
pub mod ssh;
pub mod sushy;
mod tidy;
mod tls;
mod validation;
mod web;
