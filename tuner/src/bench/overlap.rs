//! `jizhi-tune bench overlap`: training-step time of P ranks whose gradients are all-reduced
//! after the whole backward pass (one segment) against a segmented split whose all-reduces
//! overlap the backward pass, measured in alternating rounds in one run.

use anyhow::{bail, Result};
use clap::Args;
use jizhi_trainer::bench::time_train_steps;
use jizhi_trainer::ranks::segments::Segments;
use jizhi_trainer::TrainConfig;
use std::path::PathBuf;

/// Options of `jizhi-tune bench overlap`.
#[derive(Debug, Args, Clone)]
pub struct BenchOverlapArgs {
    /// Data-parallel ranks (P).
    #[arg(long, default_value_t = 8)]
    pub ranks: usize,
    /// Global batch size (3,072 stands for 64K).
    #[arg(long, default_value_t = 3072)]
    pub batch: usize,
    /// The segmented split compared with one segment: a count, `at:I,J,...`, or `auto`.
    #[arg(long, default_value = "auto")]
    pub segments: String,
    /// Precision: fp32, fp16, bf16 or fp16-naive.
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// Gradient fusion threshold in bytes inside each segment.
    #[arg(long, default_value_t = 1 << 20)]
    pub fusion_threshold_bytes: u64,
    /// Compute threads shared by the ranks [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Alternating rounds (each times both configurations).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Timed steps per configuration and round.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Data folder (Fashion-MNIST IDX files).
    #[arg(long, default_value = jizhi_trainer::data::FASHION_MNIST_DIR)]
    pub data_dir: PathBuf,
}

/// Runs the comparison and prints one line per round, a summary, then the JSON record.
pub fn run(args: &BenchOverlapArgs) -> Result<()> {
    if args.rounds == 0 || args.steps == 0 {
        bail!("--rounds and --steps must be at least 1");
    }
    let split = match args.segments.parse::<Segments>() {
        Ok(s) => s,
        Err(e) => bail!("--segments: {e}"),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut base = TrainConfig::proxy_default(&args.data_dir);
    base.batch = args.batch;
    base.threads = threads;
    base.ranks = args.ranks;
    base.precision = crate::trial::precision(&args.precision)?;
    base.fusion_threshold_bytes = args.fusion_threshold_bytes;
    base.peak_lr = 0.01;
    let single = TrainConfig {
        segments: Segments::Count(1),
        ..base.clone()
    };
    let (segmented, resolved) = jizhi_trainer::pinned_segments(&TrainConfig {
        segments: split,
        ..base
    })?;
    eprintln!(
        "bench overlap: proxy batch {} {} on {} ranks, {threads} thread(s); one segment vs {} ({} segments at tensors {:?}, fused under {} bytes)",
        args.batch,
        args.precision,
        args.ranks,
        args.segments,
        resolved.splits.len() + 1,
        resolved.splits,
        resolved.threshold
    );
    let (mut one, mut split_secs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let a = time_train_steps(&single, 1, args.steps)?.median_secs();
        let b = time_train_steps(&segmented, 1, args.steps)?.median_secs();
        eprintln!(
            "round {round}/{}: one segment {:.1} ms, segmented {:.1} ms",
            args.rounds,
            a * 1e3,
            b * 1e3
        );
        one.push(a);
        split_secs.push(b);
    }
    let (m1, m2) = (median(&mut one), median(&mut split_secs));
    println!(
        "median step: one segment {:.1} ms, segmented {:.1} ms: {:.3}x",
        m1 * 1e3,
        m2 * 1e3,
        m1 / m2
    );
    let record = serde_json::json!({
        "bench": "overlap",
        "ranks": args.ranks,
        "batch": args.batch,
        "precision": args.precision,
        "threads": threads,
        "segments": args.segments,
        "split_points": resolved.splits,
        "segmented_threshold_bytes": resolved.threshold,
        "secs_one_segment": m1,
        "secs_segmented": m2,
        "speedup": m1 / m2,
    });
    println!("{record}");
    Ok(())
}

/// Median of the samples (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    super::quantile(v, 0.5)
}
