//! SIGINT and SIGTERM as a flag, so that long-running commands (`pub`,
//! `sub`, `dump`, `tap`, `grab`, `vxlan`) leave the network cleanly: they check [`caught`] at least every
//! [`TICK`] and return, which drops their `Port` (releasing the slot and
//! removing the doorbell socket) before the process exits.
//!
//! The handlers are installed without `SA_RESTART`, so a blocking system
//! call returns `EINTR`; the loops do not rely on it, though: every wait
//! they make is bounded by [`TICK`].

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Longest a command waits before looking at the flag again.
pub const TICK: Duration = Duration::from_millis(100);

/// The last terminating signal caught, or 0.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    CAUGHT.store(signal, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM from now on.
pub fn install() -> anyhow::Result<()> {
    install_for(&[Signal::SIGINT, Signal::SIGTERM])
}

/// Catches `signals` from now on (`ipn top` adds SIGHUP: its terminal
/// going away must end it too).
pub fn install_for(signals: &[Signal]) -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for &signal in signals {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe, and it replaces no handler we rely on.
        #[allow(unsafe_code)]
        unsafe { sigaction(signal, &action) }
            .map_err(|e| anyhow::anyhow!("installing the {signal} handler: {e}"))?;
    }
    Ok(())
}

/// The signal that asked us to stop, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}
