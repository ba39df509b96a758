//! The exclusive `flock` on `<dir>/LOCK` that makes the tuner the single writer.
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
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: read_owner_pid(&mut file),
                })
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
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
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

/// Reads the owner's pid from the lock file, retrying briefly in case the owner
/// has taken the lock but not yet written its pid; 0 when it cannot be read.
fn read_owner_pid(file: &mut File) -> u32 {
    for _ in 0..20 {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        if read.is_ok() {
            if let Ok(pid) = text.trim().parse::<u32>() {
                return pid;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_in_same_process_conflicts_and_names_our_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DirLock::acquire(dir.path()).expect("first lock");
        match DirLock::acquire(dir.path()) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        let again = DirLock::acquire(dir.path()).expect("lock is free after drop");
        drop(again);
    }
}
