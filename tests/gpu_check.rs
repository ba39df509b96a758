//! `jizhi-tune gpu-check`: without a GPU it says so and fails; with one, every check passes.

mod common;
use common::*;

#[test]
fn gpu_check_reports_its_outcome_as_one_json_line_and_exit_code() {
    // Small buffers: on a GPU machine this is the quick version of bench/gpu_check.sh.
    let out = run(bin().args(["gpu-check", "--elements", "5000"]));
    let (stdout, stderr) = texts(&out);
    let last = stdout.lines().last().unwrap_or_default();
    let line: serde_json::Value = match serde_json::from_str(last) {
        Ok(v) => v,
        Err(e) => panic!("last stdout line is not JSON ({e}): {stdout}\nstderr: {stderr}"),
    };
    match line["gpu_check"].as_str() {
        Some("no-gpu") => {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("error: no GPU: "), "{stderr}");
            assert!(stderr.contains("needs a CUDA GPU"), "{stderr}");
            assert!(
                line["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("no GPU: ")),
                "{line}"
            );
        }
        Some("ok") => {
            assert!(out.status.success(), "{stderr}");
            let checks = line["all_reduce"].as_array().expect("all_reduce");
            assert_eq!(checks.len(), 3 * 4, "{line}");
            assert!(
                line["split"].as_array().is_some_and(|s| !s.is_empty()),
                "{line}"
            );
        }
        other => panic!("gpu-check failed ({other:?}): {line}\nstderr: {stderr}"),
    }
}
