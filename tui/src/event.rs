//! What flows between a running search and its dashboard: events in, commands out.

use jizhi_store::TrialRecord;

/// Something that happened in the search, sent by the tuner to the dashboard in order.
#[derive(Debug, Clone, PartialEq)]
pub enum DashEvent {
    /// A stage begins: its name, how many trials it has and how many of them still run.
    Stage {
        /// Stage name, e.g. "coarse".
        name: String,
        /// Trials of the stage, done or not.
        trials: usize,
        /// Trials of the stage still to run.
        to_run: usize,
    },
    /// A trial's current record (planned, started, an epoch more, or ended).
    Trial(TrialRecord),
    /// The tuner's tally of the whole study and its estimate of the time left.
    Progress {
        /// Trials ended.
        done: usize,
        /// Trials planned so far.
        planned: usize,
        /// Seconds of work left at the current rate, once it can be estimated.
        eta_secs: Option<f64>,
    },
    /// A line of text from the tuner worth showing (e.g. a stage summary).
    Note(String),
    /// The search ran to its end.
    Done,
    /// The search was stopped on request; what did not finish will run on resume.
    Stopped,
}

/// What the user asks of the running search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start no new trials (running ones go on).
    Pause,
    /// Start new trials again.
    Resume,
    /// Stop one running trial; it is recorded as failed, "stopped by user".
    StopTrial(u64),
    /// Stop every running trial and end the search; it resumes later where it stopped.
    StopSearch,
}

/// Why the dashboard closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user closed it; nothing is running any more (or never was).
    Closed,
    /// The user chose to keep the search running without the dashboard. Nobody can resume a
    /// paused search any more: the caller resumes it, after the terminal is restored.
    Detached,
    /// The search was stopped on request and has wound down.
    Stopped,
    /// The tuner went away (its event channel closed).
    Disconnected,
}
