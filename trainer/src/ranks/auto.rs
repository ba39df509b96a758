//! `segments = auto` for CPU ranks: the cost model's best split points and fusion threshold for
//! this model's backward pass as timed here, on the in-process collective as calibrated here.
//!
//! The choice depends on timings, so it is made once per run, reported, and kept in the
//! checkpoint: a resumed run keeps the split it started with.

use crate::config::TrainConfig;
use crate::costmodel::measure::measure_model;
use crate::costmodel::{auto_plan, calibrate_in_process, Cluster, Segmentation};
use crate::error::TrainError;

/// Message sizes (bytes) the collective is timed at: the range of the proxies' buckets.
const CALIBRATION_SIZES: [u64; 4] = [16 << 10, 128 << 10, 512 << 10, 2 << 20];
/// Timed calls per calibration size.
const CALIBRATION_REPS: usize = 5;
/// Timed forward/backward passes of the compute profile.
const PROFILE_STEPS: usize = 2;

/// The segmentation the cost model predicts fastest for `cfg` with gradient sizes `bytes`
/// (wire bytes per tensor, backward order).
pub fn auto_segmentation(bytes: &[u64], cfg: &TrainConfig) -> Result<Segmentation, TrainError> {
    let world = cfg.ranks.max(1);
    if world == 1 {
        // nothing is communicated, so nothing can overlap
        return Ok(Segmentation::single(cfg.fusion_threshold_bytes));
    }
    let threads = (cfg.threads / world).max(1);
    let local_batch = (cfg.batch / world).max(1);
    let measured = measure_model(cfg.model, cfg.bn5, local_batch, threads, PROFILE_STEPS);
    let cal = calibrate_in_process(world, &CALIBRATION_SIZES, CALIBRATION_REPS).map_err(|e| {
        TrainError::Internal(format!(
            "calibrating the collective for segments = auto: {e}"
        ))
    })?;
    // the ranks share one memory: every hop is the calibrated one
    let cluster = Cluster {
        intra: cal.hop,
        inter: cal.hop,
        gpus_per_node: world,
    };
    let (seg, predicted) = auto_plan(bytes, &measured.profile, &cluster, world, cfg.algorithm)
        .map_err(|e| TrainError::Internal(format!("segments = auto: {e}")))?;
    tracing::info!(
        splits = ?seg.splits,
        threshold = seg.threshold,
        predicted_step_ms = predicted.step_secs * 1e3,
        "segments = auto resolved"
    );
    Ok(seg)
}
