//! Data-parallel trials through the real binary: P ranks learn, are reproducible, say how many
//! all-reduce calls a step makes, report the modelled cluster step time when asked, and refuse
//! settings that cannot work.

mod common;
use common::*;

/// Runs a short trial with `extra` options; returns the final record.
fn trial(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "trial",
        "--batch",
        "128",
        "--epochs",
        "1",
        "--lr",
        "0.1",
        "--threads",
        "2",
        "--seed",
        "5",
    ];
    args.extend_from_slice(extra);
    let out = run(bin().args(&args));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "trial {extra:?} failed: {stderr}");
    let last = stdout.lines().last().expect("a final line");
    let v: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(v["event"], "final", "{stdout}");
    v
}

#[test]
fn four_ranks_learn_reproducibly_with_segmented_all_reduce() {
    let learn = ["--data-fraction", "0.1", "--ranks", "4"];
    let a = trial(
        &[
            &learn[..],
            &["--segments", "3", "--fusion-threshold-bytes", "0"],
        ]
        .concat(),
    );
    let top1 = a["final_val_top1"].as_f64().expect("top-1");
    assert!(top1 > 0.5, "4 ranks reached only {top1}");
    // unfused: one call per tensor of the proxy AlexNet-BN (5 conv + BN, BN5, 3 dense: 28)
    assert_eq!(a["allreduce_calls_per_step"], 28);
    let b = trial(
        &[
            &learn[..],
            &["--segments", "3", "--fusion-threshold-bytes", "0"],
        ]
        .concat(),
    );
    assert_eq!(
        a["final_val_top1"], b["final_val_top1"],
        "same settings, same result"
    );
    let synced = trial(
        &[
            &learn[..],
            &[
                "--sync-bn",
                "--algorithm",
                "hierarchical",
                "--group-size",
                "2",
            ],
        ]
        .concat(),
    );
    assert!(synced["final_val_top1"].as_f64().expect("top-1") > 0.5);
}

#[test]
fn the_modelled_cluster_step_follows_the_fusion_threshold() {
    let cluster = [
        "--model-cluster",
        "1024",
        "--model-gpu",
        "p40",
        "--model-network",
        "100gbe",
    ];
    let step = |threshold: &str| {
        let mut extra = vec![
            "--data-fraction",
            "0.01",
            "--fusion-threshold-bytes",
            threshold,
        ];
        extra.extend_from_slice(&cluster);
        trial(&extra)["modelled_cluster_step_secs"]
            .as_f64()
            .expect("modelled step")
    };
    let (unfused, fused) = (step("0"), step("4194304"));
    assert!(fused < unfused, "fused {fused} s vs unfused {unfused} s");
    let plain = trial(&["--data-fraction", "0.01"]);
    assert!(
        plain.get("modelled_cluster_step_secs").is_none(),
        "only when asked"
    );
}

#[test]
fn impossible_rank_settings_are_refused() {
    for (extra, says) in [
        (&["--ranks", "300"][..], "at least 300 images"),
        (
            &[
                "--ranks",
                "4",
                "--algorithm",
                "hierarchical",
                "--group-size",
                "3",
            ][..],
            "must divide",
        ),
        (&["--segments", "many"][..], "--segments"),
        (
            &["--model-cluster", "64", "--model-network", "carrier-pigeon"][..],
            "--model-network",
        ),
    ] {
        let mut args = vec![
            "trial",
            "--batch",
            "256",
            "--epochs",
            "1",
            "--data-fraction",
            "0.01",
        ];
        args.extend_from_slice(extra);
        let out = run(bin().args(&args));
        let (_, stderr) = texts(&out);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
}
