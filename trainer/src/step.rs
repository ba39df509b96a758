//! One optimiser step — forward, loss, backward, (fused) all-reduce, overflow check and
//! unscale, update — and the state it needs, shared by training runs and the benchmark.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::data::CLASSES;
use crate::error::TrainError;
use crate::fusion::{allreduce_buckets, plan_buckets};
use crate::layers::loss::softmax_cross_entropy_smoothed;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::parallel::Par;
use crate::precision::{all_finite, round, round_counting, HalfFormat, Underflow};
use crate::report::EpochReport;
use crate::scaler::LossScaler;

/// RNG stream of the dropout masks.
const DROPOUT_STREAM: u64 = 3;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepOutcome {
    /// Mean training loss of the batch (unscaled).
    pub loss: f64,
    /// Whether the gradients were finite and the update was applied.
    pub applied: bool,
}

/// Model, optimiser, loss scaler and dropout RNG of a run, advanced one step at a time.
pub(crate) struct StepState {
    /// The network and its parameters.
    pub model: Model,
    /// The optimiser state.
    pub opt: Optimizer,
    /// The loss scaler.
    pub scaler: LossScaler,
    /// Compute threads.
    pub par: Par,
    /// The half format of the compute (None in fp32).
    pub fmt: Option<HalfFormat>,
    /// Whether the weights themselves are half (fp16-naive).
    pub weights_in_half: bool,
    dropout_rng: ChaCha8Rng,
    bucket_ranges: Vec<Range<usize>>,
    dlogits: Vec<f32>,
    label_smoothing: f32,
}

impl StepState {
    /// The initial state of a run configured by `cfg`.
    pub fn new(cfg: &TrainConfig) -> StepState {
        let fmt = cfg.precision.half_format();
        let weights_in_half = cfg.precision.weights_in_half();
        let mut model = Model::new(cfg.model, cfg.bn5, cfg.seed);
        round(
            if weights_in_half { fmt } else { None },
            &mut model.params.values,
        );
        let ranges = model.params.ranges_backward();
        let bucket_ranges = gradient_buckets(&model, &ranges, cfg);
        let opt = Optimizer::new(cfg, model.inventory(), &ranges);
        let mut dropout_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        dropout_rng.set_stream(DROPOUT_STREAM);
        StepState {
            model,
            opt,
            scaler: LossScaler::new(cfg.loss_scale, cfg.precision),
            par: Par::new(cfg.threads),
            fmt,
            weights_in_half,
            dropout_rng,
            bucket_ranges,
            dlogits: Vec::new(),
            label_smoothing: cfg.label_smoothing as f32,
        }
    }

    /// The state to save after `epochs_done` epochs and `step` steps (see [`crate::checkpoint`]).
    pub fn checkpoint(
        &self,
        cfg: &TrainConfig,
        epochs_done: u32,
        step: u64,
        reports: &[EpochReport],
        elapsed_secs: f64,
    ) -> Checkpoint {
        Checkpoint {
            format: crate::checkpoint::FORMAT,
            config: crate::checkpoint::identity(cfg),
            epochs_done,
            step,
            values: self.model.params.values.clone(),
            velocity: self.opt.velocity().to_vec(),
            bn_running: self
                .model
                .bn_running_stats()
                .into_iter()
                .map(|(m, v)| (m.to_vec(), v.to_vec()))
                .collect(),
            scaler: self.scaler.clone(),
            dropout_rng: self.dropout_rng.clone(),
            reports: reports.to_vec(),
            elapsed_secs,
        }
    }

    /// Continues from a checkpoint of the same configuration.
    pub fn restore(&mut self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let mismatch =
            |what: &str| TrainError::Internal(format!("checkpoint {what} does not fit the model"));
        if ckpt.values.len() != self.model.params.values.len() {
            return Err(mismatch("weights"));
        }
        self.model.params.values.copy_from_slice(&ckpt.values);
        if !self.opt.set_velocity(&ckpt.velocity) {
            return Err(mismatch("momentum"));
        }
        let mut running = self.model.bn_running_stats_mut();
        if running.len() != ckpt.bn_running.len() {
            return Err(mismatch("batch-norm statistics"));
        }
        for ((mean, var), (m, v)) in running.iter_mut().zip(&ckpt.bn_running) {
            if mean.len() != m.len() || var.len() != v.len() {
                return Err(mismatch("batch-norm statistics"));
            }
            mean.copy_from_slice(m);
            var.copy_from_slice(v);
        }
        self.scaler = ckpt.scaler.clone();
        self.dropout_rng = ckpt.dropout_rng.clone();
        Ok(())
    }

    /// All-reduce calls one step makes under the fusion threshold.
    pub fn allreduce_calls(&self) -> u64 {
        self.bucket_ranges.len() as u64
    }

    /// The format updates are rounded to (fp16-naive only).
    fn naive_fmt(&self) -> Option<HalfFormat> {
        if self.weights_in_half {
            self.fmt
        } else {
            None
        }
    }

    /// Trains on `n` images with learning rate `lr`, adding gradient underflow counts to
    /// `underflow`. A non-finite loss returns at once with nothing applied; overflowing
    /// gradients skip the update. The loss scaler is updated either way.
    pub fn step(
        &mut self,
        images: &[f32],
        labels: &[u8],
        n: usize,
        lr: f64,
        underflow: &mut Underflow,
    ) -> StepOutcome {
        let (fmt, weights_in_half) = (self.fmt, self.weights_in_half);
        self.model.prepare_compute_weights(fmt, weights_in_half);
        let scale = self.scaler.scale();
        let logits = self
            .model
            .forward(&self.par, images, n, Some(&mut self.dropout_rng), fmt);
        self.dlogits.resize(n * CLASSES, 0.0);
        // the loss gradient carries the loss scale (1 in fp32); the loss itself does not
        let (loss, _) = softmax_cross_entropy_smoothed(
            logits,
            labels,
            CLASSES,
            self.label_smoothing,
            scale as f32,
            &mut self.dlogits,
        );
        if !loss.is_finite() {
            return StepOutcome {
                loss,
                applied: false,
            };
        }
        underflow.add(round_counting(fmt, &mut self.dlogits));
        underflow.add(self.model.backward(&self.par, &self.dlogits, fmt));
        // single rank: the collective is the identity, called once per fusion bucket
        allreduce_buckets(&mut self.model.params.grads, &self.bucket_ranges, |_| {});
        let finite = fmt.is_none() || all_finite(&self.model.params.grads);
        if finite {
            if scale != 1.0 {
                // unscale in f32 (division keeps non-power-of-two static scales exact to f32)
                let s = scale as f32;
                self.model.params.grads.iter_mut().for_each(|g| *g /= s);
            }
            let naive = self.naive_fmt();
            self.opt.step(&mut self.model.params, lr, naive);
        } else {
            tracing::debug!(scale, "non-finite gradient: step skipped");
        }
        self.scaler.update(finite);
        StepOutcome {
            loss,
            applied: finite,
        }
    }
}

/// Flat-buffer ranges of the fusion buckets, planned on the gradient size each tensor would
/// have on the wire (f32, or 16 bits in the half modes).
fn gradient_buckets(
    model: &Model,
    ranges: &[Range<usize>],
    cfg: &TrainConfig,
) -> Vec<Range<usize>> {
    let sizes: Vec<u64> = model
        .inventory()
        .iter()
        .map(|p| p.numel as u64 * cfg.precision.grad_bytes())
        .collect();
    plan_buckets(&sizes, cfg.fusion_threshold_bytes)
        .into_iter()
        .map(|b| ranges[b.start].start..ranges[b.end - 1].end)
        .collect()
}

/// Number of all-reduce calls per step `cfg` would make (without training).
pub fn allreduce_calls_per_step(cfg: &TrainConfig) -> u64 {
    let model = Model::new(cfg.model, cfg.bn5, cfg.seed);
    let ranges = model.params.ranges_backward();
    gradient_buckets(&model, &ranges, cfg).len() as u64
}
