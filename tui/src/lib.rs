//! The jizhi-tune terminal dashboard: accuracy curves per batch size, accuracy against batch
//! size with the small-batch baseline, the trials table and one trial's detail, live while a
//! search runs or from a stored study.
//!
//! The crate knows the store's records and its own event types only: the tuner turns its
//! scheduler events into [`DashEvent`]s and carries out the [`Command`]s the user gives.
//! State ([`App`], [`StudyView`]), update (`App::apply`, `App::handle_key`) and drawing
//! ([`ui::draw`] and the [`widgets`]) are apart, and the loop ([`terminal::run`]) is generic over
//! the ratatui backend, so every screen can be drawn into a `TestBackend`:
//!
//! ```
//! use jizhi_tui::{App, DashEvent, Palette, StudyView};
//! # use jizhi_tui::{BatchSize, DataInfo, StudyInfo};
//! # let info = StudyInfo {
//! #     name: "demo".into(), objective: "max-val-top1".into(), target_top1: Some(0.8), baseline: None,
//! #     backend: jizhi_tui::BackendInfo { device: "CPU".into(), nominal_ranks: 1024, ranks_per_trial: 1, concurrency: None },
//! #     data: DataInfo { proxy: true, name: "Fashion-MNIST".into(), stands_for: "ImageNet".into() },
//! #     batches: vec![BatchSize { nominal: 32768, proxy: 1536 }], stages: vec![],
//! # };
//! let mut app = App::new(StudyView::live(info, Vec::new()), Palette::ansi16());
//! app.apply(DashEvent::Note("stage coarse: 4 trials".into()));
//! let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
//! terminal.draw(|frame| jizhi_tui::ui::draw(frame, &mut app)).unwrap();
//! assert!(terminal.backend().to_string().contains("accuracy curves"));
//! ```
//!
//! Crate features: none.

#![warn(missing_docs)]

mod app;
mod event;
pub mod fmt;
pub mod terminal;
#[cfg(test)]
mod testing;
mod theme;
pub mod ui;
mod view;
pub mod widgets;

pub use app::{App, Focus, Overlay, SortKey};
pub use event::{Command, DashEvent, Exit};
pub use terminal::{run_live, run_stored};
pub use theme::{Palette, COLORS_ENV};
pub use view::{
    accuracy, display_status, BackendInfo, Baseline, BatchSize, Counts, DataInfo, DisplayStatus,
    RunState, StageInfo, StudyInfo, StudyView, STOPPED_BY_USER,
};
