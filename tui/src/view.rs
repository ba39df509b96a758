//! The dashboard's model of a study: what the tuner said about it, and its trials as they stand.

use crate::event::DashEvent;
use jizhi_store::{TrialRecord, TrialStatus};
use std::collections::BTreeMap;

/// The error text of a trial the user stopped.
pub const STOPPED_BY_USER: &str = "stopped by user";

/// A nominal batch size and the batch actually run for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BatchSize {
    /// Nominal global batch (e.g. 65536).
    pub nominal: u64,
    /// The batch the trials run (e.g. 3072 on a proxy data set).
    pub proxy: u64,
}

/// The small-batch accuracy large batches are compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Validation top-1 in [0, 1].
    pub top1: f64,
    /// The batch it was trained at, if the study names it.
    pub batch: Option<BatchSize>,
}

/// One stage of the study as planned.
#[derive(Debug, Clone, PartialEq)]
pub struct StageInfo {
    /// Stage name, e.g. "coarse".
    pub name: String,
    /// Trials planned for the stage.
    pub trials: usize,
    /// Epochs of each trial.
    pub epochs: u32,
    /// Fraction of the training set each trial uses.
    pub data_fraction: f64,
}

/// Where a study's trials train.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendInfo {
    /// The device, e.g. "CPU".
    pub device: String,
    /// Data-parallel ranks each trial stands for.
    pub nominal_ranks: u32,
    /// Ranks each trial actually trains on.
    pub ranks_per_trial: u32,
    /// Trials at once and threads each, for a running study.
    pub concurrency: Option<(usize, usize)>,
}

impl BackendInfo {
    /// The backend in words, longest first.
    pub fn describe(&self) -> [String; 2] {
        let plural = |n: usize, word: &str| {
            if n == 1 {
                format!("{n} {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        let mut long = format!(
            "{} trainer · {} per trial ({} nominal)",
            self.device,
            plural(self.ranks_per_trial as usize, "rank"),
            self.nominal_ranks
        );
        let mut short = format!("{} · {} ranks nominal", self.device, self.nominal_ranks);
        if let Some((at_once, threads)) = self.concurrency {
            long.push_str(&format!(
                " · {} at once × {}",
                plural(at_once, "trial"),
                plural(threads, "thread")
            ));
            short = format!(
                "{} · {} × {}",
                self.device,
                plural(at_once, "trial"),
                plural(threads, "thread")
            );
        }
        [long, short]
    }
}

/// The data a study trains on.
#[derive(Debug, Clone, PartialEq)]
pub struct DataInfo {
    /// True when a stand-in data set replaces the one the batch sizes refer to.
    pub proxy: bool,
    /// What it is, e.g. "Fashion-MNIST, 60000 images".
    pub name: String,
    /// The data set the batch sizes refer to, e.g. "ImageNet".
    pub stands_for: String,
}

/// What the dashboard shows in its header: fixed for the life of a study run.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyInfo {
    /// Study name.
    pub name: String,
    /// What ranks trials, e.g. "max-val-top1".
    pub objective: String,
    /// Target validation top-1, if the study has one.
    pub target_top1: Option<f64>,
    /// Small-batch baseline, if the study has one.
    pub baseline: Option<Baseline>,
    /// Where trials train.
    pub backend: BackendInfo,
    /// The data.
    pub data: DataInfo,
    /// The batch sizes of the study, smallest first.
    pub batches: Vec<BatchSize>,
    /// The stages, in order.
    pub stages: Vec<StageInfo>,
}

/// Whether the study is running, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Trials are running or queued.
    Running,
    /// The user asked the search to stop; running trials are winding down.
    Stopping,
    /// The search ran to its end.
    Done,
    /// The search was stopped and can be resumed.
    Stopped,
    /// A stored study shown from its store; nothing runs.
    Stored,
}

/// Trials by state, for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Running now.
    pub running: usize,
    /// Planned, not started.
    pub queued: usize,
    /// Finished.
    pub finished: usize,
    /// Failed (not counting those the user stopped).
    pub failed: usize,
    /// Diverged.
    pub diverged: usize,
    /// Stopped by the user.
    pub stopped: usize,
}

/// The tuner's last tally, with when it came.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tally {
    done: usize,
    planned: usize,
    eta_secs: Option<f64>,
    at_secs: f64,
}

/// The study as the dashboard knows it: header facts, trials, stage and progress.
#[derive(Debug, Clone)]
pub struct StudyView {
    /// Fixed facts about the study.
    pub info: StudyInfo,
    trials: BTreeMap<u64, TrialRecord>,
    /// Running, stopping, done, stopped or stored.
    pub state: RunState,
    /// The stage now running, once the tuner said.
    pub stage: Option<String>,
    /// Seconds since the search (this run of it) started.
    pub elapsed_secs: f64,
    tally: Option<Tally>,
    /// The tuner's notes, newest last.
    pub notes: Vec<String>,
}

impl StudyView {
    /// A view of a running study, starting from the trials already in its store.
    pub fn live(info: StudyInfo, trials: Vec<TrialRecord>) -> Self {
        Self::new(info, trials, RunState::Running)
    }

    /// A read-only view of a stored study.
    pub fn stored(info: StudyInfo, trials: Vec<TrialRecord>) -> Self {
        Self::new(info, trials, RunState::Stored)
    }

    fn new(mut info: StudyInfo, trials: Vec<TrialRecord>, state: RunState) -> Self {
        info.batches.sort();
        let mut view = StudyView {
            info,
            trials: BTreeMap::new(),
            state,
            stage: None,
            elapsed_secs: 0.0,
            tally: None,
            notes: Vec::new(),
        };
        for t in trials {
            view.upsert(t);
        }
        view
    }

    fn upsert(&mut self, trial: TrialRecord) {
        let batch = BatchSize {
            nominal: trial.batch,
            proxy: trial.proxy_batch,
        };
        // A trial of a batch size the header does not list still gets a colour and a row.
        if !self.info.batches.iter().any(|b| b.nominal == batch.nominal) {
            self.info.batches.push(batch);
            self.info.batches.sort();
        }
        self.trials.insert(trial.id, trial);
    }

    /// Applies one event from the tuner.
    pub fn apply(&mut self, event: DashEvent) {
        match event {
            DashEvent::Stage { name, trials, .. } => {
                if let Some(stage) = self.info.stages.iter_mut().find(|s| s.name == name) {
                    stage.trials = trials;
                }
                self.stage = Some(name);
            }
            DashEvent::Trial(t) => self.upsert(t),
            DashEvent::Progress {
                done,
                planned,
                eta_secs,
            } => {
                self.tally = Some(Tally {
                    done,
                    planned,
                    eta_secs,
                    at_secs: self.elapsed_secs,
                });
            }
            DashEvent::Note(text) => self.notes.push(text),
            DashEvent::Done => self.state = RunState::Done,
            DashEvent::Stopped => self.state = RunState::Stopped,
        }
    }

    /// True while trials may still start or run.
    pub fn is_live(&self) -> bool {
        matches!(self.state, RunState::Running | RunState::Stopping)
    }

    /// Every trial, by id.
    pub fn trials(&self) -> impl Iterator<Item = &TrialRecord> {
        self.trials.values()
    }

    /// One trial.
    pub fn trial(&self, id: u64) -> Option<&TrialRecord> {
        self.trials.get(&id)
    }

    /// The batch size of a trial as the header lists it.
    pub fn batch_of(&self, trial: &TrialRecord) -> BatchSize {
        BatchSize {
            nominal: trial.batch,
            proxy: trial.proxy_batch,
        }
    }

    /// Where a batch size sits in the study's ladder (its colour), smallest first.
    pub fn batch_index(&self, nominal: u64) -> usize {
        self.info
            .batches
            .iter()
            .position(|b| b.nominal == nominal)
            .unwrap_or(0)
    }

    /// Trials by state.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in self.trials.values() {
            match display_status(t) {
                DisplayStatus::Queued => c.queued += 1,
                DisplayStatus::Running => c.running += 1,
                DisplayStatus::Finished => c.finished += 1,
                DisplayStatus::Failed => c.failed += 1,
                DisplayStatus::Diverged => c.diverged += 1,
                DisplayStatus::Stopped => c.stopped += 1,
            }
        }
        c
    }

    /// Trials of a stage that have ended, and the stage's planned size.
    pub fn stage_progress(&self, stage: &StageInfo) -> (usize, usize) {
        let of_stage = self.trials.values().filter(|t| t.stage == stage.name);
        let ended = of_stage.clone().filter(|t| is_ended(t)).count();
        (ended, stage.trials.max(of_stage.count()))
    }

    /// The epochs a trial of this stage runs (from the stage plan, else what it ran).
    pub fn epochs_planned(&self, trial: &TrialRecord) -> u32 {
        self.info
            .stages
            .iter()
            .find(|s| s.name == trial.stage)
            .map(|s| s.epochs)
            .unwrap_or(trial.epochs.len() as u32)
    }

    /// The largest epoch count of any stage or trial (the curves' x range).
    pub fn max_epochs(&self) -> u32 {
        let planned = self.info.stages.iter().map(|s| s.epochs).max().unwrap_or(0);
        let ran = self
            .trials
            .values()
            .map(|t| t.epochs.len() as u32)
            .max()
            .unwrap_or(0);
        planned.max(ran).max(1)
    }

    /// The best trial of a batch size: highest validation top-1 at its last epoch, failed ones aside.
    pub fn best_of(&self, nominal: u64) -> Option<&TrialRecord> {
        self.trials
            .values()
            .filter(|t| t.batch == nominal && display_status(t) != DisplayStatus::Failed)
            .filter(|t| display_status(t) != DisplayStatus::Stopped)
            .filter_map(|t| accuracy(t).map(|a| (a, t)))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.id.cmp(&a.1.id)))
            .map(|(_, t)| t)
    }

    /// The median accuracy of the finished trials of a batch size (a typical configuration).
    pub fn median_of(&self, nominal: u64) -> Option<f64> {
        let mut values: Vec<f64> = self
            .trials
            .values()
            .filter(|t| {
                t.batch == nominal
                    && matches!(t.status, TrialStatus::Finished | TrialStatus::Diverged)
            })
            .filter_map(accuracy)
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        Some(if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        })
    }

    /// Trials ended and planned per the tuner (or counted here for a stored study).
    pub fn done_and_planned(&self) -> (usize, usize) {
        match self.tally {
            Some(t) => (t.done, t.planned),
            None => {
                let ended = self.trials.values().filter(|t| is_ended(t)).count();
                let planned: usize = self.info.stages.iter().map(|s| s.trials).sum();
                (ended, planned.max(self.trials.len()))
            }
        }
    }

    /// Seconds of work left, counted down from the tuner's last estimate.
    pub fn eta_secs(&self) -> Option<f64> {
        let t = self.tally?;
        t.eta_secs
            .map(|eta| (eta - (self.elapsed_secs - t.at_secs)).max(0.0))
    }
}

/// A trial's state as the dashboard words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DisplayStatus {
    /// Running now.
    Running,
    /// Planned, not started.
    Queued,
    /// Finished.
    Finished,
    /// Diverged.
    Diverged,
    /// Stopped by the user.
    Stopped,
    /// Failed.
    Failed,
}

impl DisplayStatus {
    /// The word shown.
    pub fn word(self) -> &'static str {
        match self {
            DisplayStatus::Running => "running",
            DisplayStatus::Queued => "queued",
            DisplayStatus::Finished => "finished",
            DisplayStatus::Diverged => "diverged",
            DisplayStatus::Stopped => "stopped",
            DisplayStatus::Failed => "failed",
        }
    }
}

/// How a trial's state is shown: a failed trial whose error says the user stopped it is "stopped".
pub fn display_status(t: &TrialRecord) -> DisplayStatus {
    match t.status {
        TrialStatus::Planned => DisplayStatus::Queued,
        TrialStatus::Running => DisplayStatus::Running,
        TrialStatus::Finished => DisplayStatus::Finished,
        TrialStatus::Diverged => DisplayStatus::Diverged,
        TrialStatus::Failed if t.error.as_deref() == Some(STOPPED_BY_USER) => {
            DisplayStatus::Stopped
        }
        TrialStatus::Failed => DisplayStatus::Failed,
    }
}

/// True once a trial has ended, whatever the outcome.
pub fn is_ended(t: &TrialRecord) -> bool {
    matches!(
        t.status,
        TrialStatus::Finished | TrialStatus::Failed | TrialStatus::Diverged
    )
}

/// A trial's accuracy so far: its final validation top-1, else that of its last epoch.
pub fn accuracy(t: &TrialRecord) -> Option<f64> {
    t.final_val_top1
        .or_else(|| t.epochs.last().map(|e| e.val_top1))
        .filter(|a| a.is_finite())
}
