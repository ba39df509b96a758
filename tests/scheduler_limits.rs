//! The scheduler's limits on the real binary: a trial that stalls or runs too long is stopped and
//! recorded with the reason, a crashing trial is retried up to the limit with its stderr tail
//! kept, a diverging configuration stops early as "diverged: ...". Misbehaving trials are real
//! processes: `--launcher` runs each trial command through a small fixture script.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Writes an executable shell script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
    path
}

/// One epoch line as a trial prints it.
const EPOCH_LINE: &str = r#"{"event":"epoch","epoch":1,"step":3,"train_loss":2.0,"val_top1":0.5,"images_per_sec":100.0,"loss_scale":65536.0,"skipped_steps":0,"underflow_fraction":0.0,"data_wait_secs":0.0,"wall_secs":0.1}"#;

/// Runs the tiny search headless through `launcher` with `flags`; returns stdout and the export.
fn search(
    space: &Path,
    store: &Path,
    launcher: Option<&Path>,
    flags: &[&str],
) -> (String, Vec<serde_json::Value>) {
    let mut c = bin();
    c.arg(space)
        .args(["--headless", "--max-concurrent", "1", "--store"])
        .arg(store)
        .args(flags);
    if let Some(l) = launcher {
        c.arg("--launcher").arg(l);
    }
    let out = run(&mut c);
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "the search itself must complete\n{stdout}\n{stderr}"
    );
    (stdout, export(store))
}

#[test]
fn a_stalling_trial_is_stopped_after_the_stall_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // One progress line, then silence: the trial hangs (its `sleep` is a child of the script,
    // so only a stop of the whole process group ends its output).
    let stall = script(
        tmp.path(),
        "stall.sh",
        &format!("echo '{EPOCH_LINE}'\nsleep 60"),
    );
    let t0 = Instant::now();
    let (stdout, trials) = search(
        &fixture("tiny.toml"),
        &tmp.path().join("store"),
        Some(&stall),
        &["--stall-timeout", "1"],
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}:\n{stdout}",
        t0.elapsed()
    );
    // (The refine stage proposes nothing around a coarse stage without a result.)
    assert!(!trials.is_empty(), "{stdout}");
    for t in &trials {
        assert_eq!(t["status"], "failed", "{t}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("stalled: no progress line for 1s"),
            "{error}"
        );
        assert_eq!(
            t["epochs"].as_array().map(Vec::len),
            Some(1),
            "the epoch it reported is kept: {t}"
        );
        assert_eq!(t["attempts"], 1, "a stall is not retried: {t}");
    }
    assert!(stdout.contains("trial 1 failed: stalled"), "{stdout}");
}

#[test]
fn a_trial_past_its_timeout_is_stopped_and_recorded_as_timed_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Progress all the time, but no end: only the trial timeout stops it.
    let busy = script(
        tmp.path(),
        "busy.sh",
        &format!("while true; do echo '{EPOCH_LINE}'; sleep 0.2; done"),
    );
    let t0 = Instant::now();
    let (_, trials) = search(
        &fixture("tiny.toml"),
        &tmp.path().join("store"),
        Some(&busy),
        &["--trial-timeout", "1.5", "--stall-timeout", "1"],
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    for t in &trials {
        assert_eq!(t["status"], "failed", "{t}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("timed out: still running after the trial timeout of 1.5s"),
            "{error}"
        );
    }
}

#[test]
fn a_crashing_trial_is_retried_up_to_the_limit_and_its_stderr_tail_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let crash = script(
        tmp.path(),
        "crash.sh",
        "for i in $(seq 1 50); do echo \"crash line $i\" >&2; done\nexit 3",
    );
    let (stdout, trials) = search(
        &fixture("tiny.toml"),
        &tmp.path().join("store"),
        Some(&crash),
        &["--max-retries", "2"],
    );
    for t in &trials {
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["attempts"], 3, "one attempt and two retries: {t}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("crashed on all 3 attempts, the last: exited with exit status: 3"),
            "{error}"
        );
        let kept: Vec<&str> = error
            .lines()
            .filter(|l| l.starts_with("crash line "))
            .collect();
        assert_eq!(kept.len(), 40, "the last 40 stderr lines are kept: {error}");
        assert_eq!((kept[0], kept[39]), ("crash line 11", "crash line 50"));
    }
    assert!(
        stdout
            .contains("trial 1 started (attempt 2; attempt 1 crashed: exited with exit status: 3"),
        "{stdout}"
    );
}

#[test]
fn a_trial_that_crashes_once_finishes_on_its_retry() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = tmp.path().join("crashed-once");
    // The first trial command crashes; every later one runs the real trial.
    let flaky = script(
        tmp.path(),
        "flaky.sh",
        &format!(
            "if [ ! -e '{m}' ]; then touch '{m}'; echo 'worker lost' >&2; exit 1; fi\nexec \"$@\"",
            m = marker.display()
        ),
    );
    let (stdout, trials) = search(
        &fixture("tiny.toml"),
        &tmp.path().join("store"),
        Some(&flaky),
        &[],
    );
    assert_eq!(trials[0]["status"], "finished", "{:#}", trials[0]);
    assert_eq!(trials[0]["attempts"], 2, "{:#}", trials[0]);
    assert_eq!(
        trials[0]["error"],
        serde_json::Value::Null,
        "a finished trial shows no error"
    );
    assert_eq!(trials[1]["attempts"], 1, "{:#}", trials[1]);
    assert!(
        stdout
            .contains("trial 1 started (attempt 2; attempt 1 crashed: exited with exit status: 1"),
        "{stdout}"
    );
}

#[test]
fn a_diverging_configuration_stops_early_and_says_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let (_, trials) = search(&fixture("diverge.toml"), &store, None, &[]);
    for t in &trials {
        assert_eq!(t["status"], "diverged", "{t}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("diverged: non-finite training loss"),
            "{error}"
        );
        assert!(
            t["epochs"].as_array().is_some_and(Vec::is_empty),
            "stopped within its first epoch: {t}"
        );
    }
    let csv = run(bin().args(["export", "--format", "csv-trials"]).arg(&store));
    let (csv, _) = texts(&csv);
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(",diverged,") && l.contains("diverged: non-finite")),
        "{csv}"
    );
}

#[test]
fn a_collapsing_dynamic_loss_scale_stops_the_trial_as_diverged() {
    // The floor above the initial dynamic scale (2^16): the first step is below it.
    let out = run(bin().args([
        "trial",
        "--batch",
        "384",
        "--epochs",
        "1",
        "--data-fraction",
        "0.015",
        "--precision",
        "fp16",
        "--loss-scale",
        "dynamic",
        "--min-loss-scale",
        "1e6",
    ]));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("final line");
    let reason = last["diverged"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("loss scale collapsed to") && reason.contains("below 1e6"),
        "{stdout}"
    );
}
