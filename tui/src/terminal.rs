//! The thin terminal loop: take the tuner's events, read keys, redraw at most ten times a second,
//! pass the user's commands on. Generic over the ratatui backend so tests drive it headless.

use crate::app::App;
use crate::event::{Command, DashEvent, Exit};
use crate::theme::Palette;
use crate::ui;
use crate::view::{StudyInfo, StudyView};
use crossterm::event::Event;
use jizhi_store::TrialRecord;
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::io;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// The shortest time between two redraws (at most ten a second).
pub const FRAME: Duration = Duration::from_millis(100);

/// Where key presses and resizes come from.
pub trait Input {
    /// The next input event, waiting at most `timeout` for one.
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>>;
}

/// The real terminal's input.
#[derive(Debug, Default)]
pub struct TerminalInput;

impl Input for TerminalInput {
    fn next(&mut self, timeout: Duration) -> io::Result<Option<Event>> {
        if crossterm::event::poll(timeout)? {
            crossterm::event::read().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Runs the dashboard until it should close, and says why.
///
/// `inbox` carries the tuner's events (`None` for a stored study), `outbox` takes the user's
/// commands, `elapsed` gives the seconds since the search started.
pub fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    inbox: Option<&Receiver<DashEvent>>,
    input: &mut dyn Input,
    outbox: &mut dyn FnMut(Command),
    elapsed: &dyn Fn() -> f64,
) -> io::Result<Exit> {
    let mut last_draw: Option<Instant> = None;
    let mut drawn_second = u64::MAX;
    let mut dirty = true;
    loop {
        if let Some(inbox) = inbox {
            loop {
                match inbox.try_recv() {
                    Ok(event) => {
                        app.apply(event);
                        dirty = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        return Ok(app.exit().unwrap_or(Exit::Disconnected))
                    }
                }
            }
        }
        for command in app.take_commands() {
            outbox(command);
        }
        if let Some(exit) = app.exit() {
            return Ok(exit);
        }
        app.set_elapsed(elapsed());
        // The clock in the header moves once a second even when nothing else happens.
        let second = app.view.elapsed_secs as u64;
        if second != drawn_second && app.view.is_live() {
            dirty = true;
        }
        let since = last_draw.map_or(FRAME, |t| t.elapsed());
        if dirty && since >= FRAME {
            terminal
                .draw(|frame| ui::draw(frame, app))
                .map_err(|e| io::Error::other(e.to_string()))?;
            last_draw = Some(Instant::now());
            drawn_second = second;
            dirty = false;
        }
        let wait = if dirty {
            FRAME.saturating_sub(since)
        } else {
            FRAME
        };
        match input.next(wait.max(Duration::from_millis(1)))? {
            Some(Event::Key(key)) => {
                app.handle_key(key);
                dirty = true;
            }
            Some(Event::Resize(..)) => {
                terminal
                    .autoresize()
                    .map_err(|e| io::Error::other(e.to_string()))?;
                dirty = true;
            }
            _ => {}
        }
    }
}

/// Runs `f` on the real terminal in raw mode on the alternate screen, restoring it afterwards,
/// and on a panic (through the hook `ratatui::try_init` installs).
fn with_terminal<R>(
    f: impl FnOnce(&mut ratatui::DefaultTerminal) -> io::Result<R>,
) -> io::Result<R> {
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            let _ = ratatui::try_restore();
            return Err(e);
        }
    };
    let result = f(&mut terminal);
    let restored = ratatui::try_restore();
    drop(terminal);
    let value = result?;
    restored?;
    Ok(value)
}

/// Shows a running study until the user closes the dashboard or the search ends.
///
/// Blocks; run it on a thread of its own. `trials` are those already in the store.
pub fn run_live(
    info: StudyInfo,
    trials: Vec<TrialRecord>,
    inbox: Receiver<DashEvent>,
    mut outbox: impl FnMut(Command),
) -> io::Result<Exit> {
    let started = Instant::now();
    let mut app = App::new(StudyView::live(info, trials), Palette::detect());
    with_terminal(|terminal| {
        run(
            terminal,
            &mut app,
            Some(&inbox),
            &mut TerminalInput,
            &mut outbox,
            &|| started.elapsed().as_secs_f64(),
        )
    })
}

/// Shows a stored study (read-only) until the user closes the dashboard.
pub fn run_stored(info: StudyInfo, trials: Vec<TrialRecord>) -> io::Result<Exit> {
    let mut app = App::new(StudyView::stored(info, trials), Palette::detect());
    with_terminal(|terminal| {
        run(
            terminal,
            &mut app,
            None,
            &mut TerminalInput,
            &mut |_| {},
            &|| 0.0,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trials};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::backend::TestBackend;
    use std::collections::VecDeque;
    use std::sync::mpsc;

    /// Keys given in advance; after them, nothing (each wait returns at once).
    struct Script(VecDeque<Event>);

    impl Input for Script {
        fn next(&mut self, _timeout: Duration) -> io::Result<Option<Event>> {
            Ok(self.0.pop_front())
        }
    }

    fn key(c: char) -> Event {
        Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    #[test]
    fn keys_become_commands_and_a_closed_inbox_ends_the_loop() {
        let (tx, rx) = mpsc::channel();
        let mut app = App::new(StudyView::live(info(), trials()), Palette::ansi16());
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        let mut sent = Vec::new();
        tx.send(DashEvent::Note("hello".into())).expect("send");
        drop(tx);
        let exit = run(
            &mut terminal,
            &mut app,
            Some(&rx),
            &mut Script(VecDeque::from([key('p')])),
            &mut |c| sent.push(c),
            &|| 1.0,
        );
        // The inbox is found closed before the key is read: nothing was sent yet.
        assert_eq!(exit.expect("loop"), Exit::Disconnected);
        assert_eq!(app.view.notes, ["hello"]);
        assert_eq!(
            app.message.as_deref(),
            Some("hello"),
            "a note shows in the footer"
        );

        let (tx, rx) = mpsc::channel::<DashEvent>();
        let script = Script(VecDeque::from([key('p'), key('q'), key('h')]));
        let exit = run(
            &mut terminal,
            &mut app,
            Some(&rx),
            &mut { script },
            &mut |c| sent.push(c),
            &|| 1.0,
        );
        assert_eq!(exit.expect("loop"), Exit::Detached);
        assert_eq!(sent, [Command::Pause]);
        drop(tx);
    }

    #[test]
    fn redraws_at_most_ten_times_a_second_however_many_events_come() {
        let (tx, rx) = mpsc::channel();
        let mut app = App::new(StudyView::stored(info(), trials()), Palette::ansi16());
        app.view.state = crate::RunState::Running;
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        let feeder = std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(450) {
                if tx.send(DashEvent::Trial(trials()[0].clone())).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let started = Instant::now();
        let exit = run(
            &mut terminal,
            &mut app,
            Some(&rx),
            &mut Script(VecDeque::new()),
            &mut |_| {},
            &|| 0.0,
        );
        assert_eq!(exit.expect("loop"), Exit::Disconnected);
        feeder.join().expect("feeder");
        let frames = terminal.get_frame().count();
        let allowed = (started.elapsed().as_millis() / FRAME.as_millis()) as usize + 1;
        assert!(
            frames >= 2 && frames <= allowed,
            "{frames} frames in {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn q_closes_a_stored_study_at_once() {
        let mut app = App::new(StudyView::stored(info(), trials()), Palette::ansi16());
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        let exit = run(
            &mut terminal,
            &mut app,
            None,
            &mut Script(VecDeque::from([key('q')])),
            &mut |_| {},
            &|| 0.0,
        );
        assert_eq!(exit.expect("loop"), Exit::Closed);
        assert!(
            terminal
                .backend()
                .to_string()
                .contains("stored, not running"),
            "drawn before closing"
        );
    }
}
