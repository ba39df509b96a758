//! `jizhi-tune`: coarse-to-fine hyperparameter search for very large batch training.
//!
//! This file only parses, validates, wires up and maps outcomes to exit codes; the work lives in
//! the modules below.

mod bench;
mod cli;
mod commands;
mod control;
mod dashboard;
mod drift;
mod fork;
mod format;
mod import;
mod plan;
mod progress;
mod ranking;
mod report;
mod scheduler;
mod simulate;
mod space;
mod store_cmd;
mod strategy;
mod study;
mod trial;

use clap::Parser;
use std::process::ExitCode;

/// Exit code of a bad search-space file or bad options (nothing was written).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if commands::is_bad_input(&e) {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
