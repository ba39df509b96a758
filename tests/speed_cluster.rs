//! The speed group on a modelled cluster, on the real binary: a space with two local ranks per
//! trial, searched fusion threshold and segments, and a `[cluster]` records each trial's modelled
//! cluster step time; the speed probe's winner (lowest modelled step) is what the later stages
//! run; and the file's `[scheduler]` keys (concurrency, time limit, launcher) take effect.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A tiny study: a 2 × 2 speed probe, then one coarse trial, at one batch size.
const SPACE: &str = r#"[study]
name = "speed-cluster"
seed = 3

[trainer]
model = "alexnet-bn"
epochs = 1
precision = "fp16"
optimizer = "lars"
weight_decay = 0.0005
ranks = 1024
local_ranks = 2

[cluster]
gpu = "p40"
network = "100gbe"

[batch]
sizes = [8192]

[search]
groups = ["speed", "accuracy"]

[params.fusion_threshold_mib]
values = [1, 64]
coarse_step = 1
fine_step = 1

[params.segments]
values = [1, 4]
coarse_step = 1
fine_step = 1

[params.peak_lr]
values = [1.0]
coarse_step = 1
fine_step = 1

[stages.probe]
points = 4
epochs = 1
data_fraction = 0.015

[stages.coarse]
points = 1
epochs = 1
data_fraction = 0.015

[stages.refine]
points = 0
epochs = 1

[scheduler]
concurrency = 2
"#;

fn search(space: &Path, store: &Path) -> (String, Vec<serde_json::Value>) {
    let out = run(bin().arg(space).args(["--headless", "--store"]).arg(store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "search failed\n{stdout}\n{stderr}");
    (stdout, export(store))
}

fn num(t: &serde_json::Value, key: &str) -> f64 {
    t["params"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("no numeric {key}: {t}"))
}

#[test]
fn the_speed_probe_picks_the_lowest_modelled_cluster_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let space = tmp.path().join("speed.toml");
    std::fs::write(&space, SPACE).expect("write the space");
    let (stdout, trials) = search(&space, &tmp.path().join("store"));
    // The file's concurrency is used (no --max-concurrent given), and the run says what it models.
    assert!(stdout.contains("2 trial(s) at a time"), "{stdout}");
    assert!(
        stdout.contains("trained as 2 CPU data-parallel ranks per trial")
            && stdout.contains("cluster of 1024 p40 GPUs over 100gbe"),
        "{stdout}"
    );

    assert_eq!(trials.len(), 5, "4 speed probes and 1 coarse trial");
    let modelled = |t: &serde_json::Value| {
        t["modelled_step_secs"]
            .as_f64()
            .unwrap_or_else(|| panic!("no modelled step time: {t}"))
    };
    for t in &trials {
        assert_eq!(t["status"], "finished", "{t}");
        assert!(modelled(t) > 0.0, "{t}");
    }
    let probes: Vec<&serde_json::Value> = trials.iter().filter(|t| t["stage"] == "speed").collect();
    assert_eq!(probes.len(), 4);
    let best = probes
        .iter()
        .map(|t| modelled(t))
        .fold(f64::INFINITY, f64::min);
    let worst = probes.iter().map(|t| modelled(t)).fold(0.0, f64::max);
    assert!(
        worst > best * 1.01,
        "the settings must matter to the model: {best} .. {worst}"
    );
    let coarse = trials
        .iter()
        .find(|t| t["stage"] == "coarse")
        .expect("a coarse trial");
    // The coarse stage runs the decided speed settings: those of a probe with the lowest time.
    let decided = (num(coarse, "fusion_threshold_mib"), num(coarse, "segments"));
    let winners: Vec<(f64, f64)> = probes
        .iter()
        .filter(|t| modelled(t) == best)
        .map(|t| (num(t, "fusion_threshold_mib"), num(t, "segments")))
        .collect();
    assert!(
        winners.contains(&decided),
        "coarse runs {decided:?}, the lowest modelled step was {winners:?}"
    );
    assert_eq!(modelled(coarse), best, "{coarse}");
}

#[test]
fn scheduler_keys_in_the_file_limit_and_launch_the_trials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A launcher that holds every trial back for longer than the file's time limit.
    let slow = tmp.path().join("slow.sh");
    std::fs::write(&slow, "#!/bin/sh\nsleep 30\nexec \"$@\"\n").expect("write the launcher");
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = SPACE.replace(
        "[scheduler]\nconcurrency = 2\n",
        &format!(
            "[scheduler]\nconcurrency = 4\ntrial_timeout = \"2s\"\nmax_retries = 0\nlauncher = \"{}\"\n",
            slow.display()
        ),
    );
    let space = tmp.path().join("limited.toml");
    std::fs::write(&space, text).expect("write the space");
    let t0 = std::time::Instant::now();
    let (stdout, trials) = search(&space, &tmp.path().join("store"));
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(25),
        "the time limit did not stop the trials: {:?}\n{stdout}",
        t0.elapsed()
    );
    assert!(stdout.contains("4 trial(s) at a time"), "{stdout}");
    assert!(!trials.is_empty(), "{stdout}");
    for t in &trials {
        assert_eq!(t["status"], "failed", "{t}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("timed out: still running after the trial timeout of 2s"),
            "{t}"
        );
    }
}
