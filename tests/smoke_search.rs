//! The whole path on the real binary: search space → trials → store → summary → export.

mod common;
use common::*;

#[test]
fn smoke_search_runs_exports_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("smoke-store");
    let out = run(bin()
        .arg(space("smoke.toml"))
        .args(["--headless", "--max-concurrent", "2", "--store"])
        .arg(&store));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "search failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    // The run says plainly that Fashion-MNIST stands in for ImageNet, with the batch scaling.
    assert!(stdout.contains("Fashion-MNIST"), "{stdout}");
    assert!(stdout.contains("8K → 384") && stdout.contains("16K → 768"), "{stdout}");
    assert!(stdout.contains("best configuration per batch size"), "{stdout}");
    assert!(stdout.contains(&store.display().to_string()), "summary names the store: {stdout}");

    let trials = export(&store);
    assert_eq!(trials.len(), 4, "smoke.toml plans 2 coarse + 2 refine trials");
    for t in &trials {
        assert_eq!(t["status"], "finished", "{t}");
        assert!(t["params"]["peak_lr"].is_number(), "{t}");
        assert!(t["params"]["loss_scale"].is_string() || t["params"]["loss_scale"].is_number(), "{t}");
        let epochs = t["epochs"].as_array().expect("epochs array");
        assert_eq!(epochs.len(), 1, "{t}");
        let top1 = epochs[0]["val_top1"].as_f64().expect("val_top1");
        // Ten classes: anything clearly above 10% has learned from the real data.
        assert!(top1 > 0.3, "trial {} reached only {top1}", t["id"]);
    }
    let stages: Vec<&str> = trials.iter().filter_map(|t| t["stage"].as_str()).collect();
    assert_eq!(stages, ["coarse", "coarse", "refine", "refine"]);
    let batches: Vec<u64> = trials.iter().filter_map(|t| t["batch"].as_u64()).collect();
    assert_eq!(batches, [8192, 16384, 8192, 16384]);

    // CSV: a header and one row per trial epoch.
    let csv = run(bin().args(["export", "--format", "csv"]).arg(&store));
    let (csv, _) = texts(&csv);
    assert!(csv.starts_with("id,stage,batch,proxy_batch,status"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 4);

    // show: every trial and the best per batch size.
    let show = run(bin().arg("show").arg(&store));
    let (table, _) = texts(&show);
    assert!(show.status.success());
    assert!(table.contains("best configuration per batch size") && table.contains("refine"), "{table}");

    // Rerunning the same command finds everything done and runs nothing.
    let again = run(bin().arg(space("smoke.toml")).args(["--headless", "--store"]).arg(&store));
    let (stdout2, stderr2) = texts(&again);
    assert!(again.status.success(), "{stderr2}");
    assert!(stdout2.contains("resuming"), "{stdout2}");
    assert!(!stdout2.contains("started"), "a finished trial was rerun:\n{stdout2}");
    assert_eq!(export(&store), trials);

    // --fresh starts over and keeps the old store aside, intact.
    let fresh = run(bin()
        .arg(space("smoke.toml"))
        .args(["--headless", "--fresh", "--max-concurrent", "2", "--store"])
        .arg(&store));
    let (stdout3, stderr3) = texts(&fresh);
    assert!(fresh.status.success(), "{stderr3}");
    let aside = stdout3
        .lines()
        .find_map(|l| l.strip_prefix("--fresh: the previous store was moved to "))
        .unwrap_or_else(|| panic!("--fresh does not say where the old store went:\n{stdout3}"));
    assert_eq!(export(std::path::Path::new(aside)), trials, "the old store is kept as it was");
    let again = export(&store);
    assert_eq!(again.len(), 4);
    assert!(again.iter().all(|t| t["status"] == "finished" && t["attempts"] == 1), "{again:#?}");
}
