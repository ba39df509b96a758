//! What a study found: the summary, the `show` table and the `export` formats.

use crate::format::{batch, duration, percent, short_number};
use crate::plan::DataPlan;
use crate::ranking::best_first;
use crate::scheduler::status_word;
use crate::space::{Objective, SearchSpace};
use jizhi_store::TrialRecord;
use serde::Serialize;
use std::fmt::Write;

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => short_number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn params_text(t: &TrialRecord, names: &[String]) -> String {
    names
        .iter()
        .filter_map(|n| t.params.get(n).map(|v| format!("{n}={}", value_text(v))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The best configuration and accuracy per batch size.
pub fn best_per_batch(space: &SearchSpace, data: &DataPlan, trials: &[TrialRecord]) -> String {
    let names: Vec<String> = space.params.iter().map(|p| p.name.clone()).collect();
    let mut out = String::new();
    for &b in &space.batches {
        let ranked = best_first(
            trials.iter().filter(|t| t.batch == b),
            space.study.objective,
            space.study.target_top1,
        );
        let _ = match ranked.first() {
            Some(t) => writeln!(
                out,
                "  batch {:>4} (runs {:>4}): val top-1 {:>6}  trial {:>3} ({})  {}",
                batch(b),
                data.proxy_batch(b),
                percent(t.final_val_top1.unwrap_or(0.0)),
                t.id,
                t.stage,
                params_text(t, &names)
            ),
            None => writeln!(out, "  batch {:>4}: no finished trial yet", batch(b)),
        };
    }
    out
}

/// The end-of-run summary.
pub fn summary(space: &SearchSpace, data: &DataPlan, trials: &[TrialRecord]) -> String {
    let count = |s: &str| trials.iter().filter(|t| status_word(t.status) == s).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "study {} done: {} trials ({} finished, {} diverged, {} failed)",
        space.study.name,
        trials.len(),
        count("finished"),
        count("diverged"),
        count("failed")
    );
    let objective = match space.study.objective {
        Objective::MaxValTop1 => "highest final val top-1".to_string(),
        Objective::TimeToTarget => {
            format!(
                "least time to {} val top-1",
                percent(space.study.target_top1.unwrap_or(0.0))
            )
        }
    };
    let _ = writeln!(out, "best configuration per batch size ({objective}):");
    out.push_str(&best_per_batch(space, data, trials));
    out
}

/// The `show` table: every trial, then the best per batch size.
pub fn table(space: &SearchSpace, data: &DataPlan, trials: &[TrialRecord]) -> String {
    let names: Vec<String> = space.params.iter().map(|p| p.name.clone()).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<6}  {:>5}  {:>5}  {:<9}  {:>6}  {:>7}  {:>8}  params",
        "id", "stage", "batch", "runs", "status", "epochs", "top-1", "wall"
    );
    for t in trials {
        let _ = writeln!(
            out,
            "{:>4}  {:<6}  {:>5}  {:>5}  {:<9}  {:>6}  {:>7}  {:>8}  {}",
            t.id,
            t.stage,
            batch(t.batch),
            t.proxy_batch,
            status_word(t.status),
            t.epochs.len(),
            t.final_val_top1.map(percent).unwrap_or_else(|| "-".into()),
            t.wall_secs.map(duration).unwrap_or_else(|| "-".into()),
            params_text(t, &names)
        );
    }
    let _ = writeln!(out, "\nbest configuration per batch size:");
    out.push_str(&best_per_batch(space, data, trials));
    out
}

/// One trial in the JSON export (a stable format: tests and scripts read it).
#[derive(Serialize)]
struct ExportTrial<'a> {
    id: u64,
    stage: &'a str,
    batch: u64,
    proxy_batch: u64,
    params: &'a std::collections::BTreeMap<String, serde_json::Value>,
    status: &'static str,
    attempts: u32,
    final_val_top1: Option<f64>,
    wall_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    modelled_step_secs: Option<f64>,
    error: Option<&'a str>,
    epochs: &'a [jizhi_store::EpochMetrics],
}

/// The JSON export: an array of trial objects.
pub fn export_json(trials: &[TrialRecord]) -> serde_json::Result<String> {
    let rows: Vec<ExportTrial> = trials
        .iter()
        .map(|t| ExportTrial {
            id: t.id,
            stage: &t.stage,
            batch: t.batch,
            proxy_batch: t.proxy_batch,
            params: &t.params,
            status: status_word(t.status),
            attempts: t.attempts,
            final_val_top1: t.final_val_top1,
            wall_secs: t.wall_secs,
            modelled_step_secs: t.modelled_step_secs,
            error: t.error.as_deref(),
            epochs: &t.epochs,
        })
        .collect();
    serde_json::to_string_pretty(&rows)
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Every parameter name of the trials, sorted (the CSV exports' parameter columns).
fn param_names(trials: &[TrialRecord]) -> std::collections::BTreeSet<&String> {
    trials.iter().flat_map(|t| t.params.keys()).collect()
}

/// A CSV header line: the `lead` columns, one column per parameter, then the `tail` columns.
fn csv_header(lead: &str, names: &std::collections::BTreeSet<&String>, tail: &str) -> String {
    let mut out = String::from(lead);
    for n in names {
        out.push(',');
        out.push_str(&csv_field(n));
    }
    out.push(',');
    out.push_str(tail);
    out.push('\n');
    out
}

/// The per-trial CSV export: one row per trial with its outcome and parameters.
pub fn export_csv_trials(trials: &[TrialRecord]) -> String {
    let names = param_names(trials);
    let mut out = csv_header(
        "id,stage,batch,proxy_batch,status,attempts,epochs,final_val_top1,wall_secs,modelled_step_secs",
        &names,
        "error",
    );
    for t in trials {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            t.id,
            csv_field(&t.stage),
            t.batch,
            t.proxy_batch,
            status_word(t.status),
            t.attempts,
            t.epochs.len(),
            t.final_val_top1.map(|v| v.to_string()).unwrap_or_default(),
            t.wall_secs.map(|v| v.to_string()).unwrap_or_default(),
            t.modelled_step_secs
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
        for n in &names {
            out.push(',');
            out.push_str(&csv_field(
                &t.params.get(*n).map(value_text).unwrap_or_default(),
            ));
        }
        let _ = writeln!(out, ",{}", csv_field(t.error.as_deref().unwrap_or("")));
    }
    out
}

/// The CSV export: one row per trial epoch (a trial without epochs gets one row with empty metrics).
pub fn export_csv(trials: &[TrialRecord]) -> String {
    let names = param_names(trials);
    let mut out = csv_header(
        "id,stage,batch,proxy_batch,status,attempts,final_val_top1",
        &names,
        "epoch,step,train_loss,val_top1,images_per_sec,loss_scale,skipped_steps,wall_secs,underflow_fraction",
    );
    for t in trials {
        let mut head = format!(
            "{},{},{},{},{},{},{}",
            t.id,
            csv_field(&t.stage),
            t.batch,
            t.proxy_batch,
            status_word(t.status),
            t.attempts,
            t.final_val_top1.map(|v| v.to_string()).unwrap_or_default()
        );
        for n in &names {
            head.push(',');
            head.push_str(&csv_field(
                &t.params.get(*n).map(value_text).unwrap_or_default(),
            ));
        }
        if t.epochs.is_empty() {
            let _ = writeln!(out, "{head},,,,,,,,,");
        }
        for e in &t.epochs {
            let _ = writeln!(
                out,
                "{head},{},{},{},{},{},{},{},{},{}",
                e.epoch,
                e.step,
                e.train_loss,
                e.val_top1,
                e.images_per_sec,
                e.loss_scale,
                e.skipped_steps,
                e.wall_secs,
                e.underflow_fraction
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::objective::tests::record;

    /// The value of column `name` in the first data row of a CSV text.
    fn column<'a>(csv: &'a str, name: &str) -> &'a str {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        let row: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        assert_eq!(header.len(), row.len(), "{csv}");
        match header.iter().position(|h| *h == name) {
            Some(i) => row[i],
            None => panic!("no column {name}: {csv}"),
        }
    }

    #[test]
    fn csv_exports_carry_the_modelled_step_and_the_underflow() {
        let mut t = record(1, 0.8, 1000.0, 0);
        t.modelled_step_secs = Some(0.25);
        t.epochs[0].underflow_fraction = 0.125;
        t.params.insert("peak_lr".into(), serde_json::json!(2.0));
        let trials = [t];
        let per_trial = export_csv_trials(&trials);
        assert_eq!(column(&per_trial, "modelled_step_secs"), "0.25");
        assert_eq!(column(&per_trial, "peak_lr"), "2");
        let per_epoch = export_csv(&trials);
        assert_eq!(column(&per_epoch, "underflow_fraction"), "0.125");
        assert_eq!(column(&per_epoch, "skipped_steps"), "0");
        let mut none = trials[0].clone();
        none.modelled_step_secs = None;
        none.epochs.clear();
        let empty = export_csv(std::slice::from_ref(&none));
        assert_eq!(column(&empty, "underflow_fraction"), "");
        assert_eq!(
            column(&export_csv_trials(&[none]), "modelled_step_secs"),
            ""
        );
    }
}
