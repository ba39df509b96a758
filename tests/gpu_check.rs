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

/// Builds stand-ins for `libcuda.so` (from `driver`) and `libnccl.so` in `dir`, or `None` without
/// a C compiler.
fn fake_libraries(dir: &std::path::Path, driver: &str) -> Option<()> {
    let nccl = "int ncclGetVersion(int *v) { *v = 22703; return 0; }\n";
    for (name, source) in [("cuda", driver), ("nccl", nccl)] {
        let c = dir.join(format!("{name}.c"));
        std::fs::write(&c, source).expect("write the C source");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join(format!("lib{name}.so")))
            .arg(&c)
            .status();
        built.ok().filter(|s| s.success())?;
    }
    Some(())
}

#[test]
fn a_driver_without_devices_or_with_missing_symbols_is_no_gpu_not_a_crash() {
    // A driver that loads but finds no device, and one too old to have a symbol the bindings
    // call: both must end in "no GPU" with the driver's words, exit 1, not a panic (101).
    let cases = [
        (
            "int cuInit(unsigned f) { return 100; }\n\
             int cuGetErrorString(int e, const char **s) { *s = \"no CUDA-capable device\"; return 0; }\n",
            "CUDA_ERROR_NO_DEVICE",
        ),
        ("int cuInit(unsigned f) { return 100; }\n", "Missing symbol cuGetErrorString"),
    ];
    for (source, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        if fake_libraries(dir.path(), source).is_none() {
            eprintln!("skipped: no C compiler (cc) to build a stand-in driver");
            return;
        }
        let out = run(bin()
            .arg("gpu-check")
            .env("LD_LIBRARY_PATH", dir.path())
            .env("RUST_BACKTRACE", "0"));
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stderr.contains("error: no GPU: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stdout.contains("\"gpu_check\":\"no-gpu\""), "{stdout}");
    }
}
