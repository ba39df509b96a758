//! Running a study: open its store, plan each stage, run what is not done yet, summarise.

use crate::plan::{self, DataPlan, Point, TrialSpec};
use crate::progress::Progress;
use crate::scheduler::{self, Job};
use crate::space::{ParamValue, SearchSpace};
use crate::strategy::{self, Pruned, StagePlan, Step};
use crate::{drift, fork, report, trial};
use anyhow::{bail, Context, Result};
use jizhi_store::{Event, Store, StudyRecord, TrialRecord, TrialStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything a run needs, validated before anything touches the disk.
pub struct RunPlan {
    /// The search space.
    pub space: SearchSpace,
    /// Where the data comes from.
    pub data: DataPlan,
    /// The store folder.
    pub store_dir: PathBuf,
    /// Study seed (file or `--seed`).
    pub seed: u64,
    /// Trials at once.
    pub max_concurrent: usize,
    /// Threads per trial.
    pub threads: usize,
    /// Show the live dashboard (else one progress line per trial event).
    pub dashboard: bool,
}

/// The default store folder of a study.
pub fn default_store_dir(space: &SearchSpace) -> PathBuf {
    Path::new("runs").join(&space.study.name)
}

/// The store folder named by a `STORE|SPACE.toml` argument.
pub fn resolve_store(target: &Path) -> Result<PathBuf> {
    if target.extension().is_some_and(|e| e == "toml") {
        let space = crate::space::load(target)?;
        Ok(default_store_dir(&space))
    } else {
        Ok(target.to_path_buf())
    }
}

fn params_json(point: &Point) -> BTreeMap<String, serde_json::Value> {
    point
        .iter()
        .map(|(k, v)| {
            let json = match v {
                ParamValue::Num(n) => serde_json::json!(n),
                ParamValue::Text(s) => serde_json::json!(s),
            };
            (k.clone(), json)
        })
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Moves an existing store aside as `<dir>.old-<unix time>` and returns where it went.
fn move_aside(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".old-{}", unix_now()));
    let aside = PathBuf::from(name);
    std::fs::rename(dir, &aside).with_context(|| format!("moving {} aside", dir.display()))?;
    Ok(Some(aside))
}

/// What a run does with an existing store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Resume it (refused if its search space or seed changed).
    Resume,
    /// Move it aside and start over.
    Fresh,
    /// Start a new study of this name in a sibling store, inheriting its history.
    Fork(String),
}

/// Opens the study's store, refusing (with what changed) a store whose study used a different
/// search space or seed; a fork moves `run.store_dir` to the fork's store.
fn open_study(run: &mut RunPlan, start: &Start) -> Result<Store> {
    if *start == Start::Fresh {
        if let Some(aside) = move_aside(&run.store_dir)? {
            println!(
                "--fresh: the previous store was moved to {}",
                aside.display()
            );
        }
    }
    if let Some(parent) = run.store_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut record = StudyRecord {
        name: run.space.study.name.clone(),
        space_text: run.space.text.clone(),
        seed: run.seed,
        created_unix: unix_now(),
    };
    if let Start::Fork(name) = start {
        record.name = name.clone();
        let (store, dir) = fork::open_fork(&run.store_dir, name, record)?;
        run.store_dir = dir;
        make_checkpoint_dir(&run.store_dir)?;
        return Ok(store);
    }
    // Refuse a changed space before opening, so that a refused run writes nothing at all.
    if let Some(study) = Store::peek_study(&run.store_dir)? {
        refuse_drift(run, &study)?;
    }
    let store = Store::open(&run.store_dir)?;
    make_checkpoint_dir(&run.store_dir)?;
    match store.study()? {
        Some(study) => {
            refuse_drift(run, &study)?;
            println!("resuming the study in {}", run.store_dir.display());
        }
        None => {
            store.put_study(&record)?;
            println!("new study in {}", run.store_dir.display());
        }
    }
    Ok(store)
}

/// Fails with what changed when `study` was started with another search space or seed than `run`.
fn refuse_drift(run: &RunPlan, study: &StudyRecord) -> Result<()> {
    let differences = drift::compare(&study.space_text, study.seed, &run.space.text, run.seed);
    if !differences.is_empty() {
        bail!(drift::Refused {
            store: run.store_dir.clone(),
            differences
        });
    }
    Ok(())
}

/// True for a trial that has ended and is never run again.
pub fn is_done(status: TrialStatus) -> bool {
    matches!(
        status,
        TrialStatus::Finished | TrialStatus::Failed | TrialStatus::Diverged
    )
}

/// Plans a stage's specs into jobs: ended trials are kept, results of identical inherited trials
/// reused, the rest (new or interrupted) queued.
fn reconcile(
    run: &RunPlan,
    store: &Store,
    specs: &[TrialSpec],
    progress: &mut Progress,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut existing: BTreeMap<u64, TrialRecord> = store
        .trial_records()?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let commands = store.commands()?;
    let reusable = fork::Reusable::of(store)?;
    for spec in specs {
        let params = params_json(&spec.point);
        let cfg = plan::train_config(&run.space, &run.data, spec, run.threads, run.seed)?;
        let args = trial::command_line(&cfg, run.space.cluster.as_ref());
        let record = match existing.remove(&spec.id) {
            Some(r) if r.params != params || r.batch != spec.batch => bail!(
                "trial {} in the store does not match the plan; the store belongs to another study version \
                 (rerun with --fresh)",
                spec.id
            ),
            Some(r) if is_done(r.status) => continue,
            Some(r) => r,
            None => {
                let r = TrialRecord {
                    id: spec.id,
                    stage: spec.stage.as_str().into(),
                    batch: spec.batch,
                    proxy_batch: spec.proxy_batch,
                    params,
                    status: TrialStatus::Planned,
                    attempts: 0,
                    error: None,
                    final_val_top1: None,
                    wall_secs: None,
                    modelled_step_secs: None,
                    epochs: Vec::new(),
                };
                if let Some(parent_id) = reusable.take(store, &r, &args)? {
                    println!("trial {} reused: the same trial as inherited trial {parent_id}", r.id);
                    continue;
                }
                store.put_trial(&r)?;
                r
            }
        };
        if commands.get(&spec.id) != Some(&args) {
            store.put_command(spec.id, &args)?;
        }
        let per_epoch = cfg.data_fraction * run.data.train_images as f64;
        progress.expect(spec.id, per_epoch, cfg.epochs);
        // The checkpoint is where the trial runs, not what it is: it stays out of the recorded
        // command (which drift and fork reuse compare).
        let checkpoint = checkpoint_path(&run.store_dir, spec.id);
        let mut run_args = args;
        run_args.extend(["--checkpoint".to_string(), checkpoint.display().to_string()]);
        jobs.push(Job {
            record,
            args: run_args,
            epochs: cfg.epochs,
            checkpoint: Some(checkpoint),
        });
    }
    let images = specs
        .first()
        .map_or(0.0, |s| plan::trial_images(&run.space, &run.data, s.stage));
    progress.plan(specs.len(), jobs.len(), images);
    Ok(jobs)
}

/// Creates the folder the running trials of the study in `store_dir` keep their checkpoints in.
fn make_checkpoint_dir(store_dir: &Path) -> Result<()> {
    let checkpoints = store_dir.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&checkpoints)
        .with_context(|| format!("creating {}", checkpoints.display()))
}

/// Folder of the running trials' checkpoints inside a store folder.
const CHECKPOINT_DIR: &str = "checkpoints";

/// Where trial `id` of the study in `store_dir` keeps its checkpoint.
fn checkpoint_path(store_dir: &Path, id: u64) -> PathBuf {
    store_dir
        .join(CHECKPOINT_DIR)
        .join(format!("trial-{id}.ckpt"))
}

/// The trials of a step's plan, ids from `first_id` in plan order.
fn specs_of(step: &Step, plan: &StagePlan, data: &DataPlan, first_id: u64) -> Vec<TrialSpec> {
    plan.proposals
        .iter()
        .enumerate()
        .map(|(i, p)| TrialSpec {
            id: first_id + i as u64,
            stage: step.stage,
            batch: p.batch,
            proxy_batch: data.proxy_batch(p.batch),
            point: p.point.clone(),
            seed_offset: p.seed_offset,
        })
        .collect()
}

/// The first step's trials (ids from 1): they depend on nothing but the space.
pub fn coarse_specs(space: &SearchSpace, data: &DataPlan) -> Vec<TrialSpec> {
    let Some(step) = strategy::steps(space).into_iter().next() else {
        return Vec::new();
    };
    specs_of(
        &step,
        &strategy::plan_step(space, space.study.seed, 0, &[]),
        data,
        1,
    )
}

/// Kind of the store event that records a trial dropped by successive halving.
pub const PRUNED_EVENT: &str = "pruned";

/// Records each pruned trial once (with its reason) in the store's event log and says so.
fn record_pruned(store: &Store, pruned: &[Pruned]) -> Result<()> {
    if pruned.is_empty() {
        return Ok(());
    }
    let known: std::collections::BTreeSet<u64> = store
        .events()?
        .iter()
        .filter(|e| e.kind == PRUNED_EVENT)
        .filter_map(|e| e.trial_id)
        .collect();
    for p in pruned.iter().filter(|p| !known.contains(&p.id)) {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        store.log_event(&Event {
            unix_ms,
            trial_id: Some(p.id),
            kind: PRUNED_EVENT.into(),
            detail: p.reason.clone(),
        })?;
        println!("trial {} pruned: {}", p.id, p.reason);
    }
    Ok(())
}

/// The line that opens a stage.
fn stage_line(run: &RunPlan, step: &Step, planned: usize, to_run: usize) -> String {
    let (epochs, fraction) = plan::fidelity(&run.space, step.stage);
    let at = if run.space.search.ladder {
        let b: Vec<String> = step
            .batches
            .iter()
            .map(|&b| crate::format::batch(b))
            .collect();
        format!(" at batch {}", b.join(", "))
    } else {
        String::new()
    };
    format!(
        "stage {}{at}: {planned} trials ({to_run} to run), {epochs} epoch(s) on {} of the data",
        step.stage.as_str(),
        crate::format::percent(fraction)
    )
}

/// Runs (or resumes) a study to its end and prints the summary.
pub fn run(mut run: RunPlan, start: Start) -> Result<()> {
    println!("{}", run.data.describe(&run.space));
    println!("{}", ranks_line(&run));
    let store = Arc::new(open_study(&mut run, &start)?);
    let exe = std::env::current_exe().context("locating the jizhi-tune executable")?;
    let shown = run.space.params.iter().map(|p| p.name.clone()).collect();
    let (mut output, mut controls) = crate::dashboard::start(&run, &store, Progress::new(shown))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the scheduler")?;

    let outline = strategy::outline(&run.space);
    // The later stages' sizes are known before their points are: count their work from the start.
    for (step, n) in outline.iter().skip(1) {
        output.progress().plan(
            *n,
            *n,
            plan::trial_images(&run.space, &run.data, step.stage),
        );
    }
    let mut first_id = 1;
    for (index, (step, estimate)) in outline.iter().enumerate() {
        if index > 0 {
            // reconcile() counts the stage again; take back the provisional count first.
            output.progress().plan_retract(
                *estimate,
                plan::trial_images(&run.space, &run.data, step.stage),
            );
        }
        // Only the trials of earlier stages, in id order: the plan never sees completion order.
        let prior: Vec<TrialRecord> = store
            .trials()?
            .into_iter()
            .filter(|t| t.id < first_id)
            .collect();
        let stage_plan = strategy::plan_step(&run.space, run.seed, index, &prior);
        record_pruned(&store, &stage_plan.pruned)?;
        let specs = specs_of(step, &stage_plan, &run.data, first_id);
        let jobs = reconcile(&run, &store, &specs, output.progress())?;
        let text = stage_line(&run, step, specs.len(), jobs.len());
        output.stage(step.stage, specs.len(), &jobs, text);
        let on_event = &mut |e: &scheduler::TrialEvent| output.event(e);
        runtime.block_on(scheduler::run_jobs(
            store.clone(),
            exe.clone(),
            jobs,
            run.max_concurrent,
            &mut controls,
            on_event,
        ))?;
        if controls.stopped() {
            output.finish(true)?;
            println!("{}", crate::dashboard::resume_hint(&run, &store.trials()?));
            return Ok(());
        }
        first_id += specs.len() as u64;
    }
    output.finish(false)?;

    let trials = store.trials()?;
    print!("{}", report::summary(&run.space, &run.data, &trials));
    print!("{}", confirm_summary(&run.space, &trials));
    let pruned = store
        .events()?
        .iter()
        .filter(|e| e.kind == PRUNED_EVENT)
        .count();
    if pruned > 0 {
        println!(
            "{pruned} trial(s) dropped by successive halving (reasons in the store's event log)"
        );
    }
    println!("store: {}", run.store_dir.display());
    Ok(())
}

/// The line that says how the nominal ranks are trained and modelled, and how trials run.
fn ranks_line(run: &RunPlan) -> String {
    format!(
        "{}; {} trial(s) at a time, {} thread(s) each",
        plan::describe_ranks(&run.space),
        run.max_concurrent,
        run.threads
    )
}

/// Mean ± standard deviation of every confirmed configuration, per batch size.
pub fn confirm_summary(space: &SearchSpace, trials: &[TrialRecord]) -> String {
    use std::fmt::Write;
    let pooled = plan::stages_at_confirm_fidelity(space);
    let confirmed = strategy::confirm::confirmed(trials, &space.batches, &pooled);
    let mut out = String::new();
    if confirmed.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "confirmed at full fidelity (final val top-1, mean ± std over seeds):"
    );
    for c in confirmed {
        let params: Vec<String> = space
            .params
            .iter()
            .filter_map(|p| c.point.get(&p.name).map(|v| format!("{}={v}", p.name)))
            .collect();
        let _ = writeln!(
            out,
            "  batch {:>4}: {:.2}% ± {:.2}% over {} seed(s)  {}",
            crate::format::batch(c.batch),
            100.0 * c.mean(),
            100.0 * c.std(),
            c.top1.len(),
            params.join(" ")
        );
    }
    out
}
