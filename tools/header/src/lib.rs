//! No library code: the check is `tests/header.rs` (`cargo test -p adam8bit-header`).
