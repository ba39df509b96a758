//! SIGKILL the tuner mid-search, rerun it: finished trials are kept, not rerun, and the export is complete.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn killed_search_resumes_without_rerunning_finished_trials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let mut child = bin()
        .arg(space("smoke.toml"))
        .args(["--headless", "--max-concurrent", "1", "--store"])
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the search");
    let stdout = child.stdout.take().expect("stdout");
    // Kill right after the first trial has finished, while the second one runs.
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read a progress line");
        seen.push(line.clone());
        if line.contains("trial 2 started") {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("trial 1 finished")), "{seen:#?}");
    child.kill().expect("SIGKILL the tuner");
    child.wait().expect("reap the tuner");

    let before = export(&store);
    let finished_before: Vec<&serde_json::Value> = before.iter().filter(|t| t["status"] == "finished").collect();
    assert_eq!(finished_before.len(), 1, "{before:#?}");
    assert!(before.iter().any(|t| t["status"] == "running"), "the interrupted trial is recorded: {before:#?}");

    let out = run(bin().arg(space("smoke.toml")).args(["--headless", "--store"]).arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("trial 1 started"), "finished trial 1 was rerun:\n{stdout}");
    assert!(stdout.contains("trial 2 started"), "interrupted trial 2 was not rerun:\n{stdout}");

    let after = export(&store);
    let ids: Vec<u64> = after.iter().filter_map(|t| t["id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "no trial lost or duplicated");
    assert!(after.iter().all(|t| t["status"] == "finished"), "{after:#?}");
    // The finished trial is byte-for-byte what it was before the kill.
    assert_eq!(&after[0], finished_before[0]);
    assert_eq!(after[0]["attempts"], 1);
    assert_eq!(after[1]["attempts"], 2, "the interrupted trial ran a second time");
}
