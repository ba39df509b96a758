//! The [`Store`]: a study's journal (the truth) and sled index (fast reads), behind one lock.

use crate::error::StoreError;
use crate::index::{self, Checkpoint, Index, InheritedRecord};
use crate::journal::{self, Journal, JOURNAL_FILE};
use crate::lock::DirLock;
use crate::records::{EpochMetrics, Event, StudyRecord, TrialRecord};
use crate::{recover, schema};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use crate::journal::Entry as Change;

/// Name of the sled folder inside a store directory.
pub(crate) const DB_DIR: &str = "db";

/// Appends between two checkpoints (each checkpoint costs two sled flushes).
const CHECKPOINT_EVERY: u32 = 1024;

/// Bytes of frames written per fsync by [`Store::apply_all`].
const BULK_CHUNK: usize = 4 << 20;

/// A trial of the study a store was forked from.
#[derive(Debug, Clone, PartialEq)]
pub struct InheritedTrial {
    /// The parent's record, epochs included, under the parent's id.
    pub trial: TrialRecord,
    /// The trial command line it ran with (empty when the parent did not record one).
    pub command: Vec<String>,
}

/// A study's durable store in one directory:
///
/// - `LOCK`: exclusive lock, holding the owner's pid and command line;
/// - `journal`: append-only, checksummed, fsync'd record of every change (the source of truth);
/// - `db/`: sled index of the journal (trials, epochs, events, ...), rebuilt from it when missing.
pub struct Store {
    // Field order matters: sled is dropped (and closed) before the lock is released.
    /// The sled index.
    index: Index,
    /// The journal and write state; every write holds this lock.
    writer: Mutex<Writer>,
    /// The store directory.
    dir: PathBuf,
    /// Our exclusive lock, released last.
    _lock: DirLock,
}

/// The writing side of an open store.
struct Writer {
    journal: Journal,
    /// Appends since the last checkpoint.
    since_checkpoint: u32,
    /// Set when a write failed half-way: the index may lag the journal until the store is reopened.
    broken: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) the store in `dir` and takes its exclusive lock. Migrates an
    /// older schema, replays what a killed run journaled after its last checkpoint, and rebuilds
    /// a missing index from the journal.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        // Our lock first, so a second tuner gets a clear Locked error rather than sled's.
        let lock = DirLock::acquire(dir)?;
        Self::open_locked(dir, lock).map_err(|e| e.in_store(dir))
    }

    fn open_locked(dir: &Path, lock: DirLock) -> Result<Store, StoreError> {
        let journal_path = dir.join(JOURNAL_FILE);
        let db_path = dir.join(DB_DIR);
        let had_journal = journal_path.is_file();
        let had_index = db_path.is_dir();
        if !had_journal && !had_index {
            // A new store: the journal exists before the index, so an index without a journal
            // can only be a store of schema 1.
            journal::write_whole(&journal_path, Vec::new())?;
        }
        let index = Index::open(&db_path)?;
        match schema::read_version(&index)? {
            None if !had_index || index::guard("read the index", || index.trials.is_empty())? => {
                schema::init(&index)?;
                recover::rebuild(&index, &journal_path)?;
            }
            None => {
                return Err(StoreError::corrupt(
                    "index",
                    "it holds trials but no schema version",
                ));
            }
            Some(_) => {
                schema::migrate(&index, dir)?;
                if !journal_path.is_file() {
                    return Err(StoreError::corrupt("journal", "the file is missing"));
                }
            }
        }
        let mut journal = Journal::open(&journal_path)?;
        match index.read_checkpoint()? {
            Some(checkpoint) => recover::catch_up(&index, &mut journal, checkpoint)?,
            // Interrupted while rebuilding: do it again.
            None => {
                recover::rebuild(&index, &journal_path)?;
                journal = Journal::open(&journal_path)?;
            }
        }
        Ok(Store {
            index,
            writer: Mutex::new(Writer {
                journal,
                since_checkpoint: 0,
                broken: false,
            }),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The study record of the store in `dir`, read from its journal alone: a look that writes
    /// nothing (not even the recovery an open performs after a kill). Takes the lock while reading.
    /// None when the store has no journal, no study record, or a damaged frame hides it.
    pub fn peek_study(dir: &Path) -> Result<Option<StudyRecord>, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let _lock = DirLock::acquire(dir)?;
        journal::first_study(&path)
    }

    /// True when `dir` holds a store (a journal or an index).
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_DIR).is_dir() || dir.join(JOURNAL_FILE).is_file()
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Size of the journal in bytes.
    pub fn journal_len(&self) -> u64 {
        self.writer().journal.len()
    }

    /// The study record, if one was written.
    pub fn study(&self) -> Result<Option<StudyRecord>, StoreError> {
        self.read(|i| i.study())
    }

    /// Writes (replaces) the study record; durable on return.
    pub fn put_study(&self, study: &StudyRecord) -> Result<(), StoreError> {
        self.apply_all([Change::Study(study.clone())])
    }

    /// Inserts or replaces a trial's record (without touching its stored epochs); durable on return.
    pub fn put_trial(&self, trial: &TrialRecord) -> Result<(), StoreError> {
        let mut head = trial.clone();
        head.epochs = Vec::new();
        self.apply_all([Change::Trial(head)])
    }

    /// Appends (or replaces, keyed by epoch number) one epoch's metrics of a trial; durable on return.
    pub fn put_epoch(&self, trial_id: u64, metrics: &EpochMetrics) -> Result<(), StoreError> {
        self.apply_all([Change::Epoch {
            trial: trial_id,
            metrics: metrics.clone(),
        }])
    }

    /// Deletes all stored epochs of a trial (used before rerunning an interrupted trial); durable on return.
    pub fn clear_epochs(&self, trial_id: u64) -> Result<(), StoreError> {
        self.apply_all([Change::ClearEpochs { trial: trial_id }])
    }

    /// Records the trial command line a trial id was planned with; durable on return.
    pub fn put_command(&self, trial_id: u64, args: &[String]) -> Result<(), StoreError> {
        self.apply_all([Change::Command {
            trial: trial_id,
            args: args.to_vec(),
        }])
    }

    /// Appends an entry to the event log (state changes, for audit); durable on return.
    pub fn log_event(&self, event: &Event) -> Result<(), StoreError> {
        self.apply_all([Change::Event(event.clone())])
    }

    /// Applies many changes in order with one fsync per few MiB (imports, forks, repairs);
    /// durable on return.
    pub fn apply_all(&self, changes: impl IntoIterator<Item = Change>) -> Result<(), StoreError> {
        let mut w = self.writer();
        if w.broken {
            return Err(StoreError::corrupt(
                "store handle",
                "an earlier write failed half-way; reopen the store to bring its index up to date",
            ));
        }
        let mut pending: Vec<(Change, u64)> = Vec::new();
        let mut frames = Vec::new();
        for change in changes {
            let frame = journal::frame(&change)?;
            frames.extend_from_slice(&frame);
            pending.push((change, frame.len() as u64));
            if frames.len() >= BULK_CHUNK {
                self.write_chunk(&mut w, &frames, &pending)?;
                frames.clear();
                pending.clear();
            }
        }
        if !pending.is_empty() {
            self.write_chunk(&mut w, &frames, &pending)?;
        }
        Ok(())
    }

    /// Journals `frames` (the encoding of `changes`, each with its frame length), then applies
    /// them to the index.
    fn write_chunk(
        &self,
        w: &mut Writer,
        frames: &[u8],
        changes: &[(Change, u64)],
    ) -> Result<(), StoreError> {
        let start = w.journal.len();
        if let Err(e) = w.journal.append(frames) {
            // Take back whatever part of the frames reached the file, so later appends do not
            // follow a half frame; if even that fails, the next open cuts it as a torn tail.
            if w.journal.truncate(start).is_err() {
                w.broken = true;
            }
            return Err(e.in_store(&self.dir));
        }
        let mut end = start;
        for (change, len) in changes {
            end += len;
            if let Err(e) = self.index.apply(change, end) {
                w.broken = true;
                return Err(e.in_store(&self.dir));
            }
        }
        w.since_checkpoint += changes.len() as u32;
        if w.since_checkpoint >= CHECKPOINT_EVERY {
            self.index
                .checkpoint(Checkpoint {
                    offset: w.journal.len(),
                })
                .map_err(|e| e.in_store(&self.dir))?;
            w.since_checkpoint = 0;
        }
        Ok(())
    }

    /// One trial with its epochs (sorted by epoch).
    pub fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StoreError> {
        self.read(|i| {
            let Some(value) = i
                .trials
                .get(crate::keys::trial_key(id))
                .map_err(i.err("read trial"))?
            else {
                return Ok(None);
            };
            let mut trial = index::decode_trial(id, &value)?;
            trial.epochs = i.epochs_of(id)?;
            Ok(Some(trial))
        })
    }

    /// Every trial record without its epochs, sorted by id: what resuming a study needs, fast.
    pub fn trial_records(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.read(|i| i.trial_heads())
    }

    /// Every trial, sorted by id, each with its epochs sorted by epoch.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        self.read(|i| {
            let mut trials = i.trial_heads()?;
            // One pass over the epoch key space, which is sorted by (trial, epoch) like `trials`.
            let mut next = 0;
            for (trial_id, metrics) in i.all_epochs()? {
                while next < trials.len() && trials[next].id < trial_id {
                    next += 1;
                }
                if let Some(trial) = trials.get_mut(next).filter(|t| t.id == trial_id) {
                    trial.epochs.push(metrics);
                }
                // Epochs of a trial without a record are orphans and are skipped.
            }
            Ok(trials)
        })
    }

    /// The whole event log in order.
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        self.read(|i| i.events())
    }

    /// Trial id -> the trial command line it was planned with.
    pub fn commands(&self) -> Result<BTreeMap<u64, Vec<String>>, StoreError> {
        self.read(|i| i.commands()).map(|c| c.into_iter().collect())
    }

    /// The trials inherited from the study this one was forked from, by the parent's id.
    pub fn inherited(&self) -> Result<Vec<InheritedTrial>, StoreError> {
        self.read(|i| i.inherited()).map(|v| {
            v.into_iter()
                .map(|InheritedRecord { trial, args }| InheritedTrial {
                    trial,
                    command: args,
                })
                .collect()
        })
    }

    /// Runs a read against the index; a sled panic or bad record becomes a `Damaged` error.
    fn read<T>(&self, f: impl FnOnce(&Index) -> Result<T, StoreError>) -> Result<T, StoreError> {
        index::guard("read the index", || f(&self.index))
            .and_then(|r| r)
            .map_err(|e| e.in_store(&self.dir))
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves nothing half-done that the `broken` flag misses.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let w = self.writer();
        if w.since_checkpoint > 0 && !w.broken {
            // Best effort: a missed checkpoint only means a longer replay at the next open.
            let offset = w.journal.len();
            drop(w);
            let _ = self.index.checkpoint(Checkpoint { offset });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::records::TrialStatus;

    fn trial(id: u64) -> TrialRecord {
        TrialRecord {
            id,
            stage: "coarse".into(),
            batch: 65536,
            proxy_batch: 3072,
            params: Default::default(),
            status: TrialStatus::Planned,
            attempts: 0,
            error: None,
            final_val_top1: None,
            wall_secs: None,
            modelled_step_secs: None,
            epochs: Vec::new(),
        }
    }

    #[test]
    fn garbage_trial_value_is_damage_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.put_trial(&trial(1)).expect("put");
        store
            .index
            .trials
            .insert(keys::trial_key(2), &b"\xff not json {"[..])
            .expect("raw insert");
        let err = store.trials().expect_err("garbage must not decode");
        assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
        assert_eq!(err.code(), "store-damaged");
        assert!(err.to_string().contains("trial 2"), "{err}");
        assert!(err.to_string().contains("store repair"), "{err}");
        assert!(matches!(store.trial(2), Err(StoreError::Damaged { .. })));
        assert!(store.trial(1).expect("good trial still reads").is_some());
    }

    #[test]
    fn bad_keys_and_mismatched_ids_are_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let i = &store.index;
        i.trials
            .insert(&b"short"[..], &b"{}"[..])
            .expect("raw insert");
        assert!(matches!(store.trials(), Err(StoreError::Damaged { .. })));
        i.trials.clear().expect("clear");
        let value = serde_json::to_vec(&trial(9)).expect("encode");
        i.trials
            .insert(keys::trial_key(3), value)
            .expect("raw insert");
        assert!(matches!(store.trial(3), Err(StoreError::Damaged { .. })));
        i.trials.clear().expect("clear");
        i.epochs
            .insert(&b"bad"[..], &b"{}"[..])
            .expect("raw insert");
        assert!(matches!(store.trials(), Err(StoreError::Damaged { .. })));
        i.epochs.clear().expect("clear");
        i.events
            .insert(keys::event_key(0), &b"[]"[..])
            .expect("raw insert");
        assert!(matches!(store.events(), Err(StoreError::Damaged { .. })));
        i.study
            .insert(keys::STUDY_KEY, &b"7"[..])
            .expect("raw insert");
        assert!(matches!(store.study(), Err(StoreError::Damaged { .. })));
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let stored = store.index.meta.get(keys::SCHEMA_VERSION_KEY).expect("get");
            assert_eq!(
                stored.as_deref(),
                Some(&schema::SCHEMA_VERSION.to_be_bytes()[..])
            );
            store
                .index
                .meta
                .insert(
                    keys::SCHEMA_VERSION_KEY,
                    &(schema::SCHEMA_VERSION + 1).to_be_bytes(),
                )
                .expect("raw insert");
            store.index.db.flush().expect("flush");
        }
        let err = Store::open(dir.path()).expect_err("newer schema must be refused");
        assert!(
            matches!(
                err,
                StoreError::UnsupportedSchema {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "store-schema");
        assert!(err.to_string().contains("schema version 3"), "{err}");
        // The failed open released its lock.
        let err2 = Store::open(dir.path()).expect_err("still refused, not Locked");
        assert!(
            matches!(err2, StoreError::UnsupportedSchema { .. }),
            "{err2:?}"
        );
    }

    #[test]
    fn orphan_epochs_are_skipped_by_trials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.put_trial(&trial(5)).expect("put");
        let m = EpochMetrics {
            epoch: 0,
            step: 1,
            train_loss: 1.0,
            val_top1: 0.1,
            images_per_sec: 1.0,
            loss_scale: 1.0,
            skipped_steps: 0,
            wall_secs: 1.0,
            underflow_fraction: 0.0,
        };
        store.put_epoch(3, &m).expect("orphan");
        store.put_epoch(5, &m).expect("epoch");
        store.put_epoch(7, &m).expect("orphan");
        let trials = store.trials().expect("trials");
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].epochs, vec![m]);
    }

    #[test]
    fn a_lost_index_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected = {
            let store = Store::open(dir.path()).expect("open");
            for id in 1..=3 {
                store.put_trial(&trial(id)).expect("put");
            }
            store.clear_epochs(2).expect("clear");
            store.trials().expect("trials")
        };
        std::fs::remove_dir_all(dir.path().join(DB_DIR)).expect("remove the index");
        let store = Store::open(dir.path()).expect("reopen rebuilds");
        assert_eq!(store.trials().expect("trials"), expected);
    }
}
