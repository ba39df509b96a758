//! Records and study facts for the unit tests.

use crate::view::{BackendInfo, Baseline, BatchSize, DataInfo, StageInfo, StudyInfo};
use jizhi_store::{EpochMetrics, TrialRecord, TrialStatus};

/// The ladder of the main study: 32K, 48K, 64K and their proxy batches.
pub const BATCHES: [(u64, u64); 3] = [(32768, 1536), (49152, 2304), (65536, 3072)];

/// Header facts of a three-batch study with a target and a baseline.
pub fn info() -> StudyInfo {
    StudyInfo {
        name: "alexnet64k".into(),
        objective: "max-val-top1".into(),
        target_top1: Some(0.8),
        baseline: Some(Baseline {
            top1: 0.9,
            batch: Some(BatchSize {
                nominal: 256,
                proxy: 64,
            }),
        }),
        backend: BackendInfo {
            device: "CPU".into(),
            nominal_ranks: 1024,
            ranks_per_trial: 1,
            concurrency: Some((2, 1)),
        },
        data: DataInfo {
            proxy: true,
            name: "Fashion-MNIST, 60000 images".into(),
            stands_for: "ImageNet".into(),
        },
        batches: BATCHES
            .iter()
            .map(|&(nominal, proxy)| BatchSize { nominal, proxy })
            .collect(),
        stages: vec![
            StageInfo {
                name: "coarse".into(),
                trials: 6,
                epochs: 1,
                data_fraction: 0.5,
            },
            StageInfo {
                name: "refine".into(),
                trials: 3,
                epochs: 2,
                data_fraction: 1.0,
            },
        ],
    }
}

/// A trial of the `b`-th batch size with one epoch per accuracy given.
pub fn trial(id: u64, stage: &str, b: usize, status: TrialStatus, top1: &[f64]) -> TrialRecord {
    let (batch, proxy_batch) = BATCHES[b];
    let epochs: Vec<EpochMetrics> = top1
        .iter()
        .enumerate()
        .map(|(i, &val_top1)| EpochMetrics {
            epoch: i as u32 + 1,
            step: 20 * (i as u64 + 1),
            train_loss: 1.0 - val_top1 / 2.0,
            val_top1,
            images_per_sec: 1500.0 + id as f64,
            loss_scale: if i == 0 { 65536.0 } else { 32768.0 },
            skipped_steps: i as u64,
            wall_secs: 30.0 * (i as f64 + 1.0),
            underflow_fraction: 0.0,
        })
        .collect();
    let ended = matches!(status, TrialStatus::Finished | TrialStatus::Diverged);
    let mut params = std::collections::BTreeMap::new();
    params.insert("peak_lr".to_string(), serde_json::json!(0.5 * id as f64));
    params.insert("warmup_epochs".to_string(), serde_json::json!(0.5));
    params.insert("loss_scale".to_string(), serde_json::json!("dynamic"));
    params.insert("fusion_threshold_mib".to_string(), serde_json::json!(8));
    TrialRecord {
        id,
        stage: stage.into(),
        batch,
        proxy_batch,
        params,
        status,
        attempts: u32::from(status != TrialStatus::Planned),
        error: (status == TrialStatus::Failed)
            .then(|| "exited with exit status: 1: error: out of memory".into()),
        final_val_top1: if ended { top1.last().copied() } else { None },
        wall_secs: ended.then_some(30.0 * top1.len() as f64),
        modelled_step_secs: None,
        epochs,
    }
}

/// A study in the middle of its coarse stage: every batch size has results, one trial failed,
/// one runs and one is queued.
pub fn trials() -> Vec<TrialRecord> {
    use TrialStatus::*;
    vec![
        trial(1, "coarse", 0, Finished, &[0.84]),
        trial(2, "coarse", 0, Finished, &[0.86]),
        trial(3, "coarse", 1, Finished, &[0.82]),
        trial(4, "coarse", 1, Failed, &[]),
        trial(5, "coarse", 2, Running, &[0.75]),
        trial(6, "coarse", 2, Finished, &[0.78]),
        trial(7, "refine", 0, Planned, &[]),
    ]
}
