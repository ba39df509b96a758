//! A trial's process: started in a process group of its own, so that a stop reaches everything it
//! started (a launcher's children too), and ended with SIGTERM, a grace period, then SIGKILL.

use std::ffi::OsString;
use std::process::Stdio;
use tokio::process::{Child, Command};

/// A running trial process and its process group.
pub struct TrialProcess {
    /// The process (its pid is the group's id).
    pub child: Child,
    pgid: libc::pid_t,
}

impl TrialProcess {
    /// Starts `program args...` with stdout and stderr piped, in a new process group.
    pub fn spawn(program: &OsString, args: &[OsString]) -> std::io::Result<Self> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own group: a terminal's Ctrl-C reaches the tuner alone, which then stops its
        // trials in order; and a stop reaches whatever the trial started.
        command.process_group(0);
        command.kill_on_drop(true);
        die_with_parent(&mut command);
        let child = command.spawn()?;
        let pgid = child.id().map_or(0, |id| id as libc::pid_t);
        Ok(TrialProcess { child, pgid })
    }

    /// Sends `signal` to every process of the trial's group.
    pub fn signal_group(&self, signal: libc::c_int) {
        if self.pgid > 0 {
            // SAFETY: killpg has no memory-safety preconditions; a group that is gone gives ESRCH.
            unsafe {
                libc::killpg(self.pgid, signal);
            }
        }
    }
}

impl Drop for TrialProcess {
    /// Whatever is left of the group goes with it (a launcher's children that outlived it).
    fn drop(&mut self) {
        self.signal_group(libc::SIGKILL);
    }
}

/// Makes the kernel kill the trial if the tuner dies (even by SIGKILL), so no orphan trains on.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and the closure touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
