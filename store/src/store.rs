//! The [`Store`]: one sled database per study, with typed key spaces.

use crate::codec::{decode, encode};
use crate::error::StoreError;
use crate::keys;
use crate::lock::DirLock;
use crate::records::{EpochMetrics, Event, StudyRecord, TrialRecord};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the sled folder inside a store directory.
const DB_DIR: &str = "db";

/// Names of the sled trees (key spaces).
const META_TREE: &str = "meta";
const STUDY_TREE: &str = "study";
const TRIALS_TREE: &str = "trials";
const EPOCHS_TREE: &str = "epochs";
const EVENTS_TREE: &str = "events";

/// A study's durable store: `<dir>/LOCK` (lock file holding the owner's pid) and `<dir>/db/` (sled).
pub struct Store {
    // Field order matters: sled is dropped (and closed) before the lock is released.
    /// Trial id BE -> TrialRecord (without epochs).
    pub(crate) trials: sled::Tree,
    /// Trial id BE ++ epoch BE -> EpochMetrics.
    pub(crate) epochs: sled::Tree,
    /// Sequence BE -> Event.
    pub(crate) events: sled::Tree,
    /// "study" -> StudyRecord.
    pub(crate) study: sled::Tree,
    /// "schema_version" -> u32 BE.
    pub(crate) meta: sled::Tree,
    /// The database itself (flushed after each write).
    pub(crate) db: sled::Db,
    /// The store directory.
    dir: PathBuf,
    /// The sled directory, for error messages.
    db_path: PathBuf,
    /// Our exclusive lock, released last.
    _lock: DirLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if missing) the store in `dir` and takes its exclusive lock.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        // Our lock first, so a second tuner gets a clear Locked error rather than sled's.
        let lock = DirLock::acquire(dir)?;
        let db_path = dir.join(DB_DIR);
        let sled_err = |op: &'static str| {
            let path = db_path.clone();
            move |source| StoreError::Sled { op, path, source }
        };
        let db = open_sled(&db_path).map_err(sled_err("open"))?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err("open tree"));
        let store = Store {
            meta: tree(META_TREE)?,
            study: tree(STUDY_TREE)?,
            trials: tree(TRIALS_TREE)?,
            epochs: tree(EPOCHS_TREE)?,
            events: tree(EVENTS_TREE)?,
            db: db.clone(),
            dir: dir.to_path_buf(),
            db_path: db_path.clone(),
            _lock: lock,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// True when `dir` holds a store (its db folder exists).
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_DIR).is_dir()
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The study record, if one was written.
    pub fn study(&self) -> Result<Option<StudyRecord>, StoreError> {
        let value = self
            .study
            .get(keys::STUDY_KEY)
            .map_err(self.sled_err("read study"))?;
        value.map(|v| decode("study record", &v)).transpose()
    }

    /// Writes (replaces) the study record; durable on return.
    pub fn put_study(&self, study: &StudyRecord) -> Result<(), StoreError> {
        let value = encode("study record", study)?;
        self.study
            .insert(keys::STUDY_KEY, value)
            .map_err(self.sled_err("write study"))?;
        self.flush()
    }

    /// Inserts or replaces a trial's record (without touching its stored epochs); durable on return.
    pub fn put_trial(&self, trial: &TrialRecord) -> Result<(), StoreError> {
        let what = format!("trial {}", trial.id);
        let mut value = serde_json::to_value(trial).map_err(|source| StoreError::Encode {
            what: what.clone(),
            source,
        })?;
        // Epochs live in their own key space.
        if let serde_json::Value::Object(fields) = &mut value {
            fields.remove("epochs");
        }
        let value = encode(&what, &value)?;
        self.trials
            .insert(keys::trial_key(trial.id), value)
            .map_err(self.sled_err("write trial"))?;
        self.flush()
    }

    /// Appends (or replaces, keyed by epoch number) one epoch's metrics of a trial; durable on return.
    pub fn put_epoch(&self, trial_id: u64, metrics: &EpochMetrics) -> Result<(), StoreError> {
        let value = encode(
            &format!("epoch {} of trial {trial_id}", metrics.epoch),
            metrics,
        )?;
        self.epochs
            .insert(keys::epoch_key(trial_id, metrics.epoch), value)
            .map_err(self.sled_err("write epoch"))?;
        self.flush()
    }

    /// Deletes all stored epochs of a trial (used before rerunning an interrupted trial); durable on return.
    pub fn clear_epochs(&self, trial_id: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for entry in self.epochs.scan_prefix(keys::epoch_prefix(trial_id)) {
            let (key, _) = entry.map_err(self.sled_err("scan epochs"))?;
            batch.remove(key);
        }
        self.epochs
            .apply_batch(batch)
            .map_err(self.sled_err("clear epochs"))?;
        self.flush()
    }

    /// One trial with its epochs (sorted by epoch).
    pub fn trial(&self, id: u64) -> Result<Option<TrialRecord>, StoreError> {
        let key = keys::trial_key(id);
        let Some(value) = self.trials.get(key).map_err(self.sled_err("read trial"))? else {
            return Ok(None);
        };
        let mut trial = decode_trial(id, &value)?;
        trial.epochs = self.epochs_of(id)?;
        Ok(Some(trial))
    }

    /// Every trial, sorted by id, each with its epochs sorted by epoch.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StoreError> {
        let mut trials = Vec::new();
        for entry in self.trials.iter() {
            let (key, value) = entry.map_err(self.sled_err("scan trials"))?;
            let id = keys::decode_u64("trial key", &key)?;
            trials.push(decode_trial(id, &value)?);
        }
        // One pass over the epoch key space, which is sorted by (trial, epoch) like `trials`.
        let mut next = 0;
        for entry in self.epochs.iter() {
            let (key, value) = entry.map_err(self.sled_err("scan epochs"))?;
            let (trial_id, epoch) = keys::decode_epoch_key(&key)?;
            let metrics = decode_epoch(trial_id, epoch, &value)?;
            while next < trials.len() && trials[next].id < trial_id {
                next += 1;
            }
            if let Some(trial) = trials.get_mut(next).filter(|t| t.id == trial_id) {
                trial.epochs.push(metrics);
            }
            // Epochs of a trial without a record are orphans and are skipped.
        }
        Ok(trials)
    }

    /// Appends an entry to the event log (state changes, for audit); durable on return.
    pub fn log_event(&self, event: &Event) -> Result<(), StoreError> {
        let last = self.events.last().map_err(self.sled_err("read events"))?;
        let seq = match last {
            Some((key, _)) => keys::decode_u64("event key", &key)?
                .checked_add(1)
                .ok_or_else(|| StoreError::corrupt("event key", "sequence number overflow"))?,
            None => 0,
        };
        let value = encode("event", event)?;
        self.events
            .insert(keys::event_key(seq), value)
            .map_err(self.sled_err("write event"))?;
        self.flush()
    }

    /// The whole event log in order.
    pub fn events(&self) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        for entry in self.events.iter() {
            let (key, value) = entry.map_err(self.sled_err("scan events"))?;
            let seq = keys::decode_u64("event key", &key)?;
            events.push(decode(&format!("event {seq}"), &value)?);
        }
        Ok(events)
    }

    /// The epochs of one trial, sorted by epoch.
    fn epochs_of(&self, trial_id: u64) -> Result<Vec<EpochMetrics>, StoreError> {
        let mut epochs = Vec::new();
        for entry in self.epochs.scan_prefix(keys::epoch_prefix(trial_id)) {
            let (key, value) = entry.map_err(self.sled_err("scan epochs"))?;
            let (tid, epoch) = keys::decode_epoch_key(&key)?;
            epochs.push(decode_epoch(tid, epoch, &value)?);
        }
        Ok(epochs)
    }

    /// Checks the schema version, writing the current one into a new store.
    fn check_schema(&self) -> Result<(), StoreError> {
        let stored = self
            .meta
            .get(keys::SCHEMA_VERSION_KEY)
            .map_err(self.sled_err("read schema version"))?;
        match stored {
            Some(bytes) => {
                let found = keys::decode_u32("schema version", &bytes)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::UnsupportedSchema {
                        dir: self.dir.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
            None => {
                self.meta
                    .insert(keys::SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(self.sled_err("write schema version"))?;
                self.flush()
            }
        }
    }

    /// Flushes every tree to disk; called after each write.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(self.sled_err("flush"))?;
        Ok(())
    }

    /// Maps a sled error for operation `op`.
    fn sled_err(&self, op: &'static str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Sled {
            op,
            path: self.db_path.clone(),
            source,
        }
    }
}

/// How long `open` waits for sled's own lock to be released by a store that
/// this process dropped just before (sled finishes closing in the background).
const SLED_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Opens the sled database, waiting briefly while sled's own directory lock is
/// still held. We already hold `<dir>/LOCK`, so its holder can only be a
/// just-dropped handle of this very process whose background threads are
/// finishing; sled releases its lock only once they are all gone.
fn open_sled(db_path: &Path) -> Result<sled::Db, sled::Error> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match sled::Config::new().path(db_path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && start.elapsed() < SLED_LOCK_WAIT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Decodes a trial record and checks it matches its key.
fn decode_trial(id: u64, bytes: &[u8]) -> Result<TrialRecord, StoreError> {
    let what = format!("trial {id}");
    let mut trial: TrialRecord = decode(&what, bytes)?;
    if trial.id != id {
        return Err(StoreError::corrupt(
            what,
            format!("record names id {} but is stored under id {id}", trial.id),
        ));
    }
    trial.epochs.clear();
    Ok(trial)
}

/// Decodes one epoch's metrics and checks they match their key.
fn decode_epoch(trial_id: u64, epoch: u32, bytes: &[u8]) -> Result<EpochMetrics, StoreError> {
    let what = format!("epoch {epoch} of trial {trial_id}");
    let metrics: EpochMetrics = decode(&what, bytes)?;
    if metrics.epoch != epoch {
        return Err(StoreError::corrupt(
            what,
            format!(
                "record names epoch {} but is stored under epoch {epoch}",
                metrics.epoch
            ),
        ));
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            epochs: Vec::new(),
        }
    }

    #[test]
    fn garbage_trial_value_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.put_trial(&trial(1)).expect("put");
        store
            .trials
            .insert(keys::trial_key(2), &b"\xff not json {"[..])
            .expect("raw insert");
        let err = store.trials().expect_err("garbage must not decode");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(err.code(), "store-corrupt");
        assert!(err.to_string().contains("trial 2"), "{err}");
        assert!(matches!(store.trial(2), Err(StoreError::Corrupt { .. })));
        assert!(store.trial(1).expect("good trial still reads").is_some());
    }

    #[test]
    fn bad_keys_and_mismatched_ids_are_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .trials
            .insert(&b"short"[..], &b"{}"[..])
            .expect("raw insert");
        assert!(matches!(store.trials(), Err(StoreError::Corrupt { .. })));
        store.trials.clear().expect("clear");
        let value = serde_json::to_vec(&trial(9)).expect("encode");
        store
            .trials
            .insert(keys::trial_key(3), value)
            .expect("raw insert");
        assert!(matches!(store.trial(3), Err(StoreError::Corrupt { .. })));
        store.trials.clear().expect("clear");
        store
            .epochs
            .insert(&b"bad"[..], &b"{}"[..])
            .expect("raw insert");
        assert!(matches!(store.trials(), Err(StoreError::Corrupt { .. })));
        store.epochs.clear().expect("clear");
        store
            .events
            .insert(keys::event_key(0), &b"[]"[..])
            .expect("raw insert");
        assert!(matches!(store.events(), Err(StoreError::Corrupt { .. })));
        store
            .study
            .insert(keys::STUDY_KEY, &b"7"[..])
            .expect("raw insert");
        assert!(matches!(store.study(), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let stored = store.meta.get(keys::SCHEMA_VERSION_KEY).expect("get");
            assert_eq!(stored.as_deref(), Some(&SCHEMA_VERSION.to_be_bytes()[..]));
            store
                .meta
                .insert(
                    keys::SCHEMA_VERSION_KEY,
                    &(SCHEMA_VERSION + 1).to_be_bytes(),
                )
                .expect("raw insert");
            store.db.flush().expect("flush");
        }
        let err = Store::open(dir.path()).expect_err("newer schema must be refused");
        assert!(
            matches!(
                err,
                StoreError::UnsupportedSchema {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "store-schema");
        assert!(err.to_string().contains("schema version 2"), "{err}");
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
        };
        store.put_epoch(3, &m).expect("orphan");
        store.put_epoch(5, &m).expect("epoch");
        store.put_epoch(7, &m).expect("orphan");
        let trials = store.trials().expect("trials");
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].epochs, vec![m]);
    }
}
