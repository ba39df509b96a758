//! The grouped ladder search on the real binary: probes decide speed and numerics, the accuracy
//! group runs coarse → refine → confirm per rung, the second rung is seeded by the first, halving
//! is recorded, and a rerun proposes (and runs) nothing new.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/ladder.toml")
}

#[test]
fn grouped_ladder_search_runs_every_stage_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let out = run(bin()
        .arg(fixture())
        .args(["--headless", "--max-concurrent", "2", "--store"])
        .arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "search failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let trials = export(&store);
    let stages: Vec<String> = trials
        .iter()
        .map(|t| format!("{}@{}", t["stage"].as_str().unwrap_or("?"), t["batch"]))
        .collect();
    let mut order: Vec<String> = stages.clone();
    order.dedup();
    assert_eq!(
        order,
        [
            "speed@8192",
            "numerics@8192",
            "coarse@8192",
            "refine@8192",
            "confirm@8192",
            "coarse@16384",
            "refine@16384",
            "confirm@16384"
        ],
        "{stages:?}"
    );
    // Probes: two fusion thresholds, then two loss scales at the decided threshold.
    let probe = |s: &str| {
        trials
            .iter()
            .filter(|t| t["stage"] == s)
            .collect::<Vec<_>>()
    };
    assert_eq!(probe("speed").len(), 2);
    assert_eq!(probe("numerics").len(), 2);
    let fusion = &probe("numerics")[0]["params"]["fusion_threshold_mib"];
    assert!(probe("numerics")
        .iter()
        .all(|t| &t["params"]["fusion_threshold_mib"] == fusion));
    // Every accuracy trial carries the decided threshold and loss scale.
    let scale = &trials
        .iter()
        .find(|t| t["stage"] == "coarse")
        .expect("coarse")["params"]["loss_scale"];
    for t in trials
        .iter()
        .filter(|t| t["stage"] != "speed" && t["stage"] != "numerics")
    {
        assert_eq!(&t["params"]["fusion_threshold_mib"], fusion, "{t}");
        assert_eq!(&t["params"]["loss_scale"], scale, "{t}");
    }
    // The 16K rung is seeded: fewer coarse points.
    assert_eq!(
        trials
            .iter()
            .filter(|t| t["stage"] == "coarse" && t["batch"] == 16384)
            .count(),
        2
    );
    // Confirm: one configuration, two seeds, reported as mean ± std.
    let confirm: Vec<_> = trials
        .iter()
        .filter(|t| t["stage"] == "confirm" && t["batch"] == 8192)
        .collect();
    assert_eq!(confirm.len(), 2);
    assert_ne!(confirm[0]["params"]["seed"], confirm[1]["params"]["seed"]);
    assert!(stdout.contains("mean ± std over seeds"), "{stdout}");
    // Successive halving after the coarse stage names the dropped trials.
    assert!(
        stdout.contains("pruned: successive halving after stage coarse"),
        "{stdout}"
    );

    // A rerun proposes the same trials: nothing runs, nothing changes.
    let again = run(bin()
        .arg(fixture())
        .args(["--headless", "--store"])
        .arg(&store));
    let (stdout2, stderr2) = texts(&again);
    assert!(again.status.success(), "{stdout2}\n{stderr2}");
    assert!(
        !stdout2.contains("started"),
        "a trial was rerun:\n{stdout2}"
    );
    assert!(
        !stdout2.contains("pruned:"),
        "pruning is recorded once:\n{stdout2}"
    );
    assert_eq!(export(&store), trials);
}
