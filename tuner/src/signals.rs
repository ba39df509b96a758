//! SIGINT (Ctrl-C) and SIGTERM during a search: the first asks the scheduler to stop the running
//! trials cleanly; a second ends the process at once (the store loses nothing either way).
//!
//! The handler only stores the signal number; the scheduler polls it (see `control::Controls`),
//! because nothing else is safe to do inside a signal handler.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The first stop signal received, 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Set once the scheduler has stopped the search because of the signal.
static HONOURED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    if RECEIVED
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // The second one: the default action, now (the user insists).
        // SAFETY: signal() and raise() are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// Catches SIGINT and SIGTERM for the rest of the process's life.
pub fn catch() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action is fully initialised; the handler only touches atomics and calls
        // async-signal-safe functions.
        let failed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut()) != 0
        };
        if failed {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The stop signal received, if any.
pub fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// Records that the search was stopped because of the signal.
pub fn honour() {
    HONOURED.store(true, Ordering::SeqCst);
}

/// The signal that stopped the search, if one did (one that came after the search's end did not).
pub fn stopped_by() -> Option<i32> {
    received().filter(|_| HONOURED.load(Ordering::SeqCst))
}

/// The usual name of a stop signal.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
