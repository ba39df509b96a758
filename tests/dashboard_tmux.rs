//! The real binary in a real pseudo-terminal (tmux) on a real small search: curves for every
//! batch size appear, and the keys work: pause holds new trials back, `k` stops the selected
//! trial, Enter opens its detail, `s` sorts, `/` filters, `?` helps, `q` then `h` leaves the
//! search running headless, `q` then `s` stops it cleanly for a later resume.
//!
//! Needs `tmux` (CI installs it in `.ci/run`).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of our own (private socket) running one command in one pane.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts `command` in a `width` × `height` pane; the pane stays after it exits.
    fn start(dir: &Path, width: u16, height: u16, command: &str) -> Tmux {
        let tmux = Tmux { socket: dir.join("tmux.sock") };
        let shell = format!("{command}; echo EXIT=$?; sleep 600");
        let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", &width.to_string(), "-y", &height.to_string(), &shell]);
        assert!(
            out.status.success(),
            "could not start tmux (install it: apt-get install tmux): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]).args(args);
        c.env_remove("TMUX").env_remove("COLORTERM").env_remove("JIZHI_TUI_COLORS");
        match c.output() {
            Ok(o) => o,
            Err(e) => panic!("tmux is needed for this test (apt-get install tmux): {e}"),
        }
    }

    /// Sends keys (tmux key names: `Down`, `Enter`, `Escape`, or text).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
        std::thread::sleep(Duration::from_millis(300));
    }

    /// The pane's text (with colour escapes when `colours`).
    fn screen(&self, colours: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "t"];
        if colours {
            args.push("-e");
        }
        String::from_utf8_lossy(&self.cmd(&args).stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok`, failing with the screen after `secs`.
    fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(false);
            if ok(&screen) {
                return screen;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("waited {secs}s for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The table row of trial `id` (the line that starts with it inside the table's border).
fn row(screen: &str, id: u64) -> String {
    screen
        .lines()
        .find(|l| {
            let inner = l.trim_start_matches('│').trim_start_matches('▶').trim_start();
            inner.split_whitespace().next() == Some(&id.to_string()) && (inner.contains("coarse") || inner.contains("refine"))
        })
        .unwrap_or_default()
        .to_string()
}

/// Cells of a screen captured with colours: (row, column, character, 256-colour foreground).
fn cells(screen: &str) -> Vec<(usize, usize, char, Option<u8>)> {
    let mut out = Vec::new();
    for (y, line) in screen.lines().enumerate() {
        let mut fg: Option<u8> = None;
        let mut x = 0;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' && chars.peek() == Some(&'[') {
                chars.next();
                let mut seq = String::new();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        if c == 'm' {
                            apply_sgr(&seq, &mut fg);
                        }
                        break;
                    }
                    seq.push(c);
                }
                continue;
            }
            out.push((y, x, c, fg));
            x += 1;
        }
    }
    out
}

/// Follows the foreground colour through one SGR sequence.
fn apply_sgr(seq: &str, fg: &mut Option<u8>) {
    let codes: Vec<u16> = seq.split(';').map(|p| p.parse().unwrap_or(0)).collect();
    let mut i = 0;
    while i < codes.len() {
        match codes[i] {
            0 | 39 => *fg = None,
            30..=37 => *fg = Some((codes[i] - 30) as u8),
            90..=97 => *fg = Some((codes[i] - 90 + 8) as u8),
            38 if codes.get(i + 1) == Some(&5) => {
                *fg = codes.get(i + 2).map(|&n| n as u8);
                i += 2;
            }
            38 if codes.get(i + 1) == Some(&2) => {
                *fg = Some(255);
                i += 4;
            }
            _ => {}
        }
        i += 1;
    }
}

/// Best-trial markers drawn on the curves chart (not its legend, not the table), by colour.
fn curve_markers(screen: &str) -> Vec<u8> {
    let cells = cells(screen);
    let text: Vec<String> = {
        let mut rows: Vec<String> = Vec::new();
        for &(y, _, c, _) in &cells {
            while rows.len() <= y {
                rows.push(String::new());
            }
            rows[y].push(c);
        }
        rows
    };
    let top = text.iter().position(|l| l.contains("accuracy curves")).unwrap_or(0);
    let bottom = text.iter().position(|l| l.contains(" trials · ")).unwrap_or(text.len());
    let right = text[top].find("┐┌").map(|b| text[top][..b].chars().count()).unwrap_or(usize::MAX);
    cells
        .iter()
        .filter(|&&(y, x, c, _)| y > top && y < bottom && x < right && c == '◆' && !text[y].contains(" best "))
        .filter_map(|&(_, _, _, fg)| fg)
        .collect()
}

/// The 16-colour palette's best-trial colours of the first and second batch size.
const FIRST_BATCH: u8 = 14; // light cyan
const SECOND_BATCH: u8 = 11; // light yellow

#[test]
fn dashboard_keys_work_on_a_real_search() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let exe = env!("CARGO_BIN_EXE_jizhi-tune");
    let command = format!(
        "{exe} {} --store {} --max-concurrent 1",
        space("smoke.toml").display(),
        store.display()
    );
    let t = Tmux::start(tmp.path(), 120, 40, &command);
    t.wait("the dashboard", 30, |s| s.contains("accuracy curves") && row(s, 1).contains("running"));

    // The store belongs to the running tuner: `dashboard` says who has it.
    let locked = run(bin().arg("dashboard").arg(&store));
    let (_, stderr) = texts(&locked);
    assert_eq!(locked.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is running in process"), "{stderr}");

    // p: trial 1 goes on, trial 2 does not start.
    t.keys(&["p"]);
    t.wait("the pause", 10, |s| s.contains("PAUSED"));
    t.wait("trial 1 to finish", 90, |s| row(s, 1).contains("finished"));
    std::thread::sleep(Duration::from_secs(2));
    let s = t.screen(false);
    assert!(row(&s, 2).contains("queued"), "paused, yet trial 2 started:\n{s}");
    assert!(s.contains("0 running"), "{s}");
    t.keys(&["p"]);
    t.wait("trial 2 to start after resuming", 10, |s| row(s, 2).contains("running"));
    let s = t.wait("trial 2 to finish", 90, |s| row(s, 2).contains("finished"));

    // Curves for every batch size: the legend names each one's best, the chart draws it in its colour.
    assert!(s.contains("◆ 8K→384 best") && s.contains("◆ 16K→768 best"), "{s}");
    let markers = curve_markers(&t.screen(true));
    assert!(
        markers.contains(&FIRST_BATCH) && markers.contains(&SECOND_BATCH),
        "best-trial markers by colour {markers:?} on:\n{s}"
    );

    // k: stop refine trial 3 while it runs; its detail says why. Paused first, so trial 4 waits
    // for the rest of the keys.
    t.wait("trial 3 to start", 30, |s| row(s, 3).contains("running"));
    t.keys(&["p"]);
    t.keys(&["Down", "Down", "k"]);
    t.wait("trial 3 to stop", 15, |s| row(s, 3).contains("stopped"));
    t.keys(&["Enter"]);
    t.wait("the detail of trial 3", 5, |s| s.contains("trial 3 · refine · 8K (runs 384) · stopped") && s.contains("stopped by user"));
    t.keys(&["Escape"]);

    // s sorts, / filters, ? helps.
    t.keys(&["s", "s", "s", "s"]);
    t.wait("the sort by accuracy", 5, |s| s.contains("sort top-1 ▼") && s.contains("top-1▼"));
    t.keys(&["/", "refine", "Enter"]);
    let s = t.wait("the filter", 5, |s| s.contains("filter `refine`"));
    assert!(row(&s, 1).is_empty() && row(&s, 2).is_empty() && !row(&s, 3).is_empty(), "{s}");
    t.keys(&["Escape", "?"]);
    t.wait("the help", 5, |s| s.contains(" keys ") && s.contains("pause / resume new trials"));
    t.keys(&["Escape"]);

    // q, then h: the dashboard closes and the paused search goes on headless to its end.
    assert!(row(&t.screen(false), 4).contains("queued"), "paused: trial 4 waits");
    t.keys(&["q"]);
    t.wait("the quit question", 5, |s| s.contains("Quit how?"));
    t.keys(&["h"]);
    t.wait("progress lines", 10, |s| s.contains("the search goes on headless"));
    let s = t.wait("the end of the search", 90, |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0") && s.contains("study smoke done"), "{s}");
    assert!(
        s.contains("trial 4 started") && s.contains("trial 4 finished"),
        "progress lines went on after the dashboard closed:\n{s}"
    );
    drop(t);

    let trials = export(&store);
    let status: Vec<&str> = trials.iter().filter_map(|t| t["status"].as_str()).collect();
    assert_eq!(status, ["finished", "finished", "failed", "finished"], "{trials:#?}");
    assert_eq!(trials[2]["error"], "stopped by user");
}

#[test]
fn quit_and_stop_leaves_a_store_that_resumes_at_80x24() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let exe = env!("CARGO_BIN_EXE_jizhi-tune");
    let command = format!("{exe} {} --store {} --max-concurrent 2", space("smoke.toml").display(), store.display());
    let t = Tmux::start(tmp.path(), 80, 24, &command);
    let s = t.wait("both coarse trials to run", 30, |s| row(s, 1).contains("running") && row(s, 2).contains("running"));
    // At 80×24 every panel is there.
    for part in ["jizhi-tune", "progress", "accuracy curves", "accuracy vs batch size", "trials · 2 shown", "? help"] {
        assert!(s.contains(part), "`{part}` missing at 80×24:\n{s}");
    }
    t.keys(&["q", "s"]);
    let s = t.wait("the search to stop", 30, |s| s.contains("EXIT="));
    assert!(s.contains("EXIT=0") && s.contains("search stopped"), "{s}");
    assert!(s.contains("--store"), "the resume command is shown:\n{s}");
    drop(t);
    let trials = export(&store);
    assert!(trials.iter().all(|t| t["status"] == "planned"), "stopped trials wait to rerun: {trials:#?}");
    assert!(trials.iter().all(|t| t["epochs"].as_array().is_some_and(|e| e.is_empty())));

    // The stored study opens read-only; q closes it at once.
    let t = Tmux::start(tmp.path(), 80, 24, &format!("{exe} dashboard {}", store.display()));
    t.wait("the stored study", 15, |s| s.contains("not running") && row(s, 1).contains("queued"));
    t.keys(&["p"]);
    t.wait("the read-only notice", 5, |s| s.contains("read-only view"));
    t.keys(&["q"]);
    t.wait("the dashboard to close", 10, |s| s.contains("EXIT=0"));
    drop(t);

    // Resuming runs the stopped trials to the end.
    let out = run(bin().arg(space("smoke.toml")).args(["--headless", "--store"]).arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("resuming") && stdout.contains("trial 1 started"), "{stdout}");
    assert!(export(&store).iter().all(|t| t["status"] == "finished"));
}
