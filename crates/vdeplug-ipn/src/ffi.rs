//! The C ABI of a vdeplug4 plugin: the `vdeplug_ops` table libvdeplug
//! looks up with `dlsym`, and the six functions it points to.
//!
//! This is the only module with `unsafe` code. Each function turns raw
//! pointers into safe values, calls [`Conn`], and turns the result into
//! the C convention (a value, or -1/NULL with `errno` set). No panic
//! crosses the boundary: every body runs under `catch_unwind`, and a
//! panic becomes `EIO`.
//!
//! Layouts mirror `/usr/include/libvdeplug_mod.h` (vdeplug4 4.x):
//!
//! ```c
//! struct vdeconn { void *handle; struct vdeplug_module *module; unsigned char data[]; };
//! struct vdeplug_module { int flags; VDECONN *(*vde_open_real)(...); ... };
//! ```
//!
//! libvdeplug writes `handle` and `module` after our open returns and
//! reads them in `vde_close`; everything after them is ours ([`IpnConn`]).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use crate::conn::{report, Conn, OpenArgs, OpenFailure, Received};

/// `struct vde_open_args` from `libvdeplug.h`.
#[repr(C)]
#[derive(Debug)]
pub struct VdeOpenArgs {
    pub port: c_int,
    pub group: *mut c_char,
    pub mode: libc::mode_t,
}

/// `struct vdeconn`: the header libvdeplug knows (the flexible `data[]`
/// member has no size and is not declared).
#[repr(C)]
#[derive(Debug)]
pub struct VdeConn {
    pub handle: *mut c_void,
    pub module: *const VdePlugModule,
}

type OpenFn =
    unsafe extern "C" fn(*mut c_char, *mut c_char, c_int, *mut VdeOpenArgs) -> *mut VdeConn;
type RecvFn = unsafe extern "C" fn(*mut VdeConn, *mut c_void, libc::size_t, c_int) -> libc::ssize_t;
type SendFn =
    unsafe extern "C" fn(*mut VdeConn, *const c_void, libc::size_t, c_int) -> libc::ssize_t;
type FdFn = unsafe extern "C" fn(*mut VdeConn) -> c_int;

/// `struct vdeplug_module`.
#[repr(C)]
#[derive(Debug)]
pub struct VdePlugModule {
    pub flags: c_int,
    pub vde_open_real: Option<OpenFn>,
    pub vde_recv: Option<RecvFn>,
    pub vde_send: Option<SendFn>,
    pub vde_datafd: Option<FdFn>,
    pub vde_ctlfd: Option<FdFn>,
    pub vde_close: Option<FdFn>,
}

// The header's layout, checked at compile time (x86_64 and other LP64).
const _: () = {
    assert!(std::mem::size_of::<VdeConn>() == 2 * std::mem::size_of::<usize>());
    assert!(std::mem::size_of::<VdePlugModule>() == 7 * std::mem::size_of::<usize>());
    assert!(std::mem::offset_of!(VdePlugModule, vde_open_real) == std::mem::size_of::<usize>());
};

/// The table libvdeplug finds with `dlsym(handle, "vdeplug_ops")`.
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static vdeplug_ops: VdePlugModule = VdePlugModule {
    flags: 0,
    vde_open_real: Some(ipn_open),
    vde_recv: Some(ipn_recv),
    vde_send: Some(ipn_send),
    vde_datafd: Some(ipn_datafd),
    vde_ctlfd: Some(ipn_ctlfd),
    vde_close: Some(ipn_close),
};

/// Our connection object: the `vdeconn` header first, then our data.
/// [`Conn`] is `Sync`: concurrent `vde_send`/`vde_recv` from several
/// threads (libvdeplug does not forbid them) share it.
#[repr(C)]
struct IpnConn {
    header: VdeConn,
    conn: Conn,
}

// What `with_conn` relies on to hand one `&Conn` to several threads.
const _: () = {
    const fn sync<T: Sync>() {}
    sync::<Conn>();
};

fn set_errno(errno: i32) {
    // SAFETY: __errno_location returns a valid pointer to this thread's
    // errno, which lives as long as the thread.
    unsafe { *libc::__errno_location() = errno };
}

/// Copies a C string argument (NULL: empty).
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string valid for this call.
unsafe fn c_bytes(s: *const c_char) -> Vec<u8> {
    if s.is_null() {
        Vec::new()
    } else {
        // SAFETY: non-null and NUL-terminated by the caller's contract;
        // we copy the bytes out before returning.
        unsafe { CStr::from_ptr(s) }.to_bytes().to_vec()
    }
}

/// `vde_open_real`: `url` is what follows `ipn://` (libvdeplug passes a
/// copy on its stack: we keep nothing pointing into it).
unsafe extern "C" fn ipn_open(
    url: *mut c_char,
    descr: *mut c_char,
    _interface_version: c_int,
    open_args: *mut VdeOpenArgs,
) -> *mut VdeConn {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libvdeplug passes NUL-terminated strings (or NULL)
        // valid for the duration of this call.
        let (url, descr) = unsafe { (c_bytes(url), c_bytes(descr)) };
        let port = if open_args.is_null() {
            0
        } else {
            // SAFETY: non-null `open_args` points to the caller's
            // `struct vde_open_args`, valid during this call; we read one
            // int field.
            unsafe { (*open_args).port }
        };
        let conn = Conn::open(&url, &String::from_utf8_lossy(&descr), &OpenArgs { port })?;
        let boxed = Box::new(IpnConn {
            header: VdeConn {
                handle: ptr::null_mut(),
                module: &vdeplug_ops,
            },
            conn,
        });
        Ok::<_, OpenFailure>(Box::into_raw(boxed).cast::<VdeConn>())
    }));
    match result {
        Ok(Ok(conn)) => conn,
        Ok(Err(failure)) => {
            report(&failure);
            set_errno(failure.errno);
            ptr::null_mut()
        }
        Err(_) => {
            set_errno(libc::EIO);
            ptr::null_mut()
        }
    }
}

/// Runs `f` on the connection behind `conn`, converting errors to errno.
///
/// # Safety
/// `conn` is NULL or a pointer returned by [`ipn_open`] and not yet given
/// to [`ipn_close`].
unsafe fn with_conn<R>(
    conn: *mut VdeConn,
    f: impl FnOnce(&Conn) -> Result<R, i32>,
) -> Result<R, i32> {
    if conn.is_null() {
        return Err(libc::EBADF);
    }
    // SAFETY: by the caller's contract `conn` came from `Box::into_raw` of
    // an `IpnConn` (whose first field is the header, `repr(C)`), and is
    // still live. We take a shared reference only: `Conn` is `Sync` (its
    // port is behind a mutex), so concurrent callers do not alias.
    let ipn = unsafe { &*conn.cast::<IpnConn>() };
    f(&ipn.conn)
}

fn ssize(result: std::thread::Result<Result<usize, i32>>) -> libc::ssize_t {
    match result {
        Ok(Ok(n)) => n as libc::ssize_t,
        Ok(Err(errno)) => {
            set_errno(errno);
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// `vde_recv`: one frame (at least 14 bytes), or 1 for "received but
/// must be dropped" (libvdeplug(3)): no frame for us, or a runt. Never 0,
/// which callers read as a closed connection; never blocks.
unsafe extern "C" fn ipn_recv(
    conn: *mut VdeConn,
    buf: *mut c_void,
    len: libc::size_t,
    _flags: c_int,
) -> libc::ssize_t {
    ssize(catch_unwind(AssertUnwindSafe(|| {
        if len > isize::MAX as usize {
            return Err(libc::EINVAL);
        }
        if buf.is_null() && len > 0 {
            return Err(libc::EFAULT);
        }
        let buf: &mut [u8] = if len == 0 {
            &mut []
        } else {
            // SAFETY: like recv(2), the caller gives a buffer writable
            // for `len` bytes (non-null, len checked above) that nothing
            // else touches during the call.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }
        };
        // SAFETY: `conn` is what our open returned (libvdeplug contract).
        unsafe { with_conn(conn, |c| c.recv(buf).map(Received::vde_recv_value)) }
    })))
}

/// `vde_send`: one frame; `MSG_DONTWAIT` makes a lossless send not wait.
unsafe extern "C" fn ipn_send(
    conn: *mut VdeConn,
    buf: *const c_void,
    len: libc::size_t,
    flags: c_int,
) -> libc::ssize_t {
    ssize(catch_unwind(AssertUnwindSafe(|| {
        if len > isize::MAX as usize {
            return Err(libc::EMSGSIZE);
        }
        if buf.is_null() && len > 0 {
            return Err(libc::EFAULT);
        }
        let frame: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: like send(2), the caller gives `len` readable bytes
            // (non-null, len checked above), unchanged during the call.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
        };
        let dont_wait = flags & libc::MSG_DONTWAIT != 0;
        // SAFETY: `conn` is what our open returned (libvdeplug contract).
        unsafe { with_conn(conn, |c| c.send(frame, dont_wait)) }
    })))
}

/// `vde_datafd`: the port's doorbell, readable while frames wait.
unsafe extern "C" fn ipn_datafd(conn: *mut VdeConn) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `conn` is what our open returned (libvdeplug contract).
        unsafe { with_conn(conn, |c| Ok(c.datafd())) }
    }));
    match result {
        Ok(Ok(fd)) => fd,
        Ok(Err(errno)) => {
            set_errno(errno);
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// `vde_ctlfd`: ipn has no control connection (like vdeplug4's `hub://`):
/// -1, which `poll` ignores.
unsafe extern "C" fn ipn_ctlfd(_conn: *mut VdeConn) -> c_int {
    -1
}

/// `vde_close`: leaves the network and frees the connection.
unsafe extern "C" fn ipn_close(conn: *mut VdeConn) -> c_int {
    if conn.is_null() {
        set_errno(libc::EBADF);
        return -1;
    }
    // SAFETY: `conn` came from `Box::into_raw` in `ipn_open`; libvdeplug
    // calls close once and never uses the connection afterwards, so we
    // own it again here.
    let boxed = unsafe { Box::from_raw(conn.cast::<IpnConn>()) };
    match catch_unwind(AssertUnwindSafe(move || drop(boxed))) {
        Ok(()) => 0,
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}
