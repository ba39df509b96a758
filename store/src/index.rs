//! The sled side of a store: typed key spaces that answer reads fast, kept in step with the
//! journal by applying every journal entry to them.
//!
//! Applying an entry is idempotent (events are keyed by their journal offset), so replaying the
//! journal from any checkpoint at or before what sled already holds converges to the same state.
//! A checkpoint (sled flushed, then the journal offset recorded and flushed again) bounds that
//! replay. Should sled lose the tail of its own log (a damaged file), its checkpoint is older and
//! the replay restores what it lost from the journal.

use crate::codec::{decode, encode};
use crate::error::StoreError;
use crate::journal::Entry;
use crate::keys;
use crate::records::{EpochMetrics, Event, StudyRecord, TrialRecord};
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Names of the sled trees (key spaces).
pub(crate) const META_TREE: &str = "meta";
pub(crate) const STUDY_TREE: &str = "study";
pub(crate) const TRIALS_TREE: &str = "trials";
pub(crate) const EPOCHS_TREE: &str = "epochs";
pub(crate) const EVENTS_TREE: &str = "events";
pub(crate) const COMMANDS_TREE: &str = "commands";
pub(crate) const INHERITED_TREE: &str = "inherited";

/// Key of the last checkpoint in the meta tree.
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Key of the journal offset just past the last applied entry (written with every entry, not flushed).
const APPLIED_KEY: &[u8] = b"applied_end";

/// The durable point up to which sled holds everything the journal holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Journal offset: every entry ending at or before it is in sled.
    pub offset: u64,
}

/// A stored inherited trial: the parent's record with its epochs and command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InheritedRecord {
    pub trial: TrialRecord,
    pub args: Vec<String>,
}

/// The open sled database and its trees.
pub(crate) struct Index {
    pub trials: sled::Tree,
    pub epochs: sled::Tree,
    pub events: sled::Tree,
    pub commands: sled::Tree,
    pub inherited: sled::Tree,
    pub study: sled::Tree,
    pub meta: sled::Tree,
    pub db: sled::Db,
    pub path: PathBuf,
}

/// How long `open` waits for sled's own lock to be released by a store that this process dropped
/// just before (sled finishes closing in the background).
const SLED_LOCK_WAIT: Duration = Duration::from_secs(5);

impl Index {
    /// Opens (creating if missing) the sled database at `path`. A sled panic on damaged files
    /// becomes an error.
    pub(crate) fn open(path: &Path) -> Result<Index, StoreError> {
        let existed = path.exists();
        // Failing to open an index that exists means its files are damaged (or from an
        // incompatible sled); a new one failing is a plain database error.
        let sled_err = |op: &'static str| {
            let path = path.to_path_buf();
            move |source: sled::Error| match source {
                sled::Error::Io(ref e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    StoreError::Sled { op, path, source }
                }
                source if existed => {
                    StoreError::corrupt("index", format!("the database cannot be opened: {source}"))
                }
                source => StoreError::Sled { op, path, source },
            }
        };
        let db = guard("open the index", || open_sled(path))?.map_err(sled_err("open"))?;
        let tree = |name: &str| -> Result<sled::Tree, StoreError> {
            guard("open the index", || db.open_tree(name))?.map_err(sled_err("open tree"))
        };
        Ok(Index {
            trials: tree(TRIALS_TREE)?,
            epochs: tree(EPOCHS_TREE)?,
            events: tree(EVENTS_TREE)?,
            commands: tree(COMMANDS_TREE)?,
            inherited: tree(INHERITED_TREE)?,
            study: tree(STUDY_TREE)?,
            meta: tree(META_TREE)?,
            db: db.clone(),
            path: path.to_path_buf(),
        })
    }

    /// Maps a sled error for operation `op`.
    pub(crate) fn err(&self, op: &'static str) -> impl FnOnce(sled::Error) -> StoreError + '_ {
        move |source| StoreError::Sled {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// Applies one journal entry that ends at journal offset `end`.
    pub(crate) fn apply(&self, entry: &Entry, end: u64) -> Result<(), StoreError> {
        match entry {
            Entry::Study(study) => {
                self.study
                    .insert(keys::STUDY_KEY, encode("study record", study)?)
                    .map_err(self.err("write study"))?;
            }
            Entry::Trial(trial) => {
                self.trials
                    .insert(keys::trial_key(trial.id), encode_trial_head(trial)?)
                    .map_err(self.err("write trial"))?;
            }
            Entry::Epoch { trial, metrics } => {
                self.epochs
                    .insert(
                        keys::epoch_key(*trial, metrics.epoch),
                        &encode_epoch(metrics)[..],
                    )
                    .map_err(self.err("write epoch"))?;
            }
            Entry::ClearEpochs { trial } => {
                let mut batch = sled::Batch::default();
                for item in self.epochs.scan_prefix(keys::epoch_prefix(*trial)) {
                    let (key, _) = item.map_err(self.err("scan epochs"))?;
                    batch.remove(key);
                }
                self.epochs
                    .apply_batch(batch)
                    .map_err(self.err("clear epochs"))?;
            }
            Entry::Event(event) => {
                self.events
                    .insert(keys::event_key(end), encode("event", event)?)
                    .map_err(self.err("write event"))?;
            }
            Entry::Command { trial, args } => {
                self.commands
                    .insert(keys::trial_key(*trial), encode("trial command", args)?)
                    .map_err(self.err("write trial command"))?;
            }
            Entry::Inherited { trial, args } => {
                let record = InheritedRecord {
                    trial: trial.clone(),
                    args: args.clone(),
                };
                self.inherited
                    .insert(
                        keys::trial_key(trial.id),
                        encode("inherited trial", &record)?,
                    )
                    .map_err(self.err("write inherited trial"))?;
            }
        }
        self.meta
            .insert(APPLIED_KEY, &end.to_be_bytes())
            .map_err(self.err("write applied offset"))?;
        Ok(())
    }

    /// Makes everything applied so far durable and records `checkpoint`.
    pub(crate) fn checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.db.flush().map_err(self.err("flush"))?;
        self.meta
            .insert(CHECKPOINT_KEY, encode("checkpoint", &checkpoint)?)
            .map_err(self.err("write checkpoint"))?;
        self.db.flush().map_err(self.err("flush"))?;
        Ok(())
    }

    /// The last checkpoint, if one was recorded.
    pub(crate) fn read_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let value = self
            .meta
            .get(CHECKPOINT_KEY)
            .map_err(self.err("read checkpoint"))?;
        value.map(|v| decode("checkpoint", &v)).transpose()
    }

    /// The journal offset just past the last entry sled applied (as far as sled kept it).
    pub(crate) fn read_applied_end(&self) -> Result<Option<u64>, StoreError> {
        let value = self
            .meta
            .get(APPLIED_KEY)
            .map_err(self.err("read applied offset"))?;
        value
            .map(|v| keys::decode_u64("applied offset", &v))
            .transpose()
    }

    /// Empties every data tree (before a rebuild from the journal); the meta tree is kept.
    pub(crate) fn clear_data(&self) -> Result<(), StoreError> {
        for tree in [
            &self.trials,
            &self.epochs,
            &self.events,
            &self.commands,
            &self.inherited,
            &self.study,
        ] {
            tree.clear().map_err(self.err("clear"))?;
        }
        self.meta.remove(APPLIED_KEY).map_err(self.err("clear"))?;
        self.meta
            .remove(CHECKPOINT_KEY)
            .map_err(self.err("clear"))?;
        Ok(())
    }

    /// The study record, if one was written.
    pub(crate) fn study(&self) -> Result<Option<StudyRecord>, StoreError> {
        let value = self
            .study
            .get(keys::STUDY_KEY)
            .map_err(self.err("read study"))?;
        value.map(|v| decode("study record", &v)).transpose()
    }

    /// Every trial record (without epochs), sorted by id.
    pub(crate) fn trial_heads(&self) -> Result<Vec<TrialRecord>, StoreError> {
        let mut trials = Vec::new();
        for entry in self.trials.iter() {
            let (key, value) = entry.map_err(self.err("scan trials"))?;
            let id = keys::decode_u64("trial key", &key)?;
            trials.push(decode_trial(id, &value)?);
        }
        Ok(trials)
    }

    /// Every epoch of every trial, sorted by (trial, epoch).
    pub(crate) fn all_epochs(&self) -> Result<Vec<(u64, EpochMetrics)>, StoreError> {
        let mut epochs = Vec::new();
        for entry in self.epochs.iter() {
            let (key, value) = entry.map_err(self.err("scan epochs"))?;
            let (trial_id, epoch) = keys::decode_epoch_key(&key)?;
            epochs.push((trial_id, decode_epoch(trial_id, epoch, &value)?));
        }
        Ok(epochs)
    }

    /// The epochs of one trial, sorted by epoch.
    pub(crate) fn epochs_of(&self, trial_id: u64) -> Result<Vec<EpochMetrics>, StoreError> {
        let mut epochs = Vec::new();
        for entry in self.epochs.scan_prefix(keys::epoch_prefix(trial_id)) {
            let (key, value) = entry.map_err(self.err("scan epochs"))?;
            let (tid, epoch) = keys::decode_epoch_key(&key)?;
            epochs.push(decode_epoch(tid, epoch, &value)?);
        }
        Ok(epochs)
    }

    /// The event log in order.
    pub(crate) fn events(&self) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        for entry in self.events.iter() {
            let (key, value) = entry.map_err(self.err("scan events"))?;
            let at = keys::decode_u64("event key", &key)?;
            events.push(decode(&format!("event at {at}"), &value)?);
        }
        Ok(events)
    }

    /// Trial id -> the command line it was planned with.
    pub(crate) fn commands(&self) -> Result<Vec<(u64, Vec<String>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.commands.iter() {
            let (key, value) = entry.map_err(self.err("scan trial commands"))?;
            let id = keys::decode_u64("trial command key", &key)?;
            out.push((id, decode(&format!("command of trial {id}"), &value)?));
        }
        Ok(out)
    }

    /// The trials inherited from a parent study, by the parent's id.
    pub(crate) fn inherited(&self) -> Result<Vec<InheritedRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.inherited.iter() {
            let (key, value) = entry.map_err(self.err("scan inherited trials"))?;
            let id = keys::decode_u64("inherited trial key", &key)?;
            out.push(decode(&format!("inherited trial {id}"), &value)?);
        }
        Ok(out)
    }
}

/// Runs `f`, turning a panic inside sled (which it may raise on damaged files) into an error.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the database code panicked".into());
        StoreError::corrupt(what, format!("the index database failed: {detail}"))
    })
}

/// Opens the sled database, waiting briefly while sled's own directory lock is still held. We
/// already hold `<dir>/LOCK`, so its holder can only be a just-dropped handle of this very process
/// whose background threads are finishing; sled releases its lock only once they are all gone.
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

/// Encodes a trial record without its epochs (they live in their own key space).
pub(crate) fn encode_trial_head(trial: &TrialRecord) -> Result<Vec<u8>, StoreError> {
    let what = format!("trial {}", trial.id);
    if trial.epochs.is_empty() {
        return encode(&what, trial);
    }
    let mut head = trial.clone();
    head.epochs = Vec::new();
    encode(&what, &head)
}

/// Decodes a trial record and checks it matches its key.
pub(crate) fn decode_trial(id: u64, bytes: &[u8]) -> Result<TrialRecord, StoreError> {
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

/// First byte of a binary epoch value of seven 8-byte fields (before `underflow_fraction`).
const EPOCH_FORMAT_V1: u8 = 1;
/// First byte of the binary epoch value this build writes (JSON values, as schema 1 wrote them,
/// start with `{`).
const EPOCH_FORMAT: u8 = 2;
/// Length of a version-1 binary epoch value: format byte, epoch (u32), seven 8-byte fields.
const EPOCH_LEN_V1: usize = 1 + 4 + 7 * 8;
/// Length of a binary epoch value: format byte, epoch (u32), eight 8-byte fields.
pub(crate) const EPOCH_LEN: usize = 1 + 4 + 8 * 8;

/// Encodes an epoch's metrics in a fixed binary layout (big-endian; floats bit for bit, so NaN
/// and infinities survive): a third of the JSON size, and no parsing when a study is read back.
pub(crate) fn encode_epoch(m: &EpochMetrics) -> [u8; EPOCH_LEN] {
    let mut out = [0u8; EPOCH_LEN];
    out[0] = EPOCH_FORMAT;
    out[1..5].copy_from_slice(&m.epoch.to_be_bytes());
    let fields = [
        m.step,
        m.train_loss.to_bits(),
        m.val_top1.to_bits(),
        m.images_per_sec.to_bits(),
        m.loss_scale.to_bits(),
        m.skipped_steps,
        m.wall_secs.to_bits(),
        m.underflow_fraction.to_bits(),
    ];
    for (i, f) in fields.iter().enumerate() {
        out[5 + 8 * i..13 + 8 * i].copy_from_slice(&f.to_be_bytes());
    }
    out
}

/// Decodes a binary epoch value of either version (version 1 has no underflow fraction: 0).
pub(crate) fn decode_epoch_binary(bytes: &[u8]) -> Option<EpochMetrics> {
    let fields = match (bytes.first(), bytes.len()) {
        (Some(&EPOCH_FORMAT), EPOCH_LEN) => 8,
        (Some(&EPOCH_FORMAT_V1), EPOCH_LEN_V1) => 7,
        _ => return None,
    };
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[5 + 8 * i..13 + 8 * i]);
        u64::from_be_bytes(w)
    };
    Some(EpochMetrics {
        epoch: u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]),
        step: word(0),
        train_loss: f64::from_bits(word(1)),
        val_top1: f64::from_bits(word(2)),
        images_per_sec: f64::from_bits(word(3)),
        loss_scale: f64::from_bits(word(4)),
        skipped_steps: word(5),
        wall_secs: f64::from_bits(word(6)),
        underflow_fraction: if fields == 8 {
            f64::from_bits(word(7))
        } else {
            0.0
        },
    })
}

/// Decodes one epoch's metrics (binary, or JSON as schema 1 stored them) and checks they match their key.
pub(crate) fn decode_epoch(
    trial_id: u64,
    epoch: u32,
    bytes: &[u8],
) -> Result<EpochMetrics, StoreError> {
    let what = format!("epoch {epoch} of trial {trial_id}");
    let metrics: EpochMetrics = match decode_epoch_binary(bytes) {
        Some(m) => m,
        None => decode(&what, bytes)?,
    };
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

    #[test]
    fn binary_epochs_round_trip_bit_for_bit() {
        let m = EpochMetrics {
            epoch: 77,
            step: u64::MAX - 3,
            train_loss: f64::NAN,
            val_top1: 0.123_456_789_012_345_68,
            images_per_sec: f64::INFINITY,
            loss_scale: -0.0,
            skipped_steps: 5,
            wall_secs: 1e-300,
            underflow_fraction: 0.25,
        };
        let back = decode_epoch(1, 77, &encode_epoch(&m)).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{m:?}"));
        assert_eq!(back.loss_scale.to_bits(), (-0.0f64).to_bits());
        // Schema 1 wrote JSON; it still reads.
        let json = serde_json::to_vec(&EpochMetrics {
            train_loss: 1.5,
            ..m.clone()
        })
        .expect("json");
        assert_eq!(
            decode_epoch(1, 77, &json).expect("json decode").train_loss,
            1.5
        );
        assert!(
            decode_epoch(1, 78, &encode_epoch(&m)).is_err(),
            "key and record must agree"
        );
        assert!(decode_epoch(1, 77, &encode_epoch(&m)[..20]).is_err());
    }

    #[test]
    fn version_1_binary_epochs_read_with_no_underflow() {
        let m = EpochMetrics {
            epoch: 3,
            step: 30,
            train_loss: 0.5,
            val_top1: 0.75,
            images_per_sec: 1000.0,
            loss_scale: 1024.0,
            skipped_steps: 2,
            wall_secs: 9.5,
            underflow_fraction: 0.125,
        };
        // A version-1 value is the version-2 layout without its last field.
        let mut v1 = encode_epoch(&m)[..EPOCH_LEN_V1].to_vec();
        v1[0] = EPOCH_FORMAT_V1;
        let back = decode_epoch(1, 3, &v1).expect("a version-1 epoch still reads");
        assert_eq!(
            back,
            EpochMetrics {
                underflow_fraction: 0.0,
                ..m.clone()
            }
        );
        // A length that does not match its version byte is not an epoch.
        let mut wrong = encode_epoch(&m).to_vec();
        wrong[0] = EPOCH_FORMAT_V1;
        assert!(decode_epoch_binary(&wrong).is_none());
        // JSON written before the field existed reads it as 0.
        let json = br#"{"epoch":3,"step":30,"train_loss":0.5,"val_top1":0.75,"images_per_sec":1000.0,"loss_scale":1024.0,"skipped_steps":2,"wall_secs":9.5}"#;
        assert_eq!(
            decode_epoch(1, 3, json)
                .expect("old JSON")
                .underflow_fraction,
            0.0
        );
    }
}
