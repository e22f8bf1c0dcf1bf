//! The `extern "C"` functions of `ipn.h`.
//!
//! This is the only module with `unsafe` code. Each function turns its raw
//! pointers into slices, strings and a `&Handle`, runs the safe code of
//! [`crate::api`] under `catch_unwind`, and returns the C convention: a
//! value, or -1/NULL with `errno` set and the message kept for
//! `ipn_last_error()`. No panic crosses the boundary: one becomes `EIO`.
//!
//! The pointer contracts are those `ipn.h` states: strings are
//! NUL-terminated, buffers have the length given, a port is what
//! `ipn_join` returned and was not closed, a config is initialized by
//! `ipn_config_init()` (so its first `size` bytes are readable).
#![allow(unsafe_code)]

use std::any::Any;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;

use crate::api::{self, CConfig, Failure, Handle, Timeout, CONFIG_SIZE_MAX};

fn set_errno(errno: i32) {
    // SAFETY: __errno_location returns a valid pointer to this thread's
    // errno, which lives as long as the thread.
    unsafe { *libc::__errno_location() = errno };
}

/// Records a failure: `errno` and the thread's last error message.
fn fail(failure: &Failure) {
    api::set_last_error(failure);
    set_errno(failure.errno);
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}

/// Runs `f`, turning a panic into an `EIO` failure.
fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(Failure::internal(&panic_text(payload.as_ref()))),
    }
}

/// `Ok(n)` as `n`, a failure as -1 with errno.
fn to_c<T>(result: Result<T, Failure>, failed: T) -> T {
    result.unwrap_or_else(|failure| {
        fail(&failure);
        failed
    })
}

/// The path a C string names (any bytes; no UTF-8 needed).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string valid during the call.
unsafe fn c_path<'a>(path: *const c_char) -> Result<&'a Path, Failure> {
    if path.is_null() {
        return Err(Failure::new(libc::EFAULT, "the path is NULL"));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract; the
    // borrow is used only during the call.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// A description (NULL: none), invalid UTF-8 replaced.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string valid during the call.
unsafe fn c_text(text: *const c_char) -> String {
    if text.is_null() {
        String::new()
    } else {
        // SAFETY: non-null and NUL-terminated by the caller's contract;
        // the bytes are copied before returning.
        String::from_utf8_lossy(unsafe { CStr::from_ptr(text) }.to_bytes()).into_owned()
    }
}

/// Reads a caller's `struct ipn_config` (NULL: the defaults).
///
/// # Safety
/// `config` is NULL, or points to a structure whose first `size` bytes
/// (its first field) are readable: one initialized by `ipn_config_init()`.
unsafe fn c_config(config: *const CConfig) -> Result<ipn_core::Config, Failure> {
    if config.is_null() {
        return Ok(ipn_core::Config::default());
    }
    // SAFETY: a non-null config points to at least its `size` field (four
    // bytes, the first of every version); read unaligned, as C may hand us
    // any pointer.
    let size = unsafe { ptr::read_unaligned(config.cast::<u32>()) } as usize;
    if size > CONFIG_SIZE_MAX {
        return Err(Failure::new(
            libc::E2BIG,
            format!(
                "struct ipn_config says it has {size} bytes, more than any version has: \
                 initialize it with ipn_config_init()"
            ),
        ));
    }
    // SAFETY: by the contract above, `size` bytes from `config` are
    // readable for the duration of the call; every field is an integer, so
    // any initialized bytes are valid. We copy them out at once.
    let bytes = unsafe { std::slice::from_raw_parts(config.cast::<u8>(), size) }.to_vec();
    CConfig::from_bytes(&bytes)?.to_config()
}

/// The port behind a C pointer.
///
/// # Safety
/// `port` is NULL or a pointer returned by `ipn_join`/`ipn_join_ex` and not
/// yet given to `ipn_close`.
unsafe fn c_port<'a>(port: *mut Handle) -> Result<&'a Handle, Failure> {
    if port.is_null() {
        return Err(Failure::new(libc::EBADF, "the port is NULL"));
    }
    // SAFETY: by the contract, `port` came from `Box::into_raw` in
    // `ipn_join_ex` and is still live; a shared reference only: `Handle`
    // locks its port for each call, so threads sharing it do not alias a
    // `&mut`.
    Ok(unsafe { &*port })
}

// What `c_port` relies on to hand one `&Handle` to several threads.
const _: () = {
    const fn sync<T: Sync>() {}
    sync::<Handle>();
};

/// `int ipn_config_init_size(struct ipn_config *config, size_t size)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_config_init_size(config: *mut CConfig, size: usize) -> c_int {
    let result = guarded(|| {
        if config.is_null() {
            return Err(Failure::new(libc::EFAULT, "the struct ipn_config is NULL"));
        }
        let bytes = CConfig::init_bytes(size)?;
        // SAFETY: the caller gives a structure of `size` bytes (it passes
        // sizeof *config), writable, non-null (checked); `bytes` has exactly
        // `size` bytes and does not overlap it.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), config.cast::<u8>(), size) };
        Ok(0)
    });
    to_c(result, -1)
}

/// `int ipn_create(const char *path, const struct ipn_config *config)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_create(path: *const c_char, config: *const CConfig) -> c_int {
    let result = guarded(|| {
        // SAFETY: `path` and `config` are as ipn.h says (see c_path, c_config).
        let (path, config) = unsafe { (c_path(path)?, c_config(config)?) };
        api::create(path, &config).map(|()| 0)
    });
    to_c(result, -1)
}

/// `int ipn_remove(const char *path, unsigned int flags)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_remove(path: *const c_char, flags: c_uint) -> c_int {
    let result = guarded(|| {
        // SAFETY: `path` is NULL or a NUL-terminated string (ipn.h).
        let path = unsafe { c_path(path)? };
        api::remove(path, flags).map(|()| 0)
    });
    to_c(result, -1)
}

/// `struct ipn_port *ipn_join(const char *path, const char *description)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_join(path: *const c_char, description: *const c_char) -> *mut Handle {
    // SAFETY: the same arguments, with no flags and no config.
    unsafe { ipn_join_ex(path, description, 0, ptr::null()) }
}

/// `struct ipn_port *ipn_join_ex(const char *path, const char *description,
/// unsigned int flags, const struct ipn_config *config)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_join_ex(
    path: *const c_char,
    description: *const c_char,
    flags: c_uint,
    config: *const CConfig,
) -> *mut Handle {
    let result = guarded(|| {
        // SAFETY: the strings and config are as ipn.h says (see c_path,
        // c_text, c_config).
        let (path, description) = unsafe { (c_path(path)?, c_text(description)) };
        let config = if flags & api::JOIN_CREATE != 0 {
            // SAFETY: as above.
            Some(unsafe { c_config(config)? })
        } else {
            None
        };
        let handle = Handle::join(path, &description, flags, config.as_ref())?;
        Ok(Box::into_raw(Box::new(handle)))
    });
    to_c(result, ptr::null_mut())
}

/// The frame a C caller passes to a send.
///
/// # Safety
/// `frame` is NULL or readable for `len` bytes during the call (any
/// pointer when `len` is 0).
unsafe fn c_frame<'a>(frame: *const c_void, len: usize) -> Result<&'a [u8], Failure> {
    if len == 0 {
        // Refused by the send itself, as empty (EINVAL).
        return Ok(&[]);
    }
    if frame.is_null() {
        return Err(Failure::new(libc::EFAULT, "the frame is NULL"));
    }
    if len > isize::MAX as usize {
        return Err(Failure::new(
            libc::EMSGSIZE,
            format!("a frame of {len} bytes"),
        ));
    }
    // SAFETY: like send(2): non-null (checked), `len` readable bytes that
    // do not change during the call (the caller's contract), len in range.
    Ok(unsafe { std::slice::from_raw_parts(frame.cast::<u8>(), len) })
}

/// `ssize_t ipn_send_timeout(struct ipn_port *port, const void *frame,
/// size_t len, int timeout_ms)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_send_timeout(
    port: *mut Handle,
    frame: *const c_void,
    len: usize,
    timeout_ms: c_int,
) -> isize {
    let result = guarded(|| {
        // SAFETY: `port` and `frame` are as ipn.h says (see c_port, c_frame).
        let (port, frame) = unsafe { (c_port(port)?, c_frame(frame, len)?) };
        let timeout = Timeout::from_ms(timeout_ms)?;
        port.send(frame, timeout).map(|n| n as isize)
    });
    to_c(result, -1)
}

/// `ssize_t ipn_send(struct ipn_port *port, const void *frame, size_t len)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_send(port: *mut Handle, frame: *const c_void, len: usize) -> isize {
    // SAFETY: the same arguments, waiting as long as it takes.
    unsafe { ipn_send_timeout(port, frame, len, -1) }
}

/// `ssize_t ipn_recv(struct ipn_port *port, void *buf, size_t len,
/// int timeout_ms)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_recv(
    port: *mut Handle,
    buf: *mut c_void,
    len: usize,
    timeout_ms: c_int,
) -> isize {
    let result = guarded(|| {
        // SAFETY: `port` is as ipn.h says (see c_port).
        let port = unsafe { c_port(port)? };
        let timeout = Timeout::from_ms(timeout_ms)?;
        let buf: &mut [u8] = if len == 0 {
            &mut []
        } else if buf.is_null() {
            return Err(Failure::new(libc::EFAULT, "the buffer is NULL"));
        } else if len > isize::MAX as usize {
            return Err(Failure::new(
                libc::EINVAL,
                format!("a buffer of {len} bytes"),
            ));
        } else {
            // SAFETY: like recv(2): non-null (checked), writable for `len`
            // bytes, used by nothing else during the call (the caller's
            // contract), len in range.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }
        };
        port.recv(buf, timeout).map(|n| n as isize)
    });
    to_c(result, -1)
}

/// Runs a query on a port: an int, or -1 with errno.
///
/// # Safety
/// As [`c_port`].
unsafe fn query(port: *mut Handle, f: impl FnOnce(&Handle) -> Result<u32, Failure>) -> c_int {
    let result = guarded(|| {
        // SAFETY: `port` is as ipn.h says (see c_port).
        let port = unsafe { c_port(port)? };
        f(port).map(|n| c_int::try_from(n).unwrap_or(c_int::MAX))
    });
    to_c(result, -1)
}

/// `int ipn_fd(struct ipn_port *port)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_fd(port: *mut Handle) -> c_int {
    // SAFETY: `port` is as ipn.h says. A fd is never negative.
    unsafe { query(port, |p| Ok(p.fd() as u32)) }
}

/// `int ipn_mtu(struct ipn_port *port)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_mtu(port: *mut Handle) -> c_int {
    // SAFETY: `port` is as ipn.h says.
    unsafe { query(port, |p| Ok(p.mtu())) }
}

/// `int ipn_index(struct ipn_port *port)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_index(port: *mut Handle) -> c_int {
    // SAFETY: `port` is as ipn.h says.
    unsafe { query(port, |p| Ok(p.index())) }
}

/// `int ipn_readers(struct ipn_port *port)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_readers(port: *mut Handle) -> c_int {
    // SAFETY: `port` is as ipn.h says.
    unsafe { query(port, |p| p.membership().map(|(readers, _)| readers)) }
}

/// `int ipn_writers(struct ipn_port *port)`.
#[no_mangle]
pub unsafe extern "C" fn ipn_writers(port: *mut Handle) -> c_int {
    // SAFETY: `port` is as ipn.h says.
    unsafe { query(port, |p| p.membership().map(|(_, writers)| writers)) }
}

/// `void ipn_close(struct ipn_port *port)`: leaves the network.
#[no_mangle]
pub unsafe extern "C" fn ipn_close(port: *mut Handle) {
    if port.is_null() {
        return;
    }
    // SAFETY: `port` came from `Box::into_raw` in `ipn_join_ex` and, by the
    // contract, is closed once and not used during or after this call: we
    // own it again.
    let boxed = unsafe { Box::from_raw(port) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(boxed))) {
        fail(&Failure::internal(&panic_text(payload.as_ref())));
    }
}

/// `const char *ipn_last_error(void)`.
#[no_mangle]
pub extern "C" fn ipn_last_error() -> *const c_char {
    catch_unwind(api::last_error_ptr).unwrap_or(c"".as_ptr())
}

/// `const char *ipn_version(void)`.
#[no_mangle]
pub extern "C" fn ipn_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("the version has no NUL"),
        };
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn last_error() -> String {
        // SAFETY: ipn_last_error returns a valid NUL-terminated string,
        // unchanged until the next failure on this thread.
        unsafe { CStr::from_ptr(ipn_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_eio_and_a_message_not_an_unwind() {
        let result = guarded(|| -> Result<isize, Failure> { panic!("boom at the boundary") });
        assert_eq!(to_c(result, -1), -1);
        assert_eq!(errno(), libc::EIO);
        let said = last_error();
        assert!(
            said.contains("internal error") && said.contains("boom at the boundary"),
            "{said}"
        );
    }

    #[test]
    fn null_arguments_are_errors_not_crashes() {
        // SAFETY: NULL is allowed for every pointer argument below.
        unsafe {
            assert!(ipn_join(ptr::null(), ptr::null()).is_null());
            assert_eq!(errno(), libc::EFAULT);
            assert_eq!(ipn_send(ptr::null_mut(), ptr::null(), 10), -1);
            assert_eq!(errno(), libc::EBADF);
            assert_eq!(ipn_fd(ptr::null_mut()), -1);
            assert_eq!(errno(), libc::EBADF);
            assert_eq!(ipn_config_init_size(ptr::null_mut(), 48), -1);
            assert_eq!(errno(), libc::EFAULT);
            ipn_close(ptr::null_mut());
        }
    }
}
