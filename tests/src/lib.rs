//! Process-level tests live in tests/.
