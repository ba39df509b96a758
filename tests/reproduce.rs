//! `jizhi-tune reproduce` end to end, in a fast form: two experiments for one epoch on a tenth
//! of the training set, run side by side; and bad options refused before anything runs.

mod common;
use common::*;

#[test]
fn one_epoch_of_two_experiments_prints_the_table_and_writes_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("table.json");
    let out = run(bin()
        .args([
            "reproduce",
            "--epochs",
            "1",
            "--only",
            "a,e2",
            "--data-fraction",
            "0.11",
            "--jobs",
            "2",
            "--threads",
            "1",
        ])
        .arg("--out")
        .arg(&out_file));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "reproduce failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{stdout}");
    for col in [
        "experiment",
        "settings",
        "top-1",
        "wall",
        "skipped",
        "underflow",
    ] {
        assert!(lines[0].contains(col), "header lacks {col}: {}", lines[0]);
    }
    assert!(
        lines[1].starts_with("a ") && lines[1].contains("batch 256 SGD, lr 0.05, cosine"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("e2")
            && lines[2].contains("batch 3072 LARS eta 0.01")
            && lines[2].contains("no BN5"),
        "{stdout}"
    );
    // progress per epoch while it runs
    assert!(
        stderr.contains("[a] epoch 1/1") && stderr.contains("[e2] epoch 1/1"),
        "{stderr}"
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("--out written"))
            .expect("JSON");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "a");
    let top1 = rows[0]["test_top1"].as_f64().expect("top-1");
    assert!(
        top1 > 0.5,
        "one epoch on 6,600 images at batch 256 reaches only {top1}"
    );
    assert!(rows[0]["wall_secs"].as_f64().expect("wall") > 0.0);
    assert_eq!(rows[1]["skipped_steps"], 0, "fp32 never skips");
    assert!(
        stdout.contains(&format!("{:.1}%", top1 * 100.0)),
        "{stdout}"
    );
}

#[test]
fn bad_options_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_file = dir.path().join("table.json");
    for args in [
        vec!["--only", "a,z"],
        vec!["--epochs", "0"],
        vec!["--only", "b", "--data-fraction", "0.01"],
    ] {
        let out = run(bin()
            .arg("reproduce")
            .args(&args)
            .arg("--out")
            .arg(&out_file));
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(!out_file.exists(), "{args:?} wrote the table");
    }
    let out = run(bin().args(["reproduce", "--only", "a,z"]));
    assert!(texts(&out).1.contains("unknown experiment `z`"));
}
