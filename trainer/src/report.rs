//! What a training run reports, per epoch and at the end.

use serde::{Deserialize, Serialize};

/// Measurements taken after one epoch (training plus evaluation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Optimiser steps so far, skipped ones included.
    pub step: u64,
    /// Mean training loss over the epoch's non-skipped steps (all steps if every one was skipped).
    pub train_loss: f64,
    /// Top-1 accuracy in [0,1] on the 10,000 test images.
    pub val_top1: f64,
    /// Training throughput of this epoch, evaluation excluded.
    pub images_per_sec: f64,
    /// Loss scale at the end of the epoch (1 for fp32).
    pub loss_scale: f64,
    /// Steps of this epoch skipped because a gradient was inf/NaN.
    pub skipped_steps: u64,
    /// Fraction of nonzero gradient values that became 0 when cast to half (0 for fp32).
    pub underflow_fraction: f64,
    /// Seconds the compute waited for the input pipeline during this epoch.
    pub data_wait_secs: f64,
    /// Seconds since `train()` started.
    pub wall_secs: f64,
}

/// The result of a whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// One report per completed epoch.
    pub epochs: Vec<EpochReport>,
    /// Top-1 after the last completed epoch (0 if none completed).
    pub final_val_top1: f64,
    /// Best top-1 over the completed epochs (0 if none completed).
    pub best_val_top1: f64,
    /// Why training stopped early, if it did.
    pub diverged: Option<String>,
    /// Gradient all-reduce calls per step given the fusion threshold.
    pub allreduce_calls_per_step: u64,
    /// Seconds the whole run took.
    pub wall_secs: f64,
}
