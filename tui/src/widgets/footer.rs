//! The footer: the filter being typed, the last message, or the key hints.

use crate::app::{App, Overlay};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// The footer line of the app.
pub struct Footer<'a> {
    /// The app.
    pub app: &'a App,
}

impl Widget for Footer<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let app = self.app;
        let muted = app.palette.muted_style();
        let key = Style::new()
            .fg(app.palette.focus)
            .add_modifier(Modifier::BOLD);
        let line = if let Overlay::Filter { .. } = app.overlay {
            Line::from(vec![
                Span::styled("filter / ", key),
                Span::raw(app.filter.clone()),
                Span::styled("█", muted),
                Span::styled("   Enter keep · Esc cancel", muted),
            ])
        } else if let Some(message) = &app.message {
            Line::from(vec![Span::styled("» ", key), Span::raw(message.clone())])
        } else {
            let hints = [
                ("?", "help"),
                ("q", "quit"),
                ("p", "pause"),
                ("k", "stop trial"),
                ("Tab", "focus"),
                ("↑↓", "select"),
                ("Enter", "open"),
                ("s", "sort"),
                ("/", "filter"),
                ("←→", "batch"),
            ];
            let mut spans = Vec::new();
            for (k, what) in hints {
                spans.push(Span::styled(k, key));
                spans.push(Span::styled(format!(" {what}  "), muted));
            }
            Line::from(spans)
        };
        buf.set_line(area.x, area.y, &line, area.width);
    }
}
