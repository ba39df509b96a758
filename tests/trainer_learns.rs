//! The trainer behind every trial learns the real data: a small-batch baseline run of
//! `jizhi-tune trial` reaches at least 85 % test top-1 after 2 epochs.

mod common;
use common::*;

#[test]
fn two_epochs_at_batch_256_reach_85_percent() {
    let out = run(bin().args([
        "trial", "--batch", "256", "--epochs", "2", "--optimizer", "sgd", "--lr", "0.1", "--warmup-epochs", "0.2",
        "--precision", "fp32", "--threads", "2", "--seed", "1",
    ]));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "trial failed: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let epochs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "epoch").collect();
    assert_eq!(epochs.len(), 2, "{stdout}");
    for (i, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], i as u64 + 1, "{e}");
        for key in ["step", "train_loss", "val_top1", "images_per_sec", "loss_scale", "skipped_steps", "wall_secs"] {
            assert!(!e[key].is_null(), "epoch line lacks {key}: {e}");
        }
    }
    // The loss falls from epoch to epoch on real data.
    assert!(epochs[1]["train_loss"].as_f64() < epochs[0]["train_loss"].as_f64(), "{stdout}");
    let last = lines.last().expect("a final line");
    assert_eq!(last["event"], "final", "{stdout}");
    let top1 = last["final_val_top1"].as_f64().expect("final_val_top1");
    assert!(top1 >= 0.85, "test top-1 after 2 epochs at batch 256 is only {top1}");
}
