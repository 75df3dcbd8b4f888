//! Process-level tests: the real `ferrumd` and `ferrum` binaries.

// Test code: a panic is a failed test (clippy.toml allows unwrap in #[test]
// functions; the helpers here are test code too).
#![allow(clippy::unwrap_used)]

mod e2e;
