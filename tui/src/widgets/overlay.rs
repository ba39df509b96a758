//! Boxes drawn over the main view: the key list and the quit question.

use crate::theme::Palette;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

/// The keys, as the help box lists them.
pub const KEYS: [(&str, &str); 14] = [
    ("?", "this help (any key closes it)"),
    ("q", "quit: stop the search, or keep it running headless"),
    ("Ctrl-C", "stop the search cleanly (it resumes later)"),
    ("p", "pause / resume new trials (running ones go on)"),
    ("k", "stop the selected running trial"),
    ("Tab", "focus the next panel (Shift-Tab: previous)"),
    ("↑ ↓", "select a trial (PgUp PgDn Home End)"),
    (
        "Enter",
        "open the focused panel: trial detail or chart full size",
    ),
    ("Esc", "back; clears the filter"),
    ("← →", "curves: every batch size, or one alone"),
    ("s", "sort by the next column (S: reverse)"),
    ("/", "filter trials: words like 64K failed refine"),
    ("◆", "best trial of a batch size (highest val top-1)"),
    ("┄", "target accuracy"),
];

/// A box of `width` × `height` centred in `area`.
pub fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// The key list.
pub struct Help<'a> {
    /// Colours.
    pub palette: &'a Palette,
}

impl Widget for Help<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let lines: Vec<Line> = KEYS
            .iter()
            .map(|(k, what)| {
                Line::from(vec![
                    Span::styled(
                        format!("{k:>7}  "),
                        Style::new()
                            .fg(self.palette.focus)
                            .add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(*what),
                ])
            })
            .collect();
        let boxed = centred(area, 70, lines.len() as u16 + 2);
        Clear.render(boxed, buf);
        Paragraph::new(lines)
            .block(
                Block::bordered()
                    .title(" keys ")
                    .border_style(self.palette.border(true)),
            )
            .render(boxed, buf);
    }
}

/// The question `q` asks while the search runs.
pub struct QuitDialog<'a> {
    /// Colours.
    pub palette: &'a Palette,
    /// Trials running now (they are stopped by "stop").
    pub running: usize,
}

impl Widget for QuitDialog<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let key = Style::new()
            .fg(self.palette.focus)
            .add_modifier(Modifier::BOLD);
        let lines = vec![
            Line::raw("The search is still running. Quit how?"),
            Line::raw(""),
            Line::from(vec![
                Span::styled(" s ", key),
                Span::raw(format!(
                    "stop the search: {} running trial(s) are stopped and rerun on resume (same command)",
                    self.running
                )),
            ]),
            Line::from(vec![
                Span::styled(" h ", key),
                Span::raw("keep it running headless: the dashboard closes, progress lines continue here"),
            ]),
            Line::from(vec![Span::styled(" Esc ", key), Span::raw("back to the dashboard")]),
        ];
        let boxed = centred(area, 64, 9);
        Clear.render(boxed, buf);
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(" quit ")
                    .border_style(self.palette.border(true)),
            )
            .render(boxed, buf);
    }
}
