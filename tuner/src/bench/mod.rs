//! `jizhi-tune bench <what>`: measurements of the system's own parts. Each prints progress and
//! its figures, and ends with one line holding a JSON object of them (for scripts and comparisons).

pub mod allreduce;
pub mod fusion;
mod overlap;
mod store;
mod strategy;
pub mod train;

use anyhow::Result;
use clap::Subcommand;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The store: time to record a trial epoch, to open and resume a big study, size on disk.
    #[command(after_help = "Examples:\n  jizhi-tune bench store\n  \
        jizhi-tune bench store --trials 1000 --epochs 10 --dir /data/bench")]
    Store(store::StoreBenchArgs),
    /// Training-step throughput of the trainer (forward + backward + update).
    #[command(after_help = "Examples:\n  jizhi-tune bench train\n  \
        jizhi-tune bench train --batch 3072 --precision fp16 --threads 2")]
    Train(train::BenchTrainArgs),
    /// Step time of P ranks: all-reduce after the backward pass vs segments overlapping it.
    #[command(after_help = "Examples:\n  jizhi-tune bench overlap\n  \
        jizhi-tune bench overlap --ranks 8 --segments 4 --rounds 3")]
    Overlap(overlap::BenchOverlapArgs),
    /// Bus bandwidth of the in-process all-reduce per rank count, algorithm and size, next to memcpy.
    #[command(after_help = "Examples:\n  jizhi-tune bench allreduce\n  \
        jizhi-tune bench allreduce --ranks 2,8 --max-bytes 16M --algorithm ring --reps 3")]
    Allreduce(allreduce::AllreduceBenchArgs),
    /// The ResNet-50 gradients all-reduced one call per tensor vs fused into buckets.
    #[command(after_help = "Examples:\n  jizhi-tune bench fusion\n  \
        jizhi-tune bench fusion --ranks 4 --thresholds 0,1M,16M --reps 3")]
    Fusion(fusion::FusionBenchArgs),
    /// The search strategy on synthetic problems: median regret against random search and TPE.
    #[command(after_help = "Examples:\n  jizhi-tune bench strategy\n  \
        jizhi-tune bench strategy --seeds 5\n  \
        bench/strategy_vs_tpe.sh                 adds Optuna's TPE to the table")]
    Strategy(strategy::BenchStrategyArgs),
}

/// Runs a benchmark.
pub fn run(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Store(args) => store::run(args),
        BenchCommand::Train(args) => train::run(args),
        BenchCommand::Overlap(args) => overlap::run(args),
        BenchCommand::Allreduce(args) => allreduce::run(args),
        BenchCommand::Fusion(args) => fusion::run(args),
        BenchCommand::Strategy(args) => strategy::run(args),
    }
}

/// The `q`-quantile (0..=1) of sorted samples, by nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
