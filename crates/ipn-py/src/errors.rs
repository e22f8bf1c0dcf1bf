//! The library's errors as the built-in exceptions Python code already
//! catches, each carrying the library's message unchanged.
//!
//! System-level failures become `OSError(errno, message)`: Python picks the
//! subclass from the errno (`FileNotFoundError`, `PermissionError`,
//! `FileExistsError`, `BlockingIOError`, `TimeoutError`, ...) and `errno`
//! is the one libipn sets for the same failure. Mistakes in the arguments
//! (a frame over the MTU, an impossible configuration) are `ValueError`; a
//! direction the port does not do is `io.UnsupportedOperation`, as for a
//! file opened read-only.

use ipn::{OpenError, RecvError, SendError};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

pyo3::import_exception!(io, UnsupportedOperation);

/// `OSError(errno, message)`, which Python turns into the subclass the
/// errno stands for.
pub fn os_error(errno: i32, message: impl std::fmt::Display) -> PyErr {
    PyOSError::new_err((errno, message.to_string()))
}

/// Why a network could not be created, joined, opened or removed.
pub fn open_error(e: OpenError) -> PyErr {
    match e {
        OpenError::InvalidConfig(_) => PyValueError::new_err(e.to_string()),
        _ => os_error(e.errno(), &e),
    }
}

/// Why a frame was not sent.
pub fn send_error(e: SendError) -> PyErr {
    match e {
        SendError::TooBig { .. } | SendError::Empty | SendError::Offload(_) => {
            PyValueError::new_err(e.to_string())
        }
        SendError::WouldBlock => os_error(libc::EAGAIN, &e),
        SendError::TimedOut => os_error(libc::ETIMEDOUT, &e),
        SendError::NotWriting => UnsupportedOperation::new_err(e.to_string()),
        SendError::Damaged { .. } => os_error(libc::EIO, &e),
    }
}

/// Why no frame was received.
pub fn recv_error(e: RecvError) -> PyErr {
    match e {
        RecvError::WouldBlock => os_error(libc::EAGAIN, &e),
        RecvError::TimedOut => os_error(libc::ETIMEDOUT, &e),
        RecvError::NotReading => UnsupportedOperation::new_err(e.to_string()),
        RecvError::Io(ref io) => os_error(io.raw_os_error().unwrap_or(libc::EIO), &e),
        RecvError::Damaged { .. } => os_error(libc::EIO, &e),
    }
}

/// A port that was closed: what Python's files say, as `ValueError`.
pub fn closed() -> PyErr {
    PyValueError::new_err("I/O operation on a closed port")
}
