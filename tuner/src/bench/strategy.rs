//! `jizhi-tune bench strategy`: the coarse-to-fine strategy on synthetic problems with known
//! optima — median regret over seeds at equal trial budgets, against random search with twice the
//! budget and (when `--tpe` names its results) against Optuna's TPE; and the ladder figure.

use crate::strategy::synthetic::{self, Budget, Evaluated, Problem};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `jizhi-tune bench strategy`.
#[derive(Debug, Args, Clone)]
pub struct BenchStrategyArgs {
    /// Seeds per problem (the median regret over them is reported).
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// JSON file of TPE's regrets, `{"problem": [regret per seed, ...]}` (bench/strategy_vs_tpe.sh).
    #[arg(long, value_name = "FILE")]
    pub tpe: Option<PathBuf>,
    /// Print the budgets and parameter bounds as JSON and exit (what the TPE driver reads).
    #[arg(long)]
    pub problems: bool,
    /// Evaluate one trial of this problem and print the observed value (for external optimisers).
    #[arg(long, value_name = "PROBLEM")]
    pub evaluate: Option<String>,
    /// The point to evaluate: comma-separated values in the problem's parameter order.
    #[arg(
        long,
        value_name = "X1,X2,...",
        requires = "evaluate",
        allow_hyphen_values = true
    )]
    pub at: Option<String>,
    /// Seed of the run the evaluated trial belongs to.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Id (from 1) of the evaluated trial in its run: with the seed, it fixes the trial's noise.
    #[arg(long, default_value_t = 1)]
    pub trial: u64,
}

/// Nominal batch of the single-batch runs.
const BATCH: u64 = 32768;

/// Runs the benchmark (or one evaluation) and prints the table, then the JSON record.
pub fn run(args: &BenchStrategyArgs) -> Result<()> {
    if let Some(name) = &args.evaluate {
        return evaluate(name, args);
    }
    if args.problems {
        let list: Vec<serde_json::Value> = Problem::ALL
            .iter()
            .map(|p| {
                let bounds: Vec<serde_json::Value> =
                    p.bounds().iter().map(|(n, lo, hi, log)| serde_json::json!({"name": n, "min": lo, "max": hi, "log": log})).collect();
                serde_json::json!({"name": p.name(), "trials": Budget::of(*p).trials(), "optimum": p.optimum(), "params": bounds})
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let tpe: BTreeMap<String, Vec<f64>> = match &args.tpe {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{}: not a JSON object of regret lists", path.display()))?,
        None => BTreeMap::new(),
    };
    eprintln!("bench strategy: {} seeds per problem", args.seeds);
    let mut record = serde_json::Map::new();
    println!(
        "{:<10} {:>6} {:>16} {:>18} {:>16} {:>10} {:>10}",
        "problem", "trials", "coarse-to-fine", "random (2x trials)", "TPE", "c2f/random", "c2f/TPE"
    );
    for problem in Problem::ALL {
        let budget = Budget::of(problem);
        let n = budget.trials() as usize;
        let space = synthetic::space(problem, budget, vec![BATCH], false);
        let mut ours = Vec::new();
        let mut random = Vec::new();
        for seed in 0..args.seeds {
            let trials = synthetic::run(problem, &space, seed, &mut |_| {});
            ours.push(synthetic::regret(
                problem,
                &trials,
                n,
                BATCH,
                problem.optimum(),
            ));
            let r = synthetic::random_search(problem, 2 * n, seed, BATCH);
            random.push(synthetic::regret(
                problem,
                &r,
                2 * n,
                BATCH,
                problem.optimum(),
            ));
        }
        let (m_ours, m_random) = (median(&ours), median(&random));
        let m_tpe = tpe.get(problem.name()).map(|v| median(v));
        println!(
            "{:<10} {:>6} {:>16} {:>18} {:>16} {:>10} {:>10}",
            problem.name(),
            n,
            format!("{m_ours:.4}"),
            format!("{m_random:.4}"),
            m_tpe.map_or("-".into(), |t| format!("{t:.4}")),
            ratio(m_ours, m_random),
            m_tpe.map_or("-".into(), |t| ratio(m_ours, t))
        );
        record.insert(
            problem.name().into(),
            serde_json::json!({"trials": n, "median_regret": m_ours, "random_2x_median_regret": m_random, "tpe_median_regret": m_tpe}),
        );
    }
    let ladder = ladder_figure(args.seeds);
    println!(
        "ladder (lr-warmup, 48K → 64K, sqrt rule): seeded 64K reaches the cold-start best in a median {:.0}% of the \
         cold start's {} trials ({} of {} seeds reach it within the budget)",
        100.0 * ladder.median_fraction,
        ladder.cold_trials,
        ladder.reached,
        args.seeds
    );
    record.insert(
        "ladder".into(),
        serde_json::json!({"median_fraction": ladder.median_fraction, "cold_trials": ladder.cold_trials, "reached": ladder.reached}),
    );
    println!("{}", serde_json::Value::Object(record));
    Ok(())
}

/// `a / b` as a ratio text (lower is better for regrets).
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else if a <= 0.0 {
        "1.00".into()
    } else {
        "inf".into()
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// What the ladder figure measured.
struct LadderFigure {
    median_fraction: f64,
    cold_trials: usize,
    reached: usize,
}

/// 64K searched cold with the full budget, against 64K seeded by a 48K rung: the fraction of the
/// cold start's trials the seeded rung needs until its best observed trial is as good (noiselessly)
/// as the cold start's final choice; 1 + ε when it never gets there.
fn ladder_figure(seeds: u64) -> LadderFigure {
    let problem = Problem::ProxyLandscape;
    let budget = Budget::of(problem);
    let (low, high) = (49152, 65536);
    let cold_space = synthetic::space(problem, budget, vec![high], false);
    let ladder_space = synthetic::space(problem, budget, vec![low, high], true);
    let best = synthetic::landscape_best(high);
    let mut fractions = Vec::new();
    let mut reached = 0;
    let cold_trials = budget.trials() as usize;
    for seed in 0..seeds {
        let cold = synthetic::run(problem, &cold_space, seed, &mut |_| {});
        let target = synthetic::regret(problem, &cold, cold_trials, high, best);
        let seeded: Vec<Evaluated> = synthetic::run(problem, &ladder_space, seed, &mut |_| {});
        let at_high = seeded.iter().filter(|t| t.batch == high).count();
        let needed = (1..=at_high)
            .find(|&n| synthetic::regret(problem, &seeded, n, high, best) <= target + 1e-12);
        match needed {
            Some(n) => {
                reached += 1;
                fractions.push(n as f64 / cold_trials as f64);
            }
            None => fractions.push(f64::INFINITY),
        }
    }
    let mut sorted = fractions.clone();
    sorted.sort_by(f64::total_cmp);
    LadderFigure {
        median_fraction: sorted[sorted.len() / 2],
        cold_trials,
        reached,
    }
}

fn evaluate(name: &str, args: &BenchStrategyArgs) -> Result<()> {
    let Some(problem) = Problem::from_name(name) else {
        let names: Vec<&str> = Problem::ALL.iter().map(|p| p.name()).collect();
        bail!(
            "--evaluate: unknown problem `{name}`, expected one of {}",
            names.join(", ")
        );
    };
    let at = args
        .at
        .as_deref()
        .context("--evaluate needs --at X1,X2,...")?;
    let x: Vec<f64> = at
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("--at: `{v}` is not a number"))
        })
        .collect::<Result<_>>()?;
    if x.len() != problem.bounds().len() {
        bail!(
            "--at: {} has {} parameters, got {}",
            problem.name(),
            problem.bounds().len(),
            x.len()
        );
    }
    let mut rng = synthetic::trial_rng(args.seed, args.trial);
    let observed = problem.observe(&x, BATCH, &mut rng);
    let truth = problem.truth(&x, BATCH);
    println!(
        "{}",
        serde_json::json!({"observed": observed, "regret": problem.optimum() - truth})
    );
    Ok(())
}
