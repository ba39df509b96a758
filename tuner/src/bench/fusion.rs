//! `jizhi-tune bench fusion`: the full-size ResNet-50 fp16 gradients (161 tensors) all-reduced
//! across P in-process ranks, one call per tensor (unfused, the anchor) and fused into
//! buckets by `plan_buckets` at a sweep of thresholds, in the same run.

use super::allreduce::{describe, human, median, parse_bytes, time_on_ranks, AlgorithmName};
use crate::commands::BadInput;
use anyhow::Result;
use clap::Args;
use half::f16;
use jizhi_trainer::collective::{Collective, Payload};
use jizhi_trainer::fusion::plan_buckets;
use jizhi_trainer::inventory::resnet50;
use serde::Serialize;
use std::ops::Range;

/// Options of `jizhi-tune bench fusion`.
#[derive(Debug, Args, Clone)]
pub struct FusionBenchArgs {
    /// Data-parallel ranks.
    #[arg(long, default_value_t = 8)]
    pub ranks: usize,
    /// Fusion thresholds to sweep, comma-separated (0, one call per tensor, is always measured).
    #[arg(long, value_parser = parse_bytes, value_delimiter = ',',
          default_value = "0,64K,256K,1M,4M,16M,64M")]
    pub thresholds: Vec<u64>,
    /// All-reduce algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmName::Ring)]
    pub algorithm: AlgorithmName,
    /// Ranks per group of the hierarchical and hybrid algorithms (reduced to a divisor of P).
    #[arg(long, default_value_t = 4)]
    pub group: usize,
    /// Message size from which the hybrid algorithm uses the ring.
    #[arg(long, value_parser = parse_bytes, default_value = "1M")]
    pub hybrid_threshold: u64,
    /// Timed repetitions of all the gradients per threshold (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

/// One threshold's figures.
#[derive(Debug, Clone, Serialize)]
struct Row {
    threshold: u64,
    calls: usize,
    secs: f64,
    speedup: f64,
}

/// The figures, printed as the last line.
#[derive(Debug, Serialize)]
struct Figures {
    ranks: usize,
    algorithm: String,
    tensors: usize,
    bytes: u64,
    calls_unfused: usize,
    secs_unfused: f64,
    /// The threshold with the least median time.
    best_threshold: u64,
    calls_fused: usize,
    secs_fused: f64,
    fewer_calls: f64,
    speedup: f64,
    rows: Vec<Row>,
}

/// Runs the benchmark.
pub fn run(args: &FusionBenchArgs) -> Result<()> {
    if args.ranks == 0 || args.reps == 0 {
        return Err(BadInput("--ranks and --reps must be at least 1".into()).into());
    }
    let inventory = resnet50();
    let numel: Vec<usize> = inventory.iter().map(|p| p.numel).collect();
    let sizes: Vec<u64> = numel.iter().map(|&n| 2 * n as u64).collect();
    let total: usize = numel.iter().sum();
    let offsets: Vec<usize> = std::iter::once(0)
        .chain(numel.iter().scan(0, |acc, &n| {
            *acc += n;
            Some(*acc)
        }))
        .collect();
    let mut thresholds = args.thresholds.clone();
    thresholds.push(0);
    thresholds.sort_unstable();
    thresholds.dedup();
    // Each job: the element ranges of the flat gradient buffer, one per all-reduce call.
    let jobs: Vec<Vec<Range<usize>>> = thresholds
        .iter()
        .map(|&t| {
            plan_buckets(&sizes, t)
                .into_iter()
                .map(|b| offsets[b.start]..offsets[b.end])
                .collect()
        })
        .collect();
    let algorithm = args
        .algorithm
        .at(args.ranks, args.group, args.hybrid_threshold);
    println!(
        "ResNet-50 gradients: {} tensors, {} in fp16, {} ranks, {}",
        numel.len(),
        human(2 * total as u64),
        args.ranks,
        describe(algorithm)
    );
    println!(
        "{:>10}  {:>6}  {:>10}  {:>11}",
        "threshold", "calls", "median s", "vs unfused"
    );
    let mut rows: Vec<Row> = Vec::new();
    let work = |c: &mut dyn Collective, buf: &mut [f16], buckets: &Vec<Range<usize>>| {
        for b in buckets {
            c.all_reduce(Payload::F16(&mut buf[b.clone()]))?;
        }
        Ok(())
    };
    time_on_ranks::<f16, _>(
        args.ranks,
        algorithm,
        total,
        &jobs,
        (args.warmup, args.reps),
        work,
        |j, mut samples| {
            let secs = median(&mut samples);
            // Thresholds are sorted, so the unfused anchor (0) is measured first.
            let speedup = rows.first().map_or(1.0, |u| u.secs / secs);
            let label = if thresholds[j] == 0 {
                "0 (none)".to_string()
            } else {
                human(thresholds[j])
            };
            println!(
                "{label:>10}  {:>6}  {secs:>10.4}  {speedup:>10.2}×",
                jobs[j].len()
            );
            rows.push(Row {
                threshold: thresholds[j],
                calls: jobs[j].len(),
                secs,
                speedup,
            });
        },
    )?;
    let unfused = rows[0].clone();
    let best = rows
        .iter()
        .min_by(|a, b| a.secs.total_cmp(&b.secs))
        .cloned()
        .unwrap_or_else(|| unfused.clone());
    let figures = Figures {
        ranks: args.ranks,
        algorithm: describe(algorithm),
        tensors: numel.len(),
        bytes: 2 * total as u64,
        calls_unfused: unfused.calls,
        secs_unfused: unfused.secs,
        best_threshold: best.threshold,
        calls_fused: best.calls,
        secs_fused: best.secs,
        fewer_calls: unfused.calls as f64 / best.calls as f64,
        speedup: unfused.secs / best.secs,
        rows,
    };
    println!(
        "best threshold {}: {} calls instead of {} ({:.1}× fewer, goal ≥ 5×), {:.4} s instead of {:.4} s ({:.2}× less time, goal ≥ 2×)",
        human(best.threshold),
        figures.calls_fused,
        figures.calls_unfused,
        figures.fewer_calls,
        figures.secs_fused,
        figures.secs_unfused,
        figures.speedup
    );
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
