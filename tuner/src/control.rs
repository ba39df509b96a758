//! What the user asks of a running search, and the scheduler's side of it: one channel the
//! scheduler polls between trial events, and the state those requests leave (paused, stopped).

use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// The error recorded for a trial the user stopped (the dashboard shows it as "stopped").
pub use jizhi_tui::STOPPED_BY_USER;

/// A request to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Start no new trials until `Resume`.
    Pause,
    /// Start new trials again.
    Resume,
    /// Stop this running trial; it is recorded as failed, "stopped by user".
    StopTrial(u64),
    /// Stop every running trial and start no more; what did not finish runs on resume.
    StopSearch,
}

/// Why a running trial is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The user stopped this trial: it ends as failed.
    User,
    /// The whole search stops: the trial goes back to planned, to rerun on resume.
    Search,
}

/// The scheduler's end of the control channel and the state it has set.
#[derive(Debug, Default)]
pub struct Controls {
    rx: Option<mpsc::UnboundedReceiver<Control>>,
    paused: bool,
    stopped: bool,
    /// How to stop each running trial, by id.
    stops: HashMap<u64, oneshot::Sender<StopReason>>,
}

impl Controls {
    /// No one can send requests (a headless run).
    pub fn none() -> Self {
        Self::default()
    }

    /// Requests come over `rx`.
    pub fn new(rx: mpsc::UnboundedReceiver<Control>) -> Self {
        Controls { rx: Some(rx), ..Self::default() }
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

    /// The next request. When the sender is gone nobody can resume, so that reads as `Resume`
    /// once and then never completes.
    pub async fn recv(&mut self) -> Control {
        match self.rx.as_mut() {
            Some(rx) => match rx.recv().await {
                Some(control) => control,
                None => {
                    self.rx = None;
                    Control::Resume
                }
            },
            None => std::future::pending().await,
        }
    }

    /// Carries out the requests already waiting, so none is overtaken by a trial start.
    pub fn apply_waiting(&mut self) {
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
                    let _ = stop.send(StopReason::User);
                }
            }
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
        assert_eq!(two.try_recv(), Ok(StopReason::User));
        assert!(one.try_recv().is_err(), "trial 1 was not asked to stop");
        c.apply(Control::StopSearch);
        assert_eq!(one.try_recv(), Ok(StopReason::Search));
        assert!(c.stopped() && c.holds_back());
    }

    #[test]
    fn a_closed_channel_resumes_once_then_waits() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut c = Controls::new(rx);
        tx.send(Control::Pause).expect("send");
        drop(tx);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            assert_eq!(c.recv().await, Control::Pause);
            assert_eq!(c.recv().await, Control::Resume);
            let waited = tokio::time::timeout(std::time::Duration::from_millis(20), c.recv()).await;
            assert!(waited.is_err(), "a closed channel must not spin");
        });
    }
}
