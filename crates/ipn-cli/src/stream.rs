//! Frames on standard input and output: one per text line, or the vde_plug
//! stream record format.
//!
//! The record format is the one vdeplug4's `libvdestream` speaks (what
//! `vde_plug` writes on its standard output and reads on its standard
//! input, e.g. through `dpipe` or `ssh`): each frame is a 2-byte
//! big-endian length followed by exactly that many bytes. A record of
//! length 0 carries nothing and is skipped, as `vdestream_recv` does.
//!
//! [`Input`] reads standard input without ever blocking for longer than
//! [`signals::TICK`], so that SIGINT/SIGTERM are noticed while idle.

use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::signals;

/// Read buffer: larger than the largest possible frame (65535) plus its
/// header, so any frame fits whole.
const BUFFER: usize = 128 * 1024;

/// Writes one frame as a stream record (2-byte big-endian length, then the
/// bytes). `frame` is at most 65535 bytes (the largest ipn MTU).
pub fn write_record(out: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    let len = u16::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 65535 bytes"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(frame)
}

/// What the next read of standard input gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A frame: its bytes are `Input::bytes(range)`.
    Frame(Range<usize>),
    /// A frame longer than the limit, of this many bytes; it was consumed.
    TooLong(usize),
    /// A record whose header announces more bytes than the input holds.
    Truncated { expected: usize, got: usize },
    /// End of input.
    End,
    /// A terminating signal arrived.
    Signal(i32),
}

/// Buffered, signal-aware standard input.
pub struct Input<F: AsFd> {
    source: F,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

enum Fill {
    More,
    End,
    Signal(i32),
}

impl<F: AsFd> Input<F> {
    pub fn new(source: F) -> Self {
        Input {
            source,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Reads more input into the buffer, waiting at most a tick at a time.
    /// Calls `idle` once before it waits, if nothing is there to read: the
    /// caller's chance to finish what it holds (a batch of frames) before
    /// the input leaves it idle.
    fn fill(&mut self, idle: &mut dyn FnMut()) -> io::Result<Fill> {
        if self.eof {
            return Ok(Fill::End);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        debug_assert!(self.end < self.buf.len());
        let tick =
            PollTimeout::try_from(signals::TICK.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        let mut waited = false;
        loop {
            if let Some(signal) = signals::caught() {
                return Ok(Fill::Signal(signal));
            }
            let fd: BorrowedFd<'_> = self.source.as_fd();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            // First a look without waiting: input that is there is read
            // at once; only input that is not makes us call `idle`.
            let timeout = if waited { tick } else { PollTimeout::ZERO };
            match poll(&mut fds, timeout) {
                Ok(0) if !waited => {
                    idle();
                    waited = true;
                    continue;
                }
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            match nix::unistd::read(fd, &mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(Fill::End);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(Fill::More);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next line, without its `\n`. Lines over `max` bytes are
    /// consumed and reported as [`Next::TooLong`] with their full length.
    /// `idle` is called before waiting for input (see `fill`).
    pub fn next_line(&mut self, max: usize, idle: &mut dyn FnMut()) -> io::Result<Next> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line = self.start..self.start + pos;
                self.start += pos + 1;
                return Ok(if pos > max {
                    Next::TooLong(pos)
                } else {
                    Next::Frame(line)
                });
            }
            if pending.len() > max {
                return self.skip_rest_of_line(idle);
            }
            match self.fill(idle)? {
                Fill::More => {}
                Fill::Signal(signal) => return Ok(Next::Signal(signal)),
                Fill::End if self.start < self.end => {
                    // A last line without a newline.
                    let line = self.start..self.end;
                    self.start = self.end;
                    return Ok(Next::Frame(line));
                }
                Fill::End => return Ok(Next::End),
            }
        }
    }

    /// Consumes the rest of an over-long line, counting its bytes.
    fn skip_rest_of_line(&mut self, idle: &mut dyn FnMut()) -> io::Result<Next> {
        let mut len = 0;
        loop {
            let pending = &self.buf[self.start..self.end];
            if let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                self.start += pos + 1;
                return Ok(Next::TooLong(len + pos));
            }
            len += pending.len();
            self.start = self.end;
            match self.fill(idle)? {
                Fill::More => {}
                Fill::End => return Ok(Next::TooLong(len)),
                Fill::Signal(signal) => return Ok(Next::Signal(signal)),
            }
        }
    }

    /// The next stream record's payload; zero-length records are skipped.
    /// A record over `max` bytes is reported as [`Next::TooLong`] (its
    /// payload is not consumed: the caller stops there). `idle` is called
    /// before waiting for input (see `fill`).
    pub fn next_record(&mut self, max: usize, idle: &mut dyn FnMut()) -> io::Result<Next> {
        loop {
            let pending = self.end - self.start;
            if pending >= 2 {
                let len =
                    u16::from_be_bytes([self.buf[self.start], self.buf[self.start + 1]]) as usize;
                if len == 0 {
                    self.start += 2;
                    continue;
                }
                if len > max {
                    return Ok(Next::TooLong(len));
                }
                if pending >= 2 + len {
                    let frame = self.start + 2..self.start + 2 + len;
                    self.start += 2 + len;
                    return Ok(Next::Frame(frame));
                }
            }
            match self.fill(idle)? {
                Fill::More => {}
                Fill::Signal(signal) => return Ok(Next::Signal(signal)),
                Fill::End if pending == 0 => return Ok(Next::End),
                Fill::End if pending == 1 => {
                    return Ok(Next::Truncated {
                        expected: 2,
                        got: 1,
                    })
                }
                Fill::End => {
                    let len = u16::from_be_bytes([self.buf[self.start], self.buf[self.start + 1]]);
                    return Ok(Next::Truncated {
                        expected: usize::from(len),
                        got: pending - 2,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn input_of(data: &[u8]) -> Input<std::fs::File> {
        let mut file = tempfile();
        file.write_all(data).unwrap();
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0)).unwrap();
        Input::new(file)
    }

    fn tempfile() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "ipn-cli-stream-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    fn frames(input: &mut Input<std::fs::File>, record: bool) -> Vec<Result<Vec<u8>, Next>> {
        let mut out = Vec::new();
        loop {
            let next = if record {
                input.next_record(100, &mut || {}).unwrap()
            } else {
                input.next_line(100, &mut || {}).unwrap()
            };
            match next {
                Next::Frame(r) => out.push(Ok(input.bytes(r).to_vec())),
                Next::End => return out,
                other @ Next::Truncated { .. } => {
                    out.push(Err(other));
                    return out;
                }
                other => out.push(Err(other)),
            }
        }
    }

    #[test]
    fn lines_split_on_newline_and_keep_a_final_unterminated_line() {
        let mut input = input_of(b"one\ntwo\n\nthree");
        let got = frames(&mut input, false);
        assert_eq!(
            got,
            vec![
                Ok(b"one".to_vec()),
                Ok(b"two".to_vec()),
                Ok(b"".to_vec()),
                Ok(b"three".to_vec())
            ]
        );
    }

    #[test]
    fn overlong_line_reports_its_full_length_and_reading_continues() {
        let mut data = vec![b'x'; 300_000];
        data.extend_from_slice(b"\nok\n");
        let mut input = input_of(&data);
        let got = frames(&mut input, false);
        assert_eq!(got, vec![Err(Next::TooLong(300_000)), Ok(b"ok".to_vec())]);
    }

    #[test]
    fn records_are_big_endian_length_prefixed_and_empty_ones_skipped() {
        let mut data = Vec::new();
        write_record(&mut data, b"abc").unwrap();
        data.extend_from_slice(&[0, 0]);
        write_record(&mut data, &[7u8; 0x0102 - 0x100 + 3]).unwrap();
        assert_eq!(&data[..5], &[0, 3, b'a', b'b', b'c']);
        let mut input = input_of(&data);
        let got = frames(&mut input, true);
        assert_eq!(got, vec![Ok(b"abc".to_vec()), Ok(vec![7u8; 5])]);
    }

    #[test]
    fn truncated_record_is_reported() {
        let mut input = input_of(&[0, 10, 1, 2, 3]);
        let got = frames(&mut input, true);
        assert_eq!(
            got,
            vec![Err(Next::Truncated {
                expected: 10,
                got: 3
            })]
        );
    }
}
