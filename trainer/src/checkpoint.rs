//! Checkpoints: everything a run needs to continue exactly where it stopped — weights, BN
//! running statistics, optimiser momentum, loss scaler, dropout RNG and the epochs done — saved
//! atomically after each epoch, so a resumed run ends bit-identical to an uninterrupted one.
//! The data position needs no state: the input order of epoch k is a pure function of the seed.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::costmodel::Segmentation;
use crate::error::TrainError;
use crate::report::EpochReport;
use crate::scaler::LossScaler;

/// Version of the checkpoint layout this build writes and reads.
pub(crate) const FORMAT: u32 = 2;

/// A run's state at the end of an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Layout version.
    pub format: u32,
    /// The configuration of the run (without its checkpoint path).
    pub config: TrainConfig,
    /// Epochs completed.
    pub epochs_done: u32,
    /// Optimiser steps taken.
    pub step: u64,
    /// fp32 (master) parameter values.
    pub values: Vec<f32>,
    /// Optimiser momentum buffer.
    pub velocity: Vec<f32>,
    /// What differs between the data-parallel ranks, in rank order.
    pub ranks: Vec<RankState>,
    /// Loss scale and its dynamic state.
    pub scaler: LossScaler,
    /// The gradient segmentation the run uses (an `auto` one is chosen once, from timings).
    pub segmentation: Segmentation,
    /// Reports of the completed epochs.
    pub reports: Vec<EpochReport>,
    /// Wall seconds the run had taken when saved.
    pub elapsed_secs: f64,
}

/// The state that is a rank's own: BN running statistics (over its local batches) and its
/// dropout stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankState {
    /// Running (mean, var) of every BN layer, in forward order.
    pub bn_running: Vec<(Vec<f32>, Vec<f32>)>,
    /// Dropout mask generator.
    pub dropout_rng: ChaCha8Rng,
}

/// The configuration a checkpoint is matched against: the path itself does not count.
pub fn identity(cfg: &TrainConfig) -> TrainConfig {
    TrainConfig {
        checkpoint: None,
        ..cfg.clone()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `ckpt` to `path` atomically: a temporary file, fsync, rename, fsync of the folder.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), TrainError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let bytes = serde_json::to_vec(ckpt)
        .map_err(|e| TrainError::Internal(format!("encoding a checkpoint: {e}")))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))?;
    }
    Ok(())
}

/// The checkpoint at `path` for a run of `cfg`: `None` if there is none yet; an error if it is
/// unreadable or belongs to another configuration (resuming it would not be the same run).
pub fn load(path: &Path, cfg: &TrainConfig) -> Result<Option<Checkpoint>, TrainError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let ckpt: Checkpoint =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("unreadable ({e})")))?;
    if ckpt.format != FORMAT {
        return Err(bad(format!(
            "layout version {} (this build reads {FORMAT})",
            ckpt.format
        )));
    }
    if ckpt.config != identity(cfg) {
        return Err(bad(
            "it was saved by a run with another configuration; delete it to start over".into(),
        ));
    }
    if ckpt.epochs_done > cfg.epochs || ckpt.reports.len() != ckpt.epochs_done as usize {
        return Err(bad(format!(
            "it claims {} epochs done of {}",
            ckpt.epochs_done, cfg.epochs
        )));
    }
    Ok(Some(ckpt))
}
