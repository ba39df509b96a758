//! Integration tests against a real sled database in a temporary directory.

use jizhi_store::{EpochMetrics, Event, Store, StoreError, StudyRecord, TrialRecord, TrialStatus};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn study() -> StudyRecord {
    StudyRecord {
        name: "resnet-64k".into(),
        space_text: "# space\nlr = { log = [0.5, 20.0] }\nwarmup = \"dynamic\"\n\tünïcode ✓\n"
            .into(),
        seed: 42,
        created_unix: 1_700_000_123,
    }
}

fn trial(id: u64) -> TrialRecord {
    let mut params = BTreeMap::new();
    params.insert("lr".to_string(), serde_json::json!(3.5 + id as f64));
    params.insert("warmup".to_string(), serde_json::json!("dynamic"));
    TrialRecord {
        id,
        stage: if id % 2 == 0 { "coarse" } else { "refine" }.into(),
        batch: 65536,
        proxy_batch: 3072,
        params,
        status: TrialStatus::Running,
        attempts: 1,
        error: None,
        final_val_top1: None,
        wall_secs: None,
        modelled_step_secs: None,
        epochs: Vec::new(),
    }
}

fn epoch(epoch: u32, val: f64) -> EpochMetrics {
    EpochMetrics {
        epoch,
        step: u64::from(epoch) * 100,
        train_loss: 2.0 / f64::from(epoch + 1),
        val_top1: val,
        images_per_sec: 12345.5,
        loss_scale: 65536.0,
        skipped_steps: u64::from(epoch % 3),
        wall_secs: f64::from(epoch) * 1.25,
        underflow_fraction: 0.0,
    }
}

#[test]
fn study_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(!Store::exists(dir.path()));
    let store = Store::open(dir.path()).expect("open");
    assert!(Store::exists(dir.path()));
    assert_eq!(store.dir(), dir.path());
    assert_eq!(store.study().expect("study"), None);
    store.put_study(&study()).expect("put study");
    assert_eq!(store.study().expect("study"), Some(study()));
    let mut changed = study();
    changed.seed = 7;
    store.put_study(&changed).expect("replace study");
    assert_eq!(store.study().expect("study"), Some(changed));
}

#[test]
fn trials_sorted_with_sorted_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    // Insert out of order, including ids whose byte order differs from little-endian.
    for id in [300u64, 2, 256, 1, 10] {
        store.put_trial(&trial(id)).expect("put trial");
    }
    for e in [9u32, 0, 256, 3, 1] {
        store
            .put_epoch(256, &epoch(e, 0.01 * f64::from(e)))
            .expect("put epoch");
    }
    store.put_epoch(2, &epoch(0, 0.5)).expect("put epoch");

    let trials = store.trials().expect("trials");
    let ids: Vec<u64> = trials.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![1, 2, 10, 256, 300]);
    let t256 = &trials[3];
    let epochs: Vec<u32> = t256.epochs.iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, vec![0, 1, 3, 9, 256]);
    assert_eq!(t256.epochs[3], epoch(9, 0.09));
    assert_eq!(trials[1].epochs, vec![epoch(0, 0.5)]);
    assert!(
        trials[0].epochs.is_empty() && trials[2].epochs.is_empty() && trials[4].epochs.is_empty()
    );

    let one = store.trial(256).expect("trial").expect("exists");
    assert_eq!(&one, t256);
    let mut expected = trial(256);
    expected.epochs = t256.epochs.clone();
    assert_eq!(one, expected);
    assert_eq!(store.trial(999).expect("trial"), None);
}

#[test]
fn put_trial_keeps_epochs_and_replaces_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.put_trial(&trial(4)).expect("put");
    store.put_epoch(4, &epoch(0, 0.1)).expect("epoch");
    store.put_epoch(4, &epoch(1, 0.2)).expect("epoch");

    // put_trial ignores the epochs it is given and does not touch stored ones.
    let mut finished = trial(4);
    finished.status = TrialStatus::Finished;
    finished.final_val_top1 = Some(0.761);
    finished.wall_secs = Some(123.5);
    finished.epochs = vec![epoch(7, 0.9)];
    store.put_trial(&finished).expect("replace");

    let got = store.trial(4).expect("trial").expect("exists");
    assert_eq!(got.status, TrialStatus::Finished);
    assert_eq!(got.final_val_top1, Some(0.761));
    assert_eq!(got.wall_secs, Some(123.5));
    assert_eq!(got.epochs, vec![epoch(0, 0.1), epoch(1, 0.2)]);
}

#[test]
fn put_epoch_replaces_same_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.put_trial(&trial(1)).expect("put");
    store.put_epoch(1, &epoch(0, 0.1)).expect("epoch");
    store.put_epoch(1, &epoch(1, 0.2)).expect("epoch");
    store.put_epoch(1, &epoch(1, 0.3)).expect("replace epoch");
    let got = store.trial(1).expect("trial").expect("exists");
    assert_eq!(got.epochs, vec![epoch(0, 0.1), epoch(1, 0.3)]);
}

#[test]
fn clear_epochs_only_touches_one_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    for id in [1u64, 2, 3] {
        store.put_trial(&trial(id)).expect("put");
        for e in 0..4 {
            store.put_epoch(id, &epoch(e, 0.1)).expect("epoch");
        }
    }
    store.clear_epochs(2).expect("clear");
    store
        .clear_epochs(99)
        .expect("clearing a trial without epochs is fine");
    let trials = store.trials().expect("trials");
    assert_eq!(trials.len(), 3);
    assert_eq!(trials[0].epochs.len(), 4);
    assert!(trials[1].epochs.is_empty());
    assert_eq!(trials[2].epochs.len(), 4);
    // The trial record itself survives, and new epochs can be written again.
    store.put_epoch(2, &epoch(0, 0.7)).expect("epoch");
    assert_eq!(
        store.trial(2).expect("trial").expect("exists").epochs,
        vec![epoch(0, 0.7)]
    );
}

#[test]
fn non_finite_metrics_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut t = trial(1);
    t.status = TrialStatus::Diverged;
    t.final_val_top1 = Some(f64::NAN);
    store.put_trial(&t).expect("put");
    let mut m = epoch(3, 0.001);
    m.train_loss = f64::NAN;
    m.loss_scale = f64::INFINITY;
    store.put_epoch(1, &m).expect("epoch");
    let got = store.trial(1).expect("trial must decode").expect("exists");
    assert!(got.final_val_top1.is_some_and(f64::is_nan));
    assert!(got.epochs[0].train_loss.is_nan());
    assert_eq!(got.epochs[0].loss_scale, f64::INFINITY);
}

#[test]
fn events_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events: Vec<Event> = (0..300u64)
        .map(|i| Event {
            unix_ms: 1_700_000_000_000 + i,
            trial_id: if i % 3 == 0 { None } else { Some(i) },
            kind: format!("kind-{}", i % 5),
            detail: format!("detail {i}"),
        })
        .collect();
    {
        let store = Store::open(dir.path()).expect("open");
        assert!(store.events().expect("events").is_empty());
        for e in &events[..200] {
            store.log_event(e).expect("log");
        }
    }
    // Appending continues after a reopen.
    let store = Store::open(dir.path()).expect("reopen");
    for e in &events[200..] {
        store.log_event(e).expect("log");
    }
    assert_eq!(store.events().expect("events"), events);
}

#[test]
fn reopen_after_drop_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let event = Event {
        unix_ms: 5,
        trial_id: Some(1),
        kind: "trial-finished".into(),
        detail: "val 0.76".into(),
    };
    let expected = {
        let store = Store::open(dir.path()).expect("open");
        store.put_study(&study()).expect("study");
        for id in 0..5 {
            store.put_trial(&trial(id)).expect("trial");
            for e in 0..3 {
                store.put_epoch(id, &epoch(e, 0.2)).expect("epoch");
            }
        }
        store.log_event(&event).expect("event");
        store.trials().expect("trials")
    };
    for _ in 0..3 {
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.study().expect("study"), Some(study()));
        assert_eq!(store.trials().expect("trials"), expected);
        assert_eq!(store.events().expect("events"), vec![event.clone()]);
    }
}

#[test]
fn rapid_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    for id in 0..30u64 {
        let store = Store::open(dir.path()).expect("reopen right after drop");
        assert_eq!(store.trials().expect("trials").len() as u64, id);
        store.put_trial(&trial(id)).expect("put");
    }
}

#[test]
fn second_open_is_locked_with_our_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Store::open(dir.path()).expect("open");
    let err = Store::open(dir.path()).expect_err("second open must fail");
    match &err {
        StoreError::Locked { dir: d, pid, .. } => {
            assert_eq!(*pid, std::process::id());
            assert_eq!(d, dir.path());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(err.code(), "store-locked");
    let msg = err.to_string();
    assert!(msg.contains("is in use by process"), "{msg}");
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    let me = std::env::args().next().expect("argv[0]");
    assert!(
        msg.contains(&me),
        "the message names the holder's command: {msg}"
    );
    // The failed open did not disturb the first handle or the pid and command in LOCK.
    first
        .put_trial(&trial(1))
        .expect("first handle still works");
    let lock_text = std::fs::read_to_string(dir.path().join("LOCK")).expect("LOCK");
    let mut lines = lock_text.lines();
    assert_eq!(lines.next(), Some(std::process::id().to_string().as_str()));
    assert_eq!(lines.next(), Some(me.as_str()));
    drop(first);
    let again = Store::open(dir.path()).expect("free after drop");
    assert_eq!(again.trials().expect("trials").len(), 1);
}

/// Env var switching `durable_across_sigkill` into its child "writer" mode.
const WRITER_ENV: &str = "JIZHI_STORE_TEST_WRITER_DIR";

#[test]
fn durable_across_sigkill() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        // Child: write trials forever (until killed), reporting each durable write.
        let store = Store::open(std::path::Path::new(&dir)).expect("child open");
        for k in 0..100_000u64 {
            let mut t = trial(k);
            t.status = TrialStatus::Finished;
            t.final_val_top1 = Some(0.5);
            store.put_trial(&t).expect("child put");
            store.put_epoch(k, &epoch(0, 0.5)).expect("child epoch");
            println!("written {k}");
        }
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "durable_across_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();

    let start = Instant::now();
    let mut reported: Option<u64> = None;
    let mut seen = 0;
    while seen < 25 {
        assert!(start.elapsed() < Duration::from_secs(20), "writer too slow");
        let line = match lines.next() {
            Some(line) => line.expect("read child stdout"),
            None => panic!("writer exited before being killed (saw {seen} writes)"),
        };
        if let Some(k) = line.strip_prefix("written ") {
            reported = Some(k.trim().parse().expect("k"));
            seen += 1;
        }
    }
    // While the writer lives, another process's open is refused, naming the writer.
    match Store::open(dir.path()) {
        Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, child.id()),
        other => panic!("expected Locked by the writer, got {other:?}"),
    }
    child.kill().expect("SIGKILL writer"); // std's kill sends SIGKILL on Unix.
                                           // Drain whatever else it reported before dying.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(k) = line.strip_prefix("written ") {
            reported = Some(k.trim().parse().expect("k"));
        }
    }
    let status = child.wait().expect("wait");
    assert!(!status.success(), "writer should have been killed");
    let last = reported.expect("some writes were reported");

    // The kernel released the dead child's flock: no stale lock.
    let store = Store::open(dir.path()).expect("reopen after kill");
    let trials = store.trials().expect("trials after kill");
    assert!(
        trials.len() as u64 > last,
        "child reported trial {last} written but only {} trials survived",
        trials.len()
    );
    for (i, t) in trials.iter().enumerate().take(last as usize + 1) {
        assert_eq!(t.id, i as u64);
        assert_eq!(t.status, TrialStatus::Finished);
        assert_eq!(t.epochs, vec![epoch(0, 0.5)]);
    }
}
