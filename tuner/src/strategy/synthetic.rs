//! Synthetic objectives with known optima (Branin, Hartmann-6, a noisy learning-rate × warmup
//! landscape shaped like the proxy trainer's) and a driver that runs the real strategy on them:
//! for the strategy's tests and `jizhi-tune bench strategy`.

use super::{plan_step, steps};
use crate::plan::Point;
use crate::space::{
    Domain, Effect, LrScaling, ModelName, Objective, Param, ParamValue, Scale, SearchLayout,
    SearchSpace, Stages, Study, TrainerSetup,
};
use jizhi_store::{TrialRecord, TrialStatus};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// A test problem: its parameters, a (possibly noisy) objective to maximise and its best value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Branin-Hoo on [-5, 10] × [0, 15], negated (best −0.397887).
    Branin,
    /// Hartmann-6 on [0, 1]^6, negated (best 3.32237).
    Hartmann6,
    /// Accuracy over log learning rate × warmup epochs with a divergence cliff, noisy.
    ProxyLandscape,
}

impl Problem {
    /// Every problem, in table order.
    pub const ALL: [Problem; 3] = [Problem::Branin, Problem::Hartmann6, Problem::ProxyLandscape];

    /// The problem's name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Problem::Branin => "branin",
            Problem::Hartmann6 => "hartmann6",
            Problem::ProxyLandscape => "lr-warmup",
        }
    }

    /// The problem of a name.
    pub fn from_name(name: &str) -> Option<Problem> {
        Problem::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The best noiseless value (batch 32K for the landscape).
    pub fn optimum(self) -> f64 {
        match self {
            Problem::Branin => -0.397887,
            Problem::Hartmann6 => 3.32237,
            Problem::ProxyLandscape => landscape_optimum(32768),
        }
    }

    /// The parameters: (name, min, max, log scale).
    pub fn bounds(self) -> Vec<(&'static str, f64, f64, bool)> {
        match self {
            Problem::Branin => vec![("x1", -5.0, 10.0, false), ("x2", 0.0, 15.0, false)],
            Problem::Hartmann6 => ["x1", "x2", "x3", "x4", "x5", "x6"]
                .iter()
                .map(|n| (*n, 0.0, 1.0, false))
                .collect(),
            Problem::ProxyLandscape => vec![
                ("peak_lr", 0.25, 64.0, true),
                ("warmup_epochs", 0.0, 2.0, false),
            ],
        }
    }

    /// The noiseless value at `x` (in the order of `bounds`), at batch `batch` for the landscape.
    pub fn truth(self, x: &[f64], batch: u64) -> f64 {
        match self {
            Problem::Branin => -branin(x[0], x[1]),
            Problem::Hartmann6 => -hartmann6(x),
            Problem::ProxyLandscape => landscape(x[0], x[1], batch),
        }
    }

    /// One observation at `x`: the truth plus the problem's noise, drawn from `rng`.
    pub fn observe(self, x: &[f64], batch: u64, rng: &mut ChaCha8Rng) -> f64 {
        let noise = match self {
            Problem::ProxyLandscape => LANDSCAPE_NOISE,
            _ => 0.0,
        };
        // Box-Muller: a normal deviate from two uniforms.
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        self.truth(x, batch) + noise * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `x` of a point, in the order of `bounds`.
    pub fn coords(self, point: &Point) -> Vec<f64> {
        self.bounds()
            .iter()
            .map(|(n, ..)| match point.get(*n) {
                Some(ParamValue::Num(v)) => *v,
                _ => f64::NAN,
            })
            .collect()
    }
}

/// Standard deviation of the landscape's observation noise (accuracy units).
const LANDSCAPE_NOISE: f64 = 0.004;

fn branin(x1: f64, x2: f64) -> f64 {
    let pi = std::f64::consts::PI;
    let (b, c) = (5.1 / (4.0 * pi * pi), 5.0 / pi);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x1.cos() + 10.0
}

fn hartmann6(x: &[f64]) -> f64 {
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    -(0..4)
        .map(|i| {
            ALPHA[i]
                * (-(0..6)
                    .map(|j| A[i][j] * (x[j] - P[i][j]).powi(2))
                    .sum::<f64>())
                .exp()
        })
        .sum::<f64>()
}

/// Validation accuracy of the landscape: a ridge in log2(lr) whose best moves up with warmup and
/// with the square root of the batch, a cliff (divergence) just above it, and a mild cost of
/// warmup beyond 0.8 epochs.
fn landscape(lr: f64, warmup: f64, batch: u64) -> f64 {
    let shift = 0.5 * (batch as f64 / 32768.0).log2();
    let centre = 1.0 + 0.8 * warmup + shift;
    let l = lr.log2();
    if l > centre + 1.6 + 0.2 * warmup {
        return 0.1;
    }
    let peak = 0.90 - 0.03 * (warmup - 0.8).powi(2);
    0.1 + (peak - 0.1) * (-(l - centre).powi(2) / (2.0 * 0.7f64.powi(2))).exp()
}

fn landscape_optimum(batch: u64) -> f64 {
    let w = 0.8;
    let lr = 2f64.powf(1.0 + 0.8 * w + 0.5 * (batch as f64 / 32768.0).log2());
    landscape(lr, w, batch)
}

/// The best noiseless landscape value at `batch`.
pub fn landscape_best(batch: u64) -> f64 {
    landscape_optimum(batch)
}

/// How a strategy run is sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Coarse points.
    pub coarse: u32,
    /// Refine rounds.
    pub rounds: u32,
    /// Points per refine round.
    pub per_round: u32,
}

impl Budget {
    /// Trials in all.
    pub fn trials(&self) -> u32 {
        self.coarse + self.rounds * self.per_round
    }

    /// The budget the benchmark gives a problem.
    pub fn of(problem: Problem) -> Budget {
        match problem {
            Problem::Branin => Budget {
                coarse: 12,
                rounds: 3,
                per_round: 4,
            },
            Problem::Hartmann6 => Budget {
                coarse: 24,
                rounds: 6,
                per_round: 6,
            },
            Problem::ProxyLandscape => Budget {
                coarse: 8,
                rounds: 3,
                per_round: 4,
            },
        }
    }
}

/// The search space of a problem, with coarse steps of a quarter of each range (five values).
pub fn space(problem: Problem, budget: Budget, batches: Vec<u64>, ladder: bool) -> SearchSpace {
    let params = problem
        .bounds()
        .into_iter()
        .map(|(name, min, max, log)| {
            let (scale, coarse_step, fine_step, start) = if log {
                (
                    (Scale::Log),
                    (max / min).powf(0.25),
                    (max / min).powf(0.01),
                    (min * max).sqrt(),
                )
            } else {
                (
                    Scale::Linear,
                    (max - min) / 4.0,
                    (max - min) / 100.0,
                    (min + max) / 2.0,
                )
            };
            Param {
                name: name.to_string(),
                domain: Domain::Range {
                    scale,
                    min,
                    max,
                    integer: false,
                    coarse_step,
                    fine_step,
                },
                effect: Effect::Accuracy,
                start: ParamValue::Num(start),
                when: Vec::new(),
            }
        })
        .collect();
    SearchSpace {
        file: PathBuf::from(format!("<{}>", problem.name())),
        text: String::new(),
        study: Study {
            name: problem.name().into(),
            objective: Objective::MaxValTop1,
            target_top1: None,
            baseline_top1: None,
            baseline_batch: None,
            seed: 0,
        },
        trainer: TrainerSetup {
            model: ModelName::AlexnetBn,
            imagenet_dir: None,
            epochs: 1,
            precision: jizhi_trainer::Precision::Fp32,
            optimizer: jizhi_trainer::OptimizerKind::Lars,
            lars_eta: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            decay_bias_and_bn: false,
            ranks: 1,
            local: Default::default(),
            poly_power: 2.0,
            bn5: true,
        },
        batches,
        params,
        fixed: Vec::new(),
        stages: Stages {
            coarse_points: budget.coarse,
            coarse_epochs: 1,
            coarse_fraction: 1.0,
            refine_top_k: 2,
            refine_points: budget.per_round,
            refine_epochs: 1,
            refine_fraction: 1.0,
            seeded_points: (budget.coarse / 2).max(1),
            refine_rounds: budget.rounds,
            refine_shrink: 0.6,
            probe_points: 1,
            probe_epochs: 1,
            probe_fraction: 1.0,
            confirm_top: 0,
            confirm_seeds: 1,
            confirm_epochs: 1,
            confirm_fraction: 1.0,
        },
        search: SearchLayout {
            groups: None,
            ladder,
            lr_scaling: LrScaling::Sqrt,
            keep_fraction: 0.5,
        },
        cluster: None,
        scheduler: Default::default(),
    }
}

/// One evaluated trial of a synthetic run.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// Trial id, from 1 in plan order.
    pub id: u64,
    /// Batch it ran at.
    pub batch: u64,
    /// The point.
    pub point: Point,
    /// The observed (noisy) value.
    pub observed: f64,
}

/// Runs the strategy on `problem` to its end; `order` permutes the order each stage's trials are
/// reported in (as a parallel run's completions would), which must not change anything.
pub fn run(
    problem: Problem,
    space: &SearchSpace,
    seed: u64,
    order: &mut dyn FnMut(&mut Vec<TrialRecord>),
) -> Vec<Evaluated> {
    let mut records: Vec<TrialRecord> = Vec::new();
    let mut out = Vec::new();
    for index in 0..steps(space).len() {
        let plan = plan_step(space, seed, index, &records);
        let mut finished = Vec::new();
        for proposal in plan.proposals {
            let id = records.len() as u64 + finished.len() as u64 + 1;
            // Noise depends on the trial, never on the order trials complete in.
            let mut rng = trial_rng(seed, id);
            let observed =
                problem.observe(&problem.coords(&proposal.point), proposal.batch, &mut rng);
            out.push(Evaluated {
                id,
                batch: proposal.batch,
                point: proposal.point.clone(),
                observed,
            });
            finished.push(record(
                id,
                steps(space)[index].stage.as_str().into_owned(),
                proposal.batch,
                &proposal.point,
                observed,
            ));
        }
        order(&mut finished);
        records.extend(finished);
    }
    out
}

/// The noise source of trial `id` of a run with `seed` (the same for every optimiser).
pub fn trial_rng(seed: u64, id: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A finished trial record holding a synthetic result as its "accuracy".
fn record(id: u64, stage: String, batch: u64, point: &Point, value: f64) -> TrialRecord {
    let params = point
        .iter()
        .map(|(k, v)| {
            let json = match v {
                ParamValue::Num(n) => serde_json::json!(n),
                ParamValue::Text(s) => serde_json::json!(s),
            };
            (k.clone(), json)
        })
        .collect();
    TrialRecord {
        id,
        stage,
        batch,
        proxy_batch: batch,
        params,
        status: TrialStatus::Finished,
        attempts: 1,
        error: None,
        final_val_top1: Some(value),
        wall_secs: Some(1.0),
        modelled_step_secs: None,
        epochs: Vec::new(),
    }
}

/// The best observed trial's noiseless regret after the first `n` trials at `batch`.
pub fn regret(problem: Problem, trials: &[Evaluated], n: usize, batch: u64, best: f64) -> f64 {
    let chosen =
        trials
            .iter()
            .filter(|t| t.batch == batch)
            .take(n)
            .fold(None::<&Evaluated>, |acc, t| match acc {
                Some(a) if a.observed >= t.observed => Some(a),
                _ => Some(t),
            });
    match chosen {
        Some(t) => best - problem.truth(&problem.coords(&t.point), batch),
        None => f64::NAN,
    }
}

/// Uniform random search: `n` points in the (transformed) box, seeded.
pub fn random_search(problem: Problem, n: usize, seed: u64, batch: u64) -> Vec<Evaluated> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(0xA5A5));
    (1..=n as u64)
        .map(|id| {
            let mut point = Point::new();
            for (name, min, max, log) in problem.bounds() {
                let u: f64 = rng.random();
                let v = if log {
                    min * (max / min).powf(u)
                } else {
                    min + u * (max - min)
                };
                point.insert(name.to_string(), ParamValue::Num(v));
            }
            let mut noise = trial_rng(seed, id);
            let observed = problem.observe(&problem.coords(&point), batch, &mut noise);
            Evaluated {
                id,
                batch,
                point,
                observed,
            }
        })
        .collect()
}
