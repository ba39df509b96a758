//! `jizhi-tune bench train`: images per second of whole training steps.

use anyhow::{bail, Result};
use clap::Args;
use jizhi_trainer::bench::time_train_steps;
use jizhi_trainer::{OptimizerKind, TrainConfig};
use std::path::PathBuf;

/// Options of `jizhi-tune bench train`.
#[derive(Debug, Args, Clone)]
pub struct BenchTrainArgs {
    /// Model.
    #[arg(long, default_value = "alexnet-bn-proxy")]
    pub model: String,
    /// Global batch size.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Precision: fp32, fp16, bf16 or fp16-naive.
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// Optimiser: sgd or lars.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Compute threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first (allocation, caches).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Data folder (Fashion-MNIST IDX files).
    #[arg(long, default_value = jizhi_trainer::data::FASHION_MNIST_DIR)]
    pub data_dir: PathBuf,
}

/// Runs the benchmark and prints a summary line, then the JSON record.
pub fn run(args: &BenchTrainArgs) -> Result<()> {
    if args.model != "alexnet-bn-proxy" {
        bail!("--model: unknown `{}`, expected alexnet-bn-proxy", args.model);
    }
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut cfg = TrainConfig::proxy_default(&args.data_dir);
    cfg.batch = args.batch;
    cfg.threads = threads;
    cfg.precision = crate::trial::precision(&args.precision)?;
    cfg.optimizer = match args.optimizer.as_str() {
        "sgd" => OptimizerKind::Sgd,
        "lars" => OptimizerKind::Lars,
        other => bail!("--optimizer: unknown `{other}`, expected sgd or lars"),
    };
    cfg.peak_lr = 0.01;
    eprintln!(
        "bench train: {} batch {} {} {}, {threads} thread(s), {} warm-up + {} timed steps",
        args.model, args.batch, args.precision, args.optimizer, args.warmup, args.steps
    );
    let times = time_train_steps(&cfg, args.warmup, args.steps)?;
    let median = times.median_secs();
    let ips = times.images_per_sec();
    println!("median step {:.1} ms: {:.0} images/s", median * 1e3, ips);
    let record = serde_json::json!({
        "bench": "train",
        "images_per_sec": ips,
        "median_step_secs": median,
        "model": args.model,
        "batch": args.batch,
        "precision": args.precision,
        "optimizer": args.optimizer,
        "threads": threads,
        "steps": args.steps,
    });
    println!("{record}");
    Ok(())
}
