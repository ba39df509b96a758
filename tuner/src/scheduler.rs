//! Runs trials as child processes, at most N at a time, and records their progress in the store.
//!
//! Each trial is `jizhi-tune trial ...` of our own executable. Its stdout JSON lines are parsed as
//! they come; every state change is durable in the store before the scheduler moves on, so a kill
//! of the tuner at any moment loses no finished trial.

use crate::control::{Controls, StopReason};
use crate::trial::TrialLine;
use anyhow::{Context, Result};
use jizhi_store::{EpochMetrics, Event, Store, TrialRecord, TrialStatus};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// Lines of a failed trial's stderr kept as its error.
const STDERR_TAIL_LINES: usize = 20;

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

/// Runs `jobs` with at most `max_concurrent` at once, calling `on_event` for every trial event
/// and following the requests that arrive through `controls` (pause, stop a trial, stop all).
pub async fn run_jobs(
    store: Arc<Store>,
    exe: PathBuf,
    jobs: Vec<Job>,
    max_concurrent: usize,
    controls: &mut Controls,
    on_event: &mut dyn FnMut(&TrialEvent),
) -> Result<()> {
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
        while running.len() < max_concurrent.max(1) && !controls.holds_back() {
            let Some(job) = queue.pop_front() else { break };
            let stop = controls.started(job.record.id);
            running.spawn(run_one(store.clone(), exe.clone(), job, tx.clone(), stop));
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
    Ok(tokio::task::spawn_blocking(move || f(&store)).await.context("store task panicked")??)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn log(store: &Arc<Store>, id: u64, kind: &str, detail: String) -> Result<()> {
    let event = Event { unix_ms: now_ms(), trial_id: Some(id), kind: kind.into(), detail };
    blocking(store, move |s| s.log_event(&event)).await
}

/// Runs one trial to its end; store errors are returned (they stop the study), trial failures are recorded.
async fn run_one(
    store: Arc<Store>,
    exe: PathBuf,
    job: Job,
    tx: mpsc::UnboundedSender<TrialEvent>,
    stop: oneshot::Receiver<StopReason>,
) -> Result<()> {
    let mut record = job.record;
    let id = record.id;
    record.status = TrialStatus::Running;
    record.attempts += 1;
    record.error = None;
    record.epochs.clear();
    let r = record.clone();
    blocking(&store, move |s| {
        s.clear_epochs(id)?;
        s.put_trial(&r)
    })
    .await?;
    log(&store, id, "started", format!("attempt {}", record.attempts)).await?;
    let _ = tx.send(TrialEvent::Started(record.clone()));

    let mut command = tokio::process::Command::new(&exe);
    command.args(&job.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    die_with_parent(&mut command);
    let outcome = match command.spawn() {
        Ok(child) => follow(&store, child, &mut record, job.epochs, &tx, stop).await?,
        Err(e) => Outcome::Failed(format!("could not start {}: {e}", exe.display())),
    };
    match outcome {
        Outcome::Finished(last) => {
            record.final_val_top1 = Some(last.final_val_top1);
            record.wall_secs = Some(last.wall_secs);
            record.status = match last.diverged {
                Some(reason) => {
                    record.error = Some(format!("diverged: {reason}"));
                    TrialStatus::Diverged
                }
                None => TrialStatus::Finished,
            };
        }
        Outcome::Failed(error) => {
            record.status = TrialStatus::Failed;
            record.error = Some(error);
        }
        Outcome::Stopped(StopReason::User) => {
            record.status = TrialStatus::Failed;
            record.error = Some(crate::control::STOPPED_BY_USER.into());
        }
        Outcome::Stopped(StopReason::Search) => {
            // Back to planned: it runs again on resume, continuing from its last checkpoint.
            record.status = TrialStatus::Planned;
            record.epochs.clear();
        }
    }
    if let Some(path) = job.checkpoint.as_ref().filter(|_| crate::study::is_done(record.status)) {
        // the outcome is recorded below; a checkpoint could only resume a trial that has ended
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a trial checkpoint");
            }
        }
    }
    let r = record.clone();
    let interrupted = record.status == TrialStatus::Planned;
    blocking(&store, move |s| {
        if interrupted {
            s.clear_epochs(r.id)?;
        }
        s.put_trial(&r)
    })
    .await?;
    let detail = record.error.clone().unwrap_or_default();
    let kind = if interrupted { "interrupted" } else { status_word(record.status) };
    log(&store, id, kind, detail).await?;
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

enum Outcome {
    Finished(crate::trial::FinalRecord),
    Failed(String),
    Stopped(StopReason),
}

/// Reads a running trial's progress lines until it exits.
async fn follow(
    store: &Arc<Store>,
    mut child: tokio::process::Child,
    record: &mut TrialRecord,
    epochs: u32,
    tx: &mpsc::UnboundedSender<TrialEvent>,
    stop: oneshot::Receiver<StopReason>,
) -> Result<Outcome> {
    let stdout = child.stdout.take().context("trial stdout")?;
    let stderr = child.stderr.take().context("trial stderr")?;
    let tail = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tail: VecDeque<String> = VecDeque::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        Vec::from(tail).join("\n")
    });
    let mut last = None;
    let mut bad_line = None;
    let mut lines = BufReader::new(stdout).lines();
    let mut stop = Some(stop);
    let mut stopped = None;
    loop {
        let waiting_stop = async {
            match stop.as_mut() {
                Some(stop) => stop.await,
                None => std::future::pending().await,
            }
        };
        let line = tokio::select! {
            line = lines.next_line() => line.context("reading trial output")?,
            reason = waiting_stop => {
                stop = None;
                // A dropped sender is no request; a request kills the trial, whose output then ends.
                if let Ok(reason) = reason {
                    stopped = Some(reason);
                    let _ = child.start_kill();
                }
                continue;
            }
        };
        let Some(line) = line else { break };
        match serde_json::from_str::<TrialLine>(&line) {
            Ok(TrialLine::Epoch(e)) => {
                let metrics = EpochMetrics {
                    epoch: e.epoch,
                    step: e.step,
                    train_loss: e.train_loss,
                    val_top1: e.val_top1,
                    images_per_sec: e.images_per_sec,
                    loss_scale: e.loss_scale,
                    skipped_steps: e.skipped_steps,
                    wall_secs: e.wall_secs,
                };
                let (id, m) = (record.id, metrics.clone());
                blocking(store, move |s| s.put_epoch(id, &m)).await?;
                record.epochs.push(metrics.clone());
                let _ = tx.send(TrialEvent::Epoch { record: record.clone(), metrics, of: epochs });
            }
            Ok(TrialLine::Final(f)) => last = Some(f),
            Err(e) => {
                bad_line.get_or_insert(format!("unreadable progress line `{line}`: {e}"));
            }
        }
    }
    let status = child.wait().await.context("waiting for a trial")?;
    let stderr_tail = tail.await.unwrap_or_default();
    Ok(match (status.success(), last, bad_line, stopped) {
        // A trial that completed before the stop took effect counts as finished.
        (true, Some(last), None, _) => Outcome::Finished(last),
        (_, _, _, Some(reason)) => Outcome::Stopped(reason),
        (_, _, Some(bad), None) => Outcome::Failed(bad),
        (ok, _, None, None) => {
            let how = if ok { "exited without a final record".to_string() } else { format!("exited with {status}") };
            Outcome::Failed(if stderr_tail.is_empty() { how } else { format!("{how}: {stderr_tail}") })
        }
    })
}

/// Makes the kernel kill the trial if the tuner dies (even by SIGKILL), so no orphan trains on.
fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: prctl is async-signal-safe and the closure touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
