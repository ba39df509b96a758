//! One function per command: validate the input fully, then act.

use crate::cli::{Cli, Command, ExportFormat, RunArgs};
use crate::plan::{self, DataPlan};
use crate::space::{self, SearchSpace, SpaceError};
use crate::study::{self, RunPlan, Start};
use crate::{drift, format, report, strategy};
use anyhow::{bail, Context, Result};
use jizhi_store::Store;
use std::path::Path;

/// Input the user must fix (a bad file or option); exits with code 2 and nothing written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The search stopped on SIGINT or SIGTERM (exit code 130); its store resumes.
#[derive(Debug, thiserror::Error)]
#[error("the search was stopped by {}", crate::signals::name(*.0))]
pub struct Interrupted(pub i32);

/// Whether an error is bad input (exit code 2) rather than a failure while working.
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SpaceError>().is_some()
        || e.downcast_ref::<BadInput>().is_some()
        || e.downcast_ref::<plan::PlanError>().is_some()
        || e.downcast_ref::<drift::Refused>().is_some()
}

/// Runs the command the command line names.
pub fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Trial(args)) => crate::trial::run(&args),
        Some(Command::Plan { space }) => plan_command(&space),
        Some(Command::Show { target }) => show(&target),
        Some(Command::Export { target, format }) => export(&target, format),
        Some(Command::Dashboard { target }) => dashboard(&target),
        Some(Command::Import(args)) => crate::import::run(&args),
        Some(Command::Store(command)) => crate::store_cmd::run(&command),
        Some(Command::Bench(command)) => crate::bench::run(&command),
        Some(Command::Reproduce(args)) => crate::reproduce::run(&args),
        Some(Command::GpuCheck(args)) => crate::gpu_check::run(&args),
        Some(Command::Simulate(args)) => crate::simulate::run(&args),
        None => {
            let space = cli
                .space
                .context("a search-space file is required (see --help)")?;
            run(&space, &cli.run)
        }
    }
}

/// Checks that the data set is installed, with the fix in the message.
fn check_data(data: &DataPlan) -> Result<()> {
    let missing: Vec<&str> = jizhi_trainer::data::FILES
        .iter()
        .copied()
        .filter(|f| !data.dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(BadInput(format!(
            "the embedded default data set is missing from {} ({}); install it with \
             `sudo apt-get install dataset-fashion-mnist` (or point {} at a folder holding them)",
            data.dir.display(),
            missing.join(", "),
            plan::FASHION_MNIST_ENV
        )));
    }
    Ok(())
}

/// Loads a space and derives its data plan, checking the model is available.
fn load_runnable(path: &Path) -> Result<(SearchSpace, DataPlan)> {
    let space = space::load(path)?;
    let data = DataPlan::for_space(&space)?;
    // Building one trial configuration proves the model and settings are runnable here.
    if let Some(spec) = study::coarse_specs(&space, &data).first() {
        plan::train_config(&space, &data, spec, 1, 0)?;
    }
    Ok((space, data))
}

fn run(path: &Path, args: &RunArgs) -> Result<()> {
    let (space, data) = load_runnable(path)?;
    check_data(&data)?;
    if args.threads_per_trial == 0 {
        bail!(BadInput("--threads-per-trial must be at least 1".into()));
    }
    if args.max_concurrent == Some(0) {
        bail!(BadInput("--max-concurrent must be at least 1".into()));
    }
    crate::scheduler::configure(scheduler_settings(args, &space.scheduler)?);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let store_dir = args
        .store
        .clone()
        .unwrap_or_else(|| study::default_store_dir(&space));
    let seed = args.seed.unwrap_or(space.study.seed);
    let plan = RunPlan {
        max_concurrent: args
            .max_concurrent
            .or(space.scheduler.concurrency)
            .unwrap_or((cores / args.threads_per_trial).max(1)),
        threads: args.threads_per_trial,
        space,
        data,
        store_dir,
        seed,
        dashboard: !args.headless && std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let start = match (&args.fork, args.fresh) {
        (Some(name), _) => Start::Fork(name.clone()),
        (None, true) => Start::Fresh,
        (None, false) => Start::Resume,
    };
    crate::signals::catch().context("catching SIGINT and SIGTERM")?;
    study::run(plan, start)?;
    match crate::signals::stopped_by() {
        Some(signal) => Err(Interrupted(signal).into()),
        None => Ok(()),
    }
}

/// The scheduler's limits and launcher: each option given on the command line, else the
/// file's `[scheduler]` key, else the built-in default.
fn scheduler_settings(
    args: &RunArgs,
    file: &crate::space::SchedulerKeys,
) -> Result<crate::scheduler::Settings> {
    let limit = |flag: &str, secs: f64| -> Result<Option<std::time::Duration>> {
        if !(secs.is_finite() && secs >= 0.0) {
            bail!(BadInput(format!(
                "{flag} must be a number of seconds >= 0 (0: no limit), got {secs}"
            )));
        }
        Ok((secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs)))
    };
    let defaults = crate::scheduler::Settings::default();
    let launcher: Vec<String> = match &args.launcher {
        Some(l) => {
            let words: Vec<String> = l.split_whitespace().map(String::from).collect();
            if words.is_empty() {
                bail!(BadInput(
                    "--launcher is empty: name the program trials are run through".into()
                ));
            }
            words
        }
        None => file.launcher.clone().unwrap_or_default(),
    };
    let trial_timeout = match args.trial_timeout.or(file.trial_timeout_secs) {
        Some(secs) => limit("--trial-timeout", secs)?,
        None => defaults.trial_timeout,
    };
    let stall_timeout = match args.stall_timeout.or(file.stall_timeout_secs) {
        Some(secs) => limit("--stall-timeout", secs)?,
        None => defaults.stall_timeout,
    };
    Ok(crate::scheduler::Settings {
        trial_timeout,
        stall_timeout,
        max_retries: args
            .max_retries
            .or(file.max_retries)
            .unwrap_or(defaults.max_retries),
        launcher,
        ..defaults
    })
}

fn plan_command(path: &Path) -> Result<()> {
    let (space, data) = load_runnable(path)?;
    println!(
        "study {} ({} parameters searched)",
        space.study.name,
        space.params.len()
    );
    println!("{}", data.describe(&space));
    println!("{}", plan::describe_ranks(&space));
    println!("searched parameters (coarse grid values):");
    for p in &space.params {
        let values: Vec<String> = strategy::coarse_values(p)
            .iter()
            .map(|v| v.to_string())
            .collect();
        println!("  {:<22} {}", p.name, values.join(", "));
    }
    for (name, value) in &space.fixed {
        println!("  {:<22} fixed at {value}", name);
    }
    let mut total = 0.0;
    for (step, trials) in strategy::outline(&space) {
        let (epochs, fraction) = plan::fidelity(&space, step.stage);
        let images = plan::trial_images(&space, &data, step.stage) * trials as f64;
        total += images;
        let at = if space.search.ladder {
            let b: Vec<String> = step.batches.iter().map(|&b| format::batch(b)).collect();
            format!(" at {}", b.join(", "))
        } else {
            String::new()
        };
        let largest = step.batches.iter().copied().max().unwrap_or(0);
        println!(
            "stage {:<8}{at}: {:>3} trials ({} per batch size), {} epoch(s) each on {} of the training set ({} steps at {}): {:.2} M training images",
            step.stage.as_str(),
            trials,
            trials / step.batches.len().max(1),
            epochs,
            format::percent(fraction),
            plan::trial_steps(&space, &data, step.stage, largest),
            format::batch(largest),
            images / 1e6
        );
    }
    println!(
        "total budget: {:.2} M training images (plus one evaluation per epoch)",
        total / 1e6
    );
    Ok(())
}

fn open_existing(target: &Path) -> Result<(Store, Option<SearchSpace>)> {
    let dir = study::resolve_store(target)?;
    if !Store::exists(&dir) {
        bail!(BadInput(format!("no study store at {}", dir.display())));
    }
    let store = Store::open(&dir)?;
    let space = match store.study()? {
        Some(study) => Some(space::parse(
            &dir.join("<stored search space>"),
            &study.space_text,
        )?),
        None => None,
    };
    Ok((store, space))
}

fn show(target: &Path) -> Result<()> {
    let (store, space) = open_existing(target)?;
    let space = space.context("the store holds no study yet")?;
    let data = DataPlan::for_space(&space)?;
    print!("{}", report::table(&space, &data, &store.trials()?));
    Ok(())
}

/// The dashboard of a study that is not running, read once from its store.
///
/// sled lets one process open a store, so a study that is running cannot be read here: the
/// message names the process that runs it (whose terminal shows it live).
fn dashboard(target: &Path) -> Result<()> {
    let (store, space) = match open_existing(target) {
        Err(e) => {
            if let Some(jizhi_store::StoreError::Locked { dir, pid, .. }) =
                e.downcast_ref::<jizhi_store::StoreError>()
            {
                bail!(
                    "the study in {} is running in process {pid}: its dashboard is in the terminal that started it \
                     (or its progress lines, if it runs headless); `jizhi-tune dashboard` shows a study that is \
                     not running, so run it again once that process has ended",
                    dir.display()
                );
            }
            return Err(e);
        }
        Ok(opened) => opened,
    };
    let space = space.context("the store holds no study yet")?;
    let data = DataPlan::for_space(&space)?;
    let trials = store.trials()?;
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!(BadInput(
            "`jizhi-tune dashboard` needs a terminal; `jizhi-tune show` prints the study as text"
                .into()
        ));
    }
    // Let go of the store before showing it, so the study can be resumed meanwhile.
    drop(store);
    jizhi_tui::run_stored(crate::dashboard::study_info(&space, &data, None), trials)?;
    Ok(())
}

fn export(target: &Path, format: ExportFormat) -> Result<()> {
    let (store, _) = open_existing(target)?;
    let trials = store.trials()?;
    match format {
        ExportFormat::Json => println!("{}", report::export_json(&trials)?),
        ExportFormat::Csv => print!("{}", report::export_csv(&trials)),
        ExportFormat::CsvTrials => print!("{}", report::export_csv_trials(&trials)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    fn run_args(flags: &[&str]) -> RunArgs {
        let argv = ["jizhi-tune", "space.toml"].iter().chain(flags);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.run,
            Err(e) => panic!("{e}"),
        }
    }

    fn file() -> crate::space::SchedulerKeys {
        crate::space::SchedulerKeys {
            concurrency: Some(3),
            trial_timeout_secs: Some(120.0),
            stall_timeout_secs: Some(0.0),
            max_retries: Some(0),
            launcher: Some(vec!["srun".into(), "-n1".into()]),
        }
    }

    #[test]
    fn scheduler_keys_apply_unless_an_option_is_given() {
        let from_file = match scheduler_settings(&run_args(&[]), &file()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(from_file.trial_timeout, Some(Duration::from_secs(120)));
        assert_eq!(from_file.stall_timeout, None, "0 is no limit");
        assert_eq!(from_file.max_retries, 0);
        assert_eq!(from_file.launcher, ["srun", "-n1"]);

        let flags = [
            "--trial-timeout",
            "5",
            "--stall-timeout",
            "7",
            "--max-retries",
            "4",
            "--launcher",
            "env",
        ];
        let overridden = match scheduler_settings(&run_args(&flags), &file()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(overridden.trial_timeout, Some(Duration::from_secs(5)));
        assert_eq!(overridden.stall_timeout, Some(Duration::from_secs(7)));
        assert_eq!(overridden.max_retries, 4);
        assert_eq!(overridden.launcher, ["env"]);

        let defaults = crate::scheduler::Settings::default();
        let neither = match scheduler_settings(&run_args(&[]), &Default::default()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(neither, defaults);
    }
}
