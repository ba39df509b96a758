//! `jizhi-tune import EXPORT.json --store DIR`: a new store rebuilt from a JSON export.
//!
//! The export holds every trial with its epochs but not the study record: running the study's
//! search space on the imported store adopts it, keeps every finished trial and runs the rest.

use crate::commands::BadInput;
use anyhow::{bail, Context, Result};
use clap::Args;
use jizhi_store::{Change, EpochMetrics, Event, Store, TrialRecord, TrialStatus};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options of `jizhi-tune import`.
#[derive(Debug, Args, Clone)]
#[command(
    after_help = "Example:\n  jizhi-tune export runs/smoke --format json > smoke.json\n  \
    jizhi-tune import smoke.json --store /data/runs/smoke\n  \
    jizhi-tune search-spaces/smoke.toml --store /data/runs/smoke      resumes it"
)]
pub struct ImportArgs {
    /// A file written by `jizhi-tune export --format json`.
    #[arg(value_name = "EXPORT.json")]
    pub file: PathBuf,
    /// Folder of the new store (must not hold a store yet).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
}

/// One trial of a JSON export (the shape `report::export_json` writes).
#[derive(Debug, Deserialize)]
struct ExportedTrial {
    id: u64,
    stage: String,
    batch: u64,
    proxy_batch: u64,
    params: BTreeMap<String, serde_json::Value>,
    status: String,
    attempts: u32,
    final_val_top1: Option<f64>,
    wall_secs: Option<f64>,
    #[serde(default)]
    modelled_step_secs: Option<f64>,
    error: Option<String>,
    epochs: Vec<EpochMetrics>,
}

fn status(word: &str) -> Option<TrialStatus> {
    Some(match word {
        "planned" => TrialStatus::Planned,
        "running" => TrialStatus::Running,
        "finished" => TrialStatus::Finished,
        "failed" => TrialStatus::Failed,
        "diverged" => TrialStatus::Diverged,
        _ => return None,
    })
}

/// Reads and checks an export file into trial records.
fn read(file: &Path) -> Result<Vec<TrialRecord>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let rows: Vec<ExportedTrial> = serde_json::from_str(&text).map_err(|e| {
        BadInput(format!(
            "{}:{}:{}: not a jizhi-tune JSON export: {e}",
            file.display(),
            e.line(),
            e.column()
        ))
    })?;
    let mut seen = BTreeSet::new();
    let mut trials = Vec::with_capacity(rows.len());
    for row in rows {
        if !seen.insert(row.id) {
            bail!(BadInput(format!(
                "{}: trial {} appears twice",
                file.display(),
                row.id
            )));
        }
        let Some(status) = status(&row.status) else {
            bail!(BadInput(format!(
                "{}: trial {}: unknown status `{}`",
                file.display(),
                row.id,
                row.status
            )));
        };
        trials.push(TrialRecord {
            id: row.id,
            stage: row.stage,
            batch: row.batch,
            proxy_batch: row.proxy_batch,
            params: row.params,
            status,
            attempts: row.attempts,
            error: row.error,
            final_val_top1: row.final_val_top1,
            wall_secs: row.wall_secs,
            modelled_step_secs: row.modelled_step_secs,
            epochs: row.epochs,
        });
    }
    Ok(trials)
}

/// Runs `jizhi-tune import`.
pub fn run(args: &ImportArgs) -> Result<()> {
    let trials = read(&args.file)?;
    if Store::exists(&args.store) {
        bail!(BadInput(format!(
            "{} already holds a store; import into a new folder",
            args.store.display()
        )));
    }
    let epochs: usize = trials.iter().map(|t| t.epochs.len()).sum();
    let count = trials.len();
    let mut changes = Vec::with_capacity(count + epochs + 1);
    for mut trial in trials {
        let metrics = std::mem::take(&mut trial.epochs);
        let id = trial.id;
        changes.push(Change::Trial(trial));
        changes.extend(
            metrics
                .into_iter()
                .map(|metrics| Change::Epoch { trial: id, metrics }),
        );
    }
    changes.push(Change::Event(Event {
        unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        trial_id: None,
        kind: "imported".into(),
        detail: format!("from {}", args.file.display()),
    }));
    let store = Store::open(&args.store)?;
    store.apply_all(changes)?;
    println!(
        "imported {count} trials ({epochs} epochs) from {} into {}; run the study's search space with --store {} to resume it",
        args.file.display(),
        args.store.display(),
        args.store.display()
    );
    Ok(())
}
