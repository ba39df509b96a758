//! The error type of every store operation.

use std::path::PathBuf;

/// Everything that can go wrong while opening, reading or writing a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another live process (or another open handle) holds the store's lock.
    #[error("store {} is in use by process {pid}", dir.display())]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// The pid recorded in the lock file by its holder (0 if it could not be read).
        pid: u32,
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
    /// A stored key or value could not be decoded.
    #[error("corrupt {what} in store: {detail}")]
    Corrupt {
        /// Which record was affected, e.g. "trial 7".
        what: String,
        /// Why it could not be decoded.
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
            StoreError::UnsupportedSchema { .. } => "store-schema",
            StoreError::Encode { .. } => "store-encode",
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
