//! libvdeplug, loaded at run time: the client library QEMU's vde backend
//! and `vde_plug` use, so that the rate sweep measures vde_switch (`vde://`)
//! and ipn's plugin (`ipn://`) exactly as those programs reach them. A
//! machine without libvdeplug still runs the rest of the bench.
//!
//! Safety rests on libvdeplug's contract (libvdeplug(3)): `vde_open_real`
//! takes NUL-terminated strings and returns a connection or NULL; the
//! connection is used by one thread and closed once, by [`Conn`]'s drop;
//! `vde_recv`/`vde_send` are given a buffer and its true length.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::BorrowedFd;

use anyhow::{bail, Context, Result};

/// `LIBVDEPLUG_INTERFACE_VERSION` of libvdeplug.h.
const INTERFACE_VERSION: c_int = 1;

type OpenFn = unsafe extern "C" fn(*mut c_char, *mut c_char, c_int, *mut c_void) -> *mut c_void;
type RecvFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, c_int) -> isize;
type SendFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> isize;
type DatafdFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// The library's entry points.
struct Library {
    // Kept loaded while the function pointers below are used.
    _lib: libloading::Library,
    open: OpenFn,
    recv: RecvFn,
    send: SendFn,
    datafd: DatafdFn,
    close: CloseFn,
}

/// The library's file name.
pub const LIBRARY: &str = "libvdeplug.so.2";

impl Library {
    fn load() -> Result<Library> {
        // SAFETY: loading libvdeplug runs its constructors, which only set
        // up its plugin table; the symbols are declared with the types of
        // libvdeplug.h.
        unsafe {
            let lib = libloading::Library::new(LIBRARY)
                .with_context(|| format!("loading {LIBRARY} (install libvdeplug2)"))?;
            let open = *lib.get::<OpenFn>(b"vde_open_real\0")?;
            let recv = *lib.get::<RecvFn>(b"vde_recv\0")?;
            let send = *lib.get::<SendFn>(b"vde_send\0")?;
            let datafd = *lib.get::<DatafdFn>(b"vde_datafd\0")?;
            let close = *lib.get::<CloseFn>(b"vde_close\0")?;
            Ok(Library {
                _lib: lib,
                open,
                recv,
                send,
                datafd,
                close,
            })
        }
    }
}

/// Whether libvdeplug can be loaded here.
pub fn available() -> Result<()> {
    Library::load().map(|_| ())
}

/// One open vdeplug connection.
pub struct Conn {
    lib: Library,
    conn: *mut c_void,
}

impl Conn {
    /// `vde_open(url, descr, NULL)`.
    pub fn open(url: &str, descr: &str) -> Result<Conn> {
        let lib = Library::load()?;
        let url_c = CString::new(url).context("a URL with a NUL byte")?;
        let descr_c = CString::new(descr).context("a description with a NUL byte")?;
        // SAFETY: both strings are NUL-terminated and outlive the call
        // (libvdeplug copies what it keeps); NULL open args are allowed.
        let conn = unsafe {
            (lib.open)(
                url_c.as_ptr().cast_mut(),
                descr_c.as_ptr().cast_mut(),
                INTERFACE_VERSION,
                std::ptr::null_mut(),
            )
        };
        if conn.is_null() {
            bail!("vde_open {url}: {}", std::io::Error::last_os_error());
        }
        Ok(Conn { lib, conn })
    }

    /// The fd to poll for frames, lent for as long as the connection.
    pub fn datafd(&self) -> BorrowedFd<'_> {
        // SAFETY: `conn` is open (closed only by drop), and its datafd
        // stays open until then: the borrow cannot outlive it.
        unsafe { BorrowedFd::borrow_raw((self.lib.datafd)(self.conn)) }
    }

    /// One `vde_recv`: its return value (a frame's length, 1 for "nothing
    /// for you", -1 with errno).
    pub fn recv(&self, buf: &mut [u8]) -> isize {
        // SAFETY: `conn` is open; `buf` is writable for `buf.len()` bytes.
        unsafe { (self.lib.recv)(self.conn, buf.as_mut_ptr().cast(), buf.len(), 0) }
    }

    /// One `vde_send`.
    pub fn send(&self, frame: &[u8]) -> isize {
        // SAFETY: `conn` is open; `frame` is readable for its length.
        unsafe { (self.lib.send)(self.conn, frame.as_ptr().cast(), frame.len(), 0) }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: `conn` is open and closed only here, once.
        unsafe {
            (self.lib.close)(self.conn);
        }
    }
}
