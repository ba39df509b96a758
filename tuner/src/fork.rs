//! `--fork NEW_NAME`: a new study, in its own store next to the old one, that starts with a copy
//! of the old study's history. A planned trial whose trial command is exactly that of a finished
//! (or diverged) inherited trial takes its result instead of running again: the trainer is
//! deterministic for the same command.

use crate::commands::BadInput;
use crate::drift;
use anyhow::{bail, Result};
use jizhi_store::{Change, Event, InheritedTrial, Store, StudyRecord, TrialRecord, TrialStatus};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The store folder a fork named `name` of the store in `from` lives in.
pub fn fork_dir(from: &Path, name: &str) -> Result<PathBuf> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    if !plain {
        bail!(BadInput(format!("--fork: `{name}` must be a plain folder name (no slashes)")));
    }
    let dir = from.parent().unwrap_or(Path::new("")).join(name);
    if dir == from {
        bail!(BadInput(format!("--fork: `{name}` is the study's own store; give the fork another name")));
    }
    Ok(dir)
}

/// Opens the fork of the store in `from` named `name` for the study `study`: created with a copy
/// of `from`'s history the first time, resumed (if its search space still matches) afterwards.
pub fn open_fork(from: &Path, name: &str, study: StudyRecord) -> Result<(Store, PathBuf)> {
    let dir = fork_dir(from, name)?;
    if Store::exists(&dir) {
        let refuse = |stored: &StudyRecord| -> Result<()> {
            let differences = drift::compare(&stored.space_text, stored.seed, &study.space_text, study.seed);
            if !differences.is_empty() {
                bail!(drift::Refused { store: dir.clone(), differences });
            }
            Ok(())
        };
        if let Some(stored) = Store::peek_study(&dir)? {
            refuse(&stored)?;
        }
        let store = Store::open(&dir)?;
        if let Some(stored) = store.study()? {
            refuse(&stored)?;
        }
        println!("resuming the fork in {}", dir.display());
        return Ok((store, dir));
    }
    if !Store::exists(from) {
        bail!(BadInput(format!("--fork: there is no study at {} to fork", from.display())));
    }
    let parent = Store::open(from)?;
    let parent_name = parent.study()?.map(|s| s.name).unwrap_or_else(|| "(unnamed)".into());
    let trials = parent.trials()?;
    let mut commands = parent.commands()?;
    let mut changes = vec![Change::Study(study)];
    let inherited = trials.len();
    changes.extend(trials.into_iter().map(|trial| {
        let args = commands.remove(&trial.id).unwrap_or_default();
        Change::Inherited { trial, args }
    }));
    changes.push(Change::Event(Event {
        unix_ms: unix_ms(),
        trial_id: None,
        kind: "forked".into(),
        detail: format!("from study {parent_name} in {}: {inherited} trials inherited", from.display()),
    }));
    let store = Store::open(&dir)?;
    store.apply_all(changes)?;
    drop(parent);
    println!(
        "--fork: new study in {} with the {inherited} trials of {} inherited (the old store is unchanged)",
        dir.display(),
        from.display()
    );
    Ok((store, dir))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Inherited results by trial command, for trials worth reusing.
pub struct Reusable(HashMap<Vec<String>, InheritedTrial>);

impl Reusable {
    /// The reusable inherited trials of a store.
    pub fn of(store: &Store) -> Result<Reusable> {
        let map = store
            .inherited()?
            .into_iter()
            .filter(|t| !t.command.is_empty() && matches!(t.trial.status, TrialStatus::Finished | TrialStatus::Diverged))
            .map(|t| (t.command.clone(), t))
            .collect();
        Ok(Reusable(map))
    }

    /// Records `planned` as done with the result of the inherited trial run with `args`, if there
    /// is one; returns the parent's trial id.
    pub fn take(&self, store: &Store, planned: &TrialRecord, args: &[String]) -> Result<Option<u64>> {
        let Some(parent) = self.0.get(args) else { return Ok(None) };
        let mut record = planned.clone();
        record.status = parent.trial.status;
        record.attempts = parent.trial.attempts;
        record.error = parent.trial.error.clone();
        record.final_val_top1 = parent.trial.final_val_top1;
        record.wall_secs = parent.trial.wall_secs;
        record.epochs = Vec::new();
        let mut changes = vec![Change::Command { trial: record.id, args: args.to_vec() }, Change::Trial(record.clone())];
        changes.extend(parent.trial.epochs.iter().map(|m| Change::Epoch { trial: record.id, metrics: m.clone() }));
        changes.push(Change::Event(Event {
            unix_ms: unix_ms(),
            trial_id: Some(record.id),
            kind: "reused".into(),
            detail: format!("result of inherited trial {} (same trial command)", parent.trial.id),
        }));
        store.apply_all(changes)?;
        Ok(Some(parent.trial.id))
    }
}
