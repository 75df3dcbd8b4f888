//! Process-level tests, one module per concern.

mod agent;
mod backup;
mod cli;
mod concurrency;
mod copy;
mod deploy;
mod g5k;
mod lab;
mod pxe;
mod replicas;
