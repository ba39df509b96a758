//! Training configuration: what one trial of the tuner asks the trainer to do.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collective::Algorithm;
use crate::error::TrainError;
use crate::ranks::segments::Segments;

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The 28x28 proxy of AlexNet-BN (five 3x3 conv+BN layers, three FC layers).
    AlexnetBnProxy,
    /// The 28x28 ResNet-20-style proxy (three stages of three basic blocks).
    Resnet20Proxy,
    /// Full-size AlexNet-BN on 224x224x3 ImageNet images.
    AlexnetBn,
    /// Full-size ResNet-50 on 224x224x3 ImageNet images.
    Resnet50,
}

impl ModelKind {
    /// Every model, in the order help texts list them.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::AlexnetBnProxy,
        ModelKind::Resnet20Proxy,
        ModelKind::AlexnetBn,
        ModelKind::Resnet50,
    ];

    /// The name configs and command lines use.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::AlexnetBnProxy => "alexnet-bn-proxy",
            ModelKind::Resnet20Proxy => "resnet20-proxy",
            ModelKind::AlexnetBn => "alexnet-bn",
            ModelKind::Resnet50 => "resnet50",
        }
    }

    /// The model called `name`, or an error listing the known names.
    pub fn parse(name: &str) -> Result<ModelKind, TrainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                TrainError::InvalidConfig(format!(
                    "unknown model `{name}`, expected one of {}",
                    known.join(", ")
                ))
            })
    }

    /// Input images as (side, channels): 28x28x1 for the proxies, 224x224x3 full size.
    pub fn input(self) -> (usize, usize) {
        match self {
            ModelKind::AlexnetBnProxy | ModelKind::Resnet20Proxy => (crate::data::SIDE, 1),
            ModelKind::AlexnetBn | ModelKind::Resnet50 => (224, 3),
        }
    }
}

/// How the learning rate falls after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LrDecay {
    /// `peak * (1 - t)^poly_power`.
    #[default]
    Poly,
    /// `peak * (1 + cos(pi t)) / 2`.
    Cosine,
}

/// Numeric format of the forward/backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Plain single precision.
    Fp32,
    /// IEEE half compute with fp32 master weights and loss scaling (emulated GPU AMP).
    Fp16,
    /// bfloat16 compute with fp32 master weights.
    Bf16,
    /// IEEE half everywhere, no master weights: small updates are lost.
    Fp16Naive,
}

/// Update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Momentum SGD (PyTorch convention).
    Sgd,
    /// Layer-wise adaptive rate scaling on top of momentum SGD.
    Lars,
}

/// How the loss is scaled before backward in the half-precision modes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossScale {
    /// A fixed factor.
    Static {
        /// The multiplier applied to the loss gradient.
        factor: f64,
    },
    /// Start at `init`, double after `growth_interval` clean steps, halve on overflow.
    #[serde(rename_all = "kebab-case")]
    Dynamic {
        /// Initial scale.
        init: f64,
        /// Clean steps between two doublings.
        growth_interval: u32,
    },
}

/// The dynamic loss scale below which a run counts as diverged, unless configured otherwise.
pub const DEFAULT_MIN_LOSS_SCALE: f64 = 1.0;

/// Everything one training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Network to train.
    pub model: ModelKind,
    /// Keep the BatchNorm on the pool5 features (`bn_pool5`, per channel).
    pub bn5: bool,
    /// Folder holding the four Fashion-MNIST IDX .gz files.
    pub data_dir: PathBuf,
    /// Global batch size.
    pub batch: usize,
    /// Number of passes over the (fraction of the) training set.
    pub epochs: u32,
    /// Fraction in (0,1] of the seeded-shuffled training set used for training.
    pub data_fraction: f64,
    /// Numeric format.
    pub precision: Precision,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// LARS trust coefficient.
    pub lars_eta: f64,
    /// LARS guard against division by zero.
    pub lars_eps: f64,
    /// Momentum coefficient.
    pub momentum: f64,
    /// Use Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Also apply weight decay (and LARS scaling) to biases and BN parameters.
    pub decay_bias_and_bn: bool,
    /// Learning rate reached at the end of warmup.
    pub peak_lr: f64,
    /// Length of the linear warmup in epochs (fractional allowed).
    pub warmup_epochs: f64,
    /// Exponent of the polynomial decay after warmup.
    pub poly_power: f64,
    /// Shape of the decay after warmup (polynomial unless set).
    pub lr_decay: LrDecay,
    /// Label smoothing of the cross-entropy targets, in [0, 1) (0 = one-hot).
    pub label_smoothing: f64,
    /// Loss scaling for the half-precision modes (ignored in fp32).
    pub loss_scale: LossScale,
    /// A dynamic loss scale below this stops the run as diverged (the gradients overflow fp16
    /// even unscaled).
    pub min_loss_scale: f64,
    /// Gradient fusion bucket threshold in bytes (0 = one all-reduce per tensor).
    pub fusion_threshold_bytes: u64,
    /// Compute threads (shared by all ranks).
    pub threads: usize,
    /// Data-parallel ranks (P); each trains on its share of the global batch.
    pub ranks: usize,
    /// Batch-norm statistics over the whole global batch instead of each rank's share.
    pub sync_bn: bool,
    /// All-reduce algorithm across the ranks.
    pub algorithm: Algorithm,
    /// Where the backward pass is split into all-reduce segments.
    pub segments: Segments,
    /// Seed of every random choice (init, shuffling, dropout).
    pub seed: u64,
    /// Augment training images: random crop with 2 pixels of padding and horizontal flip.
    pub augment: bool,
    /// File the run's state is saved to after every epoch and resumed from when it exists
    /// (the epochs it holds are reported again, then training continues).
    pub checkpoint: Option<PathBuf>,
}

impl TrainConfig {
    /// A small, sensible configuration for the proxy model reading data from `data_dir`.
    pub fn proxy_default(data_dir: impl AsRef<Path>) -> Self {
        TrainConfig {
            model: ModelKind::AlexnetBnProxy,
            bn5: true,
            data_dir: data_dir.as_ref().to_path_buf(),
            batch: 256,
            epochs: 2,
            data_fraction: 1.0,
            precision: Precision::Fp32,
            optimizer: OptimizerKind::Sgd,
            lars_eta: 0.001,
            lars_eps: 1e-9,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            decay_bias_and_bn: false,
            peak_lr: 0.1,
            warmup_epochs: 0.0,
            poly_power: 2.0,
            lr_decay: LrDecay::Poly,
            label_smoothing: 0.0,
            loss_scale: LossScale::Static { factor: 1.0 },
            min_loss_scale: DEFAULT_MIN_LOSS_SCALE,
            fusion_threshold_bytes: 64 << 20,
            threads: 1,
            ranks: 1,
            sync_bn: false,
            algorithm: Algorithm::Ring,
            segments: Segments::Count(1),
            seed: 0,
            augment: false,
            checkpoint: None,
        }
    }

    /// Checks every field for range and consistency.
    pub fn validate(&self) -> Result<(), TrainError> {
        fn bad(msg: String) -> Result<(), TrainError> {
            Err(TrainError::InvalidConfig(msg))
        }
        fn finite_nonneg(name: &str, v: f64) -> Result<(), TrainError> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(format!("{name} must be finite and >= 0, got {v}"))
            }
        }
        let (side, channels) = self.model.input();
        if (side, channels) != (crate::data::SIDE, 1) {
            return bad(format!(
                "model {} takes {side}x{side}x{channels} ImageNet images, but the data set is \
                 Fashion-MNIST ({}x{}x1, the only data set this trainer reads); jizhi-tune does \
                 not ship an ImageNet folder or reader, so train alexnet-bn-proxy or \
                 resnet20-proxy here",
                self.model.name(),
                crate::data::SIDE,
                crate::data::SIDE
            ));
        }
        if self.batch == 0 {
            return bad("batch must be > 0".into());
        }
        if self.batch > crate::data::TRAIN_IMAGES {
            return bad(format!(
                "batch {} exceeds the {} training images",
                self.batch,
                crate::data::TRAIN_IMAGES
            ));
        }
        if self.epochs == 0 {
            return bad("epochs must be > 0".into());
        }
        if !(self.data_fraction > 0.0 && self.data_fraction <= 1.0) {
            return bad(format!(
                "data_fraction must be in (0,1], got {}",
                self.data_fraction
            ));
        }
        let subset = self.train_subset_len();
        if self.batch > subset {
            return bad(format!(
                "batch {} is larger than the training subset ({} images at data_fraction {})",
                self.batch, subset, self.data_fraction
            ));
        }
        if self.threads == 0 || self.threads > 256 {
            return bad(format!("threads must be in 1..=256, got {}", self.threads));
        }
        self.validate_ranks()?;
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(format!("momentum must be in [0,1), got {}", self.momentum));
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("nesterov needs momentum > 0".into());
        }
        finite_nonneg("weight_decay", self.weight_decay)?;
        finite_nonneg("peak_lr", self.peak_lr)?;
        finite_nonneg("warmup_epochs", self.warmup_epochs)?;
        finite_nonneg("poly_power", self.poly_power)?;
        finite_nonneg("lars_eps", self.lars_eps)?;
        if !(self.label_smoothing.is_finite() && (0.0..1.0).contains(&self.label_smoothing)) {
            return bad(format!(
                "label_smoothing must be in [0,1), got {}",
                self.label_smoothing
            ));
        }
        finite_nonneg("min_loss_scale", self.min_loss_scale)?;
        if self.optimizer == OptimizerKind::Lars
            && !(self.lars_eta.is_finite() && self.lars_eta > 0.0)
        {
            return bad(format!(
                "lars_eta must be finite and > 0, got {}",
                self.lars_eta
            ));
        }
        match self.loss_scale {
            LossScale::Static { factor } => {
                if !(factor.is_finite() && factor > 0.0) {
                    return bad(format!(
                        "static loss scale must be finite and > 0, got {factor}"
                    ));
                }
            }
            LossScale::Dynamic {
                init,
                growth_interval,
            } => {
                if !(init.is_finite() && init > 0.0) {
                    return bad(format!(
                        "dynamic loss scale init must be finite and > 0, got {init}"
                    ));
                }
                if growth_interval == 0 {
                    return bad("dynamic loss scale growth_interval must be >= 1".into());
                }
            }
        }
        Ok(())
    }

    /// Checks the data-parallel settings: every rank gets images in every batch, groups divide P.
    fn validate_ranks(&self) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::InvalidConfig(msg));
        let p = self.ranks;
        if p == 0 || p > 4096 {
            return bad(format!("ranks must be in 1..=4096, got {p}"));
        }
        let subset = self.train_subset_len();
        let last = subset - (self.steps_per_epoch() - 1) * self.batch;
        if last < p {
            return bad(format!(
                "with {p} ranks every batch needs at least {p} images, but the last batch of an epoch has {last} (batch {}, {subset} training images)",
                self.batch
            ));
        }
        match self.algorithm {
            Algorithm::Ring => {}
            Algorithm::Hierarchical { group } | Algorithm::Hybrid { group, .. } => {
                if group == 0 || !p.is_multiple_of(group) {
                    return bad(format!("group size {group} must divide the {p} ranks"));
                }
            }
        }
        match &self.segments {
            Segments::Count(0) => bad("segments must be >= 1".into()),
            Segments::At(at) => {
                if at.windows(2).any(|w| w[0] >= w[1]) || at.first() == Some(&0) {
                    return bad(format!(
                        "segment split points must be ascending tensor indices >= 1, got {at:?}"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Number of training images used per epoch (`data_fraction` of 60,000, at least 1).
    pub fn train_subset_len(&self) -> usize {
        let n = (self.data_fraction * crate::data::TRAIN_IMAGES as f64).floor();
        if n.is_finite() {
            (n as usize).clamp(1, crate::data::TRAIN_IMAGES)
        } else {
            1
        }
    }

    /// Optimiser steps per epoch (the last batch of an epoch may be smaller).
    pub fn steps_per_epoch(&self) -> usize {
        self.train_subset_len().div_ceil(self.batch.max(1))
    }
}

impl Default for TrainConfig {
    /// `proxy_default` reading from the system Fashion-MNIST folder.
    fn default() -> Self {
        Self::proxy_default(crate::data::FASHION_MNIST_DIR)
    }
}
