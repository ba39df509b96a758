//! The run's output: the live dashboard when stdout is a terminal, else one progress line per
//! trial event. Turns scheduler events into dashboard events and dashboard commands into
//! scheduler requests, and falls back to lines when the dashboard closes while the search goes on.

use crate::control::{Control, Controls};
use crate::plan::{self, DataPlan, Stage};
use crate::progress::Progress;
use crate::scheduler::{Job, TrialEvent};
use crate::space::{Objective, SearchSpace};
use crate::study::RunPlan;
use anyhow::Result;
use jizhi_store::{Store, TrialRecord, TrialStatus};
use jizhi_tui::{
    BackendInfo, Baseline, BatchSize, Command, DashEvent, DataInfo, Exit, StageInfo, StudyInfo,
};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Where the run reports: progress lines, or the dashboard while it is open.
pub struct Output {
    progress: Progress,
    live: Option<Live>,
}

/// An open dashboard: its event channel and its thread.
struct Live {
    events: mpsc::Sender<DashEvent>,
    thread: JoinHandle<std::io::Result<Exit>>,
}

/// The output of a run and the scheduler's controls: the dashboard (whose commands reach the
/// controls) when the plan asks for it, else lines and no controls.
pub fn start(run: &RunPlan, store: &Store, progress: Progress) -> Result<(Output, Controls)> {
    if !run.dashboard {
        return Ok((
            Output {
                progress,
                live: None,
            },
            Controls::none(),
        ));
    }
    let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
    let info = study_info(
        &run.space,
        &run.data,
        Some((run.max_concurrent, run.threads)),
    );
    let trials = store.trials()?;
    let (events, inbox) = mpsc::channel();
    let resume = control_tx.clone();
    let thread = std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            let exit = jizhi_tui::run_live(info, trials, inbox, move |command| {
                let _ = control_tx.send(match command {
                    Command::Pause => Control::Pause,
                    Command::Resume => Control::Resume,
                    Command::StopTrial(id) => Control::StopTrial(id),
                    Command::StopSearch => Control::StopSearch,
                });
            });
            // Said at once (the next trial event may be minutes away). The inbox is closed by now,
            // so the run, which prints nothing while the dashboard is open, notices it on its next
            // event; only then may a paused search go on.
            if let Ok(Exit::Detached) = exit {
                println!("dashboard closed: the search goes on headless, one line per trial event");
                let _ = resume.send(Control::Resume);
            }
            exit
        })?;
    Ok((
        Output {
            progress,
            live: Some(Live { events, thread }),
        },
        Controls::new(control_rx),
    ))
}

impl Output {
    /// The progress tally (planning adds to it).
    pub fn progress(&mut self) -> &mut Progress {
        &mut self.progress
    }

    /// A stage begins with `jobs` still to run out of `total`; `text` says so in a line.
    pub fn stage(&mut self, stage: Stage, total: usize, jobs: &[Job], text: String) {
        self.check_dashboard();
        let name = stage.as_str().to_string();
        let stage = DashEvent::Stage {
            name,
            trials: total,
            to_run: jobs.len(),
        };
        let sent = self
            .live
            .as_ref()
            .is_some_and(|l| l.events.send(stage).is_ok());
        let Some(live) = self.live.as_ref().filter(|_| sent) else {
            self.close_dashboard();
            println!("{text}");
            return;
        };
        for job in jobs {
            // Interrupted trials read "running" in the store until they start again.
            let mut queued = job.record.clone();
            queued.status = TrialStatus::Planned;
            queued.epochs.clear();
            let _ = live.events.send(DashEvent::Trial(queued));
        }
        let _ = live.events.send(DashEvent::Note(text));
        self.send_progress();
    }

    /// A trial event: a line, or the trial's new state on the dashboard.
    pub fn event(&mut self, event: &TrialEvent) {
        self.check_dashboard();
        let record = match event {
            TrialEvent::Started(r) | TrialEvent::Ended(r) => r,
            TrialEvent::Epoch { record, .. } => record,
        };
        // A trial the stopping search sent back to planned has not ended: the tally skips it.
        let interrupted = matches!(event, TrialEvent::Ended(r) if r.status == TrialStatus::Planned);
        let line = (!interrupted).then(|| self.progress.line(event));
        if let Some(live) = &self.live {
            if live.events.send(DashEvent::Trial(record.clone())).is_ok() {
                self.send_progress();
                return;
            }
            // The dashboard let go of its inbox: it is closing, and this event is for the lines.
            self.close_dashboard();
        }
        if let Some(line) = line {
            println!("{line}");
        }
    }

    fn send_progress(&self) {
        if let Some(live) = &self.live {
            let (done, planned) = self.progress.trials();
            let _ = live.events.send(DashEvent::Progress {
                done,
                planned,
                eta_secs: self.progress.eta_secs(),
            });
        }
    }

    /// Notices a dashboard that closed while the search goes on, and carries on in lines.
    fn check_dashboard(&mut self) {
        if self.live.as_ref().is_some_and(|l| l.thread.is_finished()) {
            self.close_dashboard();
        }
    }

    /// Waits for a closing dashboard's thread and switches to lines.
    fn close_dashboard(&mut self) {
        let Some(live) = self.live.take() else { return };
        let why = match live.thread.join() {
            Ok(Ok(Exit::Detached)) => None,
            Ok(Ok(_)) => Some("the dashboard closed".to_string()),
            Ok(Err(e)) => Some(format!("the dashboard failed ({e})")),
            Err(_) => Some("the dashboard stopped on an internal error".to_string()),
        };
        if let Some(why) = why {
            println!("{why}: the search goes on headless, one line per trial event");
        }
        println!("{} the search goes on", self.progress.prefix());
    }

    /// The search ended (`stopped`: on request). An open dashboard says so and, for a search
    /// that ran to its end, stays until the user closes it.
    pub fn finish(mut self, stopped: bool) -> Result<()> {
        self.check_dashboard();
        let Some(live) = self.live.take() else {
            return Ok(());
        };
        self.send_progress_to(&live);
        let _ = live.events.send(if stopped {
            DashEvent::Stopped
        } else {
            DashEvent::Done
        });
        let joined = live.thread.join();
        drop(live.events);
        match joined {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("the dashboard failed")),
            Err(_) => anyhow::bail!("the dashboard stopped on an internal error"),
        }
    }

    fn send_progress_to(&self, live: &Live) {
        let (done, planned) = self.progress.trials();
        let _ = live.events.send(DashEvent::Progress {
            done,
            planned,
            eta_secs: self.progress.eta_secs(),
        });
    }
}

impl Drop for Output {
    /// On an error the dashboard closes at once, so the terminal is back before the message.
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            drop(live.events);
            let _ = live.thread.join();
        }
    }
}

/// What to tell the user after the search was stopped.
pub fn resume_hint(run: &RunPlan, trials: &[TrialRecord]) -> String {
    let ended = trials
        .iter()
        .filter(|t| {
            matches!(
                t.status,
                TrialStatus::Finished | TrialStatus::Failed | TrialStatus::Diverged
            )
        })
        .count();
    format!(
        "search stopped: {ended} trial(s) ended are kept in {}; the others run when you resume with\n  jizhi-tune {} --store {}",
        run.store_dir.display(),
        run.space.file.display(),
        run.store_dir.display()
    )
}

/// The header facts of a study; `concurrency` (trials at once, threads each) for a running one.
pub fn study_info(
    space: &SearchSpace,
    data: &DataPlan,
    concurrency: Option<(usize, usize)>,
) -> StudyInfo {
    let batches: Vec<BatchSize> = space
        .batches
        .iter()
        .map(|&b| BatchSize {
            nominal: b,
            proxy: data.proxy_batch(b),
        })
        .collect();
    let stages = crate::strategy::outline(space)
        .into_iter()
        .map(|(step, trials)| {
            let (epochs, data_fraction) = plan::fidelity(space, step.stage);
            StageInfo {
                name: step.stage.as_str().into(),
                trials,
                epochs,
                data_fraction,
            }
        })
        .collect();
    // Every trial trains its local ranks on the CPU in this version.
    let backend = BackendInfo {
        device: "CPU".into(),
        nominal_ranks: space.trainer.ranks,
        ranks_per_trial: space.trainer.local.ranks as u32,
        concurrency,
    };
    StudyInfo {
        name: space.study.name.clone(),
        objective: match space.study.objective {
            Objective::MaxValTop1 => "max-val-top1".into(),
            Objective::TimeToTarget => "time-to-target".into(),
        },
        target_top1: space.study.target_top1,
        baseline: space.study.baseline_top1.map(|top1| Baseline {
            top1,
            batch: space.study.baseline_batch.map(|b| BatchSize {
                nominal: b,
                proxy: data.proxy_batch(b),
            }),
        }),
        backend,
        data: DataInfo {
            proxy: data.is_proxy,
            name: format!("Fashion-MNIST, {} images", data.train_images),
            // The only data set the batch sizes may refer to (`trainer.dataset` is validated).
            stands_for: "ImageNet".into(),
        },
        batches,
        stages,
    }
}
