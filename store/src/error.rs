//! The error type of every store operation.

use std::path::PathBuf;

/// Everything that can go wrong while opening, reading or writing a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another live process (or another open handle) holds the store's lock.
    #[error(
        "store {} is in use by process {pid}{}; wait for it to end (or stop it), or use another store",
        dir.display(),
        if command.is_empty() { String::new() } else { format!(" (`{command}`)") }
    )]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// The pid recorded in the lock file by its holder (0 if it could not be read).
        pid: u32,
        /// The holder's command line (empty if unknown).
        command: String,
    },
    /// A file-system operation on the store directory or its lock file failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being attempted, e.g. "create directory".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The sled database reported an error.
    #[error("database {op} failed in {}: {source}", path.display())]
    Sled {
        /// What was being attempted, e.g. "insert trial".
        op: &'static str,
        /// The sled directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sled::Error,
    },
    /// A stored key or value could not be decoded, or the store's files disagree.
    #[error("corrupt {what} in store: {detail}")]
    Corrupt {
        /// Which record was affected, e.g. "trial 7".
        what: String,
        /// Why it could not be decoded.
        detail: String,
    },
    /// The store's files are damaged (or disagree with each other) beyond what opening it can fix.
    #[error(
        "store {} is damaged: {detail}; `jizhi-tune store check {}` shows what is intact and \
         `jizhi-tune store repair {}` recovers every intact trial into a new store",
        dir.display(), dir.display(), dir.display()
    )]
    Damaged {
        /// The store directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The store was written by a newer version of this program.
    #[error(
        "store {} has schema version {found}, but this build only understands versions up to {supported}; use a newer jizhi-tune",
        dir.display()
    )]
    UnsupportedSchema {
        /// The store directory.
        dir: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// A record could not be encoded for storage.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// Which record was being written.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// A stable short code naming the variant, for logs and exit reports.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Locked { .. } => "store-locked",
            StoreError::Io { .. } => "store-io",
            StoreError::Sled { .. } => "store-db",
            StoreError::Corrupt { .. } => "store-corrupt",
            StoreError::Damaged { .. } => "store-damaged",
            StoreError::UnsupportedSchema { .. } => "store-schema",
            StoreError::Encode { .. } => "store-encode",
        }
    }

    /// Turns a `Corrupt` or database error into `Damaged` naming the store `dir`; others pass.
    pub(crate) fn in_store(self, dir: &std::path::Path) -> Self {
        match self {
            StoreError::Corrupt { what, detail } => StoreError::Damaged {
                dir: dir.to_path_buf(),
                detail: format!("{what}: {detail}"),
            },
            StoreError::Sled {
                op,
                source: sled::Error::Corruption { .. },
                ..
            } => StoreError::Damaged {
                dir: dir.to_path_buf(),
                detail: format!("the index database reported corruption during {op}"),
            },
            other => other,
        }
    }

    /// Builds a `Corrupt` error.
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
