//! What the user asks of a running search, and the scheduler's side of it: one channel the
//! scheduler polls between trial events, and the state those requests leave (paused, stopped).

use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// The error recorded for a trial the user stopped (the dashboard shows it as "stopped").
pub use jizhi_tui::STOPPED_BY_USER;

/// A request to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Start no new trials until `Resume`.
    Pause,
    /// Start new trials again.
    Resume,
    /// Stop this running trial; it is recorded as failed, "stopped by user".
    StopTrial(u64),
    /// Stop every running trial and start no more; what did not finish runs on resume.
    StopSearch,
    /// End this trial for good, running or not yet started; `error` is what its record says.
    Cancel {
        /// The trial.
        id: u64,
        /// The recorded error, e.g. "pruned: worst half after the coarse stage".
        error: String,
    },
}

/// Why a running trial is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// It ends for good as failed, with this error (stopped by the user, pruned).
    Cancelled(String),
    /// The whole search stops: the trial goes back to planned, to rerun on resume.
    Search,
}

/// A handle for cancelling trials while the scheduler runs them (what pruning calls).
#[derive(Debug, Clone)]
pub struct Canceller(mpsc::UnboundedSender<Control>);

// The strategy's successive halving calls this between rungs; the scheduler side is complete.
#[allow(dead_code)]
impl Canceller {
    /// Prunes trial `id`: a running one is killed, a queued one never starts; its record says
    /// "pruned: <reason>".
    pub fn prune(&self, id: u64, reason: &str) {
        let _ = self.0.send(Control::Cancel {
            id,
            error: format!("pruned: {reason}"),
        });
    }
}

/// How often the scheduler looks for a stop signal while it waits.
const SIGNAL_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The scheduler's end of the control channel and the state it has set.
#[derive(Debug)]
pub struct Controls {
    rx: Option<mpsc::UnboundedReceiver<Control>>,
    /// Requests made through a [`Canceller`].
    own_rx: mpsc::UnboundedReceiver<Control>,
    own_tx: mpsc::UnboundedSender<Control>,
    paused: bool,
    stopped: bool,
    /// True once a stop signal has been turned into a stop of the search.
    signal_seen: bool,
    /// How to stop each running trial, by id.
    stops: HashMap<u64, oneshot::Sender<StopReason>>,
    /// Trials cancelled before they started, with their recorded error.
    cancelled: HashMap<u64, String>,
}

impl Controls {
    fn with(rx: Option<mpsc::UnboundedReceiver<Control>>) -> Self {
        let (own_tx, own_rx) = mpsc::unbounded_channel();
        Controls {
            rx,
            own_rx,
            own_tx,
            paused: false,
            stopped: false,
            signal_seen: false,
            stops: HashMap::new(),
            cancelled: HashMap::new(),
        }
    }

    /// No one can send requests but the stop signals and [`Canceller`]s (a headless run).
    pub fn none() -> Self {
        Self::with(None)
    }

    /// Requests come over `rx` (and from the stop signals and [`Canceller`]s).
    pub fn new(rx: mpsc::UnboundedReceiver<Control>) -> Self {
        Self::with(Some(rx))
    }

    /// A handle that cancels trials through these controls.
    #[allow(dead_code)] // see Canceller::prune
    pub fn canceller(&self) -> Canceller {
        Canceller(self.own_tx.clone())
    }

    /// True when no new trial may start now.
    pub fn holds_back(&self) -> bool {
        self.paused || self.stopped
    }

    /// True once the search was asked to stop.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Registers a trial about to run; the receiver tells it when it is to stop.
    pub fn started(&mut self, id: u64) -> oneshot::Receiver<StopReason> {
        let (tx, rx) = oneshot::channel();
        self.stops.insert(id, tx);
        rx
    }

    /// Forgets a trial that ended.
    pub fn ended(&mut self, id: u64) {
        self.stops.remove(&id);
    }

    /// The recorded error of a trial cancelled before it started (taken: asked once).
    pub fn take_cancelled(&mut self, id: u64) -> Option<String> {
        self.cancelled.remove(&id)
    }

    /// A stop of the search for a stop signal not acted on yet.
    fn signal_request(&mut self) -> Option<Control> {
        if self.signal_seen || crate::signals::received().is_none() {
            return None;
        }
        self.signal_seen = true;
        crate::signals::honour();
        Some(Control::StopSearch)
    }

    /// The next request. When the sender is gone nobody can resume, so that reads as `Resume`
    /// once and then never completes (but stop signals and cancellations still come).
    pub async fn recv(&mut self) -> Control {
        loop {
            if let Some(control) = self.signal_request() {
                return control;
            }
            let user = async {
                match self.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                control = user => match control {
                    Some(control) => return control,
                    None => {
                        self.rx = None;
                        return Control::Resume;
                    }
                },
                Some(control) = self.own_rx.recv() => return control,
                _ = tokio::time::sleep(SIGNAL_POLL) => {}
            }
        }
    }

    /// Carries out the requests already waiting, so none is overtaken by a trial start.
    pub fn apply_waiting(&mut self) {
        if let Some(control) = self.signal_request() {
            self.apply(control);
        }
        while let Ok(control) = self.own_rx.try_recv() {
            self.apply(control);
        }
        while let Some(rx) = self.rx.as_mut() {
            match rx.try_recv() {
                Ok(control) => self.apply(control),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.rx = None;
                    self.paused = false;
                }
            }
        }
    }

    /// Carries out a request.
    pub fn apply(&mut self, control: Control) {
        match control {
            Control::Pause => self.paused = true,
            Control::Resume => self.paused = false,
            Control::StopTrial(id) => {
                if let Some(stop) = self.stops.remove(&id) {
                    let _ = stop.send(StopReason::Cancelled(STOPPED_BY_USER.into()));
                }
            }
            Control::Cancel { id, error } => match self.stops.remove(&id) {
                Some(stop) => {
                    let _ = stop.send(StopReason::Cancelled(error));
                }
                None => {
                    self.cancelled.insert(id, error);
                }
            },
            Control::StopSearch => {
                self.stopped = true;
                for (_, stop) in self.stops.drain() {
                    let _ = stop.send(StopReason::Search);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_holds_back_and_stop_reaches_the_right_trials() {
        let mut c = Controls::none();
        assert!(!c.holds_back());
        c.apply(Control::Pause);
        assert!(c.holds_back());
        c.apply(Control::Resume);
        assert!(!c.holds_back());

        let mut one = c.started(1);
        let mut two = c.started(2);
        c.apply(Control::StopTrial(2));
        assert_eq!(
            two.try_recv(),
            Ok(StopReason::Cancelled(STOPPED_BY_USER.into()))
        );
        assert!(one.try_recv().is_err(), "trial 1 was not asked to stop");
        c.apply(Control::StopSearch);
        assert_eq!(one.try_recv(), Ok(StopReason::Search));
        assert!(c.stopped() && c.holds_back());
    }

    #[test]
    fn a_cancel_stops_a_running_trial_or_keeps_a_queued_one_from_starting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut c = Controls::none();
            let mut running = c.started(1);
            let pruner = c.canceller();
            pruner.prune(1, "worst half at epoch 1");
            pruner.prune(7, "worst half at epoch 1");
            let request = c.recv().await;
            c.apply(request);
            assert_eq!(
                running.try_recv(),
                Ok(StopReason::Cancelled(
                    "pruned: worst half at epoch 1".into()
                ))
            );
            c.apply_waiting();
            assert_eq!(
                c.take_cancelled(7).as_deref(),
                Some("pruned: worst half at epoch 1")
            );
            assert_eq!(c.take_cancelled(7), None, "asked once");
            assert!(!c.stopped(), "pruning does not stop the search");
        });
    }

    #[test]
    fn a_closed_channel_resumes_once_then_waits() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut c = Controls::new(rx);
        tx.send(Control::Pause).expect("send");
        drop(tx);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            assert_eq!(c.recv().await, Control::Pause);
            assert_eq!(c.recv().await, Control::Resume);
            let waited = tokio::time::timeout(std::time::Duration::from_millis(20), c.recv()).await;
            assert!(waited.is_err(), "a closed channel must not spin");
        });
    }
}
