//! The atomics of the concurrency core (and the one lock: a split port's
//! switch table), from one place.
//!
//! `shm`, `ring`, `membership` and `port` take their atomic types and
//! fences from here, never from `std::sync::atomic` directly. A normal
//! build re-exports the standard ones (nothing changes); a build with
//! `RUSTFLAGS="--cfg loom"` re-exports loom's, whose every operation is a
//! point where the model checker may switch threads or pick which store a
//! load sees (see `loom_tests`).

#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::Mutex;

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub use loom::sync::Mutex;
