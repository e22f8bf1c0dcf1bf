//! What each C function does, in safe Rust: `ffi` only converts pointers
//! and results.
//!
//! - [`CConfig`] is `struct ipn_config`: its layout (asserted at compile
//!   time against `ipn.h`), the defaults, how a caller's bytes of any size
//!   are read, and how it becomes an [`ipn_core::Config`].
//! - [`Handle`] is `struct ipn_port`: a joined [`Port`] behind a lock, so
//!   that a C program calling from several threads never makes two
//!   `&mut Port` at once (calls on one port are serialized).
//! - [`Failure`] is a failed call: the errno and the sentence that
//!   `ipn_last_error()` returns, stored per thread by [`set_last_error`].

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ipn_core::{Config, JoinOptions, Network, OpenError, Port, Protocol, RecvError, SendError};

/// Why a call failed: `errno`, and the message for `ipn_last_error()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The errno the C function sets.
    pub errno: i32,
    /// What went wrong, naming the path and the fix where there is one.
    pub message: String,
}

impl Failure {
    /// A failure with this errno and message.
    pub fn new(errno: i32, message: impl Into<String>) -> Failure {
        Failure {
            errno,
            message: message.into(),
        }
    }

    /// A panic caught at the C boundary: `EIO`.
    pub fn internal(what: &str) -> Failure {
        Failure::new(
            libc::EIO,
            format!("internal error in libipn (a bug; please report it): {what}"),
        )
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `failure` as this thread's last error.
pub fn set_last_error(failure: &Failure) {
    let text = CString::new(failure.message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// This thread's last error message, NUL-terminated; the pointer stays
/// valid until [`set_last_error`] runs again on this thread (or the thread
/// ends), as `ipn.h` says.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// The errno that best says why a network could not be created, joined,
/// opened or removed (the same mapping as the vdeplug plugin's).
pub fn open_errno(e: &OpenError) -> i32 {
    e.errno()
}

fn open_failure(e: &OpenError) -> Failure {
    Failure::new(open_errno(e), e.to_string())
}

// ----- struct ipn_config ------------------------------------------------

/// `struct ipn_config` of `ipn.h`, version 1. Every field is a fixed-width
/// integer and there is no padding, so any bytes are a value of it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CConfig {
    /// The caller's `sizeof(struct ipn_config)`.
    pub size: u32,
    /// Most ports joined at once.
    pub ports: u32,
    /// Largest frame in bytes.
    pub mtu: u32,
    /// Frames buffered per sender; 0: the default.
    pub ring_frames: u32,
    /// Bytes buffered per sender; 0: the default.
    pub ring_bytes: u64,
    /// Owning group's gid; -1: the creator's.
    pub group: i64,
    /// 0: lossy, 1: lossless.
    pub lossless: u32,
    /// `IPN_HUB` (0) or `IPN_SWITCH` (1).
    pub protocol: u32,
    /// Permission bits.
    pub mode: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `IPN_CONFIG_SIZE_V1`: the size of version 1, the smallest accepted.
pub const CONFIG_SIZE_V1: usize = 48;

/// `IPN_CONFIG_SIZE_MAX`: the largest `size` the library means. A
/// structure this large would have hundreds of fields: a larger size is
/// garbage, never read from (`ipn_create`: `E2BIG`) nor written to
/// (`ipn_config_init_size`: `EINVAL`, nothing allocated).
pub const CONFIG_SIZE_MAX: usize = 4096;

// The layout ipn.h declares, field by field.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<CConfig>() == CONFIG_SIZE_V1);
    assert!(offset_of!(CConfig, size) == 0);
    assert!(offset_of!(CConfig, ports) == 4);
    assert!(offset_of!(CConfig, mtu) == 8);
    assert!(offset_of!(CConfig, ring_frames) == 12);
    assert!(offset_of!(CConfig, ring_bytes) == 16);
    assert!(offset_of!(CConfig, group) == 24);
    assert!(offset_of!(CConfig, lossless) == 32);
    assert!(offset_of!(CConfig, protocol) == 36);
    assert!(offset_of!(CConfig, mode) == 40);
    assert!(offset_of!(CConfig, reserved) == 44);
};

/// `IPN_HUB`.
pub const PROTOCOL_HUB: u32 = 0;
/// `IPN_SWITCH`.
pub const PROTOCOL_SWITCH: u32 = 1;

impl CConfig {
    /// The defaults, as [`Config::default`] has them.
    pub fn defaults() -> CConfig {
        let d = Config::default();
        CConfig {
            size: CONFIG_SIZE_V1 as u32,
            ports: d.max_ports,
            mtu: d.mtu,
            ring_frames: 0,
            ring_bytes: 0,
            group: -1,
            lossless: u32::from(d.lossless),
            protocol: PROTOCOL_HUB,
            mode: d.mode,
            reserved: 0,
        }
    }

    /// What `ipn_config_init_size(config, size)` writes into the caller's
    /// `size` bytes: the defaults with `size` in the size field, then zeros
    /// for fields of a newer header this library does not know (zero is
    /// their default by the ABI rules).
    pub fn init_bytes(size: usize) -> Result<Vec<u8>, Failure> {
        if size < CONFIG_SIZE_V1 {
            return Err(Failure::new(
                libc::EINVAL,
                format!(
                    "struct ipn_config of {size} bytes: it has at least {CONFIG_SIZE_V1} \
                     (IPN_CONFIG_SIZE_V1); use ipn_config_init()"
                ),
            ));
        }
        if size > CONFIG_SIZE_MAX {
            // Not a structure's size (sizeof of any version is far below
            // it): refused before anything is allocated or written.
            return Err(Failure::new(
                libc::EINVAL,
                format!(
                    "struct ipn_config of {size} bytes: no version has more than \
                     {CONFIG_SIZE_MAX} (IPN_CONFIG_SIZE_MAX); pass sizeof *config, as \
                     ipn_config_init() does"
                ),
            ));
        }
        let size32 = u32::try_from(size).unwrap_or(u32::MAX);
        let mut bytes = CConfig {
            size: size32,
            ..CConfig::defaults()
        }
        .to_bytes()
        .to_vec();
        bytes.resize(size, 0);
        Ok(bytes)
    }

    /// The structure's bytes, in this machine's byte order.
    pub fn to_bytes(&self) -> [u8; CONFIG_SIZE_V1] {
        let mut out = [0u8; CONFIG_SIZE_V1];
        let mut at = 0;
        let mut put = |field: &[u8]| {
            out[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        };
        put(&self.size.to_ne_bytes());
        put(&self.ports.to_ne_bytes());
        put(&self.mtu.to_ne_bytes());
        put(&self.ring_frames.to_ne_bytes());
        put(&self.ring_bytes.to_ne_bytes());
        put(&self.group.to_ne_bytes());
        put(&self.lossless.to_ne_bytes());
        put(&self.protocol.to_ne_bytes());
        put(&self.mode.to_ne_bytes());
        put(&self.reserved.to_ne_bytes());
        out
    }

    /// Reads a caller's structure: `bytes` are its first `size` bytes, as
    /// its size field says. Smaller than version 1: `EINVAL`. Larger than
    /// this library knows: accepted if every byte past what it knows is
    /// zero (those fields' defaults), `E2BIG` if not, as the ABI rules in
    /// `ipn.h` promise.
    pub fn from_bytes(bytes: &[u8]) -> Result<CConfig, Failure> {
        if bytes.len() < CONFIG_SIZE_V1 {
            return Err(Failure::new(
                libc::EINVAL,
                format!(
                    "struct ipn_config says it has {} bytes; it has at least {CONFIG_SIZE_V1} \
                     (IPN_CONFIG_SIZE_V1): initialize it with ipn_config_init()",
                    bytes.len()
                ),
            ));
        }
        if let Some(at) = bytes[CONFIG_SIZE_V1..].iter().position(|&b| b != 0) {
            return Err(Failure::new(
                libc::E2BIG,
                format!(
                    "struct ipn_config has {} bytes and byte {} is set, but this libipn {} \
                     knows only the first {CONFIG_SIZE_V1}: the program uses a field of a newer \
                     ipn.h; install a newer libipn",
                    bytes.len(),
                    CONFIG_SIZE_V1 + at,
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        Ok(CConfig {
            size: u32_at(0),
            ports: u32_at(4),
            mtu: u32_at(8),
            ring_frames: u32_at(12),
            ring_bytes: u64_at(16),
            group: u64_at(24) as i64,
            lossless: u32_at(32),
            protocol: u32_at(36),
            mode: u32_at(40),
            reserved: u32_at(44),
        })
    }

    /// The core's configuration. The ranges of ports, MTU, ring sizes and
    /// mode are checked by the core when the network is made.
    pub fn to_config(&self) -> Result<Config, Failure> {
        let invalid =
            |what: String| Failure::new(libc::EINVAL, format!("struct ipn_config: {what}"));
        let protocol = match self.protocol {
            PROTOCOL_HUB => Protocol::Hub,
            PROTOCOL_SWITCH => Protocol::Switch,
            other => {
                return Err(invalid(format!(
                    "protocol {other}: use IPN_HUB (0) or IPN_SWITCH (1)"
                )))
            }
        };
        let lossless = match self.lossless {
            0 => false,
            1 => true,
            other => return Err(invalid(format!("lossless {other}: use 0 or 1"))),
        };
        let group = match self.group {
            -1 => None,
            gid if (0..i64::from(u32::MAX)).contains(&gid) => Some(gid as u32),
            other => {
                return Err(invalid(format!(
                    "group {other} is not a gid; -1 means the creator's group"
                )))
            }
        };
        if self.reserved != 0 {
            return Err(invalid(format!(
                "reserved is {}; it must be 0 (use ipn_config_init())",
                self.reserved
            )));
        }
        Ok(Config {
            protocol,
            max_ports: self.ports,
            mtu: self.mtu,
            ring_slots: (self.ring_frames != 0).then_some(self.ring_frames),
            ring_bytes: (self.ring_bytes != 0).then_some(self.ring_bytes),
            lossless,
            mode: self.mode,
            group,
        })
    }
}

// ----- networks ------------------------------------------------------------

/// `ipn_create`.
pub fn create(path: &Path, config: &Config) -> Result<(), Failure> {
    Network::create(path, config)
        .map(drop)
        .map_err(|e| open_failure(&e))
}

/// `IPN_REMOVE_FORCE`.
pub const REMOVE_FORCE: u32 = 0x1;

/// `ipn_remove`.
pub fn remove(path: &Path, flags: u32) -> Result<(), Failure> {
    if flags & !REMOVE_FORCE != 0 {
        return Err(Failure::new(
            libc::EINVAL,
            format!("ipn_remove: unknown flags {flags:#x}; the only flag is IPN_REMOVE_FORCE"),
        ));
    }
    Network::remove(path, flags & REMOVE_FORCE != 0).map_err(|e| open_failure(&e))
}

// ----- ports -----------------------------------------------------------------

/// `IPN_JOIN_READ_ONLY`.
pub const JOIN_READ_ONLY: u32 = 0x1;
/// `IPN_JOIN_WRITE_ONLY`.
pub const JOIN_WRITE_ONLY: u32 = 0x2;
/// `IPN_JOIN_CREATE`.
pub const JOIN_CREATE: u32 = 0x4;

/// How long a call may wait, from its `timeout_ms` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// 0: do not wait.
    Now,
    /// -1: as long as it takes.
    Forever,
    /// Positive: at most this long.
    After(Duration),
}

impl Timeout {
    /// Reads `timeout_ms`: -1, 0 or a positive number of milliseconds.
    pub fn from_ms(ms: i32) -> Result<Timeout, Failure> {
        match ms {
            -1 => Ok(Timeout::Forever),
            0 => Ok(Timeout::Now),
            ms if ms > 0 => Ok(Timeout::After(Duration::from_millis(ms as u64))),
            ms => Err(Failure::new(
                libc::EINVAL,
                format!("timeout of {ms} ms: give -1 (wait as long as it takes), 0 or more"),
            )),
        }
    }
}

/// `struct ipn_port`: a joined port. The lock serializes the calls of a C
/// program's threads on one port (see `ipn.h`); it is taken for the
/// whole call, a blocking receive included.
#[derive(Debug)]
pub struct Handle {
    port: Mutex<Port>,
    /// Fixed when joining: read without the lock.
    fd: RawFd,
    mtu: u32,
    index: u32,
}

impl Handle {
    /// `ipn_join_ex`: `config` is used only with [`JOIN_CREATE`].
    pub fn join(
        path: &Path,
        description: &str,
        flags: u32,
        config: Option<&Config>,
    ) -> Result<Handle, Failure> {
        let known = JOIN_READ_ONLY | JOIN_WRITE_ONLY | JOIN_CREATE;
        if flags & !known != 0 {
            return Err(Failure::new(
                libc::EINVAL,
                format!(
                    "ipn_join_ex: unknown flags {:#x}; the flags are IPN_JOIN_READ_ONLY, \
                     IPN_JOIN_WRITE_ONLY and IPN_JOIN_CREATE",
                    flags & !known
                ),
            ));
        }
        let read_only = flags & JOIN_READ_ONLY != 0;
        let write_only = flags & JOIN_WRITE_ONLY != 0;
        if read_only && write_only {
            return Err(Failure::new(
                libc::EINVAL,
                "ipn_join_ex: IPN_JOIN_READ_ONLY and IPN_JOIN_WRITE_ONLY together make a port \
                 that does nothing; give one or neither",
            ));
        }
        let options = JoinOptions {
            description: description.to_owned(),
            read: !write_only,
            write: !read_only,
            ..JoinOptions::default()
        };
        let joined = if flags & JOIN_CREATE != 0 {
            let default = Config::default();
            Port::join_or_create(path, config.unwrap_or(&default), &options)
        } else {
            Port::join(path, &options)
        };
        let port = joined.map_err(|e| open_failure(&e))?;
        Ok(Handle {
            fd: port.as_raw_fd(),
            mtu: port.mtu(),
            index: port.index(),
            port: Mutex::new(port),
        })
    }

    /// The port, for one call. A panic during an earlier call (caught at
    /// the C boundary) poisons it: later calls fail with `EIO`.
    fn port(&self) -> Result<MutexGuard<'_, Port>, Failure> {
        self.port.lock().map_err(|_| {
            Failure::internal("an earlier call on this port failed inside libipn; close the port")
        })
    }

    /// `ipn_send_timeout` (and `ipn_send`, which waits [`Timeout::Forever`]):
    /// returns the frame's length.
    pub fn send(&self, frame: &[u8], timeout: Timeout) -> Result<usize, Failure> {
        let mut port = self.port()?;
        let result = match timeout {
            Timeout::Now => port.try_send(frame),
            Timeout::Forever => port.send(frame),
            Timeout::After(t) => port.send_timeout(frame, t),
        };
        result.map(|()| frame.len()).map_err(|e| {
            let errno = match e {
                SendError::TooBig { .. } => libc::EMSGSIZE,
                SendError::Empty => libc::EINVAL,
                SendError::WouldBlock | SendError::TimedOut => libc::EAGAIN,
                SendError::NotWriting => libc::EBADF,
                SendError::Damaged { .. } => libc::ENETDOWN,
                // C ports do not take offloads (yet): never parsed.
                SendError::Offload(_) => libc::EINVAL,
            };
            Failure::new(errno, e.to_string())
        })
    }

    /// `ipn_recv`: returns the bytes copied. [`Timeout::Now`] is the
    /// receive a `poll` loop makes: when nothing is left it also quiets
    /// the fd.
    pub fn recv(&self, buf: &mut [u8], timeout: Timeout) -> Result<usize, Failure> {
        let mut port = self.port()?;
        let result = match timeout {
            Timeout::Now => port.try_recv_after_poll(buf),
            Timeout::Forever => port.recv(buf),
            Timeout::After(t) => port.recv_timeout(buf, t),
        };
        result.map_err(|e| {
            let errno = match &e {
                RecvError::WouldBlock | RecvError::TimedOut => libc::EAGAIN,
                RecvError::NotReading => libc::EBADF,
                RecvError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
                RecvError::Damaged { .. } => libc::ENETDOWN,
            };
            Failure::new(errno, e.to_string())
        })
    }

    /// `ipn_fd`: the doorbell socket, readable while frames wait.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// `ipn_mtu`.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// `ipn_index`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// `ipn_readers` and `ipn_writers`: live ports that read and write,
    /// this one included.
    pub fn membership(&self) -> Result<(u32, u32), Failure> {
        let m = self.port()?.membership();
        Ok((m.readers, m.writers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_bytes_round_trip_to_the_core_defaults() {
        let bytes = CConfig::init_bytes(CONFIG_SIZE_V1).unwrap();
        let c = CConfig::from_bytes(&bytes).unwrap();
        assert_eq!(c.size as usize, CONFIG_SIZE_V1);
        assert_eq!(c.to_config().unwrap(), Config::default());
    }

    #[test]
    fn a_larger_structure_is_read_when_its_unknown_fields_are_zero() {
        let bytes = CConfig::init_bytes(64).unwrap();
        assert_eq!(bytes.len(), 64);
        assert!(bytes[CONFIG_SIZE_V1..].iter().all(|&b| b == 0));
        let c = CConfig::from_bytes(&bytes).unwrap();
        assert_eq!(c.size, 64);
        let mut set = bytes.clone();
        set[60] = 1;
        assert_eq!(CConfig::from_bytes(&set).unwrap_err().errno, libc::E2BIG);
    }

    #[test]
    fn a_smaller_structure_is_refused() {
        assert_eq!(CConfig::init_bytes(40).unwrap_err().errno, libc::EINVAL);
        assert_eq!(
            CConfig::from_bytes(&[0; 40]).unwrap_err().errno,
            libc::EINVAL
        );
    }

    #[test]
    fn fields_map_to_the_core_config() {
        let c = CConfig {
            ports: 8,
            mtu: 9000,
            ring_frames: 64,
            ring_bytes: 1 << 20,
            group: 100,
            lossless: 1,
            protocol: PROTOCOL_SWITCH,
            mode: 0o700,
            ..CConfig::defaults()
        };
        let back = CConfig::from_bytes(&c.to_bytes()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            back.to_config().unwrap(),
            Config {
                protocol: Protocol::Switch,
                max_ports: 8,
                mtu: 9000,
                ring_slots: Some(64),
                ring_bytes: Some(1 << 20),
                lossless: true,
                mode: 0o700,
                group: Some(100),
            }
        );
        // 0 leaves the choice to the library, as for ring_bytes.
        assert_eq!(CConfig::defaults().to_config().unwrap(), Config::default());
    }

    #[test]
    fn bad_fields_are_einval() {
        for c in [
            CConfig {
                protocol: 2,
                ..CConfig::defaults()
            },
            CConfig {
                lossless: 2,
                ..CConfig::defaults()
            },
            CConfig {
                group: -2,
                ..CConfig::defaults()
            },
            CConfig {
                group: i64::from(u32::MAX),
                ..CConfig::defaults()
            },
            CConfig {
                reserved: 1,
                ..CConfig::defaults()
            },
        ] {
            assert_eq!(c.to_config().unwrap_err().errno, libc::EINVAL, "{c:?}");
        }
    }

    #[test]
    fn timeouts() {
        assert_eq!(Timeout::from_ms(-1).unwrap(), Timeout::Forever);
        assert_eq!(Timeout::from_ms(0).unwrap(), Timeout::Now);
        assert_eq!(
            Timeout::from_ms(5).unwrap(),
            Timeout::After(Duration::from_millis(5))
        );
        assert_eq!(Timeout::from_ms(-2).unwrap_err().errno, libc::EINVAL);
    }

    #[test]
    fn last_error_is_per_thread_and_never_null() {
        set_last_error(&Failure::new(libc::EINVAL, "here"));
        std::thread::spawn(|| {
            assert!(!last_error_ptr().is_null());
            LAST_ERROR.with(|l| assert_eq!(l.borrow().to_bytes(), b""));
        })
        .join()
        .unwrap();
        LAST_ERROR.with(|l| assert_eq!(l.borrow().to_bytes(), b"here"));
    }
}
