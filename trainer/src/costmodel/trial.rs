//! The cluster step time a trial's speed settings would give: the trial's fusion threshold,
//! segments and all-reduce algorithm applied to the full-size counterpart of its model on a
//! cluster of GPUs. It lets the tuner judge speed-only parameters without a long run.

use super::allreduce::allreduce_secs;
use super::auto::auto_plan;
use super::compute::{FullModel, Gpu};
use super::link::Network;
use super::predict::Scenario;
use super::timeline::{simulate_step, Segmentation};
use super::CostError;
use crate::config::{ModelKind, TrainConfig};
use crate::ranks::segments::{equal_byte_splits, Segments};

/// The full-size network a trial's model stands for.
pub fn counterpart(kind: ModelKind) -> FullModel {
    match kind {
        ModelKind::AlexnetBnProxy | ModelKind::AlexnetBn => FullModel::AlexnetBn,
        ModelKind::Resnet20Proxy | ModelKind::Resnet50 => FullModel::Resnet50,
    }
}

/// Predicted seconds per step of `cfg`'s counterpart on `gpus` GPUs of `gpu` joined by
/// `network`, at the seed's local batch, with `cfg`'s threshold, segments and algorithm.
/// Split points given as tensor indices of the proxy mean nothing on the full-size model: their
/// count is kept and the cuts are placed at equal bytes.
pub fn modelled_step_secs(
    cfg: &TrainConfig,
    gpus: usize,
    gpu: Gpu,
    network: Network,
) -> Result<f64, CostError> {
    let model = counterpart(cfg.model);
    let s = Scenario::full(model, gpu, network, model.seed_local_batch());
    let cost = |b: u64| allreduce_secs(cfg.algorithm, b, gpus, &s.cluster).unwrap_or(f64::INFINITY);
    allreduce_secs(cfg.algorithm, 0, gpus, &s.cluster)?;
    let seg = match &cfg.segments {
        Segments::Auto => auto_plan(&s.sizes, &s.profile, &s.cluster, gpus, cfg.algorithm)?.0,
        Segments::Count(k) => Segmentation {
            splits: equal_byte_splits(&s.sizes, *k),
            threshold: cfg.fusion_threshold_bytes,
        },
        Segments::At(at) => Segmentation {
            splits: equal_byte_splits(&s.sizes, at.len() + 1),
            threshold: cfg.fusion_threshold_bytes,
        },
    };
    let overlap = !seg.splits.is_empty();
    let p = &s.profile;
    Ok(simulate_step(
        p.forward_secs,
        &p.grad_ready_secs,
        p.backward_secs,
        &s.sizes,
        &seg,
        overlap,
        cost,
    )
    .step_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::Algorithm;

    fn cfg(threshold: u64, segments: Segments, algorithm: Algorithm) -> TrainConfig {
        TrainConfig {
            fusion_threshold_bytes: threshold,
            segments,
            algorithm,
            ..TrainConfig::proxy_default("/x")
        }
    }

    /// What the seed found: on 1024 P40s, fusing ResNet-50's many small gradients and
    /// overlapping segments both cut the step time; a single GPU costs no communication.
    #[test]
    fn fusion_and_segments_change_the_modelled_cluster_step() {
        let resnet = |c: TrainConfig| TrainConfig {
            model: ModelKind::Resnet20Proxy,
            ..c
        };
        let at = |c: &TrainConfig, p| {
            modelled_step_secs(c, p, Gpu::P40, Network::Eth100).expect("model")
        };
        let unfused = resnet(cfg(0, Segments::Count(1), Algorithm::Ring));
        let fused = resnet(cfg(4 << 20, Segments::Count(1), Algorithm::Ring));
        let split = resnet(cfg(4 << 20, Segments::Count(8), Algorithm::Ring));
        assert!(at(&fused, 1024) < 0.5 * at(&unfused, 1024));
        assert!(at(&split, 1024) < at(&fused, 1024));
        assert_eq!(at(&unfused, 1), at(&fused, 1));
        let auto = resnet(cfg(0, Segments::Auto, Algorithm::Ring));
        assert!(at(&auto, 1024) <= at(&split, 1024) * 1.0001);
        let bad_group = cfg(0, Segments::Count(1), Algorithm::Hierarchical { group: 3 });
        assert!(modelled_step_secs(&bad_group, 1024, Gpu::P40, Network::Eth100).is_err());
    }
}
