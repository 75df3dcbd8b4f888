//! Process-level tests: the real `ferrumd` and `ferrum` binaries.

mod e2e;
