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
mod gpu_check;
mod import;
mod plan;
mod progress;
mod ranking;
mod ranks_args;
mod report;
mod reproduce;
mod scheduler;
mod signals;
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
/// Exit code of a search stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
const EXIT_INTERRUPTED: u8 = 130;

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
        Err(e) if e.downcast_ref::<commands::Interrupted>().is_some() => {
            eprintln!("{e:#}");
            ExitCode::from(EXIT_INTERRUPTED)
        }
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
