//! The trials table: one row per trial with its parameters, status, epoch, accuracy and speed.

use crate::app::{App, Focus, SortKey};
use crate::fmt::{batch, compact, percent, rate};
use crate::view::{accuracy, display_status, DisplayStatus, StudyView};
use jizhi_store::TrialRecord;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, HighlightSpacing, Row, StatefulWidget, Table, TableState, Widget,
};

/// The columns: header, width.
const COLUMNS: [(&str, u16); 11] = [
    ("id", 4),
    ("stage", 6),
    ("batch", 6),
    ("LR", 6),
    ("warmup", 6),
    ("l.scale", 7),
    ("fusion", 6),
    ("status", 8),
    ("epoch", 5),
    ("top-1", 6),
    ("img/s", 6),
];

/// A parameter's value as a short cell.
fn param(t: &TrialRecord, name: &str, width: usize) -> String {
    match t.params.get(name) {
        Some(serde_json::Value::Number(n)) => compact(n.as_f64().unwrap_or(f64::NAN), width),
        Some(serde_json::Value::String(s)) if s == "dynamic" => "dyn".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

/// The text a filter matches against: id, stage, batch, status and every parameter.
pub fn row_text(t: &TrialRecord) -> String {
    let mut text = format!(
        "#{} {} {} {} {}",
        t.id,
        t.stage,
        batch(t.batch),
        t.proxy_batch,
        display_status(t).word()
    );
    for (k, v) in &t.params {
        text.push_str(&format!(
            " {k}={}",
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        ));
    }
    text
}

/// The cells of one trial's row.
pub fn cells(view: &StudyView, t: &TrialRecord) -> [String; 11] {
    let status = display_status(t);
    let epoch = match (status, t.epochs.len()) {
        (DisplayStatus::Queued, _) => "-".to_string(),
        (_, n) => format!("{n}/{}", view.epochs_planned(t)),
    };
    let best = view.best_of(t.batch).map(|b| b.id) == Some(t.id);
    [
        t.id.to_string(),
        t.stage.clone(),
        format!("{}{}", if best { "◆" } else { " " }, batch(t.batch)),
        param(t, "peak_lr", 6),
        param(t, "warmup_epochs", 6),
        param(t, "loss_scale", 7),
        t.params
            .get("fusion_threshold_mib")
            .and_then(|v| v.as_f64())
            .map_or("-".into(), |m| format!("{}M", compact(m, 4))),
        status.word().to_string(),
        epoch,
        accuracy(t).map(percent).unwrap_or_else(|| "-".into()),
        t.epochs
            .last()
            .map(|e| rate(e.images_per_sec))
            .unwrap_or_else(|| "-".into()),
    ]
}

/// The trials table of the app (sorted, filtered, with the selection).
pub struct TrialsTable<'a> {
    /// The app (rows, sort, filter, selection, colours).
    pub app: &'a App,
}

impl StatefulWidget for TrialsTable<'_> {
    type State = TableState;

    fn render(self, area: Rect, buf: &mut Buffer, state: &mut TableState) {
        let app = self.app;
        let p = &app.palette;
        let rows = app.rows();
        let arrow = if app.descending { "▼" } else { "▲" };
        let header = Row::new(COLUMNS.iter().map(|(name, _)| {
            let sorted = match app.sort {
                SortKey::Id => *name == "id",
                SortKey::Batch => *name == "batch",
                SortKey::Lr => *name == "LR",
                SortKey::Status => *name == "status",
                SortKey::Top1 => *name == "top-1",
                SortKey::Throughput => *name == "img/s",
            };
            let text = if sorted {
                format!("{name}{arrow}")
            } else {
                name.to_string()
            };
            Cell::from(text)
        }))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let body: Vec<Row> = rows
            .iter()
            .map(|t| {
                let status = display_status(t);
                let colour = p.batch(app.view.batch_index(t.batch));
                let style = match status {
                    DisplayStatus::Failed | DisplayStatus::Stopped | DisplayStatus::Diverged => {
                        Style::new().fg(p.error)
                    }
                    DisplayStatus::Queued => p.muted_style(),
                    DisplayStatus::Running => Style::new().add_modifier(Modifier::BOLD),
                    DisplayStatus::Finished => Style::new(),
                };
                let c = cells(&app.view, t);
                Row::new(c.into_iter().enumerate().map(|(i, text)| {
                    if i == 2 {
                        Cell::from(Span::styled(text, Style::new().fg(colour)))
                    } else {
                        Cell::from(text)
                    }
                }))
                .style(style)
            })
            .collect();
        let mut title = vec![Span::raw(format!(" trials · {} shown", rows.len()))];
        title.push(Span::raw(format!(" · sort {} {arrow}", app.sort.name())));
        if !app.filter.is_empty() {
            title.push(Span::styled(
                format!(" · filter `{}`", app.filter),
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        title.push(Span::raw(" "));
        let block = Block::bordered()
            .title(Line::from(title))
            .border_style(p.border(app.focus == Focus::Table));
        let empty = rows.is_empty();
        state.select(
            app.selected
                .and_then(|id| rows.iter().position(|t| t.id == id)),
        );
        let table = Table::new(body, COLUMNS.iter().map(|(_, w)| Constraint::Length(*w)))
            .header(header)
            .block(block)
            .column_spacing(1)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
            .highlight_symbol("▶")
            .highlight_spacing(HighlightSpacing::Always);
        StatefulWidget::render(table, area, buf, state);
        if empty {
            let msg = if app.view.trials().next().is_none() {
                "no trials yet"
            } else {
                "no trial matches the filter (Esc clears it)"
            };
            let inner = Rect {
                x: area.x + 2,
                y: area.y + 2,
                width: area.width.saturating_sub(4),
                height: 1,
            };
            if area.height > 3 {
                Line::styled(msg, p.muted_style()).render(inner, buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trials};
    use crate::theme::Palette;

    fn render(app: &App, w: u16, h: u16) -> (Buffer, Vec<String>) {
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        let mut state = TableState::default();
        TrialsTable { app }.render(buf.area, &mut buf, &mut state);
        let lines = (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        (buf, lines)
    }

    #[test]
    fn rows_show_parameters_status_epoch_accuracy_and_speed() {
        let app = App::new(StudyView::live(info(), trials()), Palette::ansi16());
        let (buf, lines) = render(&app, 80, 12);
        assert_eq!(
            lines[1].trim_end(),
            "│ id▲  stage  batch  LR     warmup l.scale fusion status   epoch top-1  img/s  │"
        );
        assert_eq!(
            lines[3].trim_end(),
            "│ 2    coarse ◆32K   1      0.5    dyn     8M     finished 1/1   86.0%  1502   │"
        );
        assert!(
            lines[5].contains("failed") && lines[5].contains("-      -"),
            "{}",
            lines[5]
        );
        assert!(lines[6].contains("running  1/1   75.0%"), "{}", lines[6]);
        assert!(
            lines[8].contains("refine  32K") && lines[8].contains("queued   -"),
            "{}",
            lines[8]
        );
        // The failed row is drawn in the error colour, the selected row reversed.
        assert_eq!(buf[(30, 5)].fg, Palette::ansi16().error);
        assert!(buf[(30, 2)].modifier.contains(Modifier::REVERSED));
    }

    #[test]
    fn sorting_and_filtering_change_the_rows() {
        let mut app = App::new(StudyView::live(info(), trials()), Palette::ansi16());
        app.sort = SortKey::Top1;
        app.descending = true;
        let ids: Vec<u64> = app.rows().iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            [2, 1, 3, 6, 5, 4, 7],
            "best first, trials without accuracy last"
        );
        app.filter = "48k failed".into();
        let ids: Vec<u64> = app.rows().iter().map(|t| t.id).collect();
        assert_eq!(ids, [4]);
        let (_, lines) = render(&app, 80, 6);
        assert!(
            lines[0].contains("1 shown · sort top-1 ▼ · filter `48k failed`"),
            "{}",
            lines[0]
        );
        app.filter = "nothing-matches".into();
        let (_, lines) = render(&app, 80, 6);
        assert!(
            lines[2].contains("no trial matches the filter"),
            "{}",
            lines[2]
        );
    }
}
