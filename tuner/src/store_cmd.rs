//! `jizhi-tune store check|repair`: what is intact in a store, and recovering a damaged one.

use crate::commands::BadInput;
use crate::study;
use anyhow::{bail, Result};
use clap::Subcommand;
use jizhi_store::Store;
use std::path::{Path, PathBuf};

/// The `store` commands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Report what is intact in a store (journal, index, trials); changes nothing, exits 1 if damaged.
    #[command(after_help = "Examples:\n  jizhi-tune store check runs/alexnet64k\n  \
        jizhi-tune store check search-spaces/smoke.toml")]
    Check {
        /// A store folder or the study's search-space file.
        #[arg(value_name = "STORE|SPACE.toml")]
        target: PathBuf,
    },
    /// Recover every intact trial of a store into a new store; the damaged store is not changed.
    #[command(after_help = "Example:\n  jizhi-tune store repair runs/alexnet64k --into runs/alexnet64k-repaired\n\n\
        Resume the repaired study with `jizhi-tune SPACE.toml --store NEW`: interrupted and lost\n\
        trials are planned and run again, finished ones are kept.")]
    Repair {
        /// The damaged store folder.
        #[arg(value_name = "STORE")]
        store: PathBuf,
        /// Folder of the new store [default: STORE.repaired].
        #[arg(long, value_name = "NEW")]
        into: Option<PathBuf>,
    },
}

/// Runs a `store` command.
pub fn run(command: &StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Check { target } => check(target),
        StoreCommand::Repair { store, into } => repair(store, into.as_deref()),
    }
}

fn existing(target: &Path) -> Result<PathBuf> {
    let dir = study::resolve_store(target)?;
    if !Store::exists(&dir) {
        bail!(BadInput(format!("no study store at {}", dir.display())));
    }
    Ok(dir)
}

fn check(target: &Path) -> Result<()> {
    let dir = existing(target)?;
    let report = jizhi_store::check(&dir)?;
    println!("{report}");
    if !report.is_intact() {
        bail!("store {} is damaged (see the report above)", dir.display());
    }
    Ok(())
}

fn repair(store: &Path, into: Option<&Path>) -> Result<()> {
    let dir = existing(store)?;
    let into = match into {
        Some(p) => p.to_path_buf(),
        None => {
            let mut name = dir.as_os_str().to_owned();
            name.push(".repaired");
            PathBuf::from(name)
        }
    };
    if into.exists() {
        bail!(BadInput(format!("{} already exists; name a new folder with --into", into.display())));
    }
    let report = jizhi_store::repair(&dir, &into)?;
    println!("{report}");
    Ok(())
}
