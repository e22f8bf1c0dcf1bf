//! Writing a received frame into a caller's buffer (`recv_into`), the one
//! place this crate needs `unsafe`: PyO3's safe view of a writable buffer
//! is deprecated as unsound, and its safe copy fills the whole buffer,
//! where a frame fills only its start.
#![allow(unsafe_code)]

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// A caller's writable, contiguous byte buffer, exported to us (so it
/// cannot move or shrink) while this lives.
pub struct Writable {
    buffer: PyBuffer<u8>,
}

impl Writable {
    /// Checks that `buffer` (already a contiguous byte buffer) is writable.
    pub fn new(buffer: PyBuffer<u8>) -> PyResult<Writable> {
        if buffer.readonly() {
            return Err(PyTypeError::new_err(
                "recv_into needs a writable buffer (a bytearray, or a memoryview of one), not a read-only one",
            ));
        }
        Ok(Writable { buffer })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.buffer.len_bytes()
    }

    /// Copies `bytes` to its start; returns how many were copied (at most
    /// its length). The GIL is held (`_py`), as the buffer protocol asks of
    /// writers that have no lock of their own.
    pub fn write_start(&self, _py: Python<'_>, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.len());
        let Some(target) = self.buffer.as_slice_ptr() else {
            return 0;
        };
        // SAFETY: `target` points to `self.len()` bytes of one contiguous
        // allocation (`as_slice_ptr` gives a pointer only for a C-contiguous
        // buffer of `u8` items), which the export held in `self.buffer`
        // keeps alive and unmoved; the exporter said it is writable
        // (`readonly()` is false, checked in `new`); `n` is at most its
        // length; `bytes` is our own memory, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), target.as_ptr().cast::<u8>(), n);
        }
        n
    }
}
