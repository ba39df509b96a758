//! Schema migrations: a store written in the schema 1 layout (sled only, as the first release
//! wrote it) opens with its whole history, and a migration interrupted at any of its crash points
//! (the "migration in progress" marker still set) is finished safely on the next open.

use jizhi_store::{EpochMetrics, Event, Store, StudyRecord, TrialRecord, TrialStatus};
use std::path::Path;

fn study() -> StudyRecord {
    StudyRecord {
        name: "old".into(),
        space_text: "[study]\nname = \"old\"\n".into(),
        seed: 9,
        created_unix: 1_600_000_000,
    }
}

fn trial(id: u64) -> TrialRecord {
    TrialRecord {
        id,
        stage: "coarse".into(),
        batch: 65536,
        proxy_batch: 3072,
        params: [("peak_lr".to_string(), serde_json::json!(id as f64 / 4.0))]
            .into_iter()
            .collect(),
        status: if id == 4 {
            TrialStatus::Running
        } else {
            TrialStatus::Finished
        },
        attempts: 1,
        error: None,
        final_val_top1: (id != 4).then_some(0.7),
        wall_secs: (id != 4).then_some(30.0),
        modelled_step_secs: None,
        epochs: (1..=3)
            .map(|e| EpochMetrics {
                epoch: e,
                step: u64::from(e) * 10,
                train_loss: 1.0 / f64::from(e),
                val_top1: 0.2 * f64::from(e),
                images_per_sec: 900.0,
                loss_scale: 1024.0,
                skipped_steps: 1,
                wall_secs: 10.0 * f64::from(e),
                underflow_fraction: 0.0,
            })
            .collect(),
    }
}

fn events() -> Vec<Event> {
    (0..4u64)
        .map(|i| Event {
            unix_ms: 1000 + i,
            trial_id: Some(i + 1),
            kind: "started".into(),
            detail: format!("attempt {i}"),
        })
        .collect()
}

/// Writes a store exactly as schema 1 laid it out: sled trees only, events keyed by sequence number.
fn write_schema_1(dir: &Path, marker: Option<&str>) {
    let db = sled::open(dir.join("db")).expect("sled");
    let tree = |n: &str| db.open_tree(n).expect("tree");
    let meta = tree("meta");
    meta.insert("schema_version", &1u32.to_be_bytes())
        .expect("version");
    if let Some(m) = marker {
        meta.insert("migrating", m.as_bytes()).expect("marker");
    }
    tree("study")
        .insert("study", serde_json::to_vec(&study()).expect("json"))
        .expect("study");
    let (trials, epochs) = (tree("trials"), tree("epochs"));
    for id in 1..=5u64 {
        let mut value = serde_json::to_value(trial(id)).expect("json");
        if let serde_json::Value::Object(o) = &mut value {
            o.remove("epochs");
        }
        trials
            .insert(id.to_be_bytes(), serde_json::to_vec(&value).expect("json"))
            .expect("trial");
        for m in &trial(id).epochs {
            let mut key = id.to_be_bytes().to_vec();
            key.extend(m.epoch.to_be_bytes());
            epochs
                .insert(key, serde_json::to_vec(m).expect("json"))
                .expect("epoch");
        }
    }
    for (seq, e) in events().iter().enumerate() {
        tree("events")
            .insert(
                (seq as u64).to_be_bytes(),
                serde_json::to_vec(e).expect("json"),
            )
            .expect("event");
    }
    db.flush().expect("flush");
}

const MARKER: &str = r#"{"from":1,"to":2,"step":"journal-from-index"}"#;

/// Opens `dir` and checks it holds the schema 1 history, migrated to the current schema.
fn assert_migrated(dir: &Path) {
    let store = Store::open(dir).expect("open migrates");
    assert_eq!(store.study().expect("study"), Some(study()));
    assert_eq!(
        store.trials().expect("trials"),
        (1..=5).map(trial).collect::<Vec<_>>()
    );
    assert_eq!(store.events().expect("events"), events());
    drop(store);
    let report = jizhi_store::check(dir).expect("check");
    assert_eq!(report.schema_version, Some(jizhi_store::SCHEMA_VERSION));
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.journal_records, 1 + 5 + 15 + 4, "{report}");
}

#[test]
fn a_schema_1_store_migrates_with_its_whole_history() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_schema_1(tmp.path(), None);
    assert_migrated(tmp.path());
    // The journal now holds the history: the index can be rebuilt from it alone.
    std::fs::remove_dir_all(tmp.path().join("db")).expect("rm db");
    assert_migrated(tmp.path());
    // And the migrated store takes new writes.
    let store = Store::open(tmp.path()).expect("reopen");
    store.put_trial(&trial(6)).expect("write after migration");
    assert_eq!(store.trials().expect("trials").len(), 6);
}

#[test]
fn a_migration_killed_before_its_journal_was_installed_is_run_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_schema_1(tmp.path(), Some(MARKER));
    // A half-written temporary journal, as a kill during its writing leaves it.
    std::fs::write(tmp.path().join("journal.tmp"), b"JZJ1\0\0\x01").expect("tmp");
    assert_migrated(tmp.path());
}

#[test]
fn a_migration_killed_while_rebuilding_the_index_is_run_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The complete journal that step writes, taken from migrating an identical store.
    let donor = tmp.path().join("donor");
    write_schema_1(&donor, None);
    drop(Store::open(&donor).expect("migrate the donor"));
    let dir = tmp.path().join("store");
    write_schema_1(&dir, Some(MARKER));
    std::fs::copy(donor.join("journal"), dir.join("journal")).expect("journal");
    // The rebuild had emptied some trees when the kill came.
    {
        let db = sled::open(dir.join("db")).expect("sled");
        db.open_tree("events")
            .expect("tree")
            .clear()
            .expect("clear");
        let trials = db.open_tree("trials").expect("tree");
        trials.remove(2u64.to_be_bytes()).expect("rm");
        trials.remove(5u64.to_be_bytes()).expect("rm");
        db.flush().expect("flush");
    }
    assert_migrated(&dir);
}

#[test]
fn an_unknown_migration_marker_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_schema_1(
        tmp.path(),
        Some(r#"{"from":2,"to":3,"step":"from-the-future"}"#),
    );
    let err = Store::open(tmp.path()).expect_err("unknown step");
    assert_eq!(err.code(), "store-schema", "{err}");
}
