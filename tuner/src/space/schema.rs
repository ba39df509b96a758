//! The search-space file as written: serde structures that refuse unknown keys.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Top level of a search-space file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpace {
    pub study: RawStudy,
    pub trainer: RawTrainer,
    pub batch: RawBatch,
    #[serde(default)]
    pub params: BTreeMap<String, RawParam>,
    pub stages: RawStages,
    #[serde(default)]
    pub search: RawSearch,
    pub cluster: Option<RawCluster>,
    pub scheduler: Option<RawScheduler>,
}

/// `[cluster]`: the GPU cluster of `trainer.ranks` GPUs every trial's speed settings are modelled on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub gpu: String,
    pub network: String,
}

/// `[scheduler]`: how the trials are run (the same as the run's command-line options, which win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    pub concurrency: Option<i64>,
    pub trial_timeout: Option<toml::Value>,
    pub stall_timeout: Option<toml::Value>,
    pub max_retries: Option<i64>,
    pub launcher: Option<String>,
}

/// `[search]`: how the stages are arranged (parameter groups, batch-size ladder, halving).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub ladder: bool,
    pub lr_scaling: Option<String>,
    pub keep_fraction: Option<f64>,
}

/// `[study]`: what the study is called and what it optimises.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStudy {
    pub name: String,
    #[serde(default = "default_objective")]
    pub objective: String,
    pub target_top1: Option<f64>,
    pub baseline_top1: Option<f64>,
    pub baseline_batch: Option<u64>,
    #[serde(default)]
    pub seed: u64,
}

fn default_objective() -> String {
    "max-val-top1".into()
}

/// `[trainer]`: the fixed training setup every trial shares.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrainer {
    pub model: String,
    #[serde(default = "default_dataset")]
    pub dataset: String,
    #[serde(default)]
    pub imagenet_dir: String,
    pub epochs: u32,
    pub precision: String,
    pub optimizer: String,
    #[serde(default = "default_lars_eta")]
    pub lars_eta: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "default_exclude")]
    pub weight_decay_exclude: Vec<String>,
    #[serde(default = "default_ranks")]
    pub ranks: u32,
    #[serde(default = "default_poly_power")]
    pub poly_power: f64,
    #[serde(default = "default_bn5")]
    pub bn5: bool,
    #[serde(default = "default_local_ranks")]
    pub local_ranks: i64,
    #[serde(default)]
    pub sync_bn: bool,
    pub algorithm: Option<String>,
    pub group_size: Option<i64>,
    pub hybrid_threshold_mib: Option<f64>,
    pub segments: Option<toml::Value>,
    /// Values used for parameters that `[params]` does not search.
    #[serde(default)]
    pub defaults: BTreeMap<String, toml::Value>,
}

fn default_dataset() -> String {
    "imagenet".into()
}
fn default_lars_eta() -> f64 {
    0.01
}
fn default_momentum() -> f64 {
    0.9
}
fn default_exclude() -> Vec<String> {
    vec!["bias".into(), "bn".into()]
}
fn default_ranks() -> u32 {
    1
}
fn default_local_ranks() -> i64 {
    1
}
fn default_poly_power() -> f64 {
    2.0
}
fn default_bn5() -> bool {
    true
}

/// `[batch]`: the nominal global batch sizes of the ladder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub sizes: Vec<u64>,
}

/// `[params.NAME]`: one searched parameter, a range or a list of values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    pub scale: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub values: Option<Vec<toml::Value>>,
    #[serde(default)]
    pub integer: bool,
    pub coarse_step: f64,
    pub fine_step: f64,
    pub effect: Option<String>,
    pub start: Option<toml::Value>,
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
}

/// `[stages]`: the coarse and refine stages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStages {
    pub coarse: RawCoarse,
    pub refine: RawRefine,
    pub probe: Option<RawProbe>,
    pub confirm: Option<RawConfirm>,
}

/// `[stages.probe]`: short runs that decide the speed and numerics groups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub points: Option<u32>,
    pub epochs: Option<u32>,
    pub data_fraction: Option<f64>,
}

/// `[stages.confirm]`: the best configurations again at full fidelity with extra seeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfirm {
    pub top: Option<u32>,
    pub seeds: Option<u32>,
    pub epochs: Option<u32>,
    pub data_fraction: Option<f64>,
}

/// `[stages.coarse]`: grid on the coarse steps at low fidelity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoarse {
    pub points: u32,
    pub epochs: u32,
    #[serde(default = "default_fraction")]
    pub data_fraction: f64,
    pub seeded_points: Option<u32>,
}

/// `[stages.refine]`: points around the best coarse results at higher fidelity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefine {
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    pub points: u32,
    pub epochs: u32,
    #[serde(default = "default_fraction")]
    pub data_fraction: f64,
    pub rounds: Option<u32>,
    pub shrink: Option<f64>,
}

fn default_fraction() -> f64 {
    1.0
}
fn default_top_k() -> u32 {
    1
}
