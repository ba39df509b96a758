//! The training loop: input pipeline -> forward -> loss -> backward -> (fused) all-reduce ->
//! overflow check / unscale -> optimiser, plus per-epoch evaluation and reporting.

use std::ops::Range;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{LossScale, TrainConfig};
use crate::data::pipeline::{subset_indices, Pipeline};
use crate::data::{Dataset, CLASSES, PIXELS, TEST_IMAGES};
use crate::error::TrainError;
use crate::fusion::{allreduce_buckets, plan_buckets};
use crate::layers::loss::{count_correct, softmax_cross_entropy};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::parallel::Par;
use crate::precision::{all_finite, round, round_counting, HalfFormat, Underflow};
use crate::report::{EpochReport, TrainOutcome};
use crate::scaler::LossScaler;
use crate::schedule::LrSchedule;

/// RNG stream of the dropout masks.
const DROPOUT_STREAM: u64 = 3;
/// Images per evaluation forward pass (independent of the training batch so eval cost is fixed).
const EVAL_BATCH: usize = 1000;
/// A dynamic loss scale below this means fp16 cannot represent the gradients: give up.
const MIN_LOSS_SCALE: f64 = 1e-4;

/// Trains per `cfg`, calling `on_epoch` after each epoch's evaluation; returns the outcome.
pub fn train(cfg: &TrainConfig, on_epoch: &mut dyn FnMut(&EpochReport)) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    let t_start = Instant::now();
    let data = Dataset::load_cached(&cfg.data_dir)?;
    let par = Par::new(cfg.threads);
    let fmt = cfg.precision.half_format();
    let weights_in_half = cfg.precision.weights_in_half();
    let naive_fmt = if weights_in_half { fmt } else { None };

    let mut model = Model::new(cfg.model, cfg.bn5, cfg.seed);
    round(naive_fmt, &mut model.params.values);
    let ranges = model.params.ranges_backward();
    let bucket_ranges = gradient_buckets(&model, &ranges, cfg);
    let allreduce_calls_per_step = bucket_ranges.len() as u64;

    let steps_per_epoch = cfg.steps_per_epoch();
    let schedule = LrSchedule::new(cfg.peak_lr, cfg.warmup_epochs, steps_per_epoch as u64, cfg.epochs as u64, cfg.poly_power);
    let mut opt = Optimizer::new(cfg, model.inventory(), &ranges);
    let mut scaler = LossScaler::new(cfg.loss_scale, cfg.precision);
    let mut dropout_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    dropout_rng.set_stream(DROPOUT_STREAM);
    let test_x = data.test_normalised();
    let subset = subset_indices(cfg.seed, cfg.train_subset_len());
    tracing::info!(
        batch = cfg.batch,
        epochs = cfg.epochs,
        steps_per_epoch,
        images = subset.len(),
        precision = ?cfg.precision,
        optimizer = ?cfg.optimizer,
        threads = cfg.threads,
        params = model.params.numel(),
        allreduce_calls_per_step,
        warmup_steps = schedule.warmup_steps(),
        "training starts"
    );
    let mut pipe = Pipeline::start(data.clone(), subset, cfg.batch, cfg.epochs, cfg.seed)?;

    let mut dlogits = Vec::new();
    let mut step: u64 = 0;
    let mut epochs = Vec::new();
    let mut diverged = None;
    'epochs: for epoch in 1..=cfg.epochs {
        let t_epoch = Instant::now();
        let waited_before = pipe.waited();
        let (mut loss_clean, mut n_clean, mut loss_all, mut n_all) = (0.0f64, 0u64, 0.0f64, 0u64);
        let (mut skipped, mut images) = (0u64, 0usize);
        let mut underflow = Underflow::default();
        for _ in 0..steps_per_epoch {
            let batch = pipe.next_batch().ok_or_else(|| TrainError::Internal("input pipeline stopped early".into()))?;
            let n = batch.len;
            model.prepare_compute_weights(fmt, weights_in_half);
            let scale = scaler.scale();
            let logits = model.forward(&par, &batch.images, n, Some(&mut dropout_rng), fmt);
            dlogits.resize(n * CLASSES, 0.0);
            // the loss gradient carries the loss scale (1 in fp32); the loss itself does not
            let (loss, _) = softmax_cross_entropy(logits, &batch.labels, CLASSES, scale as f32, &mut dlogits);
            pipe.recycle(batch);
            if !loss.is_finite() {
                diverged = Some(format!("non-finite training loss ({loss}) at step {}", step + 1));
                break 'epochs;
            }
            underflow.add(round_counting(fmt, &mut dlogits));
            underflow.add(model.backward(&par, &dlogits, fmt));
            // single rank: the collective is the identity, called once per fusion bucket
            allreduce_buckets(&mut model.params.grads, &bucket_ranges, |_| {});
            let finite = fmt.is_none() || all_finite(&model.params.grads);
            if finite {
                if scale != 1.0 {
                    // unscale in f32 (division keeps non-power-of-two static scales exact to f32)
                    let s = scale as f32;
                    model.params.grads.iter_mut().for_each(|g| *g /= s);
                }
                opt.step(&mut model.params, schedule.lr(step), naive_fmt);
                loss_clean += loss;
                n_clean += 1;
            } else {
                skipped += 1;
                tracing::debug!(step = step + 1, scale, "non-finite gradient: step skipped");
            }
            loss_all += loss;
            n_all += 1;
            images += n;
            step += 1;
            scaler.update(finite);
            if scaler.scale() < MIN_LOSS_SCALE {
                diverged = Some(format!("loss scale collapsed to {:e} at step {step}", scaler.scale()));
                break 'epochs;
            }
        }
        let train_secs = t_epoch.elapsed().as_secs_f64();
        if skipped == n_all && !scaler.is_dynamic() && fmt.is_some() && matches!(cfg.loss_scale, LossScale::Static { .. }) {
            // a static scale can never recover from overflow: training is not progressing
            diverged = Some(format!("every step of epoch {epoch} overflowed at static loss scale {}", scaler.scale()));
            break;
        }
        model.prepare_compute_weights(fmt, weights_in_half);
        let val_top1 = evaluate(&mut model, &par, &test_x, &data.test_labels, fmt);
        let report = EpochReport {
            epoch,
            step,
            train_loss: if n_clean > 0 { loss_clean / n_clean as f64 } else { loss_all / n_all.max(1) as f64 },
            val_top1,
            images_per_sec: images as f64 / train_secs.max(1e-9),
            loss_scale: scaler.scale(),
            skipped_steps: skipped,
            underflow_fraction: underflow.fraction(),
            data_wait_secs: (pipe.waited() - waited_before).as_secs_f64(),
            wall_secs: t_start.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch,
            step,
            train_loss = report.train_loss,
            val_top1,
            images_per_sec = report.images_per_sec,
            loss_scale = report.loss_scale,
            skipped,
            underflow = report.underflow_fraction,
            data_wait = report.data_wait_secs,
            "epoch done"
        );
        on_epoch(&report);
        epochs.push(report);
    }
    drop(pipe);
    if let Some(reason) = &diverged {
        tracing::warn!(%reason, "training diverged");
    }
    let final_val_top1 = epochs.last().map_or(0.0, |e: &EpochReport| e.val_top1);
    let best_val_top1 = epochs.iter().map(|e| e.val_top1).fold(0.0, f64::max);
    Ok(TrainOutcome { epochs, final_val_top1, best_val_top1, diverged, allreduce_calls_per_step, wall_secs: t_start.elapsed().as_secs_f64() })
}

/// Flat-buffer ranges of the fusion buckets, planned on the gradient size each tensor would
/// have on the wire (f32, or 16 bits in the half modes).
fn gradient_buckets(model: &Model, ranges: &[Range<usize>], cfg: &TrainConfig) -> Vec<Range<usize>> {
    let sizes: Vec<u64> = model.inventory().iter().map(|p| p.numel as u64 * cfg.precision.grad_bytes()).collect();
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

/// Top-1 accuracy on the test set with running BN statistics and no dropout.
fn evaluate(model: &mut Model, par: &Par, test_x: &[f32], labels: &[u8], fmt: Option<HalfFormat>) -> f64 {
    let mut correct = 0;
    let mut s = 0;
    while s < TEST_IMAGES {
        let b = EVAL_BATCH.min(TEST_IMAGES - s);
        let logits = model.forward(par, &test_x[s * PIXELS..(s + b) * PIXELS], b, None, fmt);
        correct += count_correct(logits, &labels[s..s + b], CLASSES);
        s += b;
    }
    correct as f64 / TEST_IMAGES as f64
}
