//! Runs trials as child processes, at most N at a time, and records their progress in the store.
//!
//! Each trial is `jizhi-tune trial ...` of our own executable. Its stdout JSON lines are parsed as
//! they come; every state change is durable in the store before the scheduler moves on, so a kill
//! of the tuner at any moment loses no finished trial.

mod follow;
mod process;

use crate::control::{Controls, StopReason};
use anyhow::{Context, Result};
use follow::{Attempt, Outcome};
use jizhi_store::{EpochMetrics, Event, Store, TrialRecord, TrialStatus};
use process::TrialProcess;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How trials are run and when the scheduler gives up on one.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Longest a trial attempt may run (`None`: no limit).
    pub trial_timeout: Option<Duration>,
    /// Longest a trial may go without a progress line (`None`: no limit).
    pub stall_timeout: Option<Duration>,
    /// Further attempts of a trial that crashed (exited by itself without a final record).
    pub max_retries: u32,
    /// Between SIGTERM and SIGKILL when a trial is stopped.
    pub kill_grace: Duration,
    /// Program and arguments every trial command is run through (e.g. a cluster launcher);
    /// empty: the trial command runs as it is.
    pub launcher: Vec<String>,
}

/// Default stall timeout: far above an epoch of the proxy at full fidelity (about two minutes).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default number of retries of a crashed trial.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default grace period between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trial_timeout: None,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            max_retries: DEFAULT_MAX_RETRIES,
            kill_grace: DEFAULT_KILL_GRACE,
            launcher: Vec::new(),
        }
    }
}

/// The settings of this process's search, set once from the command line.
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Sets the settings every later [`run_jobs`] uses (the first call wins).
pub fn configure(settings: Settings) {
    let _ = SETTINGS.set(settings);
}

/// A trial ready to run: its record and the `trial` command line.
#[derive(Debug, Clone)]
pub struct Job {
    /// The record as planned (status is updated as it runs).
    pub record: TrialRecord,
    /// Arguments after the executable.
    pub args: Vec<String>,
    /// Epochs the trial will run.
    pub epochs: u32,
    /// The trial's checkpoint file (removed once the trial has ended for good).
    pub checkpoint: Option<PathBuf>,
}

/// Something that happened to a trial, reported in order of occurrence.
#[derive(Debug, Clone)]
pub enum TrialEvent {
    /// The trial process started.
    Started(TrialRecord),
    /// An epoch finished.
    Epoch {
        /// The trial.
        record: TrialRecord,
        /// Its metrics.
        metrics: EpochMetrics,
        /// Epochs planned.
        of: u32,
    },
    /// The trial ended (finished, diverged or failed); the record holds the outcome.
    Ended(TrialRecord),
}

/// [`run_jobs_with`] under the settings given to [`configure`] (else the defaults).
pub async fn run_jobs(
    store: Arc<Store>,
    exe: PathBuf,
    jobs: Vec<Job>,
    max_concurrent: usize,
    controls: &mut Controls,
    on_event: &mut dyn FnMut(&TrialEvent),
) -> Result<()> {
    let settings = SETTINGS.get().cloned().unwrap_or_default();
    run_jobs_with(
        store,
        exe,
        jobs,
        max_concurrent,
        &settings,
        controls,
        on_event,
    )
    .await
}

/// Runs `jobs` with at most `max_concurrent` at once, calling `on_event` for every trial event
/// and following the requests that arrive through `controls` (pause, stop or cancel a trial,
/// stop all).
pub async fn run_jobs_with(
    store: Arc<Store>,
    exe: PathBuf,
    jobs: Vec<Job>,
    max_concurrent: usize,
    settings: &Settings,
    controls: &mut Controls,
    on_event: &mut dyn FnMut(&TrialEvent),
) -> Result<()> {
    let settings = Arc::new(settings.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<TrialEvent>();
    let mut queue: VecDeque<Job> = jobs.into();
    let mut running = tokio::task::JoinSet::new();
    let mut report = |event: &TrialEvent, controls: &mut Controls| {
        if let TrialEvent::Ended(r) = event {
            controls.ended(r.id);
        }
        on_event(event);
    };
    loop {
        controls.apply_waiting();
        // Cancelled trials are recorded without running, whatever the concurrency.
        for job in std::mem::take(&mut queue) {
            match controls.take_cancelled(job.record.id) {
                Some(error) => {
                    running.spawn(record_cancelled(store.clone(), job, error, tx.clone()));
                }
                None => queue.push_back(job),
            }
        }
        while running.len() < max_concurrent.max(1) && !controls.holds_back() {
            let Some(job) = queue.pop_front() else { break };
            let stop = controls.started(job.record.id);
            running.spawn(run_one(
                store.clone(),
                exe.clone(),
                settings.clone(),
                job,
                tx.clone(),
                stop,
            ));
        }
        // A paused search with trials queued waits here for the next request.
        if running.is_empty() && (queue.is_empty() || controls.stopped()) {
            break;
        }
        tokio::select! {
            Some(event) = rx.recv() => report(&event, controls),
            Some(done) = running.join_next() => {
                done.context("a trial task panicked")??;
                // Report what the finished task sent before starting the next one.
                while let Ok(event) = rx.try_recv() {
                    report(&event, controls);
                }
            }
            control = controls.recv() => controls.apply(control),
        }
    }
    while let Ok(event) = rx.try_recv() {
        report(&event, controls);
    }
    Ok(())
}

/// Runs a store call off the async thread.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, jizhi_store::StoreError> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store))
        .await
        .context("store task panicked")??)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn log(store: &Arc<Store>, id: u64, kind: &str, detail: String) -> Result<()> {
    let event = Event {
        unix_ms: now_ms(),
        trial_id: Some(id),
        kind: kind.into(),
        detail,
    };
    blocking(store, move |s| s.log_event(&event)).await
}

/// Records a trial cancelled before it started as failed with `error`.
async fn record_cancelled(
    store: Arc<Store>,
    job: Job,
    error: String,
    tx: mpsc::UnboundedSender<TrialEvent>,
) -> Result<()> {
    let mut record = job.record;
    record.status = TrialStatus::Failed;
    record.error = Some(error);
    record.epochs.clear();
    finish(&store, &job.checkpoint, record, &tx).await
}

/// The program and arguments of one attempt: the launcher, if any, then the trial command.
fn command_of(
    settings: &Settings,
    exe: &std::path::Path,
    args: &[String],
) -> (OsString, Vec<OsString>) {
    let mut words: Vec<OsString> = settings.launcher.iter().map(OsString::from).collect();
    words.push(exe.as_os_str().to_owned());
    words.extend(args.iter().map(OsString::from));
    let program = words.remove(0);
    (program, words)
}

/// Text of an attempt's failure with its stderr tail.
fn with_tail(what: String, tail: &str) -> String {
    if tail.is_empty() {
        what
    } else {
        format!("{what}; its stderr ended:\n{tail}")
    }
}

/// Runs one trial to its end, retrying a crash up to the limit; store errors are returned (they
/// stop the study), trial failures are recorded.
async fn run_one(
    store: Arc<Store>,
    exe: PathBuf,
    settings: Arc<Settings>,
    job: Job,
    tx: mpsc::UnboundedSender<TrialEvent>,
    stop: oneshot::Receiver<StopReason>,
) -> Result<()> {
    let mut record = job.record.clone();
    let id = record.id;
    let mut stop = Some(stop);
    let mut crashes = 0u32;
    let (program, args) = command_of(&settings, &exe, &job.args);
    loop {
        record.status = TrialStatus::Running;
        record.attempts += 1;
        // A retry keeps the crash before it on show until this attempt ends.
        if crashes == 0 {
            record.error = None;
        }
        record.epochs.clear();
        let r = record.clone();
        blocking(&store, move |s| {
            s.clear_epochs(id)?;
            s.put_trial(&r)
        })
        .await?;
        log(
            &store,
            id,
            "started",
            format!("attempt {}", record.attempts),
        )
        .await?;
        let _ = tx.send(TrialEvent::Started(record.clone()));

        let attempt = match TrialProcess::spawn(&program, &args) {
            Ok(process) => {
                follow::follow(
                    &store,
                    process,
                    &mut record,
                    job.epochs,
                    &settings,
                    &tx,
                    &mut stop,
                )
                .await?
            }
            Err(e) => Attempt {
                outcome: Outcome::Failed(format!(
                    "could not start {}: {e}",
                    program.to_string_lossy()
                )),
                stderr_tail: String::new(),
            },
        };
        let tail = attempt.stderr_tail;
        match attempt.outcome {
            Outcome::Finished(last) => {
                record.final_val_top1 = Some(last.final_val_top1);
                record.wall_secs = Some(last.wall_secs);
                record.modelled_step_secs = last.modelled_cluster_step_secs;
                record.status = match last.diverged {
                    Some(reason) => {
                        record.error = Some(format!("diverged: {reason}"));
                        TrialStatus::Diverged
                    }
                    None => {
                        record.error = None;
                        TrialStatus::Finished
                    }
                };
            }
            Outcome::Crashed(how) if crashes < settings.max_retries => {
                crashes += 1;
                let error = with_tail(format!("attempt {} crashed: {how}", record.attempts), &tail);
                // Every attempt's stderr tail stays in the store's event log.
                log(&store, id, "attempt-crashed", error.clone()).await?;
                record.error = Some(error);
                continue;
            }
            Outcome::Crashed(how) => {
                record.status = TrialStatus::Failed;
                let what = match crashes {
                    0 => format!("crashed: {how}"),
                    n => format!("crashed on all {} attempts, the last: {how}", n + 1),
                };
                record.error = Some(with_tail(what, &tail));
                log(
                    &store,
                    id,
                    "attempt-crashed",
                    record.error.clone().unwrap_or_default(),
                )
                .await?;
            }
            Outcome::Failed(error) => {
                record.status = TrialStatus::Failed;
                record.error = Some(with_tail(error, &tail));
            }
            Outcome::TimedOut(limit) => {
                record.status = TrialStatus::Failed;
                let what = format!(
                    "timed out: still running after the trial timeout of {}",
                    secs(limit)
                );
                record.error = Some(with_tail(what, &tail));
            }
            Outcome::Stalled(limit) => {
                record.status = TrialStatus::Failed;
                let what = format!(
                    "stalled: no progress line for {} (the stall timeout)",
                    secs(limit)
                );
                record.error = Some(with_tail(what, &tail));
            }
            Outcome::Stopped(StopReason::Cancelled(error)) => {
                record.status = TrialStatus::Failed;
                record.error = Some(error);
            }
            Outcome::Stopped(StopReason::Search) => {
                // Back to planned: it runs again on resume, continuing from its last checkpoint.
                record.status = TrialStatus::Planned;
                record.epochs.clear();
                let why = crate::signals::received()
                    .map_or("the search was stopped", crate::signals::name);
                record.error = Some(format!(
                    "interrupted by {why}: resumes from its last checkpoint"
                ));
            }
        }
        break;
    }
    finish(&store, &job.checkpoint, record, &tx).await
}

/// Seconds as the limits are given.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Makes a trial's outcome durable, drops the checkpoint of one that has ended for good, logs
/// it and reports it.
async fn finish(
    store: &Arc<Store>,
    checkpoint: &Option<PathBuf>,
    record: TrialRecord,
    tx: &mpsc::UnboundedSender<TrialEvent>,
) -> Result<()> {
    let id = record.id;
    let r = record.clone();
    let interrupted = record.status == TrialStatus::Planned;
    blocking(store, move |s| {
        if interrupted {
            s.clear_epochs(r.id)?;
        }
        s.put_trial(&r)
    })
    .await?;
    if let Some(path) = checkpoint
        .as_ref()
        .filter(|_| crate::study::is_done(record.status))
    {
        // The outcome is recorded above; a checkpoint could only resume a trial that has ended.
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a trial checkpoint");
            }
        }
    }
    let detail = record.error.clone().unwrap_or_default();
    let kind = if interrupted {
        "interrupted"
    } else {
        status_word(record.status)
    };
    log(store, id, kind, detail).await?;
    let _ = tx.send(TrialEvent::Ended(record));
    Ok(())
}

/// The store's word for a status.
pub fn status_word(status: TrialStatus) -> &'static str {
    match status {
        TrialStatus::Planned => "planned",
        TrialStatus::Running => "running",
        TrialStatus::Finished => "finished",
        TrialStatus::Failed => "failed",
        TrialStatus::Diverged => "diverged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(id: u64) -> TrialRecord {
        TrialRecord {
            id,
            stage: "coarse".into(),
            batch: 8192,
            proxy_batch: 384,
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
    fn pruning_kills_a_running_trial_and_keeps_a_queued_one_from_starting() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let exe = tmp.path().join("hang.sh");
        std::fs::write(&exe, "#!/bin/sh\nsleep 60\n").expect("script");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let store = Arc::new(Store::open(&tmp.path().join("store")).expect("store"));
        let jobs: Vec<Job> = (1..=2)
            .map(|id| Job {
                record: record(id),
                args: Vec::new(),
                epochs: 1,
                checkpoint: None,
            })
            .collect();
        let mut controls = Controls::none();
        let pruner = controls.canceller();
        let mut started = Vec::new();
        let mut on_event = |e: &TrialEvent| {
            if let TrialEvent::Started(r) = e {
                started.push(r.id);
                // Trial 1 hangs: prune it, and trial 2 before it starts.
                pruner.prune(1, "worst half after epoch 1");
                pruner.prune(2, "worst half after epoch 1");
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let t0 = std::time::Instant::now();
        runtime
            .block_on(run_jobs_with(
                store.clone(),
                exe,
                jobs,
                1,
                &Settings::default(),
                &mut controls,
                &mut on_event,
            ))
            .expect("run");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the hanging trial was not killed: {:?}",
            t0.elapsed()
        );
        assert_eq!(started, [1], "a pruned queued trial never starts");
        for t in store.trials().expect("trials") {
            assert_eq!(t.status, TrialStatus::Failed, "{t:?}");
            assert_eq!(
                t.error.as_deref(),
                Some("pruned: worst half after epoch 1"),
                "{t:?}"
            );
        }
    }
}
