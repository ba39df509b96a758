//! A malformed search space exits 2, names file, line and key, and writes nothing.

mod common;
use common::*;

/// Writes `text` as a search-space file, runs the tuner on it in an empty folder and checks the
/// error names `line` and `key`, the exit code is 2 and nothing was created.
fn refused(name: &str, text: &str, line: usize, key: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join(format!("{name}.toml"));
    std::fs::write(&file, text).expect("write the file");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    for args in [vec!["--headless"], vec!["plan"]] {
        let mut cmd = bin();
        cmd.current_dir(&work);
        if args == ["plan"] {
            cmd.arg("plan").arg(&file);
        } else {
            cmd.arg(&file).args(&args);
        }
        let out = run(&mut cmd);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let location = format!("{}:{line}:", file.display());
        assert!(
            stderr.contains(&location),
            "{name}: expected `{location}` in: {stderr}"
        );
        assert!(
            stderr.contains(&format!("`{key}`")),
            "{name}: expected key `{key}` in: {stderr}"
        );
        let created: Vec<_> = std::fs::read_dir(&work).expect("ls").collect();
        assert!(
            created.is_empty(),
            "{name}: something was written: {created:?}"
        );
    }
}

fn good() -> String {
    std::fs::read_to_string(space("smoke.toml")).expect("read smoke.toml")
}

/// `good()` with the first occurrence of `from` replaced, and the 1-based line it lands on.
fn edit(from: &str, to: &str) -> (String, usize) {
    let text = good();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("`{from}` not in smoke.toml"));
    let line = text[..at].matches('\n').count() + 1;
    (text.replacen(from, to, 1), line)
}

#[test]
fn unknown_key() {
    let (text, line) = edit("coarse_step = 4.0", "coarse_stepp = 4.0");
    refused("unknown-key", &text, line, "params.peak_lr.coarse_stepp");
}

#[test]
fn wrong_type() {
    let (text, line) = edit("epochs = 1\nprecision", "epochs = \"one\"\nprecision");
    refused("wrong-type", &text, line, "trainer.epochs");
}

#[test]
fn min_above_max() {
    let (text, line) = edit("min = 0.25", "min = 16.0");
    refused("min-above-max", &text, line, "params.peak_lr.min");
}

#[test]
fn log_scale_with_non_positive_bound() {
    let (text, line) = edit("min = 0.25", "min = 0.0");
    refused("log-zero", &text, line, "params.peak_lr.min");
}

#[test]
fn empty_value_list() {
    let (text, line) = edit("values = [\"dynamic\", 1024]", "values = []");
    refused("empty-values", &text, line, "params.loss_scale.values");
}

#[test]
fn zero_epochs() {
    let (text, line) = edit(
        "[stages.coarse]\npoints = 1\nepochs = 1",
        "[stages.coarse]\npoints = 1\nepochs = 0",
    );
    refused("zero-epochs", &text, line + 2, "stages.coarse.epochs");
}

#[test]
fn unknown_cluster_gpu() {
    let text = format!(
        "{}\n[cluster]\ngpu = \"v100\"\nnetwork = \"100gbe\"\n",
        good()
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("gpu ="))
        .unwrap_or(0)
        + 1;
    refused("bad-gpu", &text, line, "cluster.gpu");
}

#[test]
fn group_size_that_does_not_divide_the_local_ranks() {
    let (text, line) = edit(
        "ranks = 1024",
        "ranks = 1024\nlocal_ranks = 2\nalgorithm = \"hierarchical\"\ngroup_size = 4",
    );
    refused("bad-group", &text, line + 3, "trainer.group_size");
}

#[test]
fn scheduler_time_limit_that_is_not_a_duration() {
    let text = format!("{}\n[scheduler]\ntrial_timeout = \"soon\"\n", good());
    let line = text
        .lines()
        .position(|l| l.starts_with("trial_timeout"))
        .unwrap_or(0)
        + 1;
    refused("bad-timeout", &text, line, "scheduler.trial_timeout");
}

#[test]
fn study_name_that_is_not_a_file_name() {
    let (text, line) = edit("name = \"smoke\"", "name = \"../escape\"");
    refused("bad-name", &text, line, "study.name");
}

#[test]
fn shipped_spaces_plan_cleanly() {
    for name in ["alexnet64k.toml", "resnet50-64k.toml", "smoke.toml"] {
        let out = run(bin().arg("plan").arg(space(name)));
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{name}: {stderr}");
        if name.starts_with("resnet50") {
            // ResNet-50 trains its 28×28 proxy on the embedded data, and the plan says so.
            assert!(
                stdout.contains("model: resnet50 (its 28×28 proxy resnet20-proxy)"),
                "{stdout}"
            );
        }
        if name != "smoke.toml" {
            assert!(
                stdout.contains("cluster of 1024 p40 GPUs over 100gbe")
                    && stdout.contains("segments")
                    && stdout.contains("trained as 2 CPU data-parallel ranks"),
                "{name}: {stdout}"
            );
        }
        assert!(
            stdout.contains("stage coarse") && stdout.contains("stage refine"),
            "{stdout}"
        );
        let scaling = if name == "smoke.toml" {
            "16K → 768"
        } else {
            "64K → 3072"
        };
        assert!(stdout.contains(scaling), "{stdout}");
    }
}

#[test]
fn missing_data_set_says_how_to_install_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let empty = tmp.path().join("no-data-here");
    std::fs::create_dir(&empty).expect("mkdir");
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    let out = run(bin()
        .current_dir(&work)
        .env("JIZHI_FASHION_MNIST_DIR", &empty)
        .arg(space("smoke.toml"))
        .arg("--headless"));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("apt-get install dataset-fashion-mnist"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&empty.display().to_string()),
        "the message names the folder: {stderr}"
    );
    let created: Vec<_> = std::fs::read_dir(&work).expect("ls").collect();
    assert!(created.is_empty(), "something was written: {created:?}");
}

#[test]
fn baseline_out_of_range() {
    let (text, line) = edit("baseline_top1 = 0.8545", "baseline_top1 = 85.45");
    refused("baseline-range", &text, line, "study.baseline_top1");
}

/// `good()` with `extra` appended, and the 1-based line of its first line.
fn append(extra: &str) -> (String, usize) {
    let text = good();
    let line = text.lines().count() + 1;
    (format!("{text}{extra}"), line)
}

#[test]
fn unknown_group() {
    let (text, line) = append("\n[search]\ngroups = [\"speed\", \"accuracy\", \"vibes\"]\n");
    refused("unknown-group", &text, line + 2, "search.groups");
}

#[test]
fn group_list_missing_a_parameters_effect() {
    // loss_scale is a numerics parameter, but only accuracy is listed.
    let (text, line) = append("\n[search]\ngroups = [\"accuracy\"]\n");
    refused("missing-group", &text, line + 2, "search.groups");
}

#[test]
fn unknown_lr_scaling_rule() {
    let (text, line) = append("\n[search]\nladder = true\nlr_scaling = \"cubic\"\n");
    refused("bad-scaling", &text, line + 3, "search.lr_scaling");
}

#[test]
fn keep_fraction_out_of_range() {
    let (text, line) = append("\n[search]\nkeep_fraction = 0.0\n");
    refused("bad-keep", &text, line + 2, "search.keep_fraction");
}

#[test]
fn confirm_with_zero_seeds() {
    let (text, line) = append("\n[stages.confirm]\ntop = 1\nseeds = 0\n");
    refused("zero-seeds", &text, line + 3, "stages.confirm.seeds");
}

#[test]
fn refine_shrink_above_one() {
    let (text, line) = edit(
        "[stages.refine]\npoints = 1",
        "[stages.refine]\nshrink = 1.5\npoints = 1",
    );
    refused("bad-shrink", &text, line + 1, "stages.refine.shrink");
}

#[test]
fn unknown_effect() {
    let (text, line) = edit(
        "coarse_step = 4.0",
        "effect = \"colour\"\ncoarse_step = 4.0",
    );
    refused("bad-effect", &text, line, "params.peak_lr.effect");
}

#[test]
fn start_outside_the_range() {
    let (text, line) = edit("coarse_step = 4.0", "start = 100.0\ncoarse_step = 4.0");
    refused("bad-start", &text, line, "params.peak_lr.start");
}

#[test]
fn condition_on_a_parameter_that_is_not_searched() {
    let (text, line) = edit(
        "coarse_step = 4.0",
        "when = { warmup_epochs = [0.5] }\ncoarse_step = 4.0",
    );
    refused("bad-when", &text, line, "params.peak_lr.when");
}

#[test]
fn condition_on_a_value_the_parameter_cannot_take() {
    let (text, line) = edit(
        "coarse_step = 4.0",
        "when = { loss_scale = [\"static\"] }\ncoarse_step = 4.0",
    );
    refused("bad-when-value", &text, line, "params.peak_lr.when");
}
