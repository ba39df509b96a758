//! From a validated search space to concrete trials: data set, proxy scaling and trial configs.

use crate::space::{segments_of, AlgorithmName, Effect, ParamValue, SearchSpace};
use jizhi_trainer::collective::Algorithm;
use jizhi_trainer::{LossScale, TrainConfig};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Training images of ImageNet-1k, the data set the nominal batch sizes refer to.
pub const IMAGENET_TRAIN_IMAGES: u64 = 1_281_167;

/// Environment variable naming another folder holding the Fashion-MNIST IDX files.
pub const FASHION_MNIST_ENV: &str = "JIZHI_FASHION_MNIST_DIR";

/// Proxy batch sizes are rounded to a multiple of this (as GPU batch sizes are).
const PROXY_BATCH_QUANTUM: u64 = 64;

/// A trial's parameter values by name (every known parameter, searched or fixed).
pub type Point = BTreeMap<String, ParamValue>;

/// Where the training data comes from and how nominal batches map onto it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlan {
    /// Folder of the data set.
    pub dir: PathBuf,
    /// True when the embedded Fashion-MNIST stands in for ImageNet.
    pub is_proxy: bool,
    /// Training images of the data set actually used.
    pub train_images: u64,
}

impl DataPlan {
    /// The data plan of a search space: ImageNet when configured, else the embedded default.
    pub fn for_space(space: &SearchSpace) -> Result<DataPlan, PlanError> {
        if let Some(dir) = &space.trainer.imagenet_dir {
            return Err(PlanError::ImageNetUnsupported { dir: dir.clone() });
        }
        // Debian's package location unless the environment points elsewhere (other distributions).
        let dir = std::env::var_os(FASHION_MNIST_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(
                || PathBuf::from(jizhi_trainer::data::FASHION_MNIST_DIR),
                PathBuf::from,
            );
        Ok(DataPlan {
            dir,
            is_proxy: true,
            train_images: jizhi_trainer::data::TRAIN_IMAGES as u64,
        })
    }

    /// The batch actually run for a nominal batch, keeping ImageNet's steps per epoch.
    pub fn proxy_batch(&self, nominal: u64) -> u64 {
        if !self.is_proxy {
            return nominal;
        }
        let exact = nominal as f64 * self.train_images as f64 / IMAGENET_TRAIN_IMAGES as f64;
        let quanta = (exact / PROXY_BATCH_QUANTUM as f64).round().max(1.0) as u64;
        quanta * PROXY_BATCH_QUANTUM
    }

    /// One line saying what data the run uses, for the start of every run.
    pub fn describe(&self, space: &SearchSpace) -> String {
        let scaling: Vec<String> = space
            .batches
            .iter()
            .map(|&b| format!("{} → {}", crate::format::batch(b), self.proxy_batch(b)))
            .collect();
        format!(
            "data: no ImageNet folder configured; using the embedded Fashion-MNIST ({} training images, {}) \
             as a stand-in, batch sizes scaled to keep ImageNet's steps per epoch: {}; model: {} (its 28×28 proxy {})",
            self.train_images,
            self.dir.display(),
            scaling.join(", "),
            space.trainer.model.as_str(),
            space.trainer.model.proxy().name(),
        )
    }
}

/// How a study's nominal ranks are trained and modelled, in one line.
pub fn describe_ranks(space: &SearchSpace) -> String {
    let t = &space.trainer;
    let local = &t.local;
    let modelled = match &space.cluster {
        Some(c) => format!(
            "speed modelled on a cluster of {} {} GPUs over {}",
            c.gpus,
            c.gpu.name(),
            c.network.name()
        ),
        None => "no cluster modelled".into(),
    };
    let mut how = vec![format!("{} all-reduce", local.algorithm.as_str())];
    if let Some(k) = local.group_size.filter(|_| local.algorithm.grouped()) {
        how.push(format!("groups of {k}"));
    }
    how.push(format!("segments {}", local.segments));
    if local.sync_bn {
        how.push("synchronised BN".into());
    }
    format!(
        "ranks: {} nominal, trained as {} CPU data-parallel rank{} per trial ({} unless searched); {modelled}",
        t.ranks,
        local.ranks,
        if local.ranks == 1 { "" } else { "s" },
        how.join(", "),
    )
}

/// Why a search space cannot be turned into trials on this build.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// ImageNet input is not available in this version.
    #[error(
        "an ImageNet folder is configured ({dir}), but this version reads only the embedded \
         Fashion-MNIST; unset trainer.imagenet_dir and JIZHI_IMAGENET_DIR to run on it"
    )]
    ImageNetUnsupported {
        /// The configured folder.
        dir: PathBuf,
    },
}

/// The kinds of stage of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Short runs deciding a speed or numerics group.
    Probe(Effect),
    /// Grid (or space-filling design) on coarse steps at low fidelity.
    Coarse,
    /// Around the best regions at higher fidelity; the round, from 1.
    Refine(u32),
    /// The best configurations at full fidelity with extra seeds.
    Confirm,
}

impl Stage {
    /// The stage's name in the store and output.
    pub fn as_str(self) -> Cow<'static, str> {
        match self {
            Stage::Probe(e) => Cow::Borrowed(e.as_str()),
            Stage::Coarse => Cow::Borrowed("coarse"),
            Stage::Refine(1) => Cow::Borrowed("refine"),
            Stage::Refine(r) => Cow::Owned(format!("refine-{r}")),
            Stage::Confirm => Cow::Borrowed("confirm"),
        }
    }
}

/// One planned trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSpec {
    /// Study-wide id, assigned in plan order.
    pub id: u64,
    /// Its stage.
    pub stage: Stage,
    /// Nominal global batch.
    pub batch: u64,
    /// Batch actually run.
    pub proxy_batch: u64,
    /// Parameter values.
    pub point: Point,
    /// Added to the study seed (confirm trials run with extra seeds).
    pub seed_offset: u64,
}

/// Epochs and data fraction of a stage.
pub fn fidelity(space: &SearchSpace, stage: Stage) -> (u32, f64) {
    let s = &space.stages;
    match stage {
        Stage::Probe(_) => (s.probe_epochs, s.probe_fraction),
        Stage::Coarse => (s.coarse_epochs, s.coarse_fraction),
        Stage::Refine(_) => (s.refine_epochs, s.refine_fraction),
        Stage::Confirm => (s.confirm_epochs, s.confirm_fraction),
    }
}

/// The search stages (coarse, refine rounds) that run at the confirm stage's fidelity: their
/// results are full-fidelity seeds of the configurations confirm re-runs.
pub fn stages_at_confirm_fidelity(space: &SearchSpace) -> Vec<String> {
    let full = fidelity(space, Stage::Confirm);
    std::iter::once(Stage::Coarse)
        .chain((1..=space.stages.refine_rounds).map(Stage::Refine))
        .filter(|s| fidelity(space, *s) == full)
        .map(|s| s.as_str().into_owned())
        .collect()
}

/// Optimiser steps one trial of a stage takes at nominal batch `batch` (fewest at the largest):
/// how much of the learning-rate schedule a short stage sees.
pub fn trial_steps(space: &SearchSpace, data: &DataPlan, stage: Stage, batch: u64) -> u64 {
    let (epochs, fraction) = fidelity(space, stage);
    let subset = (fraction * data.train_images as f64).floor().max(1.0) as u64;
    u64::from(epochs) * subset.div_ceil(data.proxy_batch(batch).max(1))
}

/// Training images one trial of a stage processes (its share of the work estimate).
pub fn trial_images(space: &SearchSpace, data: &DataPlan, stage: Stage) -> f64 {
    let (epochs, fraction) = fidelity(space, stage);
    epochs as f64 * fraction * data.train_images as f64
}

fn num(point: &Point, name: &str) -> f64 {
    match point.get(name) {
        Some(ParamValue::Num(v)) => *v,
        _ => 0.0,
    }
}

/// The trainer configuration of a trial.
pub fn train_config(
    space: &SearchSpace,
    data: &DataPlan,
    spec: &TrialSpec,
    threads: usize,
    seed: u64,
) -> Result<TrainConfig, PlanError> {
    let model = space.trainer.model.proxy();
    let (epochs, fraction) = fidelity(space, spec.stage);
    // A shorter stage runs the whole schedule compressed into its own epochs.
    let compression = epochs as f64 / space.trainer.epochs as f64;
    let loss_scale = match spec.point.get("loss_scale") {
        Some(ParamValue::Num(f)) => LossScale::Static { factor: *f },
        _ => crate::trial::DYNAMIC_LOSS_SCALE,
    };
    let t = &space.trainer;
    let mut cfg = TrainConfig::proxy_default(data.dir.clone());
    cfg.model = model;
    cfg.bn5 = t.bn5;
    cfg.batch = spec.proxy_batch as usize;
    cfg.epochs = epochs;
    cfg.data_fraction = fraction;
    cfg.precision = t.precision;
    cfg.optimizer = t.optimizer;
    cfg.lars_eta = num(&spec.point, "lars_eta");
    cfg.momentum = num(&spec.point, "momentum");
    cfg.weight_decay = num(&spec.point, "weight_decay");
    cfg.decay_bias_and_bn = t.decay_bias_and_bn;
    cfg.peak_lr = num(&spec.point, "peak_lr");
    cfg.warmup_epochs = num(&spec.point, "warmup_epochs") * compression;
    cfg.poly_power = t.poly_power;
    cfg.loss_scale = loss_scale;
    cfg.fusion_threshold_bytes =
        (num(&spec.point, "fusion_threshold_mib") * 1024.0 * 1024.0).round() as u64;
    set_ranks(space, &spec.point, &mut cfg);
    cfg.threads = threads;
    cfg.seed = seed.wrapping_add(spec.seed_offset);
    Ok(cfg)
}

/// The trial's data-parallel ranks: `[trainer]`'s local-rank keys, with the searched speed
/// parameters (segments, algorithm, group size) taking their values from the point.
fn set_ranks(space: &SearchSpace, point: &Point, cfg: &mut TrainConfig) {
    let local = &space.trainer.local;
    cfg.ranks = local.ranks;
    cfg.sync_bn = local.sync_bn;
    let algorithm = match point.get("algorithm") {
        Some(ParamValue::Text(name)) => AlgorithmName::parse(name).unwrap_or(local.algorithm),
        _ => local.algorithm,
    };
    // Validation made sure a grouped algorithm has a group size; a ring ignores it.
    let group = match point.get("group_size") {
        Some(ParamValue::Num(k)) => *k as usize,
        _ => local.group_size.unwrap_or(1),
    };
    cfg.algorithm = match algorithm {
        AlgorithmName::Ring => Algorithm::Ring,
        AlgorithmName::Hierarchical => Algorithm::Hierarchical { group },
        AlgorithmName::Hybrid => Algorithm::Hybrid {
            group,
            threshold: local.hybrid_threshold_bytes,
        },
    };
    cfg.segments = point
        .get("segments")
        .and_then(segments_of)
        .unwrap_or_else(|| local.segments.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use jizhi_trainer::ModelKind;

    fn plan() -> DataPlan {
        DataPlan {
            dir: PathBuf::from("/x"),
            is_proxy: true,
            train_images: 60_000,
        }
    }

    fn space(model: &str, trainer: &str) -> SearchSpace {
        crate::space::test_space(model, trainer, "")
    }

    fn spec(point: &[(&str, ParamValue)]) -> TrialSpec {
        TrialSpec {
            id: 1,
            stage: Stage::Probe(Effect::Speed),
            batch: 65536,
            proxy_batch: 3072,
            point: point
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain([("peak_lr".to_string(), ParamValue::Num(1.0))])
                .collect(),
            seed_offset: 0,
        }
    }

    fn config(space: &SearchSpace, point: &[(&str, ParamValue)]) -> TrainConfig {
        match train_config(space, &plan(), &spec(point), 1, 0) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_stage_reports_the_steps_its_trials_take() {
        let s = space("alexnet-bn", "");
        // 60,000 images at batch 3,072 (64K scaled): 19 full batches and a last smaller one.
        assert_eq!(trial_steps(&s, &plan(), Stage::Coarse, 65536), 20);
        assert_eq!(trial_steps(&s, &plan(), Stage::Confirm, 65536), 40);
    }

    #[test]
    fn refine_rounds_at_full_fidelity_pool_into_the_confirm_verdict() {
        let low = space("alexnet-bn", "");
        assert!(stages_at_confirm_fidelity(&low).is_empty());
        let text = crate::space::test_space_text("alexnet-bn", "", "").replace(
            "[stages.refine]\npoints = 1\nepochs = 1",
            "[stages.refine]\npoints = 1\nrounds = 2\nepochs = 2",
        );
        let full = match crate::space::parse(std::path::Path::new("p.toml"), &text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            stages_at_confirm_fidelity(&full),
            vec!["refine", "refine-2"]
        );
    }

    #[test]
    fn resnet50_trains_its_28x28_proxy_and_says_so() {
        let s = space("resnet50", "");
        assert_eq!(config(&s, &[]).model, ModelKind::Resnet20Proxy);
        let line = plan().describe(&s);
        assert!(
            line.contains("model: resnet50 (its 28×28 proxy resnet20-proxy)"),
            "{line}"
        );
        let s = space("alexnet-bn", "");
        assert_eq!(config(&s, &[]).model, ModelKind::AlexnetBnProxy);
    }

    #[test]
    fn local_ranks_and_searched_speed_parameters_reach_the_trial() {
        use jizhi_trainer::ranks::segments::Segments;
        let s = space(
            "alexnet-bn",
            "local_ranks = 4\nsync_bn = true\nalgorithm = \"hybrid\"\ngroup_size = 2\nhybrid_threshold_mib = 2.0\nsegments = [3, 9]",
        );
        let fixed = config(&s, &[]);
        assert_eq!(fixed.ranks, 4);
        assert!(fixed.sync_bn);
        assert_eq!(
            fixed.algorithm,
            Algorithm::Hybrid {
                group: 2,
                threshold: 2 << 20
            }
        );
        assert_eq!(fixed.segments, Segments::At(vec![3, 9]));
        // A searched value wins over the [trainer] key.
        let searched = config(
            &s,
            &[
                ("segments", ParamValue::Text("auto".into())),
                ("algorithm", ParamValue::Text("hierarchical".into())),
                ("group_size", ParamValue::Num(4.0)),
                ("fusion_threshold_mib", ParamValue::Num(16.0)),
            ],
        );
        assert_eq!(searched.segments, Segments::Auto);
        assert_eq!(searched.algorithm, Algorithm::Hierarchical { group: 4 });
        assert_eq!(searched.fusion_threshold_bytes, 16 << 20);
        let counted = config(&s, &[("segments", ParamValue::Num(8.0))]);
        assert_eq!(counted.segments, Segments::Count(8));
    }

    #[test]
    fn only_spaces_that_set_ranks_or_a_cluster_change_the_trial_command() {
        let old = space("alexnet-bn", "");
        let cfg = config(&old, &[]);
        let plain = crate::trial::command_line(&cfg, old.cluster.as_ref());
        assert!(
            !plain
                .iter()
                .any(|a| a == "--ranks" || a.starts_with("--model-") || a == "--segments"),
            "{plain:?}"
        );
        let s = crate::space::test_space(
            "resnet50",
            "local_ranks = 2\nsegments = 4",
            "[cluster]\ngpu = \"p40\"\nnetwork = \"100gbe\"\n",
        );
        let args = crate::trial::command_line(&config(&s, &[]), s.cluster.as_ref()).join(" ");
        for want in [
            "--ranks 2",
            "--segments 4",
            "--model-cluster 1024 --model-gpu p40 --model-network 100gbe",
            "--model resnet20-proxy",
        ] {
            assert!(args.contains(want), "{want} not in {args}");
        }
    }

    #[test]
    fn proxy_batches_keep_imagenet_steps_per_epoch() {
        let p = plan();
        assert_eq!(p.proxy_batch(65536), 3072);
        assert_eq!(p.proxy_batch(49152), 2304);
        assert_eq!(p.proxy_batch(32768), 1536);
        assert_eq!(p.proxy_batch(256), 64);
        let steps_imagenet = IMAGENET_TRAIN_IMAGES as f64 / 65536.0;
        let steps_proxy = 60_000.0 / 3072.0;
        assert!((steps_imagenet - steps_proxy).abs() / steps_imagenet < 0.01);
    }
}
