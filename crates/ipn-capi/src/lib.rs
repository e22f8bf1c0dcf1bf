//! # libipn: the C API of ipn
//!
//! `libipn.so.0` lets C programs (and anything with a C FFI) create, join
//! and use ipn networks directly, without libvdeplug: `ipn_create`,
//! `ipn_join`, `ipn_send`, `ipn_recv`, a pollable `ipn_fd`, `ipn_close`.
//! The contract, every errno included, is `include/ipn.h`; the pkg-config
//! name is `ipn`.
//!
//! ## Layers
//!
//! - [`api`]: everything the functions do, in safe Rust: the
//!   `struct ipn_config` layout and its rules (defaults, sizes, reserved
//!   bytes), joining with flags, timeouts, and the errno and message of
//!   each failure ([`api::Failure`]), kept per thread for
//!   `ipn_last_error`.
//! - `ffi`: the `extern "C"` functions; the only module with `unsafe`
//!   code. Each turns raw pointers into slices and strings, calls [`api`]
//!   under `catch_unwind` (a panic becomes `EIO`, never an unwind into C),
//!   and returns the C convention: a value, or -1/NULL with `errno`.
//!
//! ## ABI
//!
//! The soname is `libipn.so.0` (set by `build.rs`). `struct ipn_port` is
//! opaque; `struct ipn_config` starts with its size, grows only at the
//! end, and a zero in a field the caller's header did not have means that
//! field's default ([`api::CConfig::from_bytes`]). Functions are only
//! added.

pub mod api;
mod ffi;
