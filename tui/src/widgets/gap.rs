//! Accuracy against batch size: per batch size the best accuracy reached and the median trial,
//! against the small-batch baseline, so the large-batch gap and how much tuning closed it show.

use crate::fmt::{batch, percent};
use crate::theme::Palette;
use crate::view::StudyView;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Widget};

/// Fill of the bar up to the median trial.
pub const MEDIAN_FILL: char = '█';
/// Fill of the bar from the median to the best trial (what tuning bought).
pub const TUNED_FILL: char = '▒';
/// Mark of the baseline across the bars.
pub const BASELINE_MARK: char = '┃';

/// The accuracy-against-batch-size panel.
pub struct BatchGap<'a> {
    /// The study.
    pub view: &'a StudyView,
    /// Colours.
    pub palette: &'a Palette,
    /// Whether the panel has the focus.
    pub focused: bool,
}

/// One bar: a batch size's median and best accuracy.
struct Bar {
    label: String,
    colour_index: usize,
    median: Option<f64>,
    best: Option<(f64, u64)>,
}

/// The accuracy range of the bars: whole tens of percent around the values and the baseline.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let lo = ((lo - 0.05) * 10.0).floor().max(0.0) / 10.0;
    let hi = (hi * 10.0 - 1e-9).ceil().min(10.0) / 10.0;
    (lo, hi.max(lo + 0.1))
}

impl BatchGap<'_> {
    fn bars(&self) -> Vec<Bar> {
        self.view
            .info
            .batches
            .iter()
            .enumerate()
            .map(|(i, b)| Bar {
                label: batch(b.nominal),
                colour_index: i,
                median: self.view.median_of(b.nominal),
                best: self
                    .view
                    .best_of(b.nominal)
                    .and_then(|t| crate::view::accuracy(t).map(|a| (a, t.id))),
            })
            .collect()
    }
}

impl Widget for BatchGap<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let block = Block::bordered()
            .title(" accuracy vs batch size ")
            .border_style(self.palette.border(self.focused));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.width < 16 || inner.height < 2 {
            return;
        }
        let bars = self.bars();
        let baseline = self.view.info.baseline.clone();
        let muted = self.palette.muted_style();
        let mut y = inner.y;
        let bottom = inner.y + inner.height;

        // The baseline line (or why there is none).
        let base_line = match &baseline {
            Some(b) => {
                let at = b.batch.map(|bs| {
                    if self.view.info.data.proxy {
                        format!(" at {}→{}", batch(bs.nominal), bs.proxy)
                    } else {
                        format!(" at {}", batch(bs.nominal))
                    }
                });
                Line::from(vec![
                    Span::styled(
                        format!("{BASELINE_MARK} "),
                        Style::new().fg(self.palette.baseline),
                    ),
                    Span::raw(format!(
                        "baseline{}: {}",
                        at.unwrap_or_default(),
                        percent(b.top1)
                    )),
                ])
            }
            None => Line::styled("no baseline (set study.baseline_top1)", muted),
        };
        buf.set_line(inner.x, y, &base_line, inner.width);
        y += 1;

        let values = bars
            .iter()
            .flat_map(|b| [b.median, b.best.map(|x| x.0)])
            .flatten();
        let (lo, hi) = range(values.chain(baseline.as_ref().map(|b| b.top1)));
        let label_w = bars.iter().map(|b| b.label.len()).max().unwrap_or(3) as u16;
        let show_gap = baseline.is_some() && inner.width >= 28;
        let value_w: u16 = if show_gap { 15 } else { 7 };
        let bar_x = inner.x + label_w + 1;
        let bar_w = inner.width.saturating_sub(label_w + 1 + value_w);
        let column = |v: f64| -> u16 {
            (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * bar_w as f64).round() as u16
        };

        // Spread the bars over the height there is, keeping rows for the scale and the key.
        let spare = inner.height.saturating_sub(4) / (bars.len().max(1) as u16);
        let step = spare.clamp(1, 3);
        for (i, bar) in bars.iter().enumerate() {
            if y >= bottom {
                return;
            }
            let bright = self.palette.batch(bar.colour_index);
            let dim = self.palette.batch_dim(bar.colour_index);
            buf.set_string(
                inner.x,
                y,
                format!("{:>w$}", bar.label, w = label_w as usize),
                Style::new().fg(bright).add_modifier(Modifier::BOLD),
            );
            match bar.best {
                None => {
                    buf.set_string(bar_x, y, "no result yet", muted);
                }
                Some((best, _)) => {
                    let median_end = bar.median.map(column).unwrap_or(0);
                    let best_end = column(best).max(median_end);
                    for c in 0..bar_w {
                        let cell = &mut buf[(bar_x + c, y)];
                        if c < median_end {
                            cell.set_char(MEDIAN_FILL).set_fg(dim);
                        } else if c < best_end {
                            cell.set_char(TUNED_FILL).set_fg(bright);
                        }
                    }
                    let mut text = format!(" {:>6}", percent(best));
                    if let (true, Some(b)) = (show_gap, &baseline) {
                        text.push_str(&format!(
                            "{:>8}",
                            format!("{:+.1}pt", (best - b.top1) * 100.0)
                        ));
                    }
                    buf.set_string(
                        bar_x + bar_w,
                        y,
                        text,
                        Style::new().add_modifier(Modifier::BOLD),
                    );
                }
            }
            if let (Some(b), Some(_)) = (&baseline, bar.best) {
                let c = column(b.top1).min(bar_w.saturating_sub(1));
                buf[(bar_x + c, y)]
                    .set_char(BASELINE_MARK)
                    .set_fg(self.palette.baseline);
            }
            y += if i + 1 == bars.len() { 1 } else { step };
        }
        if bars.iter().all(|b| b.best.is_none()) {
            return;
        }

        // The scale under the bars, then the key.
        if y < bottom && bar_w >= 10 {
            let lo_text = format!("{:.0}%", lo * 100.0);
            let hi_text = format!("{:.0}%", hi * 100.0);
            buf.set_string(bar_x, y, &lo_text, muted);
            buf.set_string(bar_x + bar_w - hi_text.len() as u16, y, &hi_text, muted);
            y += 1;
        }
        if y < bottom {
            let key = |median: &'static str, best: &'static str, gap: &'static str| {
                Line::from(vec![
                    Span::styled(format!("{MEDIAN_FILL}{median}{TUNED_FILL}{best}"), muted),
                    Span::styled(if show_gap { gap } else { "" }, muted),
                ])
            };
            let key = super::fit(
                vec![
                    key(" median ", " to best", "  pt: vs baseline"),
                    key(" median ", " best", "  pt: vs baseline"),
                    key(" median ", " best", "  pt vs base"),
                ],
                inner.width,
            );
            buf.set_line(inner.x, y, &key, inner.width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trial, trials};
    use jizhi_store::TrialStatus::Finished;

    fn render(view: &StudyView, w: u16, h: u16) -> Buffer {
        let palette = Palette::ansi16();
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        BatchGap {
            view,
            palette: &palette,
            focused: false,
        }
        .render(buf.area, &mut buf);
        buf
    }

    #[test]
    fn bars_show_median_best_and_the_gap_to_the_baseline() {
        let mut i = info();
        i.batches.truncate(2);
        let view = StudyView::stored(
            i,
            vec![
                trial(1, "coarse", 0, Finished, &[0.80]),
                trial(2, "coarse", 0, Finished, &[0.86]),
                trial(3, "coarse", 0, Finished, &[0.84]),
                trial(4, "coarse", 1, Finished, &[0.75]),
            ],
        );
        let buf = render(&view, 40, 8);
        let mut expected = Buffer::with_lines([
            "┌ accuracy vs batch size ──────────────┐",
            "│┃ baseline at 256→64: 90.0%           │",
            "│32K █████████████▒▒   ┃  86.0%  -4.0pt│",
            "│48K █████             ┃  75.0% -15.0pt│",
            "│    70%             90%               │",
            "│█ median ▒ to best  pt: vs baseline   │",
            "│                                      │",
            "└──────────────────────────────────────┘",
        ]);
        // Compare symbols only; colours are checked below.
        expected.set_style(expected.area, buf[(0, 0)].style());
        let symbols = |b: &Buffer| -> Vec<String> {
            (0..b.area.height)
                .map(|y| {
                    (0..b.area.width)
                        .map(|x| b[(x, y)].symbol().to_string())
                        .collect()
                })
                .collect()
        };
        assert_eq!(symbols(&buf), symbols(&expected));
        let p = Palette::ansi16();
        assert_eq!(
            buf[(5, 2)].fg,
            p.batch_dim(0),
            "median part in the dim colour"
        );
        assert_eq!(
            buf[(18, 2)].fg,
            p.batch(0),
            "tuned part in the bright colour"
        );
        assert_eq!(buf[(23, 2)].fg, p.baseline);
    }

    #[test]
    fn without_a_baseline_it_says_how_to_set_one() {
        let mut i = info();
        i.baseline = None;
        let view = StudyView::live(i, trials());
        let buf = render(&view, 40, 10);
        let row = |y: u16| {
            (0..40)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        };
        assert!(
            row(1).contains("no baseline (set study.baseline_top1)"),
            "{}",
            row(1)
        );
        assert!((0..10).all(|y| !row(y).contains(BASELINE_MARK)));
        assert!(
            (0..10).all(|y| !row(y).contains("pt")),
            "no gap column without a baseline"
        );
    }

    #[test]
    fn an_empty_study_has_no_scale_and_tiny_areas_do_not_panic() {
        let view = StudyView::live(info(), Vec::new());
        let buf = render(&view, 40, 10);
        let all: String = (0..10)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .map(|(x, y)| buf[(x, y)].symbol().to_string())
            .collect();
        assert_eq!(all.matches("no result yet").count(), 3, "{all}");
        assert!(
            !all.contains('%') || all.contains("90.0%"),
            "only the baseline has a number: {all}"
        );
        let full = StudyView::live(info(), trials());
        for (w, h) in [(0, 0), (1, 1), (10, 3), (17, 3), (30, 4)] {
            render(&full, w, h);
        }
    }

    #[test]
    fn range_spans_whole_tens_with_room_below() {
        assert_eq!(range([0.80, 0.86, 0.91].into_iter()), (0.7, 1.0));
        assert_eq!(range(std::iter::empty()), (0.0, 1.0));
        let (lo, hi) = range([0.5].into_iter());
        assert!(lo < 0.5 && hi >= 0.5);
        assert_eq!(
            range([0.75, 0.9].into_iter()),
            (0.7, 0.9),
            "a value on a ten is the end"
        );
    }
}
