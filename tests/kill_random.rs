//! SIGKILL the tuner at random moments, again and again, rerunning it after each kill: the store
//! checks intact, no finished trial is lost or rerun, no trial is duplicated, and every search ends
//! with the export of an uninterrupted run with the same seed (timing fields aside).
//!
//! The kill moments come from a seeded RNG; the seed is printed and named in every failure.
//! `JIZHI_KILL_SEED=S` replays a run, `JIZHI_KILLS=N` asks for more kills than the default 20.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills of a default run.
const DEFAULT_KILLS: usize = 20;
/// Longest any single run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kill.toml")
}

/// When a run is killed.
#[derive(Debug, Clone)]
enum Moment {
    /// This long after it started.
    After(Duration),
    /// `then` after its `nth` output line containing `pattern`.
    OnLine { pattern: &'static str, nth: usize, then: Duration },
    /// Never: the run goes to its end.
    Never,
}

/// What one run of the tuner did.
struct RunOutcome {
    /// Its stdout lines.
    lines: Vec<String>,
    /// True when it exited by itself (it was not killed).
    completed: bool,
}

/// Runs the kill search on `store`, killing it with SIGKILL at `moment`.
fn run_until(store: &Path, moment: &Moment, ctx: &str) -> RunOutcome {
    let mut child = bin()
        .arg(fixture())
        .args(["--headless", "--max-concurrent", "2", "--store"])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tuner");
    let started = Instant::now();
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = Vec::new();
    let mut matched = 0;
    let deadline = |extra: Duration| started + extra;
    // Wait for the moment (or for the run to end by itself).
    let kill_at = loop {
        let wait_until = match moment {
            Moment::After(d) => deadline(*d),
            _ => deadline(RUN_LIMIT),
        };
        let now = Instant::now();
        if now >= wait_until {
            break Some(now);
        }
        match rx.recv_timeout(wait_until - now) {
            Ok(line) => {
                if let Moment::OnLine { pattern, nth, then } = moment {
                    if line.contains(pattern) {
                        matched += 1;
                        if matched == *nth {
                            lines.push(line);
                            std::thread::sleep(*then);
                            break Some(Instant::now());
                        }
                    }
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    if kill_at.is_some() {
        // If it already exited, kill fails harmlessly and `wait` reports the real status.
        let _ = child.kill();
    }
    let status = child.wait().expect("reap the tuner");
    reader.join().expect("stdout reader");
    lines.extend(rx.try_iter());
    let stderr_text = err_reader.join().expect("stderr reader");
    let completed = status.success();
    if !completed {
        assert!(
            status.code().is_none(),
            "{ctx}: the tuner failed by itself ({status}) instead of being killed\nstdout:\n{}\nstderr:\n{stderr_text}",
            lines.join("\n")
        );
    }
    if matches!(moment, Moment::Never) {
        assert!(completed, "{ctx}: an uninterrupted run did not finish ({status})\n{stderr_text}");
    }
    RunOutcome { lines, completed }
}

/// The store's export by trial id (empty when the store was never created), checking ids are unique.
fn snapshot(store: &Path, ctx: &str) -> BTreeMap<u64, Value> {
    if !store.exists() {
        return BTreeMap::new();
    }
    // As the kill left it (before anything opens and recovers it), the store checks intact.
    let out = run(bin().args(["store", "check"]).arg(store));
    let (report, stderr) = texts(&out);
    if out.status.code() == Some(2) && stderr.contains("no study store") {
        return BTreeMap::new();
    }
    assert!(out.status.success() && report.contains("verdict: intact"), "{ctx}: store check after a kill:\n{report}\n{stderr}");
    let out = run(bin().args(["export", "--format", "json"]).arg(store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{ctx}: export failed after a kill: {stderr}");
    let trials: Vec<Value> = match serde_json::from_str(&stdout) {
        Ok(Value::Array(a)) => a,
        other => panic!("{ctx}: export is not a JSON array: {other:?}"),
    };
    let mut by_id = BTreeMap::new();
    for t in trials {
        let id = t["id"].as_u64().unwrap_or_else(|| panic!("{ctx}: trial without id: {t}"));
        assert!(by_id.insert(id, t).is_none(), "{ctx}: trial {id} appears twice in the export");
    }
    by_id
}

/// A trial with the fields that measure time (and the attempt count) removed.
fn masked(trial: &Value) -> Value {
    let mut t = trial.clone();
    if let Value::Object(o) = &mut t {
        o.remove("wall_secs");
        o.remove("attempts");
        if let Some(Value::Array(epochs)) = o.get_mut("epochs") {
            for e in epochs {
                if let Value::Object(e) = e {
                    e.remove("wall_secs");
                    e.remove("images_per_sec");
                }
            }
        }
    }
    t
}

/// Checks a store after a run against the state before it and the uninterrupted reference.
fn check(
    before: &BTreeMap<u64, Value>,
    now: &BTreeMap<u64, Value>,
    run: &RunOutcome,
    reference: &BTreeMap<u64, Value>,
    ctx: &str,
) {
    for (id, old) in before.iter().filter(|(_, t)| t["status"] == "finished") {
        let new = now.get(id).unwrap_or_else(|| panic!("{ctx}: finished trial {id} was lost"));
        assert_eq!(new, old, "{ctx}: finished trial {id} changed");
        let started = format!("trial {id} started");
        assert!(
            !run.lines.iter().any(|l| l.contains(&started)),
            "{ctx}: finished trial {id} was run again:\n{}",
            run.lines.join("\n")
        );
    }
    for (id, t) in now {
        let want = reference.get(id).unwrap_or_else(|| panic!("{ctx}: trial {id} is not in the uninterrupted plan: {t}"));
        for key in ["stage", "batch", "proxy_batch", "params"] {
            assert_eq!(t[key], want[key], "{ctx}: trial {id} has another {key} than in the uninterrupted run");
        }
        if t["status"] == "finished" {
            assert_eq!(masked(t), masked(want), "{ctx}: trial {id} finished with other results than uninterrupted");
        }
    }
}

/// A random kill moment: a random time into the run, or just after a random progress line.
fn pick(rng: &mut ChaCha8Rng, full_run: Duration) -> Moment {
    if rng.random_bool(0.5) {
        let ms = rng.random_range(0..=full_run.as_millis() as u64 * 45 / 100);
        Moment::After(Duration::from_millis(ms))
    } else {
        let pattern = ["started", "epoch", "finished"][rng.random_range(0..3)];
        Moment::OnLine { pattern, nth: rng.random_range(1..=3), then: Duration::from_millis(rng.random_range(0..=30)) }
    }
}

#[test]
fn random_sigkills_lose_nothing_and_change_nothing() {
    let seed: u64 = match std::env::var("JIZHI_KILL_SEED") {
        Ok(s) => s.parse().expect("JIZHI_KILL_SEED must be an integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    let want_kills: usize = std::env::var("JIZHI_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_KILLS);
    eprintln!("kill test: seed {seed} (replay with JIZHI_KILL_SEED={seed}), {want_kills} kills");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let test_start = Instant::now();

    let reference_store = tmp.path().join("reference");
    let start = Instant::now();
    let ctx = format!("seed {seed}, uninterrupted run");
    let full = run_until(&reference_store, &Moment::Never, &ctx);
    let full_run = start.elapsed();
    let reference = snapshot(&reference_store, &ctx);
    assert_eq!(reference.len(), 6, "{ctx}: the kill search plans 4 coarse + 2 refine trials");
    assert!(reference.values().all(|t| t["status"] == "finished"), "{ctx}: {reference:#?}");
    assert!(full.lines.iter().any(|l| l.contains("trial 6 finished")), "{ctx}");

    let mut kills = 0;
    let mut round = 0;
    let mut kinds = BTreeSet::new();
    while kills < want_kills {
        round += 1;
        let store = tmp.path().join(format!("round-{round}"));
        let mut before = BTreeMap::new();
        loop {
            let moment = if kills < want_kills { pick(&mut rng, full_run) } else { Moment::Never };
            let ctx = format!("seed {seed} (replay with JIZHI_KILL_SEED={seed}), round {round}, kill {}, {moment:?}", kills + 1);
            let outcome = run_until(&store, &moment, &ctx);
            let now = snapshot(&store, &ctx);
            check(&before, &now, &outcome, &reference, &ctx);
            if outcome.completed {
                let got: Vec<Value> = now.values().map(masked).collect();
                let want: Vec<Value> = reference.values().map(masked).collect();
                assert_eq!(got, want, "{ctx}: the resumed search ended differently from the uninterrupted one");
                break;
            }
            kills += 1;
            kinds.insert(match moment {
                Moment::After(_) => "timed",
                Moment::OnLine { pattern, .. } => pattern,
                Moment::Never => "never",
            });
            before = now;
        }
    }
    eprintln!(
        "kill test: seed {seed}: {kills} kills over {round} searches ({kinds:?}), uninterrupted run {:.1}s, all {:.1}s",
        full_run.as_secs_f64(),
        test_start.elapsed().as_secs_f64()
    );
}
