//! Running a study: open its store, plan each stage, run what is not done yet, summarise.

use crate::plan::{self, DataPlan, Point, Stage, TrialSpec};
use crate::progress::Progress;
use crate::ranking::best_first;
use crate::scheduler::{self, Job};
use crate::space::{ParamValue, SearchSpace};
use crate::{drift, fork, report, strategy, trial};
use anyhow::{bail, Context, Result};
use jizhi_store::{Store, StudyRecord, TrialRecord, TrialStatus};
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

fn point_of(record: &TrialRecord) -> Point {
    record
        .params
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => ParamValue::Text(s.clone()),
                other => ParamValue::Num(other.as_f64().unwrap_or(f64::NAN)),
            };
            (k.clone(), value)
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
        return Ok(store);
    }
    // Refuse a changed space before opening, so that a refused run writes nothing at all.
    if let Some(study) = Store::peek_study(&run.store_dir)? {
        refuse_drift(run, &study)?;
    }
    let store = Store::open(&run.store_dir)?;
    let checkpoints = run.store_dir.join(CHECKPOINT_DIR);
    std::fs::create_dir_all(&checkpoints)
        .with_context(|| format!("creating {}", checkpoints.display()))?;
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
        let args = trial::command_line(&cfg);
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
    let images = plan::trial_images(
        &run.space,
        &run.data,
        specs.first().map_or(Stage::Coarse, |s| s.stage),
    );
    progress.plan(specs.len(), jobs.len(), images);
    Ok(jobs)
}

/// Folder of the running trials' checkpoints inside a store folder.
const CHECKPOINT_DIR: &str = "checkpoints";

/// Where trial `id` of the study in `store_dir` keeps its checkpoint.
fn checkpoint_path(store_dir: &Path, id: u64) -> PathBuf {
    store_dir
        .join(CHECKPOINT_DIR)
        .join(format!("trial-{id}.ckpt"))
}

/// The coarse stage's trials: every batch size × every coarse point, ids from 1.
pub fn coarse_specs(space: &SearchSpace, data: &DataPlan) -> Vec<TrialSpec> {
    let points = strategy::coarse_points(space);
    let mut specs = Vec::new();
    for &batch in &space.batches {
        for point in &points {
            specs.push(TrialSpec {
                id: specs.len() as u64 + 1,
                stage: Stage::Coarse,
                batch,
                proxy_batch: data.proxy_batch(batch),
                point: point.clone(),
            });
        }
    }
    specs
}

/// The refine stage's trials, derived from the finished coarse trials (in canonical order).
pub fn refine_specs(
    space: &SearchSpace,
    data: &DataPlan,
    coarse: &[TrialRecord],
    first_id: u64,
) -> Vec<TrialSpec> {
    let mut specs = Vec::new();
    for &batch in &space.batches {
        let ranked = best_first(
            coarse
                .iter()
                .filter(|t| t.batch == batch && t.stage == Stage::Coarse.as_str()),
            space.study.objective,
            space.study.target_top1,
        );
        let best: Vec<Point> = ranked.iter().map(|t| point_of(t)).collect();
        for point in strategy::refine_points(space, &best) {
            specs.push(TrialSpec {
                id: first_id + specs.len() as u64,
                stage: Stage::Refine,
                batch,
                proxy_batch: data.proxy_batch(batch),
                point,
            });
        }
    }
    specs
}

/// Runs (or resumes) a study to its end and prints the summary.
pub fn run(mut run: RunPlan, start: Start) -> Result<()> {
    println!("{}", run.data.describe(&run.space));
    println!(
        "ranks: {} nominal, trained as one CPU data-parallel rank per trial; {} trial(s) at a time, {} thread(s) each",
        run.space.trainer.ranks, run.max_concurrent, run.threads
    );
    let store = Arc::new(open_study(&mut run, &start)?);
    let exe = std::env::current_exe().context("locating the jizhi-tune executable")?;
    let shown = run.space.params.iter().map(|p| p.name.clone()).collect();
    let (mut output, mut controls) = crate::dashboard::start(&run, &store, Progress::new(shown))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the scheduler")?;

    let coarse = coarse_specs(&run.space, &run.data);
    let refine_planned = run.space.batches.len() * run.space.stages.refine_points as usize;
    let jobs = reconcile(&run, &store, &coarse, output.progress())?;
    // The refine stage's size is known before its points are: count its work from the start.
    output.progress().plan(
        refine_planned,
        refine_planned,
        plan::trial_images(&run.space, &run.data, Stage::Refine),
    );
    let text = format!(
        "stage coarse: {} trials ({} to run), {} epoch(s) on {} of the data",
        coarse.len(),
        jobs.len(),
        run.space.stages.coarse_epochs,
        crate::format::percent(run.space.stages.coarse_fraction)
    );
    output.stage(Stage::Coarse, coarse.len(), &jobs, text);
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

    let all = store.trials()?;
    let refine = refine_specs(&run.space, &run.data, &all, coarse.len() as u64 + 1);
    // reconcile() counts the refine stage again; take back the provisional count first.
    output.progress().plan_retract(
        refine_planned,
        plan::trial_images(&run.space, &run.data, Stage::Refine),
    );
    let jobs = reconcile(&run, &store, &refine, output.progress())?;
    let text = format!(
        "stage refine: {} trials ({} to run), {} epoch(s) on {} of the data",
        refine.len(),
        jobs.len(),
        run.space.stages.refine_epochs,
        crate::format::percent(run.space.stages.refine_fraction)
    );
    output.stage(Stage::Refine, refine.len(), &jobs, text);
    let on_event = &mut |e: &scheduler::TrialEvent| output.event(e);
    runtime.block_on(scheduler::run_jobs(
        store.clone(),
        exe,
        jobs,
        run.max_concurrent,
        &mut controls,
        on_event,
    ))?;
    let stopped = controls.stopped();
    output.finish(stopped)?;
    if stopped {
        println!("{}", crate::dashboard::resume_hint(&run, &store.trials()?));
        return Ok(());
    }

    let trials = store.trials()?;
    print!("{}", report::summary(&run.space, &run.data, &trials));
    println!("store: {}", run.store_dir.display());
    Ok(())
}
