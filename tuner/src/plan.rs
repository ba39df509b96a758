//! From a validated search space to concrete trials: data set, proxy scaling and trial configs.

use crate::space::{Effect, ModelName, ParamValue, SearchSpace};
use jizhi_trainer::{LossScale, ModelKind, TrainConfig};
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
             as a stand-in, batch sizes scaled to keep ImageNet's steps per epoch: {}; model: {} (its 28×28 proxy)",
            self.train_images,
            self.dir.display(),
            scaling.join(", "),
            space.trainer.model.as_str(),
        )
    }
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
    /// The model has no CPU implementation yet.
    #[error("model `{0}` has no CPU implementation in this version; use `alexnet-bn`")]
    ModelUnsupported(&'static str),
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
    let model = match space.trainer.model {
        ModelName::AlexnetBn => ModelKind::AlexnetBnProxy,
        ModelName::Resnet50 => {
            return Err(PlanError::ModelUnsupported(ModelName::Resnet50.as_str()))
        }
    };
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
    cfg.threads = threads;
    cfg.seed = seed.wrapping_add(spec.seed_offset);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DataPlan {
        DataPlan {
            dir: PathBuf::from("/x"),
            is_proxy: true,
            train_images: 60_000,
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
