//! Durable history of jizhi-tune studies and trials: an fsync'd append-only journal as the
//! source of truth, indexed in sled for fast reads.
//!
//! One [`Store`] per study holds the study record, its trials (parameters, status, outcome), each
//! trial's per-epoch metrics, an audit event log, the command line each trial was planned with and
//! the trials inherited from a parent study. The tuner is the single writer: [`Store::open`] takes
//! an exclusive `flock` on `<dir>/LOCK`, which the kernel releases if the tuner dies. Every write
//! is appended to `<dir>/journal` and fsync'd before it returns, then applied to the sled index,
//! so a SIGKILLed tuner loses no state change that a call reported as done: the next open replays
//! whatever the index had not made durable. Damaged files give errors, never a silent loss;
//! [`check`] reports what is intact and [`repair`] recovers it into a new store.
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
//!     modelled_step_secs: None,
//!     epochs: Vec::new(),
//! })?;
//! for trial in store.trials()? {
//!     println!("{} {:?} {} epochs", trial.id, trial.status, trial.epochs.len());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Crate features
//!
//! None.

#![warn(missing_docs)]

mod codec;
mod error;
mod floats;
mod index;
mod inspect;
mod journal;
mod keys;
mod lock;
mod records;
mod recover;
mod schema;
mod store;

pub use error::StoreError;
pub use inspect::{check, repair, CheckReport, RepairReport, Source};
pub use journal::Damage;
pub use records::{EpochMetrics, Event, StudyRecord, TrialRecord, TrialStatus};
pub use schema::SCHEMA_VERSION;
pub use store::{Change, InheritedTrial, Store};
