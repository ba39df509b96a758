//! The exclusive `flock` on `<dir>/LOCK` that makes the tuner the single writer.
//!
//! The file holds the owner's pid on its first line and its command line on the second, so a
//! refused second process can say who holds the store.
//!
//! The lock belongs to the open file description, so it is released when the
//! [`DirLock`] is dropped or when the process dies (even by SIGKILL): a crashed
//! tuner never leaves a stale lock. The file is opened close-on-exec, so child
//! processes (trainers) do not inherit it.

use crate::error::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the lock file inside a store directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A held exclusive lock on a store directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    /// The open lock file; closing it releases the lock.
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` (which must exist) and records our pid in it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |op: &'static str, path: &PathBuf| {
            let path = path.clone();
            move |source| StoreError::Io { op, path, source }
        };
        // No truncation here: the file may hold the current owner's pid.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        match try_flock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let (pid, recorded) = read_owner(&mut file);
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid,
                    command: live_command(pid).or(recorded).unwrap_or_default(),
                });
            }
            Err(source) => {
                return Err(StoreError::Io {
                    op: "lock",
                    path,
                    source,
                })
            }
        }
        file.set_len(0)
            .map_err(io_err("truncate lock file", &path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("write lock file", &path))?;
        let command: Vec<String> = std::env::args().collect();
        file.write_all(format!("{}\n{}\n", std::process::id(), command.join(" ")).as_bytes())
            .map_err(io_err("write lock file", &path))?;
        file.flush().map_err(io_err("write lock file", &path))?;
        Ok(DirLock { _file: file })
    }
}

/// Tries `flock(LOCK_EX | LOCK_NB)`: `Ok(true)` when taken, `Ok(false)` when held elsewhere.
fn try_flock_exclusive(file: &File) -> std::io::Result<bool> {
    loop {
        // SAFETY: the descriptor is valid for the lifetime of `file`, and flock
        // neither reads nor writes memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK || code == libc::EAGAIN => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Reads the owner's pid and recorded command line from the lock file, retrying briefly in case
/// the owner has taken the lock but not yet written them; pid 0 when it cannot be read.
fn read_owner(file: &mut File) -> (u32, Option<String>) {
    for _ in 0..20 {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if read.is_ok() {
            let mut lines = text.lines();
            if let Some(Ok(pid)) = lines.next().map(|l| l.trim().parse::<u32>()) {
                let command = lines.next().map(str::trim).filter(|c| !c.is_empty());
                return (pid, command.map(str::to_string));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (0, None)
}

/// The command line of a running process, as the kernel reports it (Linux only).
fn live_command(pid: u32) -> Option<String> {
    if pid == 0 {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then(|| args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_same_process_conflicts_and_names_our_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first lock");
        match DirLock::acquire(dir.path()) {
            Err(StoreError::Locked { pid, command, .. }) => {
                assert_eq!(pid, std::process::id());
                let me = std::env::args().next().unwrap_or_default();
                assert!(
                    command.starts_with(&me),
                    "{command} should be this test's command line"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        let again = DirLock::acquire(dir.path()).expect("lock is free after drop");
        drop(again);
    }
}
