//! Process-level tests, one module per concern.

mod agent;
mod cli;
mod concurrency;
mod pxe;
