//! Training-step throughput: the timed core of `jizhi-tune bench train`.
//!
//! Times whole optimiser steps (forward, backward, all-reduce buckets, update) on a fixed batch
//! of real training images, the same work a PyTorch `forward + backward + optimizer.step()` does,
//! so the two can be compared side by side.

use std::time::Instant;

use crate::config::TrainConfig;
use crate::data::{normalisation_table, Dataset, PIXELS, TRAIN_IMAGES};
use crate::error::TrainError;
use crate::precision::Underflow;
use crate::step::StepState;

/// Seconds of each timed step, after untimed warm-up steps.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTimes {
    /// Images per step (the batch).
    pub batch: usize,
    /// Wall seconds of each timed step, in order.
    pub secs: Vec<f64>,
}

impl StepTimes {
    /// Median seconds per step.
    pub fn median_secs(&self) -> f64 {
        let mut s = self.secs.clone();
        s.sort_by(f64::total_cmp);
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
        }
    }

    /// Images per second at the median step time.
    pub fn images_per_sec(&self) -> f64 {
        self.batch as f64 / self.median_secs()
    }
}

/// Runs `warmup` untimed then `steps` timed training steps of `cfg` (its model, batch,
/// precision, optimiser and threads) at a constant learning rate of `cfg.peak_lr`.
pub fn time_train_steps(
    cfg: &TrainConfig,
    warmup: usize,
    steps: usize,
) -> Result<StepTimes, TrainError> {
    let mut times = time_train_steps_interleaved(std::slice::from_ref(cfg), warmup, steps)?;
    Ok(times.remove(0))
}

/// [`time_train_steps`] for several configurations (same batch) in one process, one step of
/// each in turn: a change in the machine's load hits all of them alike, so their ratios hold
/// even where absolute times drift (a shared machine).
pub fn time_train_steps_interleaved(
    cfgs: &[TrainConfig],
    warmup: usize,
    steps: usize,
) -> Result<Vec<StepTimes>, TrainError> {
    let Some(first) = cfgs.first() else {
        return Ok(Vec::new());
    };
    for cfg in cfgs {
        cfg.validate()?;
        if cfg.batch != first.batch || cfg.data_dir != first.data_dir {
            return Err(TrainError::InvalidConfig(
                "interleaved benchmarks share one batch and data set".into(),
            ));
        }
    }
    if first.batch > TRAIN_IMAGES {
        return Err(TrainError::InvalidConfig(format!(
            "batch {} exceeds the {TRAIN_IMAGES} training images",
            first.batch
        )));
    }
    let data = Dataset::load_cached(&first.data_dir)?;
    let table = normalisation_table();
    let images: Vec<f32> = data.train_images[..first.batch * PIXELS]
        .iter()
        .map(|&v| table[v as usize])
        .collect();
    let labels = &data.train_labels[..first.batch];
    let mut states = cfgs
        .iter()
        .map(StepState::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut underflow = Underflow::default();
    let mut secs = vec![Vec::with_capacity(steps); cfgs.len()];
    for i in 0..warmup + steps {
        for ((state, cfg), s) in states.iter_mut().zip(cfgs).zip(secs.iter_mut()) {
            let t = Instant::now();
            state.step(&images, labels, cfg.batch, cfg.peak_lr, &mut underflow)?;
            if i >= warmup {
                s.push(t.elapsed().as_secs_f64());
            }
        }
    }
    Ok(secs
        .into_iter()
        .map(|secs| StepTimes {
            batch: first.batch,
            secs,
        })
        .collect())
}
