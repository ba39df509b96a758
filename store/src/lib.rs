//! Durable sled-backed history of jizhi-tune studies and trials.
//!
//! One [`Store`] (one sled database) per study holds the study record, its
//! trials (parameters, status, outcome), each trial's per-epoch metrics and an
//! audit event log. The tuner is the single writer: [`Store::open`] takes an
//! exclusive `flock` on `<dir>/LOCK`, which the kernel releases if the tuner dies.
//! Every write is flushed to disk before it returns, so a SIGKILLed tuner loses
//! no state change that a call reported as done.
//!
//! ```no_run
//! use jizhi_store::{Store, StudyRecord, TrialRecord, TrialStatus};
//! # fn main() -> Result<(), jizhi_store::StoreError> {
//! let store = Store::open(std::path::Path::new("runs/study-a"))?;
//! if store.study()?.is_none() {
//!     store.put_study(&StudyRecord {
//!         name: "study-a".into(),
//!         space_text: "lr = [0.1, 10.0]\n".into(),
//!         seed: 7,
//!         created_unix: 1_700_000_000,
//!     })?;
//! }
//! store.put_trial(&TrialRecord {
//!     id: 0,
//!     stage: "coarse".into(),
//!     batch: 65536,
//!     proxy_batch: 3072,
//!     params: Default::default(),
//!     status: TrialStatus::Planned,
//!     attempts: 0,
//!     error: None,
//!     final_val_top1: None,
//!     wall_secs: None,
//!     epochs: Vec::new(),
//! })?;
//! for trial in store.trials()? {
//!     println!("{} {:?} {} epochs", trial.id, trial.status, trial.epochs.len());
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod codec;
mod error;
mod floats;
mod keys;
mod lock;
mod records;
mod store;

pub use error::StoreError;
pub use records::{EpochMetrics, Event, StudyRecord, TrialRecord, TrialStatus};
pub use store::{Store, SCHEMA_VERSION};
