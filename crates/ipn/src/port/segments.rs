//! Frames waiting to be received, cut from one frame with a virtio-net
//! header, for a port that does not take offloads: a GSO frame becomes the
//! wire frames it stands for (`offload::segment`), a frame whose checksum
//! was left to complete gets it (`offload::complete_checksum`). The port
//! hands them out one per receive, before it reads the rings again.

use std::collections::VecDeque;

use crate::offload::{self, OffloadError, VirtioNetHdr};

#[derive(Debug, Default)]
pub struct Segments {
    data: Vec<u8>,
    /// `(start, len)` of each waiting frame in `data`.
    spans: VecDeque<(usize, usize)>,
}

impl Segments {
    /// Replaces what waits with the wire frames `frame` (with `hdr`)
    /// stands for, each at most `mtu` bytes. On error nothing waits.
    pub fn fill(
        &mut self,
        hdr: &VirtioNetHdr,
        frame: &mut [u8],
        mtu: usize,
    ) -> Result<(), OffloadError> {
        self.data.clear();
        self.spans.clear();
        if hdr.is_gso() {
            let (data, spans) = (&mut self.data, &mut self.spans);
            offload::segment(hdr, frame, mtu, |segment| {
                spans.push_back((data.len(), segment.len()));
                data.extend_from_slice(segment);
            })?;
        } else {
            // Not GSO: one frame, which must fit `mtu` as it is. (A sender
            // checks this; any member can write any descriptor.)
            offload::check(hdr, frame, mtu)?;
            if hdr.needs_csum() {
                offload::complete_checksum(
                    frame,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )?;
            }
            self.spans.push_back((0, frame.len()));
            self.data.extend_from_slice(frame);
        }
        Ok(())
    }

    /// Whether a frame waits.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Copies the next waiting frame into `buf` (truncated to it); its
    /// length, or `None` when nothing waits.
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Option<usize> {
        let (start, len) = self.spans.pop_front()?;
        let n = len.min(buf.len());
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Some(n)
    }
}
