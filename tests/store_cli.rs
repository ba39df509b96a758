//! The store from the command line: one tuner per store, drift refused with what changed, forks
//! that reuse identical trials, check and repair of damaged stores, import of exports.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

fn kill_space() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kill.toml")
}

/// Starts a search on `store` and returns it once its stdout has shown a line containing `until`.
fn start_until(space: &Path, store: &Path, until: &str) -> (Child, Vec<String>) {
    let mut child = bin()
        .arg(space)
        .args(["--headless", "--max-concurrent", "1", "--store"])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the search");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.contains(until);
                seen.push(line);
                if done {
                    break;
                }
            }
            _ => panic!(
                "the search ended before printing `{until}`:\n{}",
                seen.join("\n")
            ),
        }
    }
    // Keep draining stdout so the tuner never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, seen)
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Every file of a store but its lock, with its bytes: to prove a command changed nothing.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(contents(&path));
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            let bytes = std::fs::read(&path).expect("read");
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_tuner_on_the_same_store_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let (first, _) = start_until(&kill_space(), &store, "started");
    let pid = first.id();
    let out = run(bin()
        .arg(kill_space())
        .args(["--headless", "--store"])
        .arg(&store));
    stop(first);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("is in use by process {pid} ")),
        "names the first tuner's pid {pid}: {stderr}"
    );
    assert!(
        stderr.contains("kill.toml --headless --max-concurrent 1"),
        "names the first tuner's command: {stderr}"
    );
    assert!(
        !stdout.contains("started"),
        "the second tuner ran a trial:\n{stdout}"
    );
}

#[test]
fn a_changed_search_space_is_refused_with_the_differences_and_nothing_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let (first, _) = start_until(&kill_space(), &store, "started");
    stop(first);
    let before = contents(&store);
    let original = std::fs::read_to_string(kill_space()).expect("read");
    let changed = tmp.path().join("changed.toml");
    std::fs::write(
        &changed,
        original
            .replace("max = 4.0", "max = 8.0")
            .replace("points = 2", "points = 3"),
    )
    .expect("write");
    let out = run(bin()
        .arg(&changed)
        .args(["--headless", "--store"])
        .arg(&store));
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("params.peak_lr.max: 4.0 -> 8.0"),
        "{stderr}"
    );
    assert!(stderr.contains("stages.coarse.points: 2 -> 3"), "{stderr}");
    assert!(
        stderr.contains("--fork NEW_NAME") && stderr.contains("--fresh"),
        "{stderr}"
    );
    assert!(!stdout.contains("started"), "{stdout}");
    assert_eq!(
        contents(&store),
        before,
        "the refused run changed the store"
    );
    // Another seed is drift too.
    let out = run(bin()
        .arg(kill_space())
        .args(["--headless", "--seed", "12", "--store"])
        .arg(&store));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("11 -> 12"), "{stderr}");
    assert_eq!(contents(&store), before);
    // Comments and layout are not: that run resumes.
    let relaid = tmp.path().join("relaid.toml");
    std::fs::write(
        &relaid,
        format!(
            "# reformatted copy\n\n{}",
            original.replace(" = ", "   =   ")
        ),
    )
    .expect("write");
    let (again, seen) = start_until(&relaid, &store, "started");
    stop(again);
    assert!(
        seen.iter().any(|l| l.contains("resuming the study")),
        "{seen:#?}"
    );
}

#[test]
fn a_fork_inherits_the_history_and_reuses_identical_trials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("kill");
    let out = run(bin()
        .arg(kill_space())
        .args(["--headless", "--store"])
        .arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let parent = export(&store);
    let before = contents(&store);
    // Only the refine stage changes: the coarse trials are the same trials.
    let changed = tmp.path().join("changed.toml");
    let text = std::fs::read_to_string(kill_space()).expect("read");
    let at = text.find("[stages.refine]").expect("refine table");
    let (head, refine) = text.split_at(at);
    std::fs::write(
        &changed,
        format!(
            "{head}{}",
            refine.replace("data_fraction = 0.015", "data_fraction = 0.02")
        ),
    )
    .expect("write");
    let out = run(bin()
        .arg(&changed)
        .args(["--headless", "--fork", "kill-more-data", "--store"])
        .arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("6 trials of"), "{stdout}");
    for id in 1..=4 {
        assert!(
            stdout.contains(&format!("trial {id} reused")),
            "coarse trial {id} not reused:\n{stdout}"
        );
        assert!(
            !stdout.contains(&format!("trial {id} started")),
            "coarse trial {id} ran again:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("trial 5 started") && stdout.contains("trial 6 started"),
        "{stdout}"
    );
    assert_eq!(contents(&store), before, "forking changed the old store");
    let fork = export(&tmp.path().join("kill-more-data"));
    assert_eq!(fork.len(), 6);
    // The refine trials run 2 epochs, so they checkpoint inside the fork's store.
    for t in &fork {
        assert_eq!(t["status"], "finished", "fork trial did not finish: {t}");
    }
    assert_eq!(
        fork[..4],
        parent[..4],
        "reused coarse trials are exact copies"
    );
    // Rerunning the same fork command resumes the fork and runs nothing.
    let out = run(bin()
        .arg(&changed)
        .args(["--headless", "--fork", "kill-more-data", "--store"])
        .arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("resuming the fork") && !stdout.contains("started"),
        "{stdout}"
    );
}

/// A small JSON export: three trials, one of them interrupted, with every kind of value.
fn sample_export() -> String {
    let epoch = |e: u32, top1: f64| {
        serde_json::json!({"epoch": e, "step": e * 7, "train_loss": 1.25 / f64::from(e), "val_top1": top1,
            "images_per_sec": 1234.5678, "loss_scale": 65536.0, "skipped_steps": 0, "wall_secs": 3.25 * f64::from(e),
            "underflow_fraction": 0.001 * f64::from(e)})
    };
    let trial = |id: u64, status: &str, epochs: Vec<serde_json::Value>| {
        serde_json::json!({"id": id, "stage": "coarse", "batch": 8192, "proxy_batch": 384,
            "params": {"peak_lr": 0.25 * id as f64, "loss_scale": "dynamic"}, "status": status, "attempts": 1,
            "final_val_top1": if status == "finished" { serde_json::json!(0.6123456789) } else { serde_json::Value::Null },
            "wall_secs": if status == "finished" { serde_json::json!(12.75) } else { serde_json::Value::Null },
            "error": null, "epochs": epochs})
    };
    let mut diverged = trial(3, "diverged", vec![epoch(1, 0.1)]);
    diverged["epochs"][0]["train_loss"] = serde_json::json!("NaN");
    diverged["error"] = serde_json::json!("diverged: loss is NaN, \"quoted\", with a comma");
    let mut finished = trial(1, "finished", vec![epoch(1, 0.3), epoch(2, 0.6123456789)]);
    finished["modelled_step_secs"] = serde_json::json!(0.125);
    let running = trial(2, "running", vec![epoch(1, 0.2)]);
    let all = serde_json::json!([finished, running, diverged]);
    serde_json::to_string_pretty(&all).expect("json")
}

fn export_text(store: &Path) -> String {
    let out = run(bin().args(["export", "--format", "json"]).arg(store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "export failed: {stderr}");
    stdout
}

#[test]
fn export_import_export_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("in.json");
    std::fs::write(&file, sample_export()).expect("write");
    let first = tmp.path().join("first");
    let out = run(bin().arg("import").arg(&file).arg("--store").arg(&first));
    assert!(out.status.success(), "{:?}", texts(&out));
    let exported = export_text(&first);
    let again = tmp.path().join("again.json");
    std::fs::write(&again, &exported).expect("write");
    let second = tmp.path().join("second");
    let out = run(bin().arg("import").arg(&again).arg("--store").arg(&second));
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(
        export_text(&second),
        exported,
        "export -> import -> export changed something"
    );
    let parsed: serde_json::Value = serde_json::from_str(&exported).expect("json");
    let want: serde_json::Value = serde_json::from_str(&sample_export()).expect("json");
    assert_eq!(parsed, want, "the import kept every field of the original");

    // Per-trial and per-epoch CSV.
    let trials_csv = texts(&run(bin()
        .args(["export", "--format", "csv-trials"])
        .arg(&second)))
    .0;
    assert_eq!(trials_csv.lines().count(), 1 + 3, "{trials_csv}");
    assert!(
        trials_csv
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("1,coarse,8192,384,finished,1,2,0.6123456789")),
        "{trials_csv}"
    );
    assert!(
        trials_csv.contains("\"diverged: loss is NaN, \"\"quoted\"\", with a comma\""),
        "{trials_csv}"
    );
    let epochs_csv = texts(&run(bin().args(["export", "--format", "csv"]).arg(&second))).0;
    assert_eq!(epochs_csv.lines().count(), 1 + 4, "{epochs_csv}");

    // Bad input: a file that is not an export, an existing store.
    std::fs::write(&file, "[{\"id\": 1}]").expect("write");
    let out = run(bin()
        .arg("import")
        .arg(&file)
        .arg("--store")
        .arg(tmp.path().join("third")));
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("in.json:1:"), "{:?}", texts(&out));
    assert!(
        !tmp.path().join("third").exists(),
        "a refused import wrote a store"
    );
    let out = run(bin().arg("import").arg(&again).arg("--store").arg(&second));
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("already holds a store"));
}

/// Flips one bit of `file` at `at` (a fraction of its length).
fn flip(file: &Path, at: f64) {
    let mut bytes = std::fs::read(file).expect("read");
    let i = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
    bytes[i] ^= 0x10;
    std::fs::write(file, bytes).expect("write");
}

#[test]
fn check_reports_damage_and_repair_recovers_every_trial_without_touching_the_original() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("in.json");
    std::fs::write(&file, sample_export()).expect("write");
    let store = tmp.path().join("store");
    assert!(
        run(bin().arg("import").arg(&file).arg("--store").arg(&store))
            .status
            .success()
    );
    let original = export_text(&store);
    let out = run(bin().args(["store", "check"]).arg(&store));
    let (stdout, _) = texts(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("verdict: intact")
            && stdout.contains("trials recovered: 3 (1 finished, 1 diverged"),
        "{stdout}"
    );

    // A flipped bit in the journal: check says where; repair recovers everything from the index.
    flip(&store.join("journal"), 0.5);
    let out = run(bin().args(["store", "check"]).arg(&store));
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("journal: DAMAGED") && stdout.contains("unreadable bytes"),
        "{stdout}"
    );
    assert!(stdout.contains("verdict: DAMAGED"), "{stdout}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    let before = contents(&store);
    let repaired = tmp.path().join("repaired");
    let out = run(bin()
        .args(["store", "repair"])
        .arg(&store)
        .arg("--into")
        .arg(&repaired));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("repaired: 3 trials"), "{stdout}");
    assert_eq!(contents(&store), before, "repair changed the damaged store");
    assert_eq!(export_text(&repaired), original);
    assert!(run(bin().args(["store", "check"]).arg(&repaired))
        .status
        .success());

    // A journal cut short: opening refuses clearly (no panic), repair recovers from the index.
    let cut = tmp.path().join("cut");
    assert!(run(bin().arg("import").arg(&file).arg("--store").arg(&cut))
        .status
        .success());
    let journal = cut.join("journal");
    let len = std::fs::metadata(&journal).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let out = run(bin().args(["export", "--format", "json"]).arg(&cut));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is damaged") && stderr.contains("store repair"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = run(bin().args(["store", "repair"]).arg(&cut));
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(export_text(&tmp.path().join("cut.repaired")), original);

    // A damaged index: the store opens with its full history (replayed from the journal) or
    // refuses clearly; repair always recovers everything.
    for at in [0.1, 0.5, 0.9] {
        let dir = tmp.path().join(format!("index-{at}"));
        assert!(run(bin().arg("import").arg(&file).arg("--store").arg(&dir))
            .status
            .success());
        flip(&dir.join("db").join("db"), at);
        let out = run(bin().args(["export", "--format", "json"]).arg(&dir));
        let (stdout, stderr) = texts(&out);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if out.status.success() {
            assert_eq!(
                stdout, original,
                "index flipped at {at}: opened with another history"
            );
        } else {
            assert!(stderr.contains("is damaged"), "{stderr}");
            let into = tmp.path().join(format!("index-{at}-repaired"));
            let out = run(bin()
                .args(["store", "repair"])
                .arg(&dir)
                .arg("--into")
                .arg(&into));
            assert!(out.status.success(), "{:?}", texts(&out));
            assert_eq!(export_text(&into), original);
        }
    }
}
