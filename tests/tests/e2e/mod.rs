//! Process-level tests, one module per concern.

mod cli;
mod concurrency;
mod pxe;
