//! Reading a possibly damaged store without changing it: what is intact ([`check`]), and every
//! intact trial recovered into a new store ([`repair`]).
//!
//! Both read the journal frame by frame (a damaged frame is skipped and reported, the frames after
//! it still count) and read the sled index from a copy in a temporary folder, key by key, so that
//! neither sled's recovery nor anything else writes to the store being inspected.

use crate::error::StoreError;
use crate::index::{self, Index, InheritedRecord};
use crate::journal::{self, Damage, Entry, JOURNAL_FILE};
use crate::lock::DirLock;
use crate::records::{EpochMetrics, Event, StudyRecord, TrialRecord, TrialStatus};
use crate::store::{Change, Store, DB_DIR};
use crate::{keys, schema};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a recovered trial's record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The journal.
    Journal,
    /// The sled index (its journal records were missing, damaged or older).
    Index,
}

/// Everything one source says the store holds.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    study: Option<StudyRecord>,
    /// Trial records without epochs.
    trials: BTreeMap<u64, TrialRecord>,
    epochs: BTreeMap<(u64, u32), EpochMetrics>,
    /// Events by the journal offset that ends their record (the index's key).
    events: BTreeMap<u64, Event>,
    commands: BTreeMap<u64, Vec<String>>,
    inherited: BTreeMap<u64, InheritedRecord>,
}

impl State {
    /// Applies one journal entry ending at offset `end`, as the index does.
    fn apply(&mut self, entry: Entry, end: u64) {
        match entry {
            Entry::Study(s) => self.study = Some(s),
            Entry::Trial(mut t) => {
                t.epochs.clear();
                self.trials.insert(t.id, t);
            }
            Entry::Epoch { trial, metrics } => {
                self.epochs.insert((trial, metrics.epoch), metrics);
            }
            Entry::ClearEpochs { trial } => self.epochs.retain(|&(t, _), _| t != trial),
            Entry::Event(e) => {
                self.events.insert(end, e);
            }
            Entry::Command { trial, args } => {
                self.commands.insert(trial, args);
            }
            Entry::Inherited { trial, args } => {
                self.inherited
                    .insert(trial.id, InheritedRecord { trial, args });
            }
        }
    }

    /// A trial with its epochs.
    fn trial(&self, id: u64) -> Option<TrialRecord> {
        let mut t = self.trials.get(&id)?.clone();
        t.epochs = self
            .epochs
            .range((id, 0)..=(id, u32::MAX))
            .map(|(_, m)| m.clone())
            .collect();
        Some(t)
    }
}

/// How far a trial got: later attempts beat earlier ones, ended beats running beats planned, more
/// epochs beat fewer.
fn progress(t: &TrialRecord) -> (u32, u8, usize) {
    let rank = match t.status {
        TrialStatus::Planned => 0,
        TrialStatus::Running => 1,
        TrialStatus::Finished | TrialStatus::Failed | TrialStatus::Diverged => 2,
    };
    (t.attempts, rank, t.epochs.len())
}

/// What `check` found in a store.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The store directory.
    pub dir: PathBuf,
    /// Schema version recorded in the index (None when the index could not be read).
    pub schema_version: Option<u32>,
    /// Journal size in bytes (None when there is no journal: a schema 1 store).
    pub journal_bytes: Option<u64>,
    /// Readable journal records.
    pub journal_records: usize,
    /// Unreadable journal ranges.
    pub journal_damage: Vec<Damage>,
    /// Start of a half-written last record left by a killed run (harmless; opening cuts it).
    pub torn_tail: Option<u64>,
    /// Set when the index holds records past the journal's end: the journal lost acknowledged data.
    pub journal_cut: Option<String>,
    /// Set when the index could not be opened at all.
    pub index_error: Option<String>,
    /// True when there is no index folder (a store killed while being created): opening the
    /// store rebuilds it from the journal.
    pub index_missing: bool,
    /// Index records that could not be read.
    pub index_problems: Vec<String>,
    /// Trials on which the index (after replaying the journal, as opening would) and the journal disagree.
    pub mismatches: Vec<String>,
    /// The study's name, if a study record was recovered.
    pub study: Option<String>,
    /// Every recovered trial: id, status, epochs and where its record came from.
    pub trials: Vec<(u64, TrialStatus, usize, Source)>,
    /// Trial ids below the highest recovered one that no readable record mentions.
    pub missing: Vec<u64>,
    /// Recovered events.
    pub events: usize,
    /// Recovered inherited trials.
    pub inherited: usize,
}

impl CheckReport {
    /// True when every file reads cleanly and the index agrees with the journal.
    pub fn is_intact(&self) -> bool {
        self.journal_damage.is_empty()
            && self.journal_cut.is_none()
            && self.index_error.is_none()
            && self.index_problems.is_empty()
            && self.mismatches.is_empty()
            && self
                .schema_version
                .is_some_and(|v| v <= schema::SCHEMA_VERSION)
    }

    fn count(&self, status: TrialStatus) -> usize {
        self.trials.iter().filter(|t| t.1 == status).count()
    }
}

/// Lists at most a few items of a long list.
fn few<T: fmt::Display>(items: &[T]) -> String {
    const SHOWN: usize = 8;
    let mut out: Vec<String> = items.iter().take(SHOWN).map(|i| i.to_string()).collect();
    if items.len() > SHOWN {
        out.push(format!("... ({} more)", items.len() - SHOWN));
    }
    out.join(", ")
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store {}", self.dir.display())?;
        match self.schema_version {
            Some(v) if v > schema::SCHEMA_VERSION => writeln!(
                f,
                "  schema: version {v}, newer than this build understands ({})",
                schema::SCHEMA_VERSION
            )?,
            Some(v) if v < schema::SCHEMA_VERSION => writeln!(
                f,
                "  schema: version {v} (opening it migrates it to {})",
                schema::SCHEMA_VERSION
            )?,
            Some(v) => writeln!(f, "  schema: version {v}")?,
            None => writeln!(f, "  schema: unknown (the index could not be read)")?,
        }
        match self.journal_bytes {
            None => writeln!(
                f,
                "  journal: none (a schema 1 store keeps its history in the index only)"
            )?,
            Some(bytes) => {
                let state = if self.journal_damage.is_empty() {
                    "intact"
                } else {
                    "DAMAGED"
                };
                writeln!(
                    f,
                    "  journal: {state}, {} records in {bytes} bytes",
                    self.journal_records
                )?;
                for d in &self.journal_damage {
                    writeln!(
                        f,
                        "    unreadable bytes {}..{}: {}",
                        d.offset,
                        d.offset + d.len,
                        d.reason
                    )?;
                }
                if let Some(at) = self.torn_tail {
                    writeln!(
                        f,
                        "    a half-written last record at byte {at} (an interrupted run; never acknowledged, dropped on open)"
                    )?;
                }
                if let Some(cut) = &self.journal_cut {
                    writeln!(f, "    CUT SHORT: {cut}")?;
                }
            }
        }
        match &self.index_error {
            None if self.index_missing => writeln!(
                f,
                "  index: none yet (opening the store builds it from the journal)"
            )?,
            Some(e) => writeln!(f, "  index: DAMAGED, cannot be opened: {e}")?,
            None if self.index_problems.is_empty() => writeln!(f, "  index: intact")?,
            None => {
                writeln!(
                    f,
                    "  index: DAMAGED, {} unreadable records",
                    self.index_problems.len()
                )?;
                for p in self.index_problems.iter().take(8) {
                    writeln!(f, "    {p}")?;
                }
            }
        }
        if !self.mismatches.is_empty() {
            writeln!(
                f,
                "  index and journal disagree on {} trials:",
                self.mismatches.len()
            )?;
            for m in self.mismatches.iter().take(8) {
                writeln!(f, "    {m}")?;
            }
        }
        writeln!(
            f,
            "  study: {}",
            self.study
                .as_deref()
                .map_or("no study record recovered".to_string(), |s| format!(
                    "`{s}`"
                ))
        )?;
        writeln!(
            f,
            "  trials recovered: {} ({} finished, {} diverged, {} failed, {} running or interrupted, {} planned), {} events{}",
            self.trials.len(),
            self.count(TrialStatus::Finished),
            self.count(TrialStatus::Diverged),
            self.count(TrialStatus::Failed),
            self.count(TrialStatus::Running),
            self.count(TrialStatus::Planned),
            self.events,
            if self.inherited > 0 { format!(", {} inherited trials", self.inherited) } else { String::new() }
        )?;
        let from_index: Vec<u64> = self
            .trials
            .iter()
            .filter(|t| t.3 == Source::Index)
            .map(|t| t.0)
            .collect();
        if !from_index.is_empty() && self.journal_bytes.is_some() {
            writeln!(
                f,
                "  trials recovered from the index only: {}",
                few(&from_index)
            )?;
        }
        if !self.missing.is_empty() {
            writeln!(
                f,
                "  trial ids no readable record mentions (a resumed run plans them again): {}",
                few(&self.missing)
            )?;
        }
        if self.is_intact() {
            write!(f, "verdict: intact")
        } else {
            write!(
                f,
                "verdict: DAMAGED; `jizhi-tune store repair {}` copies every recovered trial into a new store",
                self.dir.display()
            )
        }
    }
}

/// What `repair` did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// What was found in the damaged store.
    pub check: CheckReport,
    /// The new store.
    pub into: PathBuf,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.check)?;
        write!(
            f,
            "repaired: {} trials, {} events written to the new store {} (the damaged store {} was not changed)",
            self.check.trials.len(),
            self.check.events,
            self.into.display(),
            self.check.dir.display()
        )
    }
}

/// Everything read from a store, and the merged best view.
struct Findings {
    report: CheckReport,
    merged: State,
}

/// Reports what is intact in the store in `dir`, changing nothing in it.
pub fn check(dir: &Path) -> Result<CheckReport, StoreError> {
    Ok(inspect(dir)?.report)
}

/// Recovers every intact trial of the store in `dir` into a new store in `into` (which must not
/// exist yet), leaving `dir` unchanged.
pub fn repair(dir: &Path, into: &Path) -> Result<RepairReport, StoreError> {
    if into.exists()
        && std::fs::read_dir(into)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(StoreError::Io {
            op: "repair into",
            path: into.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the folder exists and is not empty",
            ),
        });
    }
    let findings = inspect(dir)?;
    let m = &findings.merged;
    let mut changes: Vec<Change> = Vec::new();
    changes.extend(m.study.clone().map(Change::Study));
    changes.extend(m.commands.iter().map(|(&trial, args)| Change::Command {
        trial,
        args: args.clone(),
    }));
    changes.extend(m.inherited.values().map(|r| Change::Inherited {
        trial: r.trial.clone(),
        args: r.args.clone(),
    }));
    changes.extend(m.trials.values().cloned().map(Change::Trial));
    changes.extend(m.epochs.iter().map(|(&(trial, _), metrics)| Change::Epoch {
        trial,
        metrics: metrics.clone(),
    }));
    changes.extend(m.events.values().cloned().map(Change::Event));
    changes.push(Change::Event(Event {
        unix_ms: unix_ms(),
        trial_id: None,
        kind: "repaired".into(),
        detail: format!("recovered from {}", dir.display()),
    }));
    let store = Store::open(into)?;
    store.apply_all(changes)?;
    drop(store);
    Ok(RepairReport {
        check: findings.report,
        into: into.to_path_buf(),
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reads both sources of the store in `dir` and merges them.
fn inspect(dir: &Path) -> Result<Findings, StoreError> {
    if !Store::exists(dir) {
        return Err(StoreError::Io {
            op: "inspect",
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store (journal or index) in this folder",
            ),
        });
    }
    let _lock = DirLock::acquire(dir)?;

    // The journal, frame by frame.
    let journal_path = dir.join(JOURNAL_FILE);
    let mut journal_state = State::default();
    let (mut journal_bytes, mut journal_records, mut journal_damage, mut torn_tail) =
        (None, 0, Vec::new(), None);
    let mut journal_ends = Vec::new();
    if journal_path.is_file() {
        let bytes = journal::read_file(&journal_path)?;
        let scan = journal::scan(&bytes, 0);
        journal_bytes = Some(bytes.len() as u64);
        journal_records = scan.entries.len();
        journal_damage = scan.damage;
        torn_tail = scan.torn_tail;
        for (end, entry) in scan.entries {
            journal_ends.push((end, entry.clone()));
            journal_state.apply(entry, end);
        }
    }

    // The index, from a copy.
    let index = read_index_copy(dir);
    let mut report = CheckReport {
        dir: dir.to_path_buf(),
        schema_version: index.version,
        journal_bytes,
        journal_records,
        journal_damage,
        torn_tail,
        journal_cut: None,
        index_error: index.error.clone(),
        index_missing: index.missing,
        index_problems: index.problems.clone(),
        mismatches: Vec::new(),
        study: None,
        trials: Vec::new(),
        missing: Vec::new(),
        events: 0,
        inherited: 0,
    };
    if index.version.is_none() && index.error.is_none() && journal_bytes.is_some() {
        // A missing index, or one not yet initialised (a store killed while being created), is
        // rebuilt on open.
        report.schema_version = Some(schema::SCHEMA_VERSION);
    }
    if let Some(len) = journal_bytes {
        let holds = index.checkpoint.max(index.applied_end);
        if holds > len {
            report.journal_cut = Some(format!(
                "the index holds records up to byte {holds} but the journal has {len} bytes"
            ));
        }
    }

    // The index as opening the store would leave it: its state plus the journal after its checkpoint.
    let has_journal = journal_bytes.is_some();
    let mut recovered_index = index.state.clone();
    for (end, entry) in &journal_ends {
        if *end > index.checkpoint {
            recovered_index.apply(entry.clone(), *end);
        }
    }

    // Merge: per trial, the record that got furthest; the journal wins ties.
    let mut merged = if has_journal {
        journal_state.clone()
    } else {
        index.state.clone()
    };
    let mut sources = BTreeMap::new();
    for &id in merged.trials.keys() {
        sources.insert(
            id,
            if has_journal {
                Source::Journal
            } else {
                Source::Index
            },
        );
    }
    if has_journal && index.error.is_none() && !index.missing {
        if merged.study.is_none() {
            merged.study = index.state.study.clone();
        }
        for (at, e) in &index.state.events {
            merged.events.entry(*at).or_insert_with(|| e.clone());
        }
        for (id, args) in &index.state.commands {
            merged.commands.entry(*id).or_insert_with(|| args.clone());
        }
        for (id, r) in &index.state.inherited {
            merged.inherited.entry(*id).or_insert_with(|| r.clone());
        }
        for &id in index.state.trials.keys() {
            let from_index = index.state.trial(id);
            let from_journal = journal_state.trial(id);
            let take_index = match (&from_index, &from_journal) {
                (Some(i), Some(j)) => progress(i) > progress(j),
                (Some(_), None) => true,
                _ => false,
            };
            if let (true, Some(t)) = (take_index, from_index) {
                merged.epochs.retain(|&(tid, _), _| tid != id);
                for e in &t.epochs {
                    merged.epochs.insert((id, e.epoch), e.clone());
                }
                let mut head = t;
                head.epochs.clear();
                merged.trials.insert(id, head);
                sources.insert(id, Source::Index);
            }
        }
        // Disagreements between the index (as it would be after opening) and the journal.
        let ids: std::collections::BTreeSet<u64> = recovered_index
            .trials
            .keys()
            .chain(journal_state.trials.keys())
            .copied()
            .collect();
        for id in ids {
            let (a, b) = (recovered_index.trial(id), journal_state.trial(id));
            // Compared as stored (JSON), so that a NaN loss equals itself.
            if serde_json::to_string(&a).ok() != serde_json::to_string(&b).ok() {
                report
                    .mismatches
                    .push(describe_mismatch(id, a.as_ref(), b.as_ref()));
            }
        }
        if recovered_index.events != journal_state.events {
            report.mismatches.push(format!(
                "events: the index holds {}, the journal {}",
                recovered_index.events.len(),
                journal_state.events.len()
            ));
        }
    }

    report.study = merged.study.as_ref().map(|s| s.name.clone());
    report.events = merged.events.len();
    report.inherited = merged.inherited.len();
    for &id in merged.trials.keys() {
        if let Some(t) = merged.trial(id) {
            report.trials.push((
                id,
                t.status,
                t.epochs.len(),
                sources.get(&id).copied().unwrap_or(Source::Journal),
            ));
        }
    }
    if let Some(&max) = merged.trials.keys().next_back() {
        report.missing = (1..max)
            .filter(|id| !merged.trials.contains_key(id))
            .collect();
    }
    Ok(Findings { report, merged })
}

fn describe_mismatch(
    id: u64,
    index: Option<&TrialRecord>,
    journal: Option<&TrialRecord>,
) -> String {
    let word = |t: &TrialRecord| {
        format!(
            "{:?}, attempt {}, {} epochs",
            t.status,
            t.attempts,
            t.epochs.len()
        )
        .to_lowercase()
    };
    match (index, journal) {
        (Some(i), Some(j)) if word(i) == word(j) => {
            format!("trial {id}: the index and the journal hold different values")
        }
        (Some(i), Some(j)) => format!(
            "trial {id}: index says {}, journal says {}",
            word(i),
            word(j)
        ),
        (Some(i), None) => format!("trial {id}: only in the index ({})", word(i)),
        (None, Some(j)) => format!("trial {id}: only in the journal ({})", word(j)),
        (None, None) => format!("trial {id}"),
    }
}

/// What could be read from the index.
#[derive(Default)]
struct IndexRead {
    missing: bool,
    version: Option<u32>,
    checkpoint: u64,
    applied_end: u64,
    state: State,
    error: Option<String>,
    problems: Vec<String>,
}

/// Reads the index of the store in `dir` from a temporary copy, record by record.
fn read_index_copy(dir: &Path) -> IndexRead {
    let db = dir.join(DB_DIR);
    if !db.is_dir() {
        return IndexRead {
            missing: true,
            ..Default::default()
        };
    }
    let copy = scratch_dir();
    let result = copy_dir(&db, &copy)
        .map_err(|e| format!("cannot copy it for reading: {e}"))
        .and_then(|_| Index::open(&copy).map_err(|e| e.to_string()))
        .map(|index| {
            let read = read_index(&index);
            drop(index);
            read
        });
    let _ = std::fs::remove_dir_all(&copy);
    result.unwrap_or_else(|e| IndexRead {
        error: Some(e),
        ..Default::default()
    })
}

fn read_index(index: &Index) -> IndexRead {
    let guarded = index::guard("read the index", || {
        let mut r = IndexRead::default();
        let mut problems = Vec::new();
        r.version = schema::read_version(index).unwrap_or_else(|e| {
            problems.push(format!("schema version: {e}"));
            None
        });
        r.checkpoint = index
            .read_checkpoint()
            .ok()
            .flatten()
            .map_or(0, |c| c.offset);
        r.applied_end = index.read_applied_end().ok().flatten().unwrap_or(0);
        match index.study() {
            Ok(s) => r.state.study = s,
            Err(e) => problems.push(e.to_string()),
        }
        let state = &mut r.state;
        each(&index.trials, "trials", &mut problems, |k, v| {
            let id = keys::decode_u64("trial key", k)?;
            state.trials.insert(id, index::decode_trial(id, v)?);
            Ok(())
        });
        each(&index.epochs, "epochs", &mut problems, |k, v| {
            let (trial, epoch) = keys::decode_epoch_key(k)?;
            state
                .epochs
                .insert((trial, epoch), index::decode_epoch(trial, epoch, v)?);
            Ok(())
        });
        each(&index.events, "events", &mut problems, |k, v| {
            let at = keys::decode_u64("event key", k)?;
            state
                .events
                .insert(at, crate::codec::decode(&format!("event at {at}"), v)?);
            Ok(())
        });
        each(&index.commands, "trial commands", &mut problems, |k, v| {
            let id = keys::decode_u64("trial command key", k)?;
            state.commands.insert(
                id,
                crate::codec::decode(&format!("command of trial {id}"), v)?,
            );
            Ok(())
        });
        each(
            &index.inherited,
            "inherited trials",
            &mut problems,
            |k, v| {
                let id = keys::decode_u64("inherited trial key", k)?;
                state.inherited.insert(
                    id,
                    crate::codec::decode(&format!("inherited trial {id}"), v)?,
                );
                Ok(())
            },
        );
        r.problems = problems;
        r
    });
    guarded.unwrap_or_else(|e| IndexRead {
        error: Some(e.to_string()),
        ..Default::default()
    })
}

/// Calls `f` on every key and value of `tree`, reporting records it rejects and stopping at a
/// read error.
fn each(
    tree: &sled::Tree,
    what: &str,
    problems: &mut Vec<String>,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) {
    for item in tree.iter() {
        match item {
            Ok((k, v)) => {
                if let Err(e) = f(&k, &v) {
                    problems.push(e.to_string());
                }
            }
            Err(e) => {
                problems.push(format!("{what}: reading stopped: {e}"));
                return;
            }
        }
    }
}

/// A fresh folder for a temporary copy of an index.
fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "jizhi-store-inspect-{}-{nanos}",
        std::process::id()
    ))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
