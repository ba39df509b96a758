//! A trial killed mid-run and restarted with the same `--checkpoint` continues from its last
//! epoch (reporting the saved epochs again first) and ends bit-identical to an uninterrupted run
//! (augmentation and loss scaling included).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const TRIAL: [&str; 19] = [
    "trial", "--batch", "512", "--epochs", "3", "--data-fraction", "0.05", "--optimizer", "lars", "--lr", "2",
    "--precision", "fp16", "--threads", "1", "--seed", "5", "--warmup-epochs=0.5", "--augment",
];

fn lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
}

/// The line without its timing fields (which differ run to run).
fn untimed(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["images_per_sec", "wall_secs", "data_wait_secs"] {
            o.remove(k);
        }
    }
    v
}

#[test]
fn killed_trial_resumes_from_its_checkpoint_bit_identically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let straight = run(bin().args(TRIAL));
    let (out, err) = texts(&straight);
    assert!(straight.status.success(), "{err}");
    let straight = lines(&out);
    assert_eq!(straight.len(), 4, "{out}");

    let ckpt = tmp.path().join("trial.ckpt");
    let mut child = bin()
        .args(TRIAL)
        .arg("--checkpoint")
        .arg(&ckpt)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the trial");
    let mut first = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        first.push(serde_json::from_str::<serde_json::Value>(&line.expect("a line")).expect("JSON"));
        if first.len() == 2 {
            break;
        }
    }
    child.kill().expect("SIGKILL the trial");
    child.wait().expect("reap");
    assert!(ckpt.is_file(), "no checkpoint after two reported epochs");

    let resumed = run(bin().args(TRIAL).arg("--checkpoint").arg(&ckpt));
    let (out, err) = texts(&resumed);
    assert!(resumed.status.success(), "{err}");
    let resumed = lines(&out);
    assert_eq!(resumed.len(), 4, "the resumed run reports every epoch and the final line: {out}");
    assert_eq!(&resumed[..2], &first[..], "the epochs from the checkpoint are reported as they were");
    let resumed: Vec<serde_json::Value> = resumed.iter().map(untimed).collect();
    let expected: Vec<serde_json::Value> = straight.iter().map(untimed).collect();
    assert_eq!(resumed, expected, "the resumed run differs from the uninterrupted one");

    // A checkpoint of another configuration is refused, not silently resumed.
    let other_lr: Vec<&str> = TRIAL.iter().map(|&a| if a == "2" { "1" } else { a }).collect();
    let other = run(bin().args(other_lr).arg("--checkpoint").arg(&ckpt));
    let (_, err) = texts(&other);
    assert!(!other.status.success());
    assert!(err.contains("another configuration"), "{err}");
}
