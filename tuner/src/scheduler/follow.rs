//! Follows one attempt of a trial: reads its progress lines into the store as they come, watches
//! its time limits and stop requests, and says how the attempt ended.

use super::process::TrialProcess;
use super::{blocking, Settings, TrialEvent};
use crate::control::StopReason;
use crate::trial::{FinalRecord, TrialLine};
use anyhow::{Context, Result};
use jizhi_store::{EpochMetrics, Store, TrialRecord};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Lines of a failed trial's stderr kept with its error.
pub const STDERR_TAIL_LINES: usize = 40;

/// How long output may still come after SIGKILL (from a process that left the trial's group).
const AFTER_KILL: Duration = Duration::from_secs(2);

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// It ran to its end and printed its final record.
    Finished(FinalRecord),
    /// It was stopped on request.
    Stopped(StopReason),
    /// It ran longer than the trial timeout.
    TimedOut(Duration),
    /// It printed no progress line for the stall timeout.
    Stalled(Duration),
    /// It exited by itself without a final record (worth another attempt).
    Crashed(String),
    /// It cannot succeed as it is (unreadable output, could not start).
    Failed(String),
}

/// One attempt's end and the last lines of its stderr.
#[derive(Debug)]
pub struct Attempt {
    /// How it ended.
    pub outcome: Outcome,
    /// Its last [`STDERR_TAIL_LINES`] stderr lines.
    pub stderr_tail: String,
}

/// Why the scheduler is ending an attempt.
enum Ending {
    Stop(StopReason),
    TimedOut(Duration),
    Stalled(Duration),
}

/// A deadline that may not exist (then it never passes).
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits for a stop request; a dropped sender is none (the wait then never ends).
async fn stop_request(stop: &mut Option<oneshot::Receiver<StopReason>>) -> StopReason {
    let Some(rx) = stop.as_mut() else {
        return std::future::pending().await;
    };
    let reason = rx.await;
    *stop = None;
    match reason {
        Ok(reason) => reason,
        Err(_) => std::future::pending().await,
    }
}

fn metrics_of(e: &jizhi_trainer::EpochReport) -> EpochMetrics {
    EpochMetrics {
        epoch: e.epoch,
        step: e.step,
        train_loss: e.train_loss,
        val_top1: e.val_top1,
        images_per_sec: e.images_per_sec,
        loss_scale: e.loss_scale,
        skipped_steps: e.skipped_steps,
        wall_secs: e.wall_secs,
        underflow_fraction: e.underflow_fraction,
    }
}

/// Reads a running trial's progress lines until it has ended, ending it early when it runs too
/// long, stalls or is asked to stop (SIGTERM to its group, then SIGKILL after the grace period).
pub async fn follow(
    store: &Arc<Store>,
    mut process: TrialProcess,
    record: &mut TrialRecord,
    epochs: u32,
    settings: &Settings,
    tx: &mpsc::UnboundedSender<TrialEvent>,
    stop: &mut Option<oneshot::Receiver<StopReason>>,
) -> Result<Attempt> {
    let stdout = process.child.stdout.take().context("trial stdout")?;
    let stderr = process.child.stderr.take().context("trial stderr")?;
    let mut tail = tokio::spawn(async move {
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
    let started = Instant::now();
    let timeout_at = settings.trial_timeout.map(|d| started + d);
    let mut last_line = started;
    let mut ending: Option<Ending> = None;
    let mut kill_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut last = None;
    let mut bad_line = None;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let stall_at = settings.stall_timeout.map(|d| last_line + d);
        let live = ending.is_none();
        let begin = tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line.context("reading trial output")? else { break };
                last_line = Instant::now();
                match serde_json::from_str::<TrialLine>(&line) {
                    Ok(TrialLine::Epoch(e)) => {
                        let metrics = metrics_of(&e);
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
                None
            }
            reason = stop_request(stop), if live => Some(Ending::Stop(reason)),
            _ = until(timeout_at), if live => settings.trial_timeout.map(Ending::TimedOut),
            _ = until(stall_at), if live => settings.stall_timeout.map(Ending::Stalled),
            _ = until(kill_at) => {
                process.signal_group(libc::SIGKILL);
                kill_at = None;
                give_up_at = Some(Instant::now() + AFTER_KILL);
                None
            }
            _ = until(give_up_at) => break,
        };
        if let Some(why) = begin {
            ending = Some(why);
            process.signal_group(libc::SIGTERM);
            kill_at = Some(Instant::now() + settings.kill_grace);
        }
    }
    let status = match kill_at {
        // Output closed within the grace period: the process gets what is left of it.
        Some(at) => match tokio::time::timeout_at(at, process.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                process.signal_group(libc::SIGKILL);
                process.child.wait().await
            }
        },
        None => process.child.wait().await,
    }
    .context("waiting for a trial")?;
    // Whatever it started must not outlive it (see TrialProcess::drop).
    drop(process);
    let stderr_tail = match tokio::time::timeout(AFTER_KILL, &mut tail).await {
        Ok(text) => text.unwrap_or_default(),
        Err(_) => {
            tail.abort();
            String::new()
        }
    };
    let outcome = match (status.success(), last, bad_line, ending) {
        // A trial that completed before the stop took effect counts as finished.
        (true, Some(last), None, _) => Outcome::Finished(last),
        (_, _, _, Some(Ending::Stop(reason))) => Outcome::Stopped(reason),
        (_, _, _, Some(Ending::TimedOut(d))) => Outcome::TimedOut(d),
        (_, _, _, Some(Ending::Stalled(d))) => Outcome::Stalled(d),
        (_, _, Some(bad), None) => Outcome::Failed(bad),
        (ok, _, None, None) => {
            let how = if ok {
                "exited without a final record".to_string()
            } else {
                format!("exited with {status}")
            };
            Outcome::Crashed(how)
        }
    };
    Ok(Attempt {
        outcome,
        stderr_tail,
    })
}
