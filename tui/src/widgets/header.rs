//! The header: study, backend, data and its scaling, stage progress, time and trial counts.

use super::fit;
use crate::fmt::{batch, duration, percent};
use crate::theme::Palette;
use crate::view::{RunState, StudyView};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

/// Rows the header takes.
pub const HEIGHT: u16 = 4;

/// The header of the dashboard.
pub struct Header<'a> {
    /// The study.
    pub view: &'a StudyView,
    /// Colours.
    pub palette: &'a Palette,
    /// Whether new trials are paused.
    pub paused: bool,
}

impl Header<'_> {
    fn title(&self, width: u16) -> Line<'static> {
        let v = self.view;
        let bar = Style::new().add_modifier(Modifier::REVERSED);
        let (state, short_state) = match (v.state, self.paused) {
            (RunState::Running, true) => (
                "PAUSED: no new trials start (p resumes)",
                "PAUSED (p resumes)",
            ),
            (RunState::Running, false) => ("running", "running"),
            (RunState::Stopping, _) => (
                "STOPPING: waiting for the running trials to stop",
                "STOPPING",
            ),
            (RunState::Done, _) => (
                "DONE: q closes the dashboard and prints the summary",
                "DONE (q closes)",
            ),
            (RunState::Stopped, _) => ("STOPPED", "STOPPED"),
            (RunState::Stored, _) => ("stored study, not running", "stored, not running"),
        };
        let state_style = match (v.state, self.paused) {
            (RunState::Running, true) | (RunState::Stopping, _) => {
                bar.fg(self.palette.target).add_modifier(Modifier::BOLD)
            }
            (RunState::Done, _) => bar.add_modifier(Modifier::BOLD),
            _ => bar,
        };
        let target = v
            .info
            .target_top1
            .map(|t| format!(" · target {}", percent(t)))
            .unwrap_or_default();
        let right = " ? help  q quit ";
        let variants = [
            (
                format!(
                    " jizhi-tune · study {} · {}{} · ",
                    v.info.name, v.info.objective, target
                ),
                state,
            ),
            (format!(" jizhi-tune · {}{} · ", v.info.name, target), state),
            (
                format!(" jizhi-tune · {}{} · ", v.info.name, target),
                short_state,
            ),
            (format!(" {} · ", v.info.name), short_state),
        ];
        let fits = |head: &str, state: &str| {
            head.chars().count() + state.chars().count() + 1 + right.len() <= width as usize
        };
        let (head, state) = variants
            .iter()
            .find(|(h, s)| fits(h, s))
            .unwrap_or(&variants[3])
            .clone();
        let used = head.chars().count() + state.chars().count() + 1 + right.len();
        let pad = (width as usize).saturating_sub(used);
        Line::from(vec![
            Span::styled(head, bar.add_modifier(Modifier::BOLD)),
            Span::styled(format!("{state} "), state_style),
            Span::styled(" ".repeat(pad), bar),
            Span::styled(right, bar),
        ])
    }

    fn label(&self, text: &'static str) -> Span<'static> {
        Span::styled(text, self.palette.muted_style())
    }

    fn data(&self, width: u16) -> Line<'static> {
        let info = &self.view.info;
        let scaling: Vec<String> = info
            .batches
            .iter()
            .map(|b| {
                if info.data.proxy {
                    format!("{}→{}", batch(b.nominal), b.proxy)
                } else {
                    batch(b.nominal)
                }
            })
            .collect();
        let scaling = scaling.join(" ");
        let texts = if info.data.proxy {
            vec![
                format!(
                    "proxy: {} stands in for {}, batches scaled to keep its steps per epoch: {scaling}",
                    info.data.name, info.data.stands_for
                ),
                format!("proxy: {} for {} · batch {scaling}", info.data.name, info.data.stands_for),
                format!(
                    "proxy {} for {} · batch {scaling}",
                    info.data.name.split(',').next().unwrap_or_default(),
                    info.data.stands_for
                ),
                format!("proxy {} · batch {scaling}", info.data.name.split(',').next().unwrap_or_default()),
            ]
        } else {
            vec![format!("{} · batches {scaling}", info.data.name)]
        };
        fit(
            texts
                .into_iter()
                .map(|t| Line::from(vec![self.label("data     "), Span::raw(t)]))
                .collect(),
            width,
        )
    }

    fn stages(&self) -> Vec<Span<'static>> {
        let v = self.view;
        let mut spans = Vec::new();
        for (i, stage) in v.info.stages.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" ▸ ", self.palette.muted_style()));
            }
            let (ended, total) = v.stage_progress(stage);
            let current = v.stage.as_deref() == Some(stage.name.as_str()) && v.is_live();
            let style = if current {
                Style::new().add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            spans.push(Span::styled(
                format!("{} {ended}/{total}", stage.name),
                style,
            ));
        }
        spans
    }

    fn time(&self, short: bool) -> String {
        let v = self.view;
        if v.state == RunState::Stored {
            let (done, planned) = v.done_and_planned();
            return format!("{done}/{planned} trials ended");
        }
        let left = match (v.state, self.paused, v.eta_secs()) {
            (RunState::Done | RunState::Stopped, _, _) => String::new(),
            (_, true, _) => ", paused".into(),
            (_, false, Some(eta)) => format!(", ~{} left", duration(eta)),
            (_, false, None) if short => ", time left: …".into(),
            (_, false, None) => ", estimating time left".into(),
        };
        let elapsed = if short { "" } else { " elapsed" };
        format!("{}{elapsed}{left}", duration(v.elapsed_secs))
    }

    /// The last two lines: progress, counts and backend, on as few lines as the width allows.
    fn progress_lines(&self, width: u16) -> [Line<'static>; 2] {
        let sep = || Span::styled(" │ ", self.palette.muted_style());
        let c = self.view.counts();
        let [backend_long, backend_short] = self.view.info.backend.describe();
        let backend = Line::from(vec![
            self.label("backend  "),
            Span::raw(backend_long.clone()),
        ]);
        let mut wide = vec![self.label("progress ")];
        wide.extend(self.stages());
        wide.extend([
            sep(),
            Span::raw(self.time(false)),
            sep(),
            Span::raw(counts_text(&c, false)),
        ]);
        let backend = fit(
            vec![
                backend,
                Line::from(vec![
                    self.label("backend  "),
                    Span::raw(backend_short.clone()),
                ]),
            ],
            width,
        );
        let wide = Line::from(wide);
        if wide.width() <= width as usize {
            return [backend, wide];
        }
        let mut first = vec![self.label("progress ")];
        first.extend(self.stages());
        first.extend([sep(), Span::raw(self.time(true))]);
        let second = |counts: String, backend: &str| {
            Line::from(vec![
                self.label("trials   "),
                Span::raw(counts),
                sep(),
                Span::raw(backend.to_string()),
            ])
        };
        let second = fit(
            vec![
                second(counts_text(&c, false), &backend_long),
                second(counts_text(&c, true), &backend_long),
                second(counts_text(&c, true), &backend_short),
            ],
            width,
        );
        [Line::from(first), second]
    }
}

/// "2 running · 7 queued · 4 finished · 1 failed", or shorter.
fn counts_text(c: &crate::view::Counts, short: bool) -> String {
    let mut parts = vec![
        format!("{} {}", c.running, if short { "run" } else { "running" }),
        format!("{} queued", c.queued),
        format!("{} {}", c.finished, if short { "done" } else { "finished" }),
        format!("{} failed", c.failed),
    ];
    if c.diverged > 0 {
        parts.push(format!("{} diverged", c.diverged));
    }
    if c.stopped > 0 {
        parts.push(format!("{} stopped", c.stopped));
    }
    parts.join(" · ")
}

impl Widget for Header<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let [third, fourth] = self.progress_lines(area.width);
        let lines = [self.title(area.width), self.data(area.width), third, fourth];
        for (i, line) in lines.iter().enumerate().take(area.height as usize) {
            buf.set_line(area.x, area.y + i as u16, line, area.width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{info, trials};

    fn lines(view: &StudyView, paused: bool, width: u16) -> Vec<String> {
        let palette = Palette::ansi16();
        let mut buf = Buffer::empty(Rect::new(0, 0, width, HEIGHT));
        Header {
            view,
            palette: &palette,
            paused,
        }
        .render(buf.area, &mut buf);
        (0..HEIGHT)
            .map(|y| {
                (0..width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn wide_header_has_backend_data_stage_time_and_counts() {
        let mut view = StudyView::live(info(), trials());
        view.apply(crate::DashEvent::Stage {
            name: "coarse".into(),
            trials: 6,
            to_run: 3,
        });
        view.elapsed_secs = 130.0;
        view.apply(crate::DashEvent::Progress {
            done: 5,
            planned: 9,
            eta_secs: Some(300.0),
        });
        let l = lines(&view, false, 140);
        assert!(
            l[0].starts_with(
                " jizhi-tune · study alexnet64k · max-val-top1 · target 80.0% · running"
            ),
            "{}",
            l[0]
        );
        assert!(l[0].trim_end().ends_with("? help  q quit"), "{}", l[0]);
        assert!(
            l[1].contains("proxy: Fashion-MNIST, 60000 images")
                && l[1].contains("32K→1536 48K→2304 64K→3072"),
            "{}",
            l[1]
        );
        assert!(
            l[2].contains(
                "CPU trainer · 1 rank per trial (1024 nominal) · 2 trials at once × 1 thread"
            ),
            "{}",
            l[2]
        );
        assert!(l[3].contains("coarse 5/6 ▸ refine 0/3"), "{}", l[3]);
        assert!(l[3].contains("2m10s elapsed, ~5m00s left"), "{}", l[3]);
        assert!(
            l[3].contains("1 running · 1 queued · 4 finished · 1 failed"),
            "{}",
            l[3]
        );
        // The estimate counts down between the tuner's updates.
        view.elapsed_secs = 190.0;
        assert!(lines(&view, false, 140)[3].contains("~4m00s left"));
    }

    #[test]
    fn narrow_header_keeps_everything_readable_at_80_columns() {
        let mut view = StudyView::live(info(), trials());
        view.elapsed_secs = 12.0;
        let l = lines(&view, true, 80);
        assert!(
            l[0].contains("PAUSED") && l[0].trim_end().ends_with("q quit"),
            "{}",
            l[0]
        );
        assert!(l[1].contains("32K→1536 48K→2304 64K→3072"), "{}", l[1]);
        assert!(
            l[2].contains("coarse 5/6 ▸ refine 0/3") && l[2].contains("12s, paused"),
            "{}",
            l[2]
        );
        assert!(
            l[3].contains("1 run · 1 queued · 4 done · 1 failed"),
            "{}",
            l[3]
        );
        assert!(l[3].contains("CPU"), "{}", l[3]);
    }

    #[test]
    fn a_stored_study_says_it_is_not_running() {
        let view = StudyView::stored(info(), trials());
        let l = lines(&view, false, 120);
        assert!(l[0].contains("stored study, not running"), "{}", l[0]);
        assert!(l[3].contains("5/9 trials ended"), "{}", l[3]);
    }
}
