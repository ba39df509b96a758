//! Bit flips and truncation of a store's files: opening gives the full history or a clear error,
//! never a panic and never a silently shorter history; `check` flags the damage and `repair`
//! recovers every trial, because one damaged file always leaves the other copy intact.
//!
//! Every case runs in a child process, so a panic or abort is seen as such. The damage comes from
//! a seeded RNG; the seed is printed and named in every failure (`JIZHI_DAMAGE_SEED` replays it,
//! `JIZHI_DAMAGE_CASES` runs more cases).

use jizhi_store::{EpochMetrics, Event, Store, StudyRecord, TrialRecord, TrialStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Env var naming the damaged store a child process opens.
const CHILD_DIR: &str = "JIZHI_DAMAGE_CHILD_DIR";
/// Cases of a default run.
const DEFAULT_CASES: usize = 120;
const TRIALS: u64 = 40;
const EPOCHS: u32 = 4;

fn trial(id: u64) -> TrialRecord {
    let mut params = std::collections::BTreeMap::new();
    params.insert("peak_lr".to_string(), serde_json::json!(0.25 * id as f64));
    params.insert("loss_scale".to_string(), serde_json::json!("dynamic"));
    TrialRecord {
        id,
        stage: "coarse".into(),
        batch: 32768,
        proxy_batch: 1536,
        params,
        status: TrialStatus::Finished,
        attempts: 1,
        error: None,
        final_val_top1: Some(0.5 + id as f64 / 1000.0),
        wall_secs: Some(12.5),
        modelled_step_secs: None,
        epochs: (1..=EPOCHS)
            .map(|e| EpochMetrics {
                epoch: e,
                step: u64::from(e) * 20,
                train_loss: 2.0 / f64::from(e),
                val_top1: 0.1 * f64::from(e) + id as f64 / 1000.0,
                images_per_sec: 1500.0,
                loss_scale: 65536.0,
                skipped_steps: 0,
                wall_secs: f64::from(e) * 3.0,
                underflow_fraction: 0.0,
            })
            .collect(),
    }
}

/// The history a reader sees: study, trials with epochs, events (the text compared across processes).
fn history(store: &Store) -> Result<String, jizhi_store::StoreError> {
    let study = store.study()?;
    let trials = store.trials()?;
    let events: Vec<Event> = store
        .events()?
        .into_iter()
        .filter(|e| e.kind != "repaired")
        .collect();
    let mut lines = vec![format!("{study:?}")];
    lines.extend(trials.iter().map(|t| format!("{t:?}")));
    lines.extend(events.iter().map(|e| format!("{e:?}")));
    Ok(lines.join("\n"))
}

/// Writes the undamaged store: a study of finished trials with epochs and events.
fn build(dir: &Path) -> String {
    let store = Store::open(dir).expect("open");
    store
        .put_study(&StudyRecord {
            name: "damage".into(),
            space_text: "x = 1\n".into(),
            seed: 3,
            created_unix: 1,
        })
        .expect("study");
    for id in 1..=TRIALS {
        let t = trial(id);
        store.put_trial(&t).expect("trial");
        for e in &t.epochs {
            store.put_epoch(id, e).expect("epoch");
        }
        store
            .log_event(&Event {
                unix_ms: id,
                trial_id: Some(id),
                kind: "finished".into(),
                detail: String::new(),
            })
            .expect("event");
    }
    history(&store).expect("history")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("ls") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Child mode: open the damaged store and print what it holds, or check and repair it and print
/// what the repaired store holds.
fn child(dir: &Path) {
    match Store::open(dir).and_then(|s| history(&s)) {
        Ok(h) => println!("OPENED\n{h}\nEND"),
        Err(e) => {
            println!("ERROR {e}");
            let report = jizhi_store::check(dir).expect("check runs on a damaged store");
            println!("CHECK intact={}", report.is_intact());
            let into = dir.with_extension("repaired");
            let repaired = jizhi_store::repair(dir, &into).expect("repair runs on a damaged store");
            let store = Store::open(&repaired.into).expect("open the repaired store");
            println!(
                "REPAIRED\n{}\nEND",
                history(&store).expect("read the repaired store")
            );
        }
    }
}

/// The first line where two histories differ, for a readable failure.
fn first_difference(got: &str, want: &str) -> String {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for (i, want_line) in w.iter().enumerate() {
        match g.get(i) {
            Some(got_line) if got_line == want_line => {}
            Some(got_line) => return format!("line {i}:\n  got  {got_line}\n  want {want_line}"),
            None => {
                return format!(
                    "{} lines instead of {}; first missing: {want_line}",
                    g.len(),
                    w.len()
                )
            }
        }
    }
    format!("{} lines instead of {}", g.len(), w.len())
}

/// The text between `tag` and END in a child's output.
fn section(out: &str, tag: &str) -> Option<String> {
    let start = out.find(&format!("{tag}\n"))? + tag.len() + 1;
    let end = out[start..].find("\nEND")? + start;
    Some(out[start..end].to_string())
}

#[test]
fn damaged_files_give_the_full_history_or_an_error_and_repair_recovers_it() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let seed: u64 = std::env::var("JIZHI_DAMAGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let cases: usize = std::env::var("JIZHI_DAMAGE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    eprintln!("damage test: seed {seed} (replay with JIZHI_DAMAGE_SEED={seed}), {cases} cases");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let expected = build(&base);
    let exe = std::env::current_exe().expect("current exe");
    let (mut healed, mut refused) = (0, 0);
    for case in 0..cases {
        let dir = tmp.path().join(format!("case-{case}"));
        copy(&base, &dir);
        let targets = files(&dir);
        // Half the cases hit the journal, half the index files.
        let journal = dir.join("journal");
        let file = if rng.random_bool(0.5) {
            journal
        } else {
            targets[rng.random_range(0..targets.len())].clone()
        };
        let mut bytes = std::fs::read(&file).expect("read");
        if bytes.is_empty() {
            continue;
        }
        let what = if rng.random_bool(0.6) {
            let bit = rng.random_range(0..bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            format!("bit {bit} of {} flipped", file.display())
        } else {
            let len = rng.random_range(0..bytes.len());
            bytes.truncate(len);
            format!("{} cut to {len} bytes", file.display())
        };
        std::fs::write(&file, &bytes).expect("write");
        let ctx =
            format!("seed {seed} (replay with JIZHI_DAMAGE_SEED={seed}), case {case}: {what}");
        let out = Command::new(&exe)
            .args([
                "--exact",
                "damaged_files_give_the_full_history_or_an_error_and_repair_recovers_it",
                "--nocapture",
            ])
            .env(CHILD_DIR, &dir)
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{ctx}: the child failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{ctx}: a panic:\n{stderr}");
        if let Some(history) = section(&stdout, "OPENED") {
            assert!(
                history == expected,
                "{ctx}: the store opened but its history changed (a silent loss): {}",
                first_difference(&history, &expected)
            );
            healed += 1;
        } else {
            assert!(stdout.contains("ERROR store "), "{ctx}: {stdout}");
            assert!(
                stdout.contains("CHECK intact=false"),
                "{ctx}: check did not flag the damage:\n{stdout}"
            );
            let repaired = section(&stdout, "REPAIRED")
                .unwrap_or_else(|| panic!("{ctx}: no repair:\n{stdout}"));
            assert!(
                repaired == expected,
                "{ctx}: repair did not recover every trial: {}",
                first_difference(&repaired, &expected)
            );
            refused += 1;
        }
    }
    eprintln!("damage test: seed {seed}: {healed} cases read the full history, {refused} were refused and repaired");
    assert!(
        refused > 0,
        "no case was damaging enough to be refused: the test proves nothing"
    );
}
