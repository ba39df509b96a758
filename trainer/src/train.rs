//! The training loop: input pipeline -> forward -> loss -> backward -> (fused) all-reduce ->
//! overflow check / unscale -> optimiser, plus per-epoch evaluation and reporting.

use std::time::Instant;

use crate::checkpoint;
use crate::config::{LossScale, TrainConfig};
use crate::data::pipeline::{subset_indices, Pipeline};
use crate::data::{Dataset, CLASSES, PIXELS, TEST_IMAGES};
use crate::divergence::{DivergenceCheck, StepFacts};
use crate::error::TrainError;
use crate::layers::loss::count_correct;
use crate::model::Model;
use crate::parallel::Par;
use crate::precision::{HalfFormat, Underflow};
use crate::report::{EpochReport, TrainOutcome};
use crate::schedule::LrSchedule;
use crate::step::StepState;

/// Images per evaluation forward pass (independent of the training batch so eval cost is fixed).
const EVAL_BATCH: usize = 1000;

/// Trains per `cfg`, calling `on_epoch` after each epoch's evaluation; returns the outcome.
pub fn train(
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<TrainOutcome, TrainError> {
    cfg.validate()?;
    let t_start = Instant::now();
    let data = Dataset::load_cached(&cfg.data_dir)?;
    let mut state = StepState::new(cfg)?;
    let allreduce_calls_per_step = state.allreduce_calls();
    let steps_per_epoch = cfg.steps_per_epoch();
    let schedule = LrSchedule::new(
        cfg.peak_lr,
        cfg.warmup_epochs,
        steps_per_epoch as u64,
        cfg.epochs as u64,
        cfg.poly_power,
    )
    .with_decay(cfg.lr_decay);
    let resumed = match &cfg.checkpoint {
        Some(path) => checkpoint::load(path, cfg)?,
        None => None,
    };
    let (first_epoch, mut step, mut epochs, elapsed_before) = match &resumed {
        Some(c) => {
            state.restore(c)?;
            tracing::info!(
                epochs_done = c.epochs_done,
                step = c.step,
                "resuming from the checkpoint"
            );
            // the epochs done before are reported again, so a reader of a resumed run sees them all
            c.reports.iter().for_each(&mut *on_epoch);
            (c.epochs_done, c.step, c.reports.clone(), c.elapsed_secs)
        }
        None => (0, 0, Vec::new(), 0.0),
    };
    let wall = |t: &Instant| elapsed_before + t.elapsed().as_secs_f64();
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
        params = state.model().params.numel(),
        ranks = cfg.ranks,
        allreduce_calls_per_step,
        warmup_steps = schedule.warmup_steps(),
        "training starts"
    );
    let mut pipe = Pipeline::start(
        data.clone(),
        subset,
        cfg.batch,
        cfg.epochs,
        first_epoch,
        cfg.augment,
        cfg.seed,
    )?;

    // evaluation runs on rank 0's model with all the threads (the ranks share them in training)
    let eval_par = Par::new(cfg.threads);
    // A resumed run's first step is in the past: its highest epoch mean stands in for the start.
    let resumed_start = resumed.as_ref().and_then(|c| {
        c.reports
            .iter()
            .map(|r| r.train_loss)
            .filter(|l| l.is_finite())
            .reduce(f64::max)
    });
    let mut divergence =
        DivergenceCheck::new(schedule.warmup_steps(), cfg.min_loss_scale, resumed_start);
    let mut diverged = None;
    'epochs: for epoch in first_epoch + 1..=cfg.epochs {
        let t_epoch = Instant::now();
        let waited_before = pipe.waited();
        let (mut loss_clean, mut n_clean, mut loss_all, mut n_all) = (0.0f64, 0u64, 0.0f64, 0u64);
        let (mut skipped, mut images) = (0u64, 0usize);
        let mut underflow = Underflow::default();
        for _ in 0..steps_per_epoch {
            let batch = pipe
                .next_batch()
                .ok_or_else(|| TrainError::Internal("input pipeline stopped early".into()))?;
            let n = batch.len;
            let out = state.step(
                &batch.images,
                &batch.labels,
                n,
                schedule.lr(step),
                &mut underflow,
            )?;
            pipe.recycle(batch);
            let loss = out.loss;
            let facts = StepFacts {
                step: step + 1,
                loss,
                dynamic_scale: state.scaler.is_dynamic().then(|| state.scaler.scale()),
            };
            if let Some(reason) = divergence.after_step(facts) {
                diverged = Some(reason);
                break 'epochs;
            }
            if out.applied {
                loss_clean += loss;
                n_clean += 1;
            } else {
                skipped += 1;
            }
            loss_all += loss;
            n_all += 1;
            images += n;
            step += 1;
        }
        let train_secs = t_epoch.elapsed().as_secs_f64();
        if skipped == n_all
            && !state.scaler.is_dynamic()
            && state.fmt.is_some()
            && matches!(cfg.loss_scale, LossScale::Static { .. })
        {
            // a static scale can never recover from overflow: training is not progressing
            diverged = Some(format!(
                "every step of epoch {epoch} overflowed at static loss scale {}",
                state.scaler.scale()
            ));
            break;
        }
        let (fmt, weights_in_half) = (state.fmt, state.weights_in_half);
        let lead = state.ranks.lead_mut();
        lead.model.prepare_compute_weights(fmt, weights_in_half);
        let val_top1 = evaluate(
            &mut lead.model,
            &eval_par,
            &test_x,
            &data.test_labels,
            state.fmt,
        );
        let report = EpochReport {
            epoch,
            step,
            train_loss: if n_clean > 0 {
                loss_clean / n_clean as f64
            } else {
                loss_all / n_all.max(1) as f64
            },
            val_top1,
            images_per_sec: images as f64 / train_secs.max(1e-9),
            loss_scale: state.scaler.scale(),
            skipped_steps: skipped,
            underflow_fraction: underflow.fraction(),
            data_wait_secs: (pipe.waited() - waited_before).as_secs_f64(),
            wall_secs: wall(&t_start),
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
        epochs.push(report.clone());
        if let Some(path) = &cfg.checkpoint {
            // durable before the epoch is reported, so a reported epoch is never trained twice
            checkpoint::save(
                path,
                &state.checkpoint(cfg, epoch, step, &epochs, wall(&t_start)),
            )?;
        }
        on_epoch(&report);
    }
    drop(pipe);
    if let Some(reason) = &diverged {
        tracing::warn!(%reason, "training diverged");
    }
    let final_val_top1 = epochs.last().map_or(0.0, |e: &EpochReport| e.val_top1);
    let best_val_top1 = epochs.iter().map(|e| e.val_top1).fold(0.0, f64::max);
    Ok(TrainOutcome {
        epochs,
        final_val_top1,
        best_val_top1,
        diverged,
        allreduce_calls_per_step,
        wall_secs: wall(&t_start),
    })
}

/// Top-1 accuracy on the test set with running BN statistics and no dropout.
fn evaluate(
    model: &mut Model,
    par: &Par,
    test_x: &[f32],
    labels: &[u8],
    fmt: Option<HalfFormat>,
) -> f64 {
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
