//! One trial in detail: parameters, loss curve, per-epoch loss scale, skipped steps and
//! throughput, and the error tail of a failed trial.

use super::curves::{blank_labels, draw_epoch_labels, epoch_bounds};
use super::wrap_items;
use crate::fmt::{batch, compact, duration, percent, rate};
use crate::theme::Palette;
use crate::view::{accuracy, display_status, StudyView};
use jizhi_store::TrialRecord;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, Widget, Wrap,
};

/// Column widths of the epochs table.
const EPOCH_WIDTHS: [u16; 8] = [3, 6, 7, 6, 8, 5, 6, 6];

/// The detail panel of one trial.
pub struct TrialDetail<'a> {
    /// The study.
    pub view: &'a StudyView,
    /// Colours.
    pub palette: &'a Palette,
    /// The trial.
    pub trial: &'a TrialRecord,
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => compact(n.as_f64().unwrap_or(f64::NAN), 8),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl TrialDetail<'_> {
    /// The parameter and run facts, wrapped to `width`.
    fn summary(&self, width: u16) -> Vec<Line<'static>> {
        let t = self.trial;
        let muted = self.palette.muted_style();
        let mean_rate = if t.epochs.is_empty() {
            "-".to_string()
        } else {
            rate(t.epochs.iter().map(|e| e.images_per_sec).sum::<f64>() / t.epochs.len() as f64)
        };
        let skipped: u64 = t.epochs.iter().map(|e| e.skipped_steps).sum();
        let scales: Vec<f64> = t.epochs.iter().map(|e| e.loss_scale).collect();
        let changes = scales.windows(2).filter(|w| w[0] != w[1]).count();
        let scale_text = match (scales.first(), scales.last()) {
            (Some(a), Some(b)) if changes > 0 => {
                format!(
                    "loss scale {} → {} ({changes} change(s))",
                    compact(*a, 8),
                    compact(*b, 8)
                )
            }
            (Some(a), _) => format!("loss scale {}", compact(*a, 8)),
            _ => "loss scale -".to_string(),
        };
        let wall = t
            .wall_secs
            .or(t.epochs.last().map(|e| e.wall_secs))
            .map(duration)
            .unwrap_or_else(|| "-".into());
        let mut params = vec![vec![Span::styled("params", muted)]];
        params.extend(
            t.params
                .iter()
                .map(|(k, v)| vec![Span::raw(format!("{k}={}", value_text(v)))]),
        );
        let mut lines = wrap_items(params, width, 2);
        let mut facts = vec![
            "run".to_string(),
            format!("attempts {}", t.attempts),
            format!("wall {wall}"),
            format!("mean {mean_rate} images/s"),
            scale_text,
            format!("{skipped} skipped step(s)"),
        ];
        // Only studies with a modelled cluster have it.
        if let Some(secs) = t.modelled_step_secs {
            facts.push(format!("modelled cluster step {:.1} ms", 1e3 * secs));
        }
        let facts = facts.into_iter().enumerate().map(|(i, f)| {
            vec![if i == 0 {
                Span::styled(f, muted)
            } else {
                Span::raw(f)
            }]
        });
        lines.extend(wrap_items(facts.collect(), width, 2));
        lines
    }

    fn loss_chart(&self, area: Rect, buf: &mut Buffer) {
        let colour = self.palette.batch(self.view.batch_index(self.trial.batch));
        let points: Vec<(f64, f64)> = self
            .trial
            .epochs
            .iter()
            .filter(|e| e.train_loss.is_finite())
            .map(|e| (e.epoch as f64, e.train_loss))
            .collect();
        let block = Block::bordered()
            .title(" train loss by epoch ")
            .border_style(self.palette.border(false));
        if points.is_empty() {
            let inner = block.inner(area);
            block.render(area, buf);
            Paragraph::new(Line::styled(
                "no finite loss yet",
                self.palette.muted_style(),
            ))
            .render(inner, buf);
            return;
        }
        let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.1).max(0.05);
        let y = [(lo - pad).max(0.0), hi + pad];
        let epochs = self
            .view
            .epochs_planned(self.trial)
            .max(self.trial.epochs.len() as u32)
            .max(1);
        let x = epoch_bounds(epochs);
        let mut datasets = vec![Dataset::default()
            .data(&points)
            .marker(Marker::Custom('◆'))
            .style(Style::new().fg(colour))];
        if points.len() > 1 {
            datasets.push(
                Dataset::default()
                    .data(&points)
                    .graph_type(GraphType::Line)
                    .marker(Marker::Braille)
                    .style(Style::new().fg(colour)),
            );
        }
        let y_labels = [format!("{:.2}", y[0]), format!("{:.2}", y[1])];
        let y_label_width = y_labels.iter().map(|l| l.len()).max().unwrap_or(0) as u16;
        let inner = block.inner(area);
        Chart::new(datasets)
            .block(block)
            .x_axis(
                Axis::default()
                    .bounds(x)
                    .labels(blank_labels())
                    .style(self.palette.muted_style()),
            )
            .y_axis(
                Axis::default()
                    .bounds(y)
                    .labels(y_labels.map(Line::from))
                    .style(self.palette.muted_style()),
            )
            .legend_position(None)
            .render(area, buf);
        draw_epoch_labels(
            buf,
            inner,
            y_label_width,
            epochs,
            self.palette.muted_style(),
        );
    }

    fn epochs_table(&self, area: Rect, buf: &mut Buffer) {
        let header = Row::new([
            "ep", "step", "loss", "top-1", "l.scale", "skip", "img/s", "wall",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let mut previous_scale = None;
        let rows: Vec<Row> = self
            .trial
            .epochs
            .iter()
            .map(|e| {
                let change = match previous_scale {
                    Some(p) if e.loss_scale < p => " ↓",
                    Some(p) if e.loss_scale > p => " ↑",
                    _ => "",
                };
                previous_scale = Some(e.loss_scale);
                let skipped_style = if e.skipped_steps > 0 {
                    Style::new().fg(self.palette.error)
                } else {
                    Style::new()
                };
                Row::new(vec![
                    Cell::from(e.epoch.to_string()),
                    Cell::from(e.step.to_string()),
                    Cell::from(if e.train_loss.is_finite() {
                        format!("{:.4}", e.train_loss)
                    } else {
                        e.train_loss.to_string()
                    }),
                    Cell::from(percent(e.val_top1)),
                    Cell::from(format!("{}{change}", compact(e.loss_scale, 6))),
                    Cell::from(Span::styled(e.skipped_steps.to_string(), skipped_style)),
                    Cell::from(rate(e.images_per_sec)),
                    Cell::from(duration(e.wall_secs)),
                ])
            })
            .collect();
        let widths = EPOCH_WIDTHS.map(Constraint::Length);
        let block = Block::bordered()
            .title(" epochs ")
            .border_style(self.palette.border(false));
        if rows.is_empty() {
            let inner = block.inner(area);
            block.render(area, buf);
            Paragraph::new(Line::styled(
                "no epoch finished yet",
                self.palette.muted_style(),
            ))
            .render(inner, buf);
            return;
        }
        Widget::render(
            Table::new(rows, widths)
                .header(header)
                .block(block)
                .column_spacing(1),
            area,
            buf,
        );
    }
}

impl Widget for TrialDetail<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.trial;
        let status = display_status(t);
        let title = format!(
            " trial {} · {} · {} (runs {}) · {} · val top-1 {} ",
            t.id,
            t.stage,
            batch(t.batch),
            t.proxy_batch,
            status.word(),
            accuracy(t).map(percent).unwrap_or_else(|| "-".into())
        );
        let block = Block::bordered()
            .title(Line::styled(
                title,
                Style::new().add_modifier(Modifier::BOLD),
            ))
            .border_style(self.palette.border(true));
        let inner = block.inner(area);
        block.render(area, buf);
        // The error tail, wrapped: as many rows as it needs, up to a third of the panel.
        let wrapped_rows = |text: &str| -> u16 {
            let width = inner.width.saturating_sub(2).max(1) as usize;
            text.lines()
                .map(|l| l.chars().count().div_ceil(width).max(1) as u16)
                .sum()
        };
        let error_rows = match &t.error {
            Some(e) if !e.is_empty() => (wrapped_rows(e) + 2).min(inner.height / 3).max(3),
            _ => 0,
        };
        let summary_lines = self.summary(inner.width);
        let summary_rows = (summary_lines.len() as u16).min(inner.height / 3).max(1);
        let [summary, charts, error] = Layout::vertical([
            Constraint::Length(summary_rows),
            Constraint::Min(0),
            Constraint::Length(error_rows),
        ])
        .areas(inner);
        Paragraph::new(summary_lines).render(summary, buf);
        // The epochs table keeps its full width; the loss chart takes the rest.
        let table_width = EPOCH_WIDTHS.iter().sum::<u16>() + EPOCH_WIDTHS.len() as u16 - 1 + 2;
        let [loss, epochs] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(table_width)])
                .areas(charts);
        self.loss_chart(loss, buf);
        self.epochs_table(epochs, buf);
        if let Some(text) = t.error.as_deref().filter(|_| error_rows > 0) {
            let block = Block::bordered()
                .title(" error (last lines) ")
                .border_style(Style::new().fg(self.palette.error));
            let lines: Vec<Line> = text
                .lines()
                .map(|l| Line::styled(l.to_string(), Style::new().fg(self.palette.error)))
                .collect();
            // Scrolled to its end: the last lines are the telling ones.
            let skip = wrapped_rows(text).saturating_sub(error_rows.saturating_sub(2));
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .scroll((skip, 0))
                .block(block)
                .render(error, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trial, trials};
    use jizhi_store::TrialStatus;

    fn render(view: &StudyView, trial: &TrialRecord, w: u16, h: u16) -> String {
        let palette = Palette::ansi16();
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        TrialDetail {
            view,
            palette: &palette,
            trial,
        }
        .render(buf.area, &mut buf);
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn a_failed_trial_shows_its_error_tail() {
        let view = StudyView::live(info(), trials());
        let mut failed = trial(4, "coarse", 1, TrialStatus::Failed, &[]);
        failed.error = Some(
            (1..=30)
                .map(|i| format!("line {i}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let text = render(&view, &failed, 80, 20);
        assert!(
            text.contains("trial 4 · coarse · 48K (runs 2304) · failed"),
            "{text}"
        );
        assert!(
            text.contains("error (last lines)") && text.contains("line 30"),
            "{text}"
        );
        assert!(!text.contains("line 1 "), "only the tail: {text}");
    }

    #[test]
    fn epochs_show_loss_scale_changes_and_skipped_steps() {
        let view = StudyView::live(info(), trials());
        let t = trial(8, "refine", 2, TrialStatus::Finished, &[0.7, 0.8]);
        let text = render(&view, &t, 100, 20);
        assert!(
            text.contains("loss scale 65536 → 32768 (1 change(s))"),
            "{text}"
        );
        assert!(text.contains("1 skipped step(s)"), "{text}");
        assert!(text.contains("32768 ↓"), "the drop is marked: {text}");
        assert!(text.contains("peak_lr=4"), "{text}");
        assert!(!text.contains("error (last lines)"));
        for (w, h) in [(0, 0), (1, 1), (10, 4), (30, 6)] {
            render(&view, &t, w, h);
        }
    }

    #[test]
    fn a_modelled_cluster_step_is_shown_when_the_study_has_one() {
        let view = StudyView::live(info(), trials());
        let mut t = trial(8, "speed", 0, TrialStatus::Finished, &[0.7]);
        assert!(!render(&view, &t, 120, 20).contains("modelled"));
        t.modelled_step_secs = Some(0.2061);
        let text = render(&view, &t, 120, 20);
        assert!(text.contains("modelled cluster step 206.1 ms"), "{text}");
    }
}
