//! The one error type of the trainer.

use std::path::PathBuf;

/// Everything that can make `train()` (or the data loader) fail.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid training config: {0}")]
    InvalidConfig(String),

    /// The dataset folder or one of its files does not exist.
    #[error("Fashion-MNIST file {path} is missing; install it with `apt-get install dataset-fashion-mnist`")]
    DatasetMissing {
        /// The folder or file that was looked for.
        path: PathBuf,
    },

    /// Reading or writing a file (data set, checkpoint) failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O (or gzip) error.
        #[source]
        source: std::io::Error,
    },

    /// A dataset file is readable but is not the IDX file it should be.
    #[error("{path} is not a valid Fashion-MNIST IDX file: {reason}")]
    BadDataset {
        /// The offending file.
        path: PathBuf,
        /// What was wrong (magic number, sizes, ...).
        reason: String,
    },

    /// A checkpoint file cannot be resumed from.
    #[error("checkpoint {path} cannot be resumed: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// A worker thread panicked (an internal bug, never caused by user input).
    #[error("internal error: {0}")]
    Internal(String),
}
