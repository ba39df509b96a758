//! `jizhi-tune bench store`: what the store costs a study. The time to record one trial epoch
//! (journaled and fsync'd on its own, as during a run), the time to open and resume a big study
//! (what a rerun does before it starts any trial), and the store's size on disk.

use super::quantile;
use crate::study::is_done;
use anyhow::{Context, Result};
use clap::Args;
use jizhi_store::{Change, EpochMetrics, Event, Store, StudyRecord, TrialRecord, TrialStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `jizhi-tune bench store`.
#[derive(Debug, Args, Clone)]
pub struct StoreBenchArgs {
    /// Trials of the big study that is reopened and resumed (0: skip that part).
    #[arg(long, default_value_t = 10_000)]
    pub trials: u64,
    /// Epochs of each of its trials.
    #[arg(long, default_value_t = 100)]
    pub epochs: u32,
    /// Single epoch records timed, each journaled and fsync'd on its own (0: skip that part).
    #[arg(long, default_value_t = 2000)]
    pub records: usize,
    /// Also write every timed record's microseconds to this file, one per line.
    #[arg(long, value_name = "FILE")]
    pub save_samples: Option<PathBuf>,
    /// Times the big study is reopened and resumed (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub resumes: usize,
    /// Folder to work in, on the disk to measure [default: a new folder in the temporary directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the stores afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// The figures, printed as the last line (null for a part that was skipped).
#[derive(Debug, Serialize)]
struct Figures {
    trials: u64,
    epochs_per_trial: u32,
    records_timed: usize,
    record_epoch_us_median: Option<f64>,
    record_epoch_us_p99: Option<f64>,
    record_epoch_us_mean: Option<f64>,
    build_secs: Option<f64>,
    resumes: usize,
    resume_secs: Option<f64>,
    resume_secs_max: Option<f64>,
    load_all_secs: Option<f64>,
    rebuild_index_secs: Option<f64>,
    bytes_on_disk: Option<u64>,
    journal_bytes: Option<u64>,
    index_bytes: Option<u64>,
}

/// What the big study cost.
struct Big {
    build_secs: f64,
    resumes: Vec<f64>,
    load_all_secs: f64,
    rebuild_index_secs: f64,
    journal_bytes: u64,
    index_bytes: u64,
}

/// Runs the benchmark.
pub fn run(args: &StoreBenchArgs) -> Result<()> {
    let root = match &args.dir {
        Some(d) => d.join(format!("jizhi-bench-store-{}", std::process::id())),
        None => std::env::temp_dir().join(format!("jizhi-bench-store-{}", std::process::id())),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    println!("working in {}", root.display());
    let result = measure(args, &root);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    let figures = result?;
    if let (Some(median), Some(p99), Some(mean)) = (
        figures.record_epoch_us_median,
        figures.record_epoch_us_p99,
        figures.record_epoch_us_mean,
    ) {
        println!(
            "record one epoch: median {median:.0} µs, p99 {p99:.0} µs, mean {mean:.0} µs ({} records, each journaled and fsync'd)",
            figures.records_timed
        );
    }
    if let (
        Some(median),
        Some(max),
        Some(all),
        Some(rebuild),
        Some(bytes),
        Some(journal),
        Some(index),
    ) = (
        figures.resume_secs,
        figures.resume_secs_max,
        figures.load_all_secs,
        figures.rebuild_index_secs,
        figures.bytes_on_disk,
        figures.journal_bytes,
        figures.index_bytes,
    ) {
        println!(
            "open and resume {} trials × {} epochs: median {median:.3} s, slowest {max:.3} s over {} reopenings (goal ≤ 1 s)",
            figures.trials, figures.epochs_per_trial, figures.resumes
        );
        println!("read every trial with every epoch: {all:.2} s; rebuild a lost index from the journal: {rebuild:.2} s");
        println!(
            "on disk: {:.1} MiB ({:.1} MiB journal, {:.1} MiB index)",
            mib(bytes),
            mib(journal),
            mib(index)
        );
    }
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn measure(args: &StoreBenchArgs, root: &Path) -> Result<Figures> {
    let record = if args.records > 0 {
        record_epochs(&root.join("record"), args.records)?
    } else {
        Vec::new()
    };
    if let Some(file) = &args.save_samples {
        let text: String = record.iter().map(|us| format!("{us}\n")).collect();
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    let big = if args.trials > 0 {
        Some(big_study(args, &root.join("study"))?)
    } else {
        None
    };
    let some = |v: f64| (!record.is_empty()).then_some(v);
    Ok(Figures {
        trials: args.trials,
        epochs_per_trial: args.epochs,
        records_timed: record.len(),
        record_epoch_us_median: some(quantile(&record, 0.5)),
        record_epoch_us_p99: some(quantile(&record, 0.99)),
        record_epoch_us_mean: some(record.iter().sum::<f64>() / record.len().max(1) as f64),
        build_secs: big.as_ref().map(|b| b.build_secs),
        resumes: big.as_ref().map_or(0, |b| b.resumes.len()),
        resume_secs: big.as_ref().map(|b| quantile(&b.resumes, 0.5)),
        resume_secs_max: big.as_ref().map(|b| quantile(&b.resumes, 1.0)),
        load_all_secs: big.as_ref().map(|b| b.load_all_secs),
        rebuild_index_secs: big.as_ref().map(|b| b.rebuild_index_secs),
        bytes_on_disk: big.as_ref().map(|b| b.journal_bytes + b.index_bytes),
        journal_bytes: big.as_ref().map(|b| b.journal_bytes),
        index_bytes: big.as_ref().map(|b| b.index_bytes),
    })
}

/// Builds the big study, then times reopening and resuming it, reading it all and rebuilding its index.
fn big_study(args: &StoreBenchArgs, big: &Path) -> Result<Big> {
    let build_secs = build(big, args.trials, args.epochs)?;
    let (journal_bytes, index_bytes) = (
        disk_usage(&big.join("journal")),
        disk_usage(&big.join("db")),
    );

    let mut resumes = Vec::new();
    for i in 0..args.resumes.max(1) {
        let start = Instant::now();
        let (store, kept, requeued) = resume(big)?;
        resumes.push(start.elapsed().as_secs_f64());
        drop(store);
        if i == 0 {
            println!(
                "resume: {kept} finished trials kept, {requeued} interrupted trials re-queued"
            );
        }
    }
    resumes.sort_by(f64::total_cmp);

    let start = Instant::now();
    let all = Store::open(big)?.trials()?;
    let load_all_secs = start.elapsed().as_secs_f64();
    let epochs_read: usize = all.iter().map(|t| t.epochs.len()).sum();
    anyhow::ensure!(
        epochs_read as u64 == args.trials * u64::from(args.epochs),
        "read back {epochs_read} epochs"
    );
    drop(all);

    std::fs::remove_dir_all(big.join("db")).context("removing the index")?;
    let start = Instant::now();
    drop(Store::open(big)?);
    let rebuild_index_secs = start.elapsed().as_secs_f64();
    Ok(Big {
        build_secs,
        resumes,
        load_all_secs,
        rebuild_index_secs,
        journal_bytes,
        index_bytes,
    })
}

/// Times `n` single epoch records of a running trial, in microseconds, sorted.
fn record_epochs(dir: &Path, n: usize) -> Result<Vec<f64>> {
    println!("recording {n} epochs one at a time ...");
    let store = Store::open(dir)?;
    store.put_study(&study())?;
    let mut running = trial(1, 0);
    running.status = TrialStatus::Running;
    store.put_trial(&running)?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let m = metrics(1, i as u32 + 1);
        let start = Instant::now();
        store.put_epoch(1, &m)?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// Writes the big study in bulk (as an import does); returns the seconds it took.
fn build(dir: &Path, trials: u64, epochs: u32) -> Result<f64> {
    println!("building a study of {trials} trials × {epochs} epochs ...");
    let start = Instant::now();
    let store = Store::open(dir)?;
    store.put_study(&study())?;
    let step = (trials / 10).max(1);
    let mut first = 1;
    while first <= trials {
        let last = (first + step - 1).min(trials);
        store.apply_all((first..=last).flat_map(|id| trial_changes(id, epochs)))?;
        println!(
            "  {last}/{trials} trials ({:.1} s)",
            start.elapsed().as_secs_f64()
        );
        first = last + 1;
    }
    drop(store);
    Ok(start.elapsed().as_secs_f64())
}

/// Opens the study and works out what a rerun keeps and runs again, as the tuner does first.
fn resume(dir: &Path) -> Result<(Store, usize, usize)> {
    Store::peek_study(dir)?.context("the benchmark study has no study record")?;
    let store = Store::open(dir)?;
    store
        .study()?
        .context("the benchmark study has no study record")?;
    let records = store.trial_records()?;
    let commands = store.commands()?;
    let inherited = store.inherited()?;
    anyhow::ensure!(
        commands.len() == records.len() && inherited.is_empty(),
        "unexpected benchmark store contents"
    );
    let kept = records.iter().filter(|t| is_done(t.status)).count();
    let requeued = records.len() - kept;
    Ok((store, kept, requeued))
}

fn study() -> StudyRecord {
    StudyRecord {
        name: "bench".into(),
        space_text: include_str!("../../../search-spaces/alexnet64k.toml").into(),
        seed: 2018,
        created_unix: 1_700_000_000,
    }
}

/// A deterministic pseudo-random fraction for realistic-looking (full-precision) metrics.
fn fraction(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A trial like the tuner writes: 7 parameters; 1 in 100 interrupted, the rest finished.
fn trial(id: u64, epochs: u32) -> TrialRecord {
    let params: BTreeMap<String, serde_json::Value> = [
        (
            "peak_lr",
            serde_json::json!(0.5 * (1.0 + 15.0 * fraction(id, 1))),
        ),
        ("warmup_epochs", serde_json::json!(0.5)),
        ("loss_scale", serde_json::json!("dynamic")),
        ("fusion_threshold_mib", serde_json::json!(64.0)),
        ("lars_eta", serde_json::json!(0.01)),
        ("momentum", serde_json::json!(0.9)),
        ("weight_decay", serde_json::json!(0.0005)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let finished = id % 100 != 0;
    TrialRecord {
        id,
        stage: if id % 3 == 0 { "refine" } else { "coarse" }.into(),
        batch: [32768, 49152, 65536][(id % 3) as usize],
        proxy_batch: [1536, 2304, 3072][(id % 3) as usize],
        params,
        status: if finished {
            TrialStatus::Finished
        } else {
            TrialStatus::Running
        },
        attempts: 1,
        error: None,
        final_val_top1: finished.then(|| 0.5 + 0.3 * fraction(id, 2)),
        wall_secs: finished.then(|| f64::from(epochs) * 30.0 * (1.0 + fraction(id, 3))),
        modelled_step_secs: None,
        epochs: Vec::new(),
    }
}

fn metrics(id: u64, epoch: u32) -> EpochMetrics {
    let e = u64::from(epoch);
    EpochMetrics {
        epoch,
        step: e * 417,
        train_loss: 6.9 * (1.0 - 0.9 * fraction(id, e * 4)),
        val_top1: 0.8 * fraction(id, e * 4 + 1),
        images_per_sec: 20_000.0 * (1.0 + fraction(id, e * 4 + 2)),
        loss_scale: 65536.0,
        skipped_steps: e % 7,
        wall_secs: e as f64 * 30.0 * (1.0 + fraction(id, e * 4 + 3)),
        underflow_fraction: 0.0,
    }
}

/// Every change the tuner makes for one trial: command, planned, started, epochs, ended.
fn trial_changes(id: u64, epochs: u32) -> impl Iterator<Item = Change> {
    let args: Vec<String> = (0..18)
        .flat_map(|k| {
            [
                format!("--option-{k}"),
                format!("{}", fraction(id, 100 + k)),
            ]
        })
        .collect();
    let record = trial(id, epochs);
    let event = |kind: &str| Event {
        unix_ms: 1_700_000_000_000 + id * 1000,
        trial_id: Some(id),
        kind: kind.into(),
        detail: "attempt 1".into(),
    };
    let ended = (record.status != TrialStatus::Running).then(|| Change::Event(event("finished")));
    [
        Change::Command { trial: id, args },
        Change::Trial(record),
        Change::Event(event("started")),
    ]
    .into_iter()
    .chain((1..=epochs).map(move |e| Change::Epoch {
        trial: id,
        metrics: metrics(id, e),
    }))
    .chain(ended)
}

/// Bytes a file or folder takes on disk (allocated blocks, as `du` counts them).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.blocks() * 512
    }
}
