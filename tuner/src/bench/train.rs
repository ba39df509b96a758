//! `jizhi-tune bench train`: images per second of whole training steps.

use anyhow::{bail, Result};
use clap::Args;
use jizhi_trainer::bench::time_train_steps_interleaved;
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
    /// Precision: fp32, fp16, bf16 or fp16-naive; a comma list (`fp32,fp16,bf16`) times them
    /// side by side in one process, one step of each in turn, with ratios to the first.
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
    /// Data-parallel ranks.
    #[command(flatten)]
    pub ranks: crate::ranks_args::RanksArgs,
    /// Data folder (Fashion-MNIST IDX files).
    #[arg(long, default_value = jizhi_trainer::data::FASHION_MNIST_DIR)]
    pub data_dir: PathBuf,
}

/// Runs the benchmark and prints a summary line, then the JSON record.
pub fn run(args: &BenchTrainArgs) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut cfg = TrainConfig::proxy_default(&args.data_dir);
    cfg.model = jizhi_trainer::ModelKind::parse(&args.model)
        .map_err(|e| anyhow::anyhow!("--model: {e}"))?;
    cfg.batch = args.batch;
    cfg.threads = threads;
    cfg.optimizer = match args.optimizer.as_str() {
        "sgd" => OptimizerKind::Sgd,
        "lars" => OptimizerKind::Lars,
        other => bail!("--optimizer: unknown `{other}`, expected sgd or lars"),
    };
    cfg.peak_lr = 0.01;
    args.ranks.apply(&mut cfg)?;
    // an `auto` split is resolved once, so warm-up and timed steps use the same one
    let (cfg, segmentation) = jizhi_trainer::pinned_segments(&cfg)?;
    let precisions: Vec<&str> = args.precision.split(',').map(str::trim).collect();
    let cfgs = precisions
        .iter()
        .map(|p| {
            let mut c = cfg.clone();
            c.precision = crate::trial::precision(p)?;
            Ok(c)
        })
        .collect::<Result<Vec<_>>>()?;
    eprintln!(
        "bench train: {} batch {} {} {}, {threads} thread(s), {} rank(s), segments {}, {} warm-up + {} timed steps{}",
        args.model,
        args.batch,
        args.precision,
        args.optimizer,
        cfg.ranks,
        cfg.segments,
        args.warmup,
        args.steps,
        if cfgs.len() > 1 { " of each, interleaved" } else { "" }
    );
    let all = time_train_steps_interleaved(&cfgs, args.warmup, args.steps)?;
    let first_ips = all[0].images_per_sec();
    for (p, times) in precisions.iter().zip(&all) {
        let median = times.median_secs();
        let ips = times.images_per_sec();
        if all.len() > 1 {
            println!(
                "{p}: median step {:.1} ms: {:.0} images/s, {:.2}x {}",
                median * 1e3,
                ips,
                ips / first_ips,
                precisions[0]
            );
        } else {
            println!("median step {:.1} ms: {:.0} images/s", median * 1e3, ips);
        }
        let mut record = serde_json::json!({
            "bench": "train",
            "images_per_sec": ips,
            "median_step_secs": median,
            "model": args.model,
            "batch": args.batch,
            "precision": p,
            "optimizer": args.optimizer,
            "threads": threads,
            "ranks": cfg.ranks,
            "segments": cfg.segments.to_string(),
            "allreduce_calls_per_step": jizhi_trainer::allreduce_calls_per_step(&cfg, &segmentation),
            "split_points": segmentation.splits,
            "fusion_threshold_bytes": segmentation.threshold,
            "steps": args.steps,
        });
        if all.len() > 1 {
            record["interleaved_with"] = serde_json::json!(precisions);
            record["ratio_to_first"] = serde_json::json!(ips / first_ips);
        }
        println!("{record}");
    }
    Ok(())
}
