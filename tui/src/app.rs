//! The dashboard's state and its update: events from the tuner and keys from the user change it;
//! what the user asks of the search collects in an outbox the terminal loop sends on.

use crate::event::{Command, DashEvent, Exit};
use crate::theme::Palette;
use crate::view::{accuracy, display_status, DisplayStatus, RunState, StudyView};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use jizhi_store::TrialRecord;
use ratatui::widgets::TableState;

/// How long a footer message stays.
const MESSAGE_SECS: f64 = 8.0;

/// The panel that Enter opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The trials table (Enter: the selected trial's detail).
    Table,
    /// The accuracy curves (Enter: full size).
    Curves,
    /// Accuracy against batch size (Enter: full size).
    Gap,
}

impl Focus {
    fn next(self) -> Self {
        match self {
            Focus::Table => Focus::Curves,
            Focus::Curves => Focus::Gap,
            Focus::Gap => Focus::Table,
        }
    }

    fn previous(self) -> Self {
        self.next().next()
    }
}

/// What covers the main view, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// The main view.
    None,
    /// The key list.
    Help,
    /// "Stop the search or keep it running headless?"
    Quit,
    /// One trial's detail.
    Detail(u64),
    /// One chart full size.
    Zoom(Focus),
    /// Typing a filter; holds the filter to go back to on Esc.
    Filter {
        /// The filter before editing began.
        previous: String,
    },
}

/// The trials table's sort column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Trial id.
    Id,
    /// Batch size.
    Batch,
    /// Peak learning rate.
    Lr,
    /// Status.
    Status,
    /// Validation top-1.
    Top1,
    /// Images per second.
    Throughput,
}

impl SortKey {
    const ALL: [SortKey; 6] = [
        SortKey::Id,
        SortKey::Batch,
        SortKey::Lr,
        SortKey::Status,
        SortKey::Top1,
        SortKey::Throughput,
    ];

    /// The column's name as shown.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Batch => "batch",
            SortKey::Lr => "LR",
            SortKey::Status => "status",
            SortKey::Top1 => "top-1",
            SortKey::Throughput => "img/s",
        }
    }

    /// Whether the column sorts best-first (largest first) when chosen.
    fn largest_first(self) -> bool {
        matches!(self, SortKey::Top1 | SortKey::Throughput)
    }
}

/// The whole dashboard state.
#[derive(Debug)]
pub struct App {
    /// The study.
    pub view: StudyView,
    /// Colours.
    pub palette: Palette,
    /// The focused panel.
    pub focus: Focus,
    /// What covers the main view.
    pub overlay: Overlay,
    /// Sort column of the table.
    pub sort: SortKey,
    /// Sort direction.
    pub descending: bool,
    /// Words every shown row must contain.
    pub filter: String,
    /// The selected trial.
    pub selected: Option<u64>,
    /// The batch size whose curves alone are shown (all when `None`).
    pub curve_batch: Option<u64>,
    /// Whether the user paused new trials.
    pub paused: bool,
    /// A one-line message for the footer.
    pub message: Option<String>,
    /// The table's scroll position, kept between frames.
    pub table_state: TableState,
    message_at: f64,
    outbox: Vec<Command>,
    exit: Option<Exit>,
}

impl App {
    /// The dashboard of a study view, drawn in `palette`.
    pub fn new(view: StudyView, palette: Palette) -> Self {
        let mut app = App {
            view,
            palette,
            focus: Focus::Table,
            overlay: Overlay::None,
            sort: SortKey::Id,
            descending: false,
            filter: String::new(),
            selected: None,
            curve_batch: None,
            paused: false,
            message: None,
            table_state: TableState::default(),
            message_at: 0.0,
            outbox: Vec::new(),
            exit: None,
        };
        app.keep_selection();
        app
    }

    /// Applies an event from the tuner.
    pub fn apply(&mut self, event: DashEvent) {
        let stopped = event == DashEvent::Stopped;
        if let DashEvent::Note(text) = &event {
            self.say(text.clone());
        }
        self.view.apply(event);
        if stopped {
            self.exit = Some(Exit::Stopped);
        }
        self.keep_selection();
    }

    /// Commands for the search, oldest first, taken out of the outbox.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.outbox)
    }

    /// Why the dashboard should close, once it should.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// The rows of the table: filtered, then sorted.
    pub fn rows(&self) -> Vec<&TrialRecord> {
        let words: Vec<String> = self
            .filter
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let mut rows: Vec<&TrialRecord> = self
            .view
            .trials()
            .filter(|t| {
                let text = crate::widgets::table::row_text(t).to_lowercase();
                words.iter().all(|w| text.contains(w.as_str()))
            })
            .collect();
        let key = |t: &TrialRecord| -> f64 {
            match self.sort {
                SortKey::Id => t.id as f64,
                SortKey::Batch => t.batch as f64,
                SortKey::Lr => t
                    .params
                    .get("peak_lr")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(f64::NAN),
                SortKey::Status => display_status(t) as u8 as f64,
                SortKey::Top1 => accuracy(t).unwrap_or(f64::NAN),
                SortKey::Throughput => t.epochs.last().map_or(f64::NAN, |e| e.images_per_sec),
            }
        };
        // Ties keep id order; trials without a value go last either way.
        rows.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            let order = match (ka.is_nan(), kb.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => return std::cmp::Ordering::Greater,
                (false, true) => return std::cmp::Ordering::Less,
                (false, false) if self.descending => kb.total_cmp(&ka),
                (false, false) => ka.total_cmp(&kb),
            };
            order.then(a.id.cmp(&b.id))
        });
        rows
    }

    /// Keeps a selection on a shown row: the same trial if it is still shown, else the first.
    fn keep_selection(&mut self) {
        let rows: Vec<u64> = self.rows().iter().map(|t| t.id).collect();
        if !self.selected.is_some_and(|id| rows.contains(&id)) {
            self.selected = rows.first().copied();
        }
    }

    fn move_selection(&mut self, by: isize) {
        let rows: Vec<u64> = self.rows().iter().map(|t| t.id).collect();
        if rows.is_empty() {
            return;
        }
        let at = self
            .selected
            .and_then(|id| rows.iter().position(|t| *t == id))
            .unwrap_or(0) as isize;
        let to = (at.saturating_add(by)).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[to]);
        if let Overlay::Detail(_) = self.overlay {
            self.overlay = Overlay::Detail(rows[to]);
        }
    }

    fn say(&mut self, text: impl Into<String>) {
        self.message = Some(text.into());
        self.message_at = self.view.elapsed_secs;
    }

    /// Sets the time since the search started; messages fade after a few seconds.
    pub fn set_elapsed(&mut self, secs: f64) {
        self.view.elapsed_secs = secs;
        if self.message.is_some() && secs - self.message_at > MESSAGE_SECS {
            self.message = None;
        }
    }

    /// Handles one key press.
    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind != KeyEventKind::Press {
            return;
        }
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.interrupt();
            return;
        }
        match self.overlay.clone() {
            Overlay::Help => self.overlay = Overlay::None,
            Overlay::Quit => self.quit_dialog_key(key.code),
            Overlay::Filter { previous } => self.filter_key(key.code, previous),
            Overlay::Detail(_) | Overlay::Zoom(_)
                if matches!(key.code, KeyCode::Esc | KeyCode::Enter) =>
            {
                self.overlay = Overlay::None
            }
            _ => self.main_key(key.code),
        }
        self.keep_selection();
    }

    /// Ctrl-C: stop a running search cleanly, or close a finished or stored one.
    fn interrupt(&mut self) {
        match self.view.state {
            RunState::Running => self.stop_search(),
            RunState::Stopping => {
                self.say("stopping the search: waiting for the running trials to end")
            }
            RunState::Done | RunState::Stopped | RunState::Stored => self.exit = Some(Exit::Closed),
        }
    }

    fn stop_search(&mut self) {
        self.outbox.push(Command::StopSearch);
        self.view.state = RunState::Stopping;
        self.overlay = Overlay::None;
        self.say("stopping the search: running trials are stopped and will rerun on resume");
    }

    fn quit_dialog_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char('s') | KeyCode::Char('y') => self.stop_search(),
            // The caller resumes a paused search once the terminal is back (see `Exit::Detached`).
            KeyCode::Char('h') => self.exit = Some(Exit::Detached),
            KeyCode::Esc | KeyCode::Char('c') | KeyCode::Char('n') | KeyCode::Char('q') => {
                self.overlay = Overlay::None
            }
            _ => {}
        }
    }

    fn filter_key(&mut self, code: KeyCode, previous: String) {
        match code {
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                let shown = self.rows().len();
                self.say(if self.filter.is_empty() {
                    "filter cleared".to_string()
                } else {
                    format!("filter `{}`: {shown} trial(s)", self.filter)
                });
            }
            KeyCode::Esc => {
                self.filter = previous;
                self.overlay = Overlay::None;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) => self.filter.push(c),
            _ => {}
        }
    }

    fn main_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char('?') => self.overlay = Overlay::Help,
            KeyCode::Char('q') => match self.view.state {
                RunState::Running => self.overlay = Overlay::Quit,
                RunState::Stopping => {
                    self.say("stopping the search: waiting for the running trials to end")
                }
                RunState::Done | RunState::Stopped | RunState::Stored => {
                    self.exit = Some(Exit::Closed)
                }
            },
            KeyCode::Char('p') => self.toggle_pause(),
            KeyCode::Char('k') => self.stop_selected(),
            KeyCode::Char('s') => {
                let at = SortKey::ALL
                    .iter()
                    .position(|k| *k == self.sort)
                    .unwrap_or(0);
                self.sort = SortKey::ALL[(at + 1) % SortKey::ALL.len()];
                self.descending = self.sort.largest_first();
                self.say(format!("sorted by {}", self.sort.name()));
            }
            KeyCode::Char('S') => self.descending = !self.descending,
            KeyCode::Char('/') => {
                self.overlay = Overlay::Filter {
                    previous: self.filter.clone(),
                };
                self.filter.clear();
            }
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                    self.say("filter cleared");
                }
                self.overlay = Overlay::None;
            }
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.previous(),
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home => self.move_selection(isize::MIN / 2),
            KeyCode::End => self.move_selection(isize::MAX / 2),
            KeyCode::Left => self.cycle_curve_batch(-1),
            KeyCode::Right => self.cycle_curve_batch(1),
            KeyCode::Enter => match self.focus {
                Focus::Table => {
                    if let Some(id) = self.selected {
                        self.overlay = Overlay::Detail(id);
                    }
                }
                panel => self.overlay = Overlay::Zoom(panel),
            },
            _ => {}
        }
    }

    fn toggle_pause(&mut self) {
        if self.view.state != RunState::Running {
            self.say(match self.view.state {
                RunState::Stored => "read-only view: the study is not running",
                _ => "the search is no longer running",
            });
            return;
        }
        self.paused = !self.paused;
        if self.paused {
            self.outbox.push(Command::Pause);
            self.say("paused: running trials go on, no new trial starts (p resumes)");
        } else {
            self.outbox.push(Command::Resume);
            self.say("resumed: new trials start again");
        }
    }

    fn stop_selected(&mut self) {
        let Some(trial) = self.selected.and_then(|id| self.view.trial(id)) else {
            self.say("no trial selected");
            return;
        };
        let id = trial.id;
        if self.view.state == RunState::Stored {
            self.say("read-only view: the study is not running");
        } else if display_status(trial) != DisplayStatus::Running || !self.view.is_live() {
            self.say(format!("trial {id} is not running"));
        } else {
            self.outbox.push(Command::StopTrial(id));
            self.say(format!(
                "stopping trial {id}: it will be recorded as stopped by user"
            ));
        }
    }

    fn cycle_curve_batch(&mut self, by: isize) {
        // Positions: 0 = every batch size, i + 1 = the i-th batch size alone.
        let batches: Vec<u64> = self.view.info.batches.iter().map(|b| b.nominal).collect();
        let at = self
            .curve_batch
            .and_then(|b| batches.iter().position(|x| *x == b))
            .map_or(0, |i| i + 1) as isize;
        let n = batches.len() as isize + 1;
        let to = (at + by).rem_euclid(n) as usize;
        self.curve_batch = if to == 0 { None } else { Some(batches[to - 1]) };
        self.say(match self.curve_batch {
            None => "curves: every batch size".to_string(),
            Some(b) => format!("curves: batch {} only", crate::fmt::batch(b)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trials};

    fn app() -> App {
        App::new(StudyView::live(info(), trials()), Palette::ansi16())
    }

    fn press(app: &mut App, code: KeyCode) {
        app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    fn keys(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    #[test]
    fn p_pauses_and_resumes_new_trials() {
        let mut a = app();
        press(&mut a, KeyCode::Char('p'));
        assert!(a.paused);
        press(&mut a, KeyCode::Char('p'));
        assert_eq!(a.take_commands(), [Command::Pause, Command::Resume]);
        assert!(!a.paused);

        let mut stored = App::new(StudyView::stored(info(), trials()), Palette::ansi16());
        press(&mut stored, KeyCode::Char('p'));
        assert!(stored.take_commands().is_empty());
        assert!(stored
            .message
            .as_deref()
            .is_some_and(|m| m.contains("read-only")));
    }

    #[test]
    fn k_stops_the_selected_trial_only_while_it_runs() {
        let mut a = app();
        // Trial 1 (finished) is selected first.
        press(&mut a, KeyCode::Char('k'));
        assert!(a.take_commands().is_empty());
        assert_eq!(a.message.as_deref(), Some("trial 1 is not running"));
        for _ in 0..4 {
            press(&mut a, KeyCode::Down);
        }
        assert_eq!(a.selected, Some(5));
        press(&mut a, KeyCode::Char('k'));
        assert_eq!(a.take_commands(), [Command::StopTrial(5)]);
    }

    #[test]
    fn q_asks_then_stops_or_detaches() {
        let mut a = app();
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(a.overlay, Overlay::Quit);
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.overlay, Overlay::None);
        assert_eq!(a.exit(), None);

        press(&mut a, KeyCode::Char('p'));
        press(&mut a, KeyCode::Char('q'));
        press(&mut a, KeyCode::Char('h'));
        assert_eq!(a.exit(), Some(Exit::Detached));
        assert_eq!(
            a.take_commands(),
            [Command::Pause],
            "resuming is the caller's, after the terminal is back"
        );

        let mut a = app();
        press(&mut a, KeyCode::Char('q'));
        press(&mut a, KeyCode::Char('s'));
        assert_eq!(a.take_commands(), [Command::StopSearch]);
        assert_eq!(a.view.state, RunState::Stopping);
        assert_eq!(a.exit(), None, "the dashboard waits for the trials to stop");
        a.apply(DashEvent::Stopped);
        assert_eq!(a.exit(), Some(Exit::Stopped));
    }

    #[test]
    fn ctrl_c_stops_a_running_search_and_closes_a_finished_one() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        let mut a = app();
        a.handle_key(ctrl_c);
        assert_eq!(a.take_commands(), [Command::StopSearch]);
        a.apply(DashEvent::Done);
        a.handle_key(ctrl_c);
        assert_eq!(a.exit(), Some(Exit::Closed));

        let mut done = app();
        done.apply(DashEvent::Done);
        press(&mut done, KeyCode::Char('q'));
        assert_eq!(
            done.exit(),
            Some(Exit::Closed),
            "nothing left to stop: q just closes"
        );
    }

    #[test]
    fn slash_filters_as_you_type_and_esc_goes_back() {
        let mut a = app();
        press(&mut a, KeyCode::Char('/'));
        keys(&mut a, "64k");
        assert_eq!(a.rows().iter().map(|t| t.id).collect::<Vec<_>>(), [5, 6]);
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.filter, "64k");
        assert_eq!(a.selected, Some(5), "the selection moves onto a shown row");
        press(&mut a, KeyCode::Char('/'));
        keys(&mut a, "refine");
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.filter, "64k", "Esc while typing restores the filter");
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.filter, "", "Esc in the main view clears it");
    }

    #[test]
    fn s_cycles_the_sort_column() {
        let mut a = app();
        let mut seen = Vec::new();
        for _ in 0..6 {
            press(&mut a, KeyCode::Char('s'));
            seen.push((a.sort, a.descending));
        }
        assert_eq!(seen[3], (SortKey::Top1, true), "accuracy sorts best first");
        assert_eq!(seen[5], (SortKey::Id, false), "and back to id");
        press(&mut a, KeyCode::Char('S'));
        assert!(a.descending);
        assert_eq!(a.rows().first().map(|t| t.id), Some(7));
    }

    #[test]
    fn tab_enter_and_arrows_move_between_panels_and_trials() {
        let mut a = app();
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.overlay, Overlay::Detail(1));
        press(&mut a, KeyCode::Down);
        assert_eq!(
            a.overlay,
            Overlay::Detail(2),
            "arrows page through trials in the detail"
        );
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.overlay, Overlay::None);
        press(&mut a, KeyCode::Tab);
        assert_eq!(a.focus, Focus::Curves);
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.overlay, Overlay::Zoom(Focus::Curves));
        press(&mut a, KeyCode::Esc);
        press(&mut a, KeyCode::Right);
        assert_eq!(a.curve_batch, Some(32768));
        press(&mut a, KeyCode::Left);
        press(&mut a, KeyCode::Left);
        assert_eq!(
            a.curve_batch,
            Some(65536),
            "wraps around through `every batch size`"
        );
        press(&mut a, KeyCode::BackTab);
        assert_eq!(a.focus, Focus::Table);
        press(&mut a, KeyCode::Char('?'));
        assert_eq!(a.overlay, Overlay::Help);
        press(&mut a, KeyCode::Char('x'));
        assert_eq!(a.overlay, Overlay::None, "any key closes the help");
    }
}
