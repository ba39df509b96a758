//! Per-layer compute times: when each gradient becomes final during backward, and the forward
//! time, for the full-size models on a given GPU (derived from FLOPs) or measured (see
//! [`super::measure`]).

use std::collections::HashMap;

use super::link::Link;
use super::CostError;
use crate::inventory;
use crate::params::{ParamInfo, ParamKind};

/// Compute times of one training step on one rank.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComputeProfile {
    /// Forward pass (seconds).
    pub forward_secs: f64,
    /// Seconds after backward starts at which each inventory entry's gradient is final, in
    /// backward order (non-decreasing).
    pub grad_ready_secs: Vec<f64>,
    /// Whole backward pass (seconds); at least the last gradient time.
    pub backward_secs: f64,
}

impl ComputeProfile {
    /// A profile from the backward time spent before each gradient is final (since the
    /// previous one) and the time after the last one.
    pub fn from_increments(forward_secs: f64, increments: &[f64], tail_secs: f64) -> Self {
        let mut t = 0.0;
        let grad_ready_secs = increments
            .iter()
            .map(|d| {
                t += d.max(0.0);
                t
            })
            .collect();
        ComputeProfile {
            forward_secs,
            grad_ready_secs,
            backward_secs: t + tail_secs.max(0.0),
        }
    }

    /// Step time of a single rank: forward plus backward, nothing to communicate.
    pub fn compute_secs(&self) -> f64 {
        self.forward_secs + self.backward_secs
    }

    /// Checks that the profile describes `tensors` gradients.
    pub fn check_len(&self, tensors: usize) -> Result<(), CostError> {
        if self.grad_ready_secs.len() != tensors {
            return Err(CostError::ProfileMismatch {
                profile: self.grad_ready_secs.len(),
                tensors,
            });
        }
        Ok(())
    }
}

/// The full-size ImageNet models of [`crate::inventory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullModel {
    /// AlexNet-BN with the BN on pool5 (224×224 input, ungrouped convolutions).
    AlexnetBn,
    /// ResNet-50 (torchvision's layout: stride in the 3×3 convolution, "v1.5").
    Resnet50,
}

impl FullModel {
    /// Both models, in table order.
    pub const ALL: [FullModel; 2] = [FullModel::AlexnetBn, FullModel::Resnet50];

    /// The name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            FullModel::AlexnetBn => "alexnet-bn",
            FullModel::Resnet50 => "resnet50",
        }
    }

    /// The parameter inventory, in backward order.
    pub fn inventory(self) -> Vec<ParamInfo> {
        match self {
            FullModel::AlexnetBn => inventory::alexnet_bn(true),
            FullModel::Resnet50 => inventory::resnet50(),
        }
    }

    /// Local batch of the seed's runs: 64K images over 1024 GPUs (AlexNet) / 2048 (ResNet-50).
    pub fn seed_local_batch(self) -> usize {
        match self {
            FullModel::AlexnetBn => 64,
            FullModel::Resnet50 => 32,
        }
    }

    /// Multiply-accumulates per image of each convolution / dense layer, keyed by the name of
    /// its weight in the inventory.
    pub fn layer_macs(self) -> HashMap<String, u64> {
        let mut m = HashMap::new();
        let mut conv = |name: &str, side: u64, k: u64, cin: u64, cout: u64| {
            m.insert(format!("{name}.weight"), side * side * k * k * cin * cout);
        };
        match self {
            FullModel::AlexnetBn => {
                // Output sides for a 224×224 input: conv1 stride 4 pad 2 -> 55, pool -> 27,
                // conv2 -> 27, pool -> 13, conv3..5 -> 13, pool -> 6.
                conv("conv1", 55, 11, 3, 96);
                conv("conv2", 27, 5, 96, 256);
                conv("conv3", 13, 3, 256, 384);
                conv("conv4", 13, 3, 384, 384);
                conv("conv5", 13, 3, 384, 256);
                conv("fc6", 1, 1, 256 * 6 * 6, 4096);
                conv("fc7", 1, 1, 4096, 4096);
                conv("fc8", 1, 1, 4096, 1000);
            }
            FullModel::Resnet50 => {
                conv("conv1", 112, 7, 3, 64);
                let mut cin = 64;
                let mut side_in = 56; // after the stem's max pool
                for (stage, (&blocks, width)) in [3u64, 4, 6, 3]
                    .iter()
                    .zip([64u64, 128, 256, 512])
                    .enumerate()
                {
                    let side_out = 56 >> stage;
                    for block in 0..blocks {
                        let p = format!("layer{}.{block}", stage + 1);
                        let side_1 = if block == 0 { side_in } else { side_out };
                        conv(&format!("{p}.conv1"), side_1, 1, cin, width);
                        conv(&format!("{p}.conv2"), side_out, 3, width, width);
                        conv(&format!("{p}.conv3"), side_out, 1, width, 4 * width);
                        if block == 0 {
                            conv(&format!("{p}.downsample.conv"), side_out, 1, cin, 4 * width);
                        }
                        cin = 4 * width;
                    }
                    side_in = side_out;
                }
                conv("fc", 1, 1, 2048, 1000);
            }
        }
        m
    }
}

/// GPUs the simulator knows. Peak rates are the vendors' datasheet figures; the achieved
/// fraction is the share of peak a whole training step sustains on the convolution and dense
/// FLOPs (batch norm, ReLU and pooling are memory-bound and folded into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpu {
    /// Tesla P40 (2016): 12 TFLOP/s fp32, no tensor cores and fp16 at 1/64 rate, so it trains in
    /// fp32 (fp16 only on the wire); 40 % of peak (4.8 TFLOP/s, ≈ 200 ResNet-50 images/s, what
    /// fp32 cuDNN sustained on P40/P100-class GPUs). 346 GB/s memory; 8 per node on PCIe 3.0.
    P40,
    /// H200 SXM: 989 TFLOP/s dense bf16 tensor cores; 8 % of peak (79 TFLOP/s, ≈ 3200 ResNet-50
    /// images/s, the per-GPU rate of mixed-precision ResNet-50 training on this class of GPU,
    /// where memory-bound layers dominate). 4.8 TB/s memory; 8 per node on NVLink 4 / NVSwitch.
    H200,
}

impl Gpu {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Gpu::P40 => "p40",
            Gpu::H200 => "h200",
        }
    }

    /// The GPU of a command-line name.
    pub fn from_name(name: &str) -> Option<Gpu> {
        [Gpu::P40, Gpu::H200].into_iter().find(|g| g.name() == name)
    }

    /// FLOP/s a training step sustains.
    pub fn achieved_flops(self) -> f64 {
        match self {
            Gpu::P40 => 12e12 * 0.40,
            Gpu::H200 => 989e12 * 0.08,
        }
    }

    /// Seconds per byte to add a received buffer into a local one (read two, write one).
    pub fn reduce_secs_per_byte(self) -> f64 {
        let mem_bytes_per_s = match self {
            Gpu::P40 => 346e9,
            Gpu::H200 => 4.8e12,
        };
        3.0 / mem_bytes_per_s
    }

    /// The link between two GPUs of one node. P40: PCIe 3.0 x16 through switches, ~10 GB/s of
    /// ring bandwidth, 5 µs per step. H200: NVLink 4 through NVSwitch, ~360 GB/s of ring
    /// bandwidth (NCCL's bus bandwidth on 8-GPU H100/H200 nodes), 2 µs per step.
    pub fn intra_node_link(self) -> Link {
        let (alpha, gbytes_per_s) = match self {
            Gpu::P40 => (5e-6, 10.0),
            Gpu::H200 => (2e-6, 360.0),
        };
        Link {
            alpha,
            beta: 1.0 / (gbytes_per_s * 1e9),
            gamma: self.reduce_secs_per_byte(),
        }
    }

    /// Compute profile of `model` at `local_batch` images per rank.
    pub fn profile(self, model: FullModel, local_batch: usize) -> ComputeProfile {
        profile_from_macs(
            &model.inventory(),
            &model.layer_macs(),
            self.achieved_flops(),
            local_batch,
        )
    }
}

/// Forward = 2 FLOPs per multiply-accumulate; backward = the weight gradient (same FLOPs as
/// forward) then the input gradient (same again, skipped for the first layer, whose input needs
/// none). A weight's gradient is final after its layer's weight gradient; the input gradient is
/// time spent before the next gradient in backward order.
pub fn profile_from_macs(
    inventory: &[ParamInfo],
    macs: &HashMap<String, u64>,
    flops_per_sec: f64,
    batch: usize,
) -> ComputeProfile {
    let secs = |m: u64| 2.0 * m as f64 * batch as f64 / flops_per_sec;
    let last_weight = inventory.iter().rposition(|p| p.kind == ParamKind::Weight);
    let mut forward = 0.0;
    let mut pending = 0.0;
    let mut increments = Vec::with_capacity(inventory.len());
    for (i, p) in inventory.iter().enumerate() {
        let layer = macs.get(&p.name).copied().unwrap_or(0);
        let t = secs(layer);
        forward += t;
        increments.push(pending + t);
        pending = if Some(i) == last_weight { 0.0 } else { t };
    }
    ComputeProfile::from_increments(forward, &increments, pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_flops_match_the_published_counts() {
        // torchvision's ResNet-50: 4.09 GMACs; ungrouped AlexNet at 224: ~1.14 GMACs.
        let r: u64 = FullModel::Resnet50.layer_macs().values().sum();
        assert!((r as f64 / 1e9 - 4.09).abs() < 0.03, "{r}");
        let a: u64 = FullModel::AlexnetBn.layer_macs().values().sum();
        assert!((a as f64 / 1e9 - 1.14).abs() < 0.03, "{a}");
        // Every layer with FLOPs is a weight of the inventory (names line up).
        for m in FullModel::ALL {
            let inv = m.inventory();
            for name in m.layer_macs().keys() {
                assert!(inv.iter().any(|p| &p.name == name), "{name}");
            }
            let weights = inv.iter().filter(|p| p.kind == ParamKind::Weight).count();
            assert_eq!(weights, m.layer_macs().len(), "{}", m.name());
        }
    }

    #[test]
    fn p40_resnet50_runs_at_about_200_images_per_second() {
        let p = Gpu::P40.profile(FullModel::Resnet50, 32);
        let ips = 32.0 / p.compute_secs();
        assert!((180.0..240.0).contains(&ips), "{ips} images/s");
        // Backward costs about twice the forward (minus the first layer's input gradient).
        let ratio = p.backward_secs / p.forward_secs;
        assert!(ratio > 1.9 && ratio <= 2.0, "{ratio}");
        let h = Gpu::H200.profile(FullModel::Resnet50, 32);
        assert!(h.compute_secs() * 10.0 < p.compute_secs());
    }

    #[test]
    fn gradients_become_final_in_order_and_within_backward() {
        for m in FullModel::ALL {
            let p = Gpu::P40.profile(m, 64);
            assert_eq!(p.grad_ready_secs.len(), m.inventory().len());
            assert!(p.grad_ready_secs.windows(2).all(|w| w[0] <= w[1]));
            let last = *p.grad_ready_secs.last().expect("tensors");
            assert!((last - p.backward_secs).abs() < 1e-12);
            p.check_len(m.inventory().len()).expect("len");
            assert!(p.check_len(3).is_err());
        }
        // AlexNet: fc8's bias is final at once, its weight after its weight gradient.
        let p = Gpu::P40.profile(FullModel::AlexnetBn, 1);
        let fc8 = 2.0 * 4096.0 * 1000.0 / Gpu::P40.achieved_flops();
        assert_eq!(p.grad_ready_secs[0], 0.0);
        assert!((p.grad_ready_secs[1] - fc8).abs() < 1e-15);
        // fc7.bias waits for fc8's input gradient.
        assert!((p.grad_ready_secs[2] - 2.0 * fc8).abs() < 1e-15);
    }

    #[test]
    fn increments_accumulate() {
        let p = ComputeProfile::from_increments(1.0, &[0.5, 0.0, 0.25], 0.25);
        assert_eq!(p.grad_ready_secs, vec![0.5, 0.5, 0.75]);
        assert_eq!(p.backward_secs, 1.0);
        assert_eq!(p.compute_secs(), 2.0);
    }
}
