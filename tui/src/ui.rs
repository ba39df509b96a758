//! The screen layout: header, the two charts over the trials table, footer, and what covers them.

use crate::app::{App, Focus, Overlay};
use crate::widgets::curves::Curves;
use crate::widgets::detail::TrialDetail;
use crate::widgets::footer::Footer;
use crate::widgets::gap::BatchGap;
use crate::widgets::header::{self, Header};
use crate::widgets::overlay::{Help, QuitDialog};
use crate::widgets::table::TrialsTable;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// The smallest screen the dashboard draws on.
pub const MIN_SIZE: (u16, u16) = (60, 16);

/// Draws the whole screen from the app state.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let text = format!(
            "terminal too small ({}×{}): the dashboard needs at least {}×{}",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        frame.render_widget(
            Paragraph::new(Line::raw(text)).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [top, main, bottom] = Layout::vertical([
        Constraint::Length(header::HEIGHT),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(
        Header {
            view: &app.view,
            palette: &app.palette,
            paused: app.paused,
        },
        top,
    );
    match app.overlay.clone() {
        Overlay::Detail(id) => match app.view.trial(id) {
            Some(trial) => frame.render_widget(
                TrialDetail {
                    view: &app.view,
                    palette: &app.palette,
                    trial,
                },
                main,
            ),
            None => main_view(frame, app, main),
        },
        Overlay::Zoom(Focus::Curves) => frame.render_widget(curves(app, true), main),
        Overlay::Zoom(_) => frame.render_widget(
            BatchGap {
                view: &app.view,
                palette: &app.palette,
                focused: true,
            },
            main,
        ),
        _ => main_view(frame, app, main),
    }
    frame.render_widget(Footer { app }, bottom);
    match app.overlay {
        Overlay::Help => frame.render_widget(
            Help {
                palette: &app.palette,
            },
            area,
        ),
        Overlay::Quit => {
            let running = app.view.counts().running;
            frame.render_widget(
                QuitDialog {
                    palette: &app.palette,
                    running,
                },
                area,
            )
        }
        _ => {}
    }
}

fn curves(app: &App, focused: bool) -> Curves<'_> {
    Curves {
        view: &app.view,
        palette: &app.palette,
        only: app.curve_batch,
        focused,
    }
}

fn main_view(frame: &mut Frame, app: &mut App, area: Rect) {
    let [charts, table] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Min(6)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(charts);
    frame.render_widget(curves(app, app.focus == Focus::Curves), left);
    frame.render_widget(
        BatchGap {
            view: &app.view,
            palette: &app.palette,
            focused: app.focus == Focus::Gap,
        },
        right,
    );
    let mut state = std::mem::take(&mut app.table_state);
    frame.render_stateful_widget(TrialsTable { app }, table, &mut state);
    app.table_state = state;
}
