//! Accuracy curves: validation top-1 against epoch for every trial, coloured by batch size, the
//! best trial of each batch size highlighted, the target accuracy as a horizontal line.

use super::wrap_items;
use crate::fmt::{batch, percent};
use crate::theme::Palette;
use crate::view::StudyView;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph, Widget};

/// Marker of the best trial's points.
pub const BEST_MARKER: char = '◆';
/// Marker of the other trials' points.
pub const POINT_MARKER: char = '•';
/// Marker of the target line.
pub const TARGET_MARKER: char = '┄';

/// The accuracy-curves panel.
pub struct Curves<'a> {
    /// The study.
    pub view: &'a StudyView,
    /// Colours.
    pub palette: &'a Palette,
    /// Show only this batch size's curves (all when `None`).
    pub only: Option<u64>,
    /// Whether the panel has the focus.
    pub focused: bool,
}

/// One curve to draw: its points and how.
struct Curve {
    points: Vec<(f64, f64)>,
    style: Style,
    marker: char,
}

impl Curves<'_> {
    /// The legend, in words when `compact` is 0, shorter at 1, shortest at 2.
    fn legend(&self, compact: u8) -> Vec<Vec<Span<'static>>> {
        let mut items = Vec::new();
        for (i, b) in self.view.info.batches.iter().enumerate() {
            if self.only.is_some_and(|o| o != b.nominal) {
                continue;
            }
            let colour = self.palette.batch(i);
            let name = if self.view.info.data.proxy {
                format!("{}→{}", batch(b.nominal), b.proxy)
            } else {
                batch(b.nominal)
            };
            let best = self.view.best_of(b.nominal);
            let accuracy = best.and_then(crate::view::accuracy).map(percent);
            let result = match (compact, best, accuracy) {
                (0, Some(t), Some(a)) => format!(" best {a} #{}", t.id),
                (1, Some(_), Some(a)) => format!(" {a}"),
                (0, _, _) => " no result yet".into(),
                _ => String::new(),
            };
            let marker = if compact == 2 {
                format!("{BEST_MARKER}{name}")
            } else {
                format!("{BEST_MARKER} {name}")
            };
            items.push(vec![
                Span::styled(marker, Style::new().fg(colour).add_modifier(Modifier::BOLD)),
                Span::raw(result),
            ]);
        }
        if let Some(t) = self.view.info.target_top1 {
            let line = if compact == 2 {
                TARGET_MARKER.to_string()
            } else {
                format!("{TARGET_MARKER}{TARGET_MARKER}")
            };
            let text = if compact == 2 {
                format!("target {}", percent(t))
            } else {
                format!(" target {}", percent(t))
            };
            items.push(vec![
                Span::styled(line, Style::new().fg(self.palette.target)),
                Span::raw(text),
            ]);
        }
        items
    }

    /// The most telling legend that leaves the chart enough rows: about one legend row per six.
    fn legend_lines(&self, width: u16, height: u16) -> Vec<Line<'static>> {
        let allowed = (height as usize / 6).max(1);
        let mut lines = Vec::new();
        for compact in 0..=2 {
            lines = wrap_items(
                self.legend(compact),
                width,
                if compact == 2 { 2 } else { 3 },
            );
            if lines.len() <= allowed {
                break;
            }
        }
        lines
    }

    fn curves(&self) -> Vec<Curve> {
        let mut others = Vec::new();
        let mut best = Vec::new();
        for (i, b) in self.view.info.batches.iter().enumerate() {
            if self.only.is_some_and(|o| o != b.nominal) {
                continue;
            }
            let best_id = self.view.best_of(b.nominal).map(|t| t.id);
            for t in self.view.trials().filter(|t| t.batch == b.nominal) {
                let points: Vec<(f64, f64)> = t
                    .epochs
                    .iter()
                    .filter(|e| e.val_top1.is_finite())
                    .map(|e| (e.epoch as f64, e.val_top1))
                    .collect();
                if points.is_empty() {
                    continue;
                }
                if Some(t.id) == best_id {
                    let style = Style::new()
                        .fg(self.palette.batch(i))
                        .add_modifier(Modifier::BOLD);
                    best.push(Curve {
                        points,
                        style,
                        marker: BEST_MARKER,
                    });
                } else {
                    let style = Style::new().fg(self.palette.batch_dim(i));
                    others.push(Curve {
                        points,
                        style,
                        marker: POINT_MARKER,
                    });
                }
            }
        }
        // Drawn later is drawn on top: the best trials go last.
        others.extend(best);
        others
    }
}

/// The y range: the data and the target, widened to whole tens of percent.
fn y_bounds(values: impl Iterator<Item = f64>) -> [f64; 2] {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return [0.0, 1.0];
    }
    let lo = ((lo - 0.02) * 10.0).floor().max(0.0) / 10.0;
    let hi = ((hi + 0.02) * 10.0).ceil().min(10.0) / 10.0;
    if hi - lo < 0.1 {
        [(hi - 0.1).max(0.0), (lo + 0.1).min(1.0)]
    } else {
        [lo, hi]
    }
}

/// The x range of `epochs` epochs: each epoch in the middle of its share of the width.
pub(crate) fn epoch_bounds(epochs: u32) -> [f64; 2] {
    [0.5, epochs.max(1) as f64 + 0.5]
}

/// Empty x labels: they make the chart draw its x axis and keep a row free under it for
/// [`draw_epoch_labels`], which puts each label exactly under its points.
pub(crate) fn blank_labels() -> Vec<Line<'static>> {
    vec![Line::from(""), Line::from("")]
}

/// The column of `x` in a graph `width` cells wide over `bounds`, as the chart places points.
fn column_of(x: f64, bounds: [f64; 2], width: u16) -> u16 {
    ((x - bounds[0]) * (width.saturating_sub(1)) as f64 / (bounds[1] - bounds[0])).round() as u16
}

/// Writes the epoch numbers under a chart drawn in `area` whose y labels are `y_label_width`
/// wide, skipping those that would touch their neighbour.
pub(crate) fn draw_epoch_labels(
    buf: &mut Buffer,
    area: Rect,
    y_label_width: u16,
    epochs: u32,
    style: Style,
) {
    if area.height < 3 || area.width < 4 {
        return;
    }
    let label_w = y_label_width.min(area.width / 3);
    let graph_x = area.x + label_w + 1;
    let graph_w = area.right().saturating_sub(graph_x);
    let row = area.bottom() - 1;
    let bounds = epoch_bounds(epochs);
    let epochs = epochs.max(1);
    let place = |e: u32| {
        let text = e.to_string();
        let at = graph_x + column_of(e as f64, bounds, graph_w);
        let start = at
            .saturating_sub((text.len() as u16 - 1) / 2)
            .min(area.right().saturating_sub(text.len() as u16));
        (start, text)
    };
    // The last epoch always gets its label; the others where they leave a space around them.
    let (last_start, last) = place(epochs);
    buf.set_string(last_start, row, &last, style);
    let mut free_from = graph_x;
    for e in 1..epochs {
        let (start, text) = place(e);
        if start >= free_from && start + (text.len() as u16) < last_start.saturating_sub(1) {
            buf.set_string(start, row, &text, style);
            free_from = start + text.len() as u16 + 1;
        }
    }
}

impl Widget for Curves<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let title = match self.only {
            Some(b) => format!(" accuracy curves · val top-1 by epoch · {} only ", batch(b)),
            None => " accuracy curves · val top-1 by epoch ".to_string(),
        };
        let block = Block::bordered()
            .title(title)
            .border_style(self.palette.border(self.focused));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.width < 4 || inner.height < 2 {
            return;
        }
        let legend = self.legend_lines(inner.width, inner.height);
        let legend_rows = (legend.len() as u16).min(inner.height.saturating_sub(3));
        let legend_area = Rect {
            height: legend_rows,
            ..inner
        };
        Paragraph::new(legend).render(legend_area, buf);
        let chart_area = Rect {
            y: inner.y + legend_rows,
            height: inner.height - legend_rows,
            ..inner
        };

        let curves = self.curves();
        if curves.is_empty() {
            let text = if self.view.trials().next().is_none() {
                "no trials yet"
            } else {
                "no epoch has finished yet"
            };
            let mid = Rect {
                y: chart_area.y + chart_area.height / 2,
                height: 1,
                ..chart_area
            };
            Paragraph::new(Line::styled(text, self.palette.muted_style()))
                .alignment(Alignment::Center)
                .render(mid, buf);
            return;
        }
        let target = self.view.info.target_top1;
        let y = y_bounds(
            curves
                .iter()
                .flat_map(|c| c.points.iter().map(|p| p.1))
                .chain(target),
        );
        let epochs = self.view.max_epochs();
        let x = epoch_bounds(epochs);
        let target_line: Vec<(f64, f64)> = target
            .map(|t| vec![(x[0], t), (x[1], t)])
            .unwrap_or_default();

        let mut datasets = Vec::new();
        if !target_line.is_empty() {
            datasets.push(
                Dataset::default()
                    .data(&target_line)
                    .graph_type(GraphType::Line)
                    .marker(Marker::Custom(TARGET_MARKER))
                    .style(Style::new().fg(self.palette.target)),
            );
        }
        for c in &curves {
            if c.points.len() > 1 {
                datasets.push(
                    Dataset::default()
                        .data(&c.points)
                        .graph_type(GraphType::Line)
                        .marker(Marker::Braille)
                        .style(c.style),
                );
            }
            datasets.push(
                Dataset::default()
                    .data(&c.points)
                    .marker(Marker::Custom(c.marker))
                    .style(c.style),
            );
        }
        let y_labels: Vec<String> = {
            let decimals = if y[1] - y[0] < 0.2 { 1 } else { 0 };
            [y[0], (y[0] + y[1]) / 2.0, y[1]]
                .iter()
                .map(|v| format!("{:.*}%", decimals, v * 100.0))
                .collect()
        };
        let y_label_width = y_labels.iter().map(|l| l.len()).max().unwrap_or(0) as u16;
        Chart::new(datasets)
            .x_axis(
                Axis::default()
                    .bounds(x)
                    .labels(blank_labels())
                    .style(self.palette.muted_style()),
            )
            .y_axis(
                Axis::default()
                    .bounds(y)
                    .labels(y_labels.into_iter().map(Line::from).collect::<Vec<_>>())
                    .style(self.palette.muted_style()),
            )
            .legend_position(None)
            .render(chart_area, buf);
        draw_epoch_labels(
            buf,
            chart_area,
            y_label_width,
            epochs,
            self.palette.muted_style(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trials};
    use ratatui::style::Color;

    fn render(view: &StudyView, only: Option<u64>, w: u16, h: u16) -> Buffer {
        let palette = Palette::ansi16();
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        Curves {
            view,
            palette: &palette,
            only,
            focused: false,
        }
        .render(buf.area, &mut buf);
        buf
    }

    fn cells_with(buf: &Buffer, symbol: &str, fg: Color) -> Vec<(u16, u16)> {
        let area = buf.area;
        let mut found = Vec::new();
        for y in area.top()..area.bottom() {
            for x in area.left()..area.right() {
                let cell = &buf[(x, y)];
                if cell.symbol() == symbol && cell.fg == fg {
                    found.push((x, y));
                }
            }
        }
        found
    }

    fn text(buf: &Buffer) -> String {
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn every_batch_size_has_its_best_trial_highlighted_in_its_colour() {
        let view = StudyView::live(info(), trials());
        let buf = render(&view, None, 70, 16);
        let p = Palette::ansi16();
        for i in 0..3 {
            let best = cells_with(&buf, "◆", p.batch(i));
            // One in the legend, one on the chart.
            assert_eq!(best.len(), 2, "batch {i}: {best:?}\n{}", text(&buf));
        }
        // 32K has a second finished trial, drawn as a plain point in the dim colour.
        assert_eq!(
            cells_with(&buf, "•", p.batch_dim(0)).len(),
            1,
            "{}",
            text(&buf)
        );
        let legend = text(&buf);
        assert!(legend.contains("◆ 32K→1536 best 86.0% #2"), "{legend}");
        assert!(legend.contains("◆ 64K→3072 best 78.0% #6"), "{legend}");
        assert!(legend.contains("┄┄ target 80.0%"), "{legend}");
    }

    #[test]
    fn the_target_is_a_horizontal_line_at_its_height() {
        let view = StudyView::live(info(), trials());
        let buf = render(&view, None, 70, 16);
        let line = cells_with(&buf, "┄", Palette::ansi16().target);
        let rows: std::collections::BTreeSet<u16> = line.iter().skip(2).map(|c| c.1).collect();
        assert_eq!(rows.len(), 1, "one row: {line:?}");
        assert!(line.len() > 40, "it spans the chart: {}", line.len());
        // 80% lies between the 84-86% points (above) and the 75-78% points (below).
        let row = *rows.iter().next().unwrap_or(&0);
        let best_32k = cells_with(&buf, "◆", Palette::ansi16().batch(0));
        let best_64k = cells_with(&buf, "◆", Palette::ansi16().batch(2));
        assert!(
            best_32k[1].1 < row && row < best_64k[1].1,
            "{row} {best_32k:?} {best_64k:?}"
        );
    }

    #[test]
    fn one_batch_size_alone_hides_the_others() {
        let view = StudyView::live(info(), trials());
        let buf = render(&view, Some(49152), 70, 16);
        let p = Palette::ansi16();
        assert!(cells_with(&buf, "◆", p.batch(0)).is_empty());
        assert!(cells_with(&buf, "◆", p.batch(2)).is_empty());
        assert_eq!(cells_with(&buf, "◆", p.batch(1)).len(), 2);
        assert!(text(&buf).contains("48K only"));
    }

    #[test]
    fn an_empty_study_says_so_and_tiny_areas_do_not_panic() {
        let view = StudyView::live(info(), Vec::new());
        let buf = render(&view, None, 70, 20);
        assert!(text(&buf).contains("no trials yet"), "{}", text(&buf));
        assert!(text(&buf).contains("32K→1536 no result yet"));
        // Short of rows, the legend keeps one line: names and proxy batches only.
        let buf = render(&view, None, 40, 9);
        assert!(
            text(&buf).contains("◆32K→1536  ◆48K→2304  ◆64K→3072"),
            "{}",
            text(&buf)
        );
        let full = StudyView::live(info(), trials());
        for (w, h) in [(0, 0), (1, 1), (3, 3), (8, 4), (20, 5)] {
            render(&full, None, w, h);
        }
    }

    #[test]
    fn y_range_covers_the_data_and_the_target_in_tens() {
        assert_eq!(y_bounds([0.81, 0.86].into_iter()), [0.7, 0.9]);
        assert_eq!(y_bounds([0.81, 0.86, 0.587].into_iter()), [0.5, 0.9]);
        assert_eq!(y_bounds(std::iter::empty()), [0.0, 1.0]);
        let [lo, hi] = y_bounds([0.995].into_iter());
        assert!(lo < 0.995 && hi == 1.0);
    }

    #[test]
    fn epoch_labels_sit_under_their_points() {
        let view = StudyView::live(info(), trials());
        let buf = render(&view, None, 70, 16);
        let rows: Vec<String> = (0..16)
            .map(|y| (0..70).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        let points: std::collections::BTreeSet<usize> = rows
            .iter()
            .filter(|r| !r.contains("best"))
            .flat_map(|r| {
                r.chars()
                    .enumerate()
                    .filter(|(_, c)| *c == '◆' || *c == '•')
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>()
            })
            .collect();
        let label_row = &rows[14];
        let one = label_row.chars().position(|c| c == '1').expect("label 1");
        assert_eq!(
            points.iter().copied().collect::<Vec<_>>(),
            [one],
            "{label_row}"
        );
        assert!(label_row.contains('2'), "{label_row}");
        // With many epochs, labels that would collide are left out.
        let mut buf = Buffer::empty(Rect::new(0, 0, 20, 5));
        let area = buf.area;
        draw_epoch_labels(&mut buf, area, 3, 30, Style::new());
        let row: String = (0..20).map(|x| buf[(x, 4)].symbol().to_string()).collect();
        assert!(
            row.trim_start().starts_with('1') && row.contains("30"),
            "{row}"
        );
    }
}
