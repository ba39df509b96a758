//! Headless progress: one line per trial event, with trials done/planned, elapsed and time left.

use crate::format::{batch, duration, percent, short_number};
use crate::scheduler::{status_word, TrialEvent};
use jizhi_store::{TrialRecord, TrialStatus};
use std::time::Instant;

/// Counts work done and planned to print progress with an estimate of what remains.
pub struct Progress {
    started: Instant,
    /// Trials of the whole study, planned so far.
    planned_trials: usize,
    /// Trials ended (in this run or before a resume).
    done_trials: usize,
    /// Training images of the work still to do (planned, not yet ended).
    remaining_images: f64,
    /// Training images completed in this run (for the rate).
    images_this_run: f64,
    /// Images of one epoch and epochs planned, of each trial run, by id.
    epoch_images: std::collections::HashMap<u64, (f64, u32)>,
    /// The searched parameters, the only ones worth naming per trial.
    shown: Vec<String>,
}

impl Progress {
    /// An empty tally started now, naming the `shown` parameters of each trial.
    pub fn new(shown: Vec<String>) -> Self {
        Progress {
            shown,
            started: Instant::now(),
            planned_trials: 0,
            done_trials: 0,
            remaining_images: 0.0,
            images_this_run: 0.0,
            epoch_images: Default::default(),
        }
    }

    /// Adds planned trials; `pending` of them still to run, each of `images` training images.
    pub fn plan(&mut self, total: usize, pending: usize, images: f64) {
        self.planned_trials += total;
        self.done_trials += total - pending;
        self.remaining_images += pending as f64 * images;
    }

    /// Takes back a provisional `plan` of `total` pending trials of `images` each.
    pub fn plan_retract(&mut self, total: usize, images: f64) {
        self.planned_trials -= total;
        self.remaining_images = (self.remaining_images - total as f64 * images).max(0.0);
    }

    /// Registers the per-epoch work of a trial about to run.
    pub fn expect(&mut self, id: u64, images_per_epoch: f64, epochs: u32) {
        self.epoch_images.insert(id, (images_per_epoch, epochs));
    }

    /// Seconds of work left at this run's rate so far, once there is a rate.
    pub fn eta_secs(&self) -> Option<f64> {
        let elapsed = self.started.elapsed().as_secs_f64();
        (self.images_this_run > 0.0)
            .then(|| self.remaining_images / (self.images_this_run / elapsed))
    }

    /// Trials ended and trials planned so far.
    pub fn trials(&self) -> (usize, usize) {
        (self.done_trials, self.planned_trials)
    }

    fn eta(&self) -> String {
        match self.eta_secs() {
            Some(secs) => format!("~{} left", duration(secs)),
            None => "estimating".into(),
        }
    }

    /// The tally that starts every line: trials done/planned, elapsed, time left.
    pub fn prefix(&self) -> String {
        format!(
            "[{:>3}/{} trials | {} | {}]",
            self.done_trials,
            self.planned_trials,
            duration(self.started.elapsed().as_secs_f64()),
            self.eta()
        )
    }

    /// The progress line of an event (and updates the tally).
    pub fn line(&mut self, event: &TrialEvent) -> String {
        match event {
            TrialEvent::Started(r) => {
                // A retry says why the attempt before it ended.
                let retry = match r.error.as_deref().and_then(|e| e.lines().next()) {
                    Some(why) if r.attempts > 1 => format!(" (attempt {}; {why})", r.attempts),
                    _ => String::new(),
                };
                format!(
                    "{} trial {} started{retry}: {}",
                    self.prefix(),
                    r.id,
                    describe(r, &self.shown)
                )
            }
            TrialEvent::Epoch {
                record,
                metrics,
                of,
            } => {
                let images = self.epoch_images.get(&record.id).map_or(0.0, |e| e.0);
                self.images_this_run += images;
                self.remaining_images = (self.remaining_images - images).max(0.0);
                format!(
                    "{} trial {} epoch {}/{}: val top-1 {}, train loss {:.4}, {:.0} images/s, loss scale {}, skipped {}",
                    self.prefix(),
                    record.id,
                    metrics.epoch,
                    of,
                    percent(metrics.val_top1),
                    metrics.train_loss,
                    metrics.images_per_sec,
                    short_number(metrics.loss_scale),
                    metrics.skipped_steps
                )
            }
            TrialEvent::Ended(r) => {
                self.done_trials += 1;
                // Work a trial planned but did not do (divergence, failure) is no longer to come.
                if let Some(&(images, epochs)) = self.epoch_images.get(&r.id) {
                    let skipped = epochs.saturating_sub(r.epochs.len() as u32) as f64;
                    self.remaining_images = (self.remaining_images - skipped * images).max(0.0);
                }
                let what = match r.status {
                    TrialStatus::Finished => format!(
                        "finished: val top-1 {} in {}{}",
                        percent(r.final_val_top1.unwrap_or(0.0)),
                        duration(r.wall_secs.unwrap_or(0.0)),
                        r.modelled_step_secs
                            .map(|s| format!(", modelled cluster step {:.1} ms", 1e3 * s))
                            .unwrap_or_default()
                    ),
                    _ => format!(
                        "{}: {}",
                        status_word(r.status),
                        r.error
                            .as_deref()
                            .unwrap_or("")
                            .lines()
                            .last()
                            .unwrap_or("")
                    ),
                };
                format!("{} trial {} {}", self.prefix(), r.id, what)
            }
        }
    }
}

/// A short description of a trial: stage, batch and the `shown` parameters.
pub fn describe(r: &TrialRecord, shown: &[String]) -> String {
    let params: Vec<String> = r
        .params
        .iter()
        .filter(|(k, _)| shown.contains(k))
        .map(|(k, v)| match v {
            serde_json::Value::Number(n) => {
                format!("{k}={}", short_number(n.as_f64().unwrap_or(f64::NAN)))
            }
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!(
        "{} batch {} (runs {}) {}",
        r.stage,
        batch(r.batch),
        r.proxy_batch,
        params.join(" ")
    )
}
