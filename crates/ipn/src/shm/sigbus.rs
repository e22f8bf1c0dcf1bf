//! Confining SIGBUS to the mapping.
//!
//! A member with write access can truncate `shm` under every other member
//! (and a full tmpfs refuses to back a page when it is first written).
//! Touching a mapped page beyond the end of the file, or one the file
//! system cannot back, raises SIGBUS, which kills the process by default.
//! As systemd's journal reader does, ipn handles it instead:
//!
//! - every mapping of a network file is registered here (base and length);
//! - the SIGBUS handler looks the faulting address up; inside a registered
//!   mapping, it maps anonymous zero pages over the rest of that mapping
//!   (`MAP_FIXED`), marks the mapping damaged, and returns, so the faulting
//!   access is retried and reads zeros;
//! - `SharedFile::damaged` tells the port, which ends its operations with
//!   an error naming the path (every value read from the mapping is checked
//!   anyway, so a zero page is just one more bad value);
//! - a fault anywhere else goes to the handler that was installed before
//!   ours, or, if that was the default, kills the process as SIGBUS always
//!   did.
//!
//! The handler is async-signal-safe: it only reads atomics from a static
//! table and calls `mmap` and `sigaction`. Each table entry is a small
//! seqlock, so the handler never uses a base paired with another
//! mapping's length while a mapping is registered or removed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most mappings one process can have registered at once (ports and
/// networks open at the same time).
pub const MAX_MAPPINGS: usize = 4096;

struct Region {
    in_use: AtomicBool,
    /// Odd while `base`/`len` are being changed.
    seq: AtomicU64,
    base: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicBool,
}

impl Region {
    const fn new() -> Region {
        Region {
            in_use: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            damaged: AtomicBool::new(false),
        }
    }

    fn set(&self, base: usize, len: usize) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.base.store(base, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::AcqRel);
    }

    /// `(base, len)`, if read consistently.
    fn get(&self) -> Option<(usize, usize)> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let base = self.base.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == before).then_some((base, len))
    }
}

static REGIONS: [Region; MAX_MAPPINGS] = [const { Region::new() }; MAX_MAPPINGS];
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
/// The SIGBUS action that was in place before ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A registered mapping; unregister it before unmapping.
#[derive(Debug)]
pub struct Registration(usize);

impl Registration {
    /// Whether a SIGBUS hit this mapping (it now reads zeros past the
    /// fault).
    pub fn damaged(&self) -> bool {
        REGIONS[self.0].damaged.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let region = &REGIONS[self.0];
        region.set(0, 0);
        region.damaged.store(false, Ordering::Relaxed);
        region.in_use.store(false, Ordering::Release);
    }
}

/// Registers the mapping `base..base + len`, installing the handler first
/// if this is the process's first mapping.
pub fn register(base: usize, len: usize) -> io::Result<Registration> {
    install()?;
    for (index, region) in REGIONS.iter().enumerate() {
        if region
            .in_use
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            region.damaged.store(false, Ordering::Relaxed);
            region.set(base, len);
            return Ok(Registration(index));
        }
    }
    Err(io::Error::other(format!(
        "more than {MAX_MAPPINGS} ipn networks and ports open in one process"
    )))
}

fn install() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(page) = usize::try_from(page) {
            PAGE_SIZE.store(page, Ordering::Relaxed);
        }
        let failed = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: `old` and `action` are fully initialised (zeroed, then
        // every field we rely on set) and valid pointers. The previous
        // action is saved before ours is installed, so the handler always
        // finds it. The handler is async-signal-safe (module docs).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return Err(failed());
            }
            let _ = PREVIOUS.set(old);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
                return Err(failed());
            }
        }
        Ok(())
    });
    installed.map_err(io::Error::from_raw_os_error)
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler;
    // for SIGBUS from a memory access `si_addr` is the faulting address.
    let address = unsafe { (*info).si_addr() } as usize;
    for region in &REGIONS {
        if !region.in_use.load(Ordering::Acquire) {
            continue;
        }
        let Some((base, len)) = region.get() else {
            continue;
        };
        if address < base || address - base >= len {
            continue;
        }
        let page = address & !(PAGE_SIZE.load(Ordering::Relaxed) - 1);
        let end = base + len;
        // SAFETY: `page..end` lies inside a mapping this process made and
        // still owns (registered until just before munmap); replacing it
        // with fresh anonymous pages (MAP_FIXED) changes only what later
        // loads of that range read: zeros, valid for the atomics that are
        // the only way the range is accessed.
        let mapped = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                end - page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            region.damaged.store(true, Ordering::Relaxed);
            return;
        }
        break;
    }
    chain(signal, info, context);
}

/// Hands a SIGBUS that is not ours to the previous handler, or restores
/// the default action so that returning re-raises it and the process dies
/// of it, as it would have without ipn.
fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS.get();
    let handler = previous.map_or(libc::SIG_DFL, |p| p.sa_sigaction);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: a zeroed sigaction with SIG_DFL is a valid argument.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        }
        return;
    }
    let siginfo = previous.is_some_and(|p| p.sa_flags & libc::SA_SIGINFO != 0);
    // SAFETY: `handler` is the function the program installed for SIGBUS,
    // called with the signature its SA_SIGINFO flag says it has.
    unsafe {
        if siginfo {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            f(signal, info, context);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(signal);
        }
    }
}
