//! Search-space files: parsing, validation and the validated model the planner works from.
//!
//! Every problem becomes one [`SpaceError`] naming the file, line and key; nothing is written to
//! disk before a file has passed validation.

mod error;
mod locate;
mod ranks;
mod scheduler;
mod schema;
mod validate;

pub use error::SpaceError;
pub use validate::parse;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A validated search space.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    /// The file it was read from.
    pub file: PathBuf,
    /// The file's exact text (stored with the study to detect drift).
    pub text: String,
    /// Name, objective and seed.
    pub study: Study,
    /// The fixed training setup.
    pub trainer: TrainerSetup,
    /// Nominal global batch sizes, in ladder order.
    pub batches: Vec<u64>,
    /// Searched parameters, in the order of [`KNOWN_PARAMS`] (most influential first).
    pub params: Vec<Param>,
    /// Values of the known parameters that are not searched.
    pub fixed: Vec<(String, ParamValue)>,
    /// Stage sizes and fidelities.
    pub stages: Stages,
    /// How the stages are arranged: groups, ladder, halving.
    pub search: SearchLayout,
    /// The GPU cluster every trial's speed settings are modelled on (`[cluster]`), if any.
    pub cluster: Option<ModelledCluster>,
    /// How the trials are run (`[scheduler]`); the run's command-line options override it.
    pub scheduler: SchedulerKeys,
}

/// `[cluster]`, validated: `gpus` (the study's nominal `trainer.ranks`) GPUs of one kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelledCluster {
    /// GPUs of the cluster.
    pub gpus: usize,
    /// Their kind.
    pub gpu: jizhi_trainer::costmodel::Gpu,
    /// The network between their nodes.
    pub network: jizhi_trainer::costmodel::Network,
}

/// `[scheduler]`, validated; a key left out is `None` (the command line or the built-in default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerKeys {
    /// Trials run at the same time.
    pub concurrency: Option<usize>,
    /// Seconds a trial attempt may run (0: no limit).
    pub trial_timeout_secs: Option<f64>,
    /// Seconds a trial may go without a progress line (0: no limit).
    pub stall_timeout_secs: Option<f64>,
    /// Further attempts of a crashed trial.
    pub max_retries: Option<u32>,
    /// Program and arguments every trial command is run through.
    pub launcher: Option<Vec<String>>,
}

/// An all-reduce algorithm by name; its group size and threshold are separate keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmName {
    /// One ring over every rank.
    Ring,
    /// Reduce within groups, ring across the group leaders, broadcast back.
    Hierarchical,
    /// Hierarchical below the hybrid threshold, the ring from it on.
    Hybrid,
}

impl AlgorithmName {
    /// Every algorithm, in the order messages list them.
    pub const ALL: [AlgorithmName; 3] = [
        AlgorithmName::Ring,
        AlgorithmName::Hierarchical,
        AlgorithmName::Hybrid,
    ];

    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgorithmName::Ring => "ring",
            AlgorithmName::Hierarchical => "hierarchical",
            AlgorithmName::Hybrid => "hybrid",
        }
    }

    /// The algorithm called `name`.
    pub fn parse(name: &str) -> Option<AlgorithmName> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether it works in groups of ranks (and so needs a group size).
    pub fn grouped(self) -> bool {
        self != AlgorithmName::Ring
    }
}

/// The in-process data-parallel ranks of every trial (`[trainer]` `local_ranks` and friends).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRanks {
    /// Ranks (P) each trial splits its batch among.
    pub ranks: usize,
    /// Batch-norm statistics over the global batch instead of each rank's share.
    pub sync_bn: bool,
    /// All-reduce algorithm (when not searched).
    pub algorithm: AlgorithmName,
    /// Ranks per group of the hierarchical and hybrid algorithms (when not searched).
    pub group_size: Option<usize>,
    /// Message size from which the hybrid algorithm uses the ring.
    pub hybrid_threshold_bytes: u64,
    /// All-reduce segments of the backward pass (when not searched).
    pub segments: jizhi_trainer::ranks::segments::Segments,
}

impl Default for LocalRanks {
    fn default() -> Self {
        LocalRanks {
            ranks: 1,
            sync_bn: false,
            algorithm: AlgorithmName::Ring,
            group_size: None,
            hybrid_threshold_bytes: DEFAULT_HYBRID_THRESHOLD_BYTES,
            segments: jizhi_trainer::ranks::segments::Segments::Count(1),
        }
    }
}

/// Message size from which the hybrid algorithm switches to the ring unless the file says.
pub const DEFAULT_HYBRID_THRESHOLD_BYTES: u64 = 1 << 20;

/// What a parameter affects, which decides how (and how cheaply) it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    /// Throughput only (fusion threshold): judged by images/s in short runs.
    Speed,
    /// Numerics only (loss scale): judged by skipped steps and loss-scale collapse in short runs.
    Numerics,
    /// The accuracy reached (learning rate, warmup, ...): judged by the study's objective.
    Accuracy,
}

impl Effect {
    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Speed => "speed",
            Effect::Numerics => "numerics",
            Effect::Accuracy => "accuracy",
        }
    }

    /// The effect of a known parameter when the file does not say.
    pub fn of_param(name: &str) -> Effect {
        match name {
            "fusion_threshold_mib" | "segments" | "algorithm" | "group_size" => Effect::Speed,
            "loss_scale" => Effect::Numerics,
            _ => Effect::Accuracy,
        }
    }
}

/// How the learning rate moves from one batch size of the ladder to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrScaling {
    /// Multiply by the square root of the batch ratio.
    Sqrt,
    /// Multiply by the batch ratio.
    Linear,
}

/// `[search]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchLayout {
    /// Groups decided one after the other, each fixed for the next; `None`: one joint search.
    pub groups: Option<Vec<Effect>>,
    /// Batch sizes one at a time, each seeded by the previous one's results.
    pub ladder: bool,
    /// The ladder's learning-rate rule.
    pub lr_scaling: LrScaling,
    /// Fraction of a stage's trials that go on to the next stage (successive halving).
    pub keep_fraction: f64,
}

/// `[study]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    /// Plain file name used for the default store folder.
    pub name: String,
    /// What a trial is ranked by.
    pub objective: Objective,
    /// Target validation top-1 in [0,1], if any.
    pub target_top1: Option<f64>,
    /// Validation top-1 of a small-batch run, the reference large batches are compared with.
    pub baseline_top1: Option<f64>,
    /// The nominal batch size the baseline was trained at.
    pub baseline_batch: Option<u64>,
    /// Seed of every trial and proposal.
    pub seed: u64,
}

/// What ranks trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Highest final validation top-1.
    MaxValTop1,
    /// Least wall time to reach `target_top1` (then accuracy for those that never do).
    TimeToTarget,
}

/// Nominal model of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelName {
    /// AlexNet with batch norm (You et al. 2017) plus BN after pool5.
    AlexnetBn,
    /// ResNet-50 with zero-initialised last BN gamma per block.
    Resnet50,
}

impl ModelName {
    /// The 28×28 model that stands for it on the embedded data (the modelled cluster still
    /// prices the full-size network: see `costmodel::trial::counterpart`).
    pub fn proxy(self) -> jizhi_trainer::ModelKind {
        match self {
            ModelName::AlexnetBn => jizhi_trainer::ModelKind::AlexnetBnProxy,
            ModelName::Resnet50 => jizhi_trainer::ModelKind::Resnet20Proxy,
        }
    }

    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::AlexnetBn => "alexnet-bn",
            ModelName::Resnet50 => "resnet50",
        }
    }
}

/// `[trainer]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSetup {
    /// Nominal model.
    pub model: ModelName,
    /// ImageNet folder, when one is configured (key or `JIZHI_IMAGENET_DIR`).
    pub imagenet_dir: Option<PathBuf>,
    /// Epochs of a full-fidelity run; shorter stages compress the schedule into their epochs.
    pub epochs: u32,
    /// Numeric precision of every trial.
    pub precision: jizhi_trainer::Precision,
    /// Optimiser of every trial.
    pub optimizer: jizhi_trainer::OptimizerKind,
    /// LARS trust coefficient (when not searched).
    pub lars_eta: f64,
    /// Momentum (when not searched).
    pub momentum: f64,
    /// Weight decay (when not searched).
    pub weight_decay: f64,
    /// Whether bias and BN parameters get weight decay too.
    pub decay_bias_and_bn: bool,
    /// Nominal data-parallel ranks: the GPUs of the cluster the study stands for.
    pub ranks: u32,
    /// The data-parallel ranks each trial actually runs in its own process.
    pub local: LocalRanks,
    /// Power of the polynomial decay.
    pub poly_power: f64,
    /// Whether the extra BN after pool5 is present.
    pub bn5: bool,
}

/// A parameter value: a number or a word such as `dynamic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A number.
    Num(f64),
    /// A word.
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Num(v) => write!(f, "{}", crate::format::short_number(*v)),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

/// How a range is stepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Additive steps.
    Linear,
    /// Multiplicative steps (step is a factor > 1).
    Log,
}

/// The values a parameter may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// A numeric range.
    Range {
        /// Linear or log stepping.
        scale: Scale,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
        /// Round to whole numbers.
        integer: bool,
        /// Grid step of the coarse stage.
        coarse_step: f64,
        /// Neighbourhood step of the refine stage.
        fine_step: f64,
    },
    /// An ordered list of values.
    Values {
        /// The values in file order.
        values: Vec<ParamValue>,
        /// Index stride of the coarse grid.
        coarse_step: usize,
        /// Index distance of refine neighbours.
        fine_step: usize,
    },
}

/// One searched parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// A name from [`KNOWN_PARAMS`].
    pub name: String,
    /// Its values.
    pub domain: Domain,
    /// What it affects (its group).
    pub effect: Effect,
    /// Its value until its group is decided (and while its condition does not hold).
    pub start: ParamValue,
    /// Searched only when each named parameter has one of the listed values.
    pub when: Vec<(String, Vec<ParamValue>)>,
}

/// Stage sizes and fidelities.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// Coarse points per batch size.
    pub coarse_points: u32,
    /// Epochs of a coarse trial.
    pub coarse_epochs: u32,
    /// Fraction of the training set a coarse trial uses.
    pub coarse_fraction: f64,
    /// Best coarse results to refine around, per batch size.
    pub refine_top_k: u32,
    /// Refine trials per batch size.
    pub refine_points: u32,
    /// Epochs of a refine trial.
    pub refine_epochs: u32,
    /// Fraction of the training set a refine trial uses.
    pub refine_fraction: f64,
    /// Coarse points at a ladder rung seeded by the previous batch size.
    pub seeded_points: u32,
    /// Refine stages, each proposing `refine_points` from everything finished so far.
    pub refine_rounds: u32,
    /// Factor the refine region shrinks by from one round to the next.
    pub refine_shrink: f64,
    /// Points of a speed or numerics probe, per batch size.
    pub probe_points: u32,
    /// Epochs of a probe trial.
    pub probe_epochs: u32,
    /// Data fraction of a probe trial.
    pub probe_fraction: f64,
    /// Best configurations confirmed per batch size (0: no confirm stage).
    pub confirm_top: u32,
    /// Seeds each confirmed configuration runs with.
    pub confirm_seeds: u32,
    /// Epochs of a confirm trial.
    pub confirm_epochs: u32,
    /// Data fraction of a confirm trial.
    pub confirm_fraction: f64,
}

/// The parameters a trial knows how to apply, with their defaults when not searched.
pub const KNOWN_PARAMS: &[(&str, &str)] = &[
    ("peak_lr", "1.0"),
    ("warmup_epochs", "0.5"),
    ("loss_scale", "\"dynamic\""),
    ("fusion_threshold_mib", "64"),
    ("segments", "from trainer.segments"),
    ("algorithm", "from trainer.algorithm"),
    ("group_size", "from trainer.group_size"),
    ("lars_eta", "from trainer.lars_eta"),
    ("momentum", "from trainer.momentum"),
    ("weight_decay", "from trainer.weight_decay"),
];

/// The searchable speed parameters whose value, when not searched, is a `[trainer]` key: they
/// are part of a trial's recorded parameters only when searched, so that the trials of spaces
/// written before they existed keep their parameters.
pub const TRAINER_KEY_PARAMS: &[&str] = &["segments", "algorithm", "group_size"];

/// The segments a `segments` parameter value stands for: a count, `auto` or `at:I,J,...`.
pub fn segments_of(value: &ParamValue) -> Option<jizhi_trainer::ranks::segments::Segments> {
    use jizhi_trainer::ranks::segments::Segments;
    let segments = match value {
        ParamValue::Num(v) if *v >= 1.0 && v.fract() == 0.0 => Segments::Count(*v as usize),
        ParamValue::Num(_) => return None,
        ParamValue::Text(s) => s.parse::<Segments>().ok()?,
    };
    let ascending = match &segments {
        Segments::At(at) => !at.is_empty() && at[0] >= 1 && at.windows(2).all(|w| w[0] < w[1]),
        _ => true,
    };
    ascending.then_some(segments)
}

/// Reads and validates a search-space file.
pub fn load(path: &Path) -> Result<SearchSpace, SpaceError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpaceError {
        file: path.to_path_buf(),
        line: None,
        key: String::new(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse(path, &text)
}

/// The text of a minimal valid search space for tests: `model`, the `trainer` lines added to
/// `[trainer]` (2 epochs, fp16 LARS, 1024 ranks), one batch size (64K), one searched learning
/// rate, one coarse and one refine point at 1 epoch, and `tail` at the end.
#[cfg(test)]
pub(crate) fn test_space_text(model: &str, trainer: &str, tail: &str) -> String {
    format!(
        r#"[study]
name = "t"

[trainer]
model = "{model}"
epochs = 2
precision = "fp16"
optimizer = "lars"
ranks = 1024
{trainer}

[batch]
sizes = [65536]

[params.peak_lr]
scale = "log"
min = 0.5
max = 2.0
coarse_step = 2.0
fine_step = 1.5

[stages.coarse]
points = 1
epochs = 1

[stages.refine]
points = 1
epochs = 1
{tail}"#
    )
}

/// [`test_space_text`] parsed (panics with the error if it does not parse).
#[cfg(test)]
pub(crate) fn test_space(model: &str, trainer: &str, tail: &str) -> SearchSpace {
    match parse(Path::new("t.toml"), &test_space_text(model, trainer, tail)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests;
