//! `jizhi-tune bench ...`: benchmark commands. Each prints progress, then one JSON object as its
//! last line so scripts can compare it with a reference measured in the same run.

pub mod train;

use clap::Subcommand;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Training-step throughput of the trainer (forward + backward + update).
    #[command(after_help = "Examples:\n  jizhi-tune bench train\n  \
        jizhi-tune bench train --batch 3072 --precision fp16 --threads 2")]
    Train(train::BenchTrainArgs),
}

/// Runs the benchmark the command line names.
pub fn run(cmd: &BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Train(args) => train::run(args),
    }
}
