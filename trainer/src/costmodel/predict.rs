//! Predicted step time, throughput and scaling efficiency of a model on P ranks, for each
//! combination of the communication techniques.

use super::allreduce::best_hybrid;
use super::auto::{auto_plan, best_threshold};
use super::compute::{ComputeProfile, FullModel, Gpu};
use super::link::{Cluster, Network};
use super::timeline::{simulate_step, Segmentation, StepTimeline};
use super::{allreduce_secs, CostError};
use crate::collective::Algorithm;

/// What is predicted: gradient sizes on the wire, compute times, links and local batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Model name for tables.
    pub model: String,
    /// Bytes of each gradient on the wire, in backward order.
    pub sizes: Vec<u64>,
    /// Compute times on one rank.
    pub profile: ComputeProfile,
    /// Links of the cluster.
    pub cluster: Cluster,
    /// Images per rank per step (weak scaling: fixed as ranks grow).
    pub local_batch: usize,
}

impl Scenario {
    /// A full-size model on `gpu`s, 8 per node, nodes joined by `network`, gradients sent in
    /// fp16 (as the seed does).
    pub fn full(model: FullModel, gpu: Gpu, network: Network, local_batch: usize) -> Scenario {
        Scenario {
            model: model.name().to_string(),
            sizes: model
                .inventory()
                .iter()
                .map(|p| 2 * p.numel as u64)
                .collect(),
            profile: gpu.profile(model, local_batch),
            cluster: Cluster {
                intra: gpu.intra_node_link(),
                inter: network.link(gpu.reduce_secs_per_byte()),
                gpus_per_node: 8,
            },
            local_batch,
        }
    }
}

/// Which communication techniques a configuration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Config {
    /// Flat ring, one all-reduce per tensor after backward (plain NCCL-like training).
    Plain,
    /// Plain plus fusion under the best threshold.
    Fusion,
    /// Plain plus hybrid hierarchical/ring all-reduce (crossover threshold).
    Hierarchy,
    /// Plain plus overlap: each tensor's all-reduce starts once it is final.
    Overlap,
    /// Hybrid all-reduce, auto segments and threshold (the seed's system).
    All,
}

impl Config {
    /// Every configuration, in table order.
    pub const ALL: [Config; 5] = [
        Config::Plain,
        Config::Fusion,
        Config::Hierarchy,
        Config::Overlap,
        Config::All,
    ];

    /// Label in tables.
    pub fn label(self) -> &'static str {
        match self {
            Config::Plain => "plain NCCL-like",
            Config::Fusion => "+fusion",
            Config::Hierarchy => "+hierarchy",
            Config::Overlap => "+overlap",
            Config::All => "all (seed)",
        }
    }
}

/// One row of the prediction table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Model name.
    pub model: String,
    /// Ranks (P).
    pub world: usize,
    /// Configuration.
    pub config: Config,
    /// All-reduce algorithm used.
    pub algorithm: Algorithm,
    /// Segments and fusion threshold used.
    pub segmentation: Segmentation,
    /// Segments (S).
    pub segments: usize,
    /// The simulated step.
    pub timeline: StepTimeline,
    /// Predicted step time (seconds).
    pub step_secs: f64,
    /// Images per second over all ranks.
    pub images_per_sec: f64,
    /// Single-rank step time / predicted step time (weak scaling).
    pub efficiency: f64,
}

/// Predicts one configuration on `world` ranks. Hierarchical groups are the ranks of a node
/// (or all ranks, when fewer than a node).
pub fn predict(s: &Scenario, world: usize, config: Config) -> Result<Prediction, CostError> {
    let group = gcd(s.cluster.gpus_per_node.max(1), world.max(1));
    let algorithm = match config {
        Config::Plain | Config::Fusion | Config::Overlap => Algorithm::Ring,
        Config::Hierarchy | Config::All => best_hybrid(world, group, &s.cluster)?,
    };
    let (segmentation, timeline) = match config {
        Config::Plain | Config::Hierarchy => {
            fixed(s, world, algorithm, Segmentation::single(0), false)?
        }
        Config::Overlap => fixed(
            s,
            world,
            algorithm,
            Segmentation::per_tensor(s.sizes.len()),
            true,
        )?,
        Config::Fusion => best_threshold(&s.sizes, &s.profile, &s.cluster, world, algorithm)?,
        Config::All => auto_plan(&s.sizes, &s.profile, &s.cluster, world, algorithm)?,
    };
    let step = timeline.step_secs;
    Ok(Prediction {
        model: s.model.clone(),
        world,
        config,
        algorithm,
        segments: segmentation.segments(s.sizes.len()),
        segmentation,
        step_secs: step,
        images_per_sec: (world * s.local_batch) as f64 / step,
        efficiency: s.profile.compute_secs() / step,
        timeline,
    })
}

fn fixed(
    s: &Scenario,
    world: usize,
    algorithm: Algorithm,
    seg: Segmentation,
    overlap: bool,
) -> Result<(Segmentation, StepTimeline), CostError> {
    s.profile.check_len(s.sizes.len())?;
    allreduce_secs(algorithm, 0, world, &s.cluster)?;
    let t = simulate_step(
        s.profile.forward_secs,
        &s.profile.grad_ready_secs,
        s.profile.backward_secs,
        &s.sizes,
        &seg,
        overlap,
        |b| allreduce_secs(algorithm, b, world, &s.cluster).unwrap_or(f64::INFINITY),
    );
    Ok((seg, t))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p40(m: FullModel) -> Scenario {
        Scenario::full(m, Gpu::P40, Network::Eth100, m.seed_local_batch())
    }

    #[test]
    fn one_rank_scales_perfectly() {
        for m in FullModel::ALL {
            let s = p40(m);
            for c in Config::ALL {
                let p = predict(&s, 1, c).expect("ok");
                assert_eq!(p.efficiency, 1.0, "{} {:?}", m.name(), c);
                assert_eq!(p.step_secs, s.profile.compute_secs());
            }
        }
    }

    #[test]
    fn fusion_speeds_up_resnet50s_many_small_tensors() {
        let s = p40(FullModel::Resnet50);
        for world in [16, 256, 1024, 2048] {
            let plain = predict(&s, world, Config::Plain).expect("ok");
            let fused = predict(&s, world, Config::Fusion).expect("ok");
            assert!(fused.step_secs < plain.step_secs, "P={world}");
            assert!(fused.timeline.messages * 5 <= plain.timeline.messages);
            assert_eq!(plain.timeline.messages, 161);
        }
    }

    #[test]
    fn every_technique_helps_and_all_together_help_most() {
        for m in FullModel::ALL {
            let s = p40(m);
            for world in [64, 1024] {
                let row = |c| predict(&s, world, c).expect("ok");
                let plain = row(Config::Plain);
                let all = row(Config::All);
                for c in [Config::Fusion, Config::Hierarchy, Config::Overlap] {
                    let r = row(c);
                    assert!(
                        r.step_secs <= plain.step_secs,
                        "{} {c:?} P={world}",
                        m.name()
                    );
                    assert!(all.step_secs <= r.step_secs * 1.0001, "{} {c:?}", m.name());
                }
                assert!(all.efficiency <= 1.0 && all.efficiency > plain.efficiency);
                assert!(
                    (all.images_per_sec - (world * s.local_batch) as f64 / all.step_secs).abs()
                        < 1e-6
                );
            }
        }
    }

    #[test]
    fn efficiency_falls_as_ranks_grow_on_plain_rings() {
        let s = p40(FullModel::Resnet50);
        let effs: Vec<f64> = [2, 16, 128, 1024]
            .iter()
            .map(|&w| predict(&s, w, Config::Plain).expect("ok").efficiency)
            .collect();
        assert!(effs.windows(2).all(|w| w[0] > w[1]), "{effs:?}");
    }
}
