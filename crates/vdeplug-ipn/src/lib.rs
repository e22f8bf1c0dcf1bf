//! # libvdeplug_ipn: the `ipn://` URL for every libvdeplug program
//!
//! A vdeplug4 plugin. libvdeplug loads `libvdeplug_ipn.so` when a program
//! opens a URL starting with `ipn://`, e.g.
//! `qemu-system-x86_64 -netdev vde,id=n0,sock=ipn:///tmp/net`,
//! `vde_plug ipn:///tmp/net` or `vde_open("ipn:///tmp/net", ...)` in C.
//! The URL joins the ipn network at the path, creating it if needed.
//!
//! ## Layers
//!
//! - [`url`]: parses `PATH[OPTION/KEY=VALUE/...]` (vdeplug4's path
//!   parameter syntax) into a path and [`ipn::Config`] options. Safe.
//! - [`conn`]: one connection: a joined [`ipn::Port`] with the receive,
//!   send and errno conventions libvdeplug callers expect. Safe.
//! - `ffi`: the `vdeplug_ops` table and the `extern "C"` functions; the
//!   only module with `unsafe` code.

pub mod conn;
mod ffi;
pub mod url;
