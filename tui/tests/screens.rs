//! Whole screens of the dashboard drawn into a `TestBackend` and compared with committed
//! snapshots. The trials are a recorded run of `search-spaces/alexnet64k.toml` (three batch
//! sizes, coarse and refine stages), exported from its store with `jizhi-tune export`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jizhi_store::{TrialRecord, TrialStatus};
use jizhi_tui::{
    App, BackendInfo, Baseline, BatchSize, DashEvent, DataInfo, Palette, StageInfo, StudyInfo,
    StudyView,
};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// The recorded run: 12 coarse and 6 refine trials at 32K, 48K and 64K.
fn recorded() -> Vec<TrialRecord> {
    let text = include_str!("fixtures/alexnet64k.json");
    serde_json::from_str(text).expect("the fixture is a `jizhi-tune export --format json`")
}

/// What the tuner tells the dashboard about that study.
fn info() -> StudyInfo {
    StudyInfo {
        name: "alexnet64k".into(),
        objective: "max-val-top1".into(),
        target_top1: Some(0.587),
        baseline: Some(Baseline {
            top1: BASELINE_TOP1,
            batch: Some(BatchSize {
                nominal: 256,
                proxy: 64,
            }),
        }),
        backend: BackendInfo {
            device: "CPU".into(),
            nominal_ranks: 1024,
            ranks_per_trial: 1,
            concurrency: Some((2, 1)),
        },
        data: DataInfo {
            proxy: true,
            name: "Fashion-MNIST, 60000 images".into(),
            stands_for: "ImageNet".into(),
        },
        batches: [(32768, 1536), (49152, 2304), (65536, 3072)]
            .into_iter()
            .map(|(nominal, proxy)| BatchSize { nominal, proxy })
            .collect(),
        stages: vec![
            StageInfo {
                name: "coarse".into(),
                trials: 12,
                epochs: 1,
                data_fraction: 0.5,
            },
            StageInfo {
                name: "refine".into(),
                trials: 6,
                epochs: 2,
                data_fraction: 1.0,
            },
        ],
    }
}

/// `study.baseline_top1` of the shipped alexnet64k.toml.
const BASELINE_TOP1: f64 = 0.884;

/// The error a trial records when its process fails (the text of a real failing trial).
const FAILED_TAIL: &str =
    "exited with exit status: 1: error: Fashion-MNIST file /nonexistent is missing; \
install it with `apt-get install dataset-fashion-mnist`";

/// The recorded run as it stood part-way into its refine stage: trial 7 failed, trial 14 has
/// done one of its two epochs, trials 15 to 18 wait.
fn mid_run() -> App {
    let mut trials = recorded();
    for t in &mut trials {
        match t.id {
            7 => {
                t.status = TrialStatus::Failed;
                t.error = Some(FAILED_TAIL.into());
                t.final_val_top1 = None;
                t.wall_secs = None;
                t.epochs.clear();
            }
            14 => {
                t.status = TrialStatus::Running;
                t.final_val_top1 = None;
                t.wall_secs = None;
                t.epochs.truncate(1);
            }
            15.. => {
                t.status = TrialStatus::Planned;
                t.attempts = 0;
                t.final_val_top1 = None;
                t.wall_secs = None;
                t.epochs.clear();
            }
            _ => {}
        }
    }
    let mut app = App::new(StudyView::live(info(), trials), Palette::ansi16());
    app.set_elapsed(9.0 * 60.0 + 12.0);
    app.apply(DashEvent::Stage {
        name: "refine".into(),
        trials: 6,
        to_run: 6,
    });
    app.apply(DashEvent::Progress {
        done: 13,
        planned: 18,
        eta_secs: Some(6.0 * 60.0 + 40.0),
    });
    app
}

fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal
        .draw(|frame| jizhi_tui::ui::draw(frame, app))
        .expect("draw");
    terminal
}

fn press(app: &mut App, code: KeyCode) {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
}

#[test]
fn main_view_120x40() {
    insta::assert_snapshot!("main_120x40", draw(&mut mid_run(), 120, 40).backend());
}

#[test]
fn main_view_80x24() {
    insta::assert_snapshot!("main_80x24", draw(&mut mid_run(), 80, 24).backend());
}

#[test]
fn empty_study_80x24() {
    let mut app = App::new(StudyView::live(info(), Vec::new()), Palette::ansi16());
    insta::assert_snapshot!("empty_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn failed_trial_detail_120x40() {
    let mut app = mid_run();
    for _ in 0..6 {
        press(&mut app, KeyCode::Down);
    }
    press(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("failed_detail_120x40", draw(&mut app, 120, 40).backend());
}

#[test]
fn finished_study_sorted_by_accuracy_120x40() {
    let mut app = App::new(StudyView::live(info(), recorded()), Palette::ansi16());
    app.set_elapsed(15.0 * 60.0);
    app.apply(DashEvent::Stage {
        name: "refine".into(),
        trials: 6,
        to_run: 6,
    });
    app.apply(DashEvent::Progress {
        done: 18,
        planned: 18,
        eta_secs: Some(0.0),
    });
    app.apply(DashEvent::Done);
    for _ in 0..4 {
        press(&mut app, KeyCode::Char('s'));
    }
    insta::assert_snapshot!("done_by_top1_120x40", draw(&mut app, 120, 40).backend());
}

#[test]
fn help_and_quit_question_80x24() {
    let mut app = mid_run();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("help_80x24", draw(&mut app, 80, 24).backend());
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('q'));
    insta::assert_snapshot!("quit_80x24", draw(&mut app, 80, 24).backend());
}

#[test]
fn stored_study_filtered_80x24() {
    // A stored study has no concurrency to show: it is not running.
    let mut stored = info();
    stored.backend.concurrency = None;
    let mut app = App::new(StudyView::stored(stored, recorded()), Palette::ansi16());
    press(&mut app, KeyCode::Char('/'));
    for c in "64k".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Right);
    insta::assert_snapshot!("stored_64k_80x24", draw(&mut app, 80, 24).backend());
}
