//! "auto" segments: the split points and fusion threshold that minimise the predicted step.
//!
//! For a fixed threshold the best split is found exactly by dynamic programming over layer
//! boundaries: with one communication stream served in order, the finishing time of the
//! segments ending at `j` is `min over i < j of max(f(i), ready(j−1)) + C(i, j)`, where `C` is
//! the cost of segment `i..j`'s fusion buckets. Finishing earlier never hurts later segments,
//! so the earliest finish of every prefix is all the state needed. Thresholds are searched
//! over a fixed ladder.

use super::allreduce::allreduce_secs;
use super::compute::ComputeProfile;
use super::link::Cluster;
use super::timeline::{simulate_step, Segmentation, StepTimeline};
use super::CostError;
use crate::collective::Algorithm;
use crate::params::ParamInfo;

/// Fusion thresholds the search tries (bytes; 0 = no fusion, `u64::MAX` = a segment is one
/// message).
pub const THRESHOLDS: [u64; 13] = [
    0,
    64 << 10,
    256 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    8 << 20,
    16 << 20,
    32 << 20,
    64 << 20,
    128 << 20,
    256 << 20,
    u64::MAX,
];

/// The segmentation (split indices and fusion threshold) that minimises the predicted step
/// time of `inventory` (bytes as listed) with `profile` on `world` ranks of `cluster`.
pub fn auto_segments(
    inventory: &[ParamInfo],
    profile: &ComputeProfile,
    cluster: &Cluster,
    world: usize,
    algorithm: Algorithm,
) -> Result<Segmentation, CostError> {
    let sizes: Vec<u64> = inventory.iter().map(|p| p.bytes).collect();
    Ok(auto_plan(&sizes, profile, cluster, world, algorithm)?.0)
}

/// [`auto_segments`] on message sizes in bytes (e.g. fp16 gradients), with the predicted step.
pub fn auto_plan(
    sizes: &[u64],
    profile: &ComputeProfile,
    cluster: &Cluster,
    world: usize,
    algorithm: Algorithm,
) -> Result<(Segmentation, StepTimeline), CostError> {
    search(sizes, profile, cluster, world, algorithm, true)
}

/// The best fusion threshold with one segment and no overlap (fusion alone).
pub fn best_threshold(
    sizes: &[u64],
    profile: &ComputeProfile,
    cluster: &Cluster,
    world: usize,
    algorithm: Algorithm,
) -> Result<(Segmentation, StepTimeline), CostError> {
    search(sizes, profile, cluster, world, algorithm, false)
}

fn search(
    sizes: &[u64],
    profile: &ComputeProfile,
    cluster: &Cluster,
    world: usize,
    algorithm: Algorithm,
    overlap: bool,
) -> Result<(Segmentation, StepTimeline), CostError> {
    profile.check_len(sizes.len())?;
    allreduce_secs(algorithm, 0, world, cluster)?;
    // Validated above: every size has a cost.
    let cost = |b: u64| allreduce_secs(algorithm, b, world, cluster).unwrap_or(f64::INFINITY);
    let mut best: Option<(Segmentation, StepTimeline)> = None;
    for threshold in THRESHOLDS {
        let seg = if overlap {
            best_split(sizes, &profile.grad_ready_secs, threshold, cost)
        } else {
            Segmentation::single(threshold)
        };
        let t = simulate_step(
            profile.forward_secs,
            &profile.grad_ready_secs,
            profile.backward_secs,
            sizes,
            &seg,
            overlap,
            cost,
        );
        if best.as_ref().is_none_or(|(_, b)| t.step_secs < b.step_secs) {
            best = Some((seg, t));
        }
    }
    Ok(best.unwrap_or_else(|| (Segmentation::single(0), StepTimeline::default())))
}

/// The split points that let the last all-reduce finish earliest, for a fixed `threshold`.
pub fn best_split(
    sizes: &[u64],
    ready: &[f64],
    threshold: u64,
    cost: impl Fn(u64) -> f64,
) -> Segmentation {
    let n = sizes.len();
    // finish[j]: earliest time the segments covering 0..j are all reduced; from[j]: where the
    // last of those segments starts.
    let mut finish = vec![f64::INFINITY; n + 1];
    let mut from = vec![0usize; n + 1];
    finish[0] = 0.0;
    for i in 0..n {
        let f = finish[i];
        // Cost of segment i..j built up as j grows, bucketed exactly like `plan_buckets`.
        let (mut closed, mut open, mut open_len) = (0.0, 0u64, 0usize);
        for j in i + 1..=n {
            let s = sizes[j - 1];
            let fits = threshold > 0 && open.checked_add(s).is_some_and(|t| t <= threshold);
            if open_len > 0 && !fits {
                closed += cost(open);
                open = 0;
                open_len = 0;
            }
            open = open.saturating_add(s);
            open_len += 1;
            let cand = f.max(ready[j - 1]) + closed + cost(open);
            if cand < finish[j] {
                finish[j] = cand;
                from[j] = i;
            }
        }
    }
    let mut splits = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = from[j];
        if i > 0 {
            splits.push(i);
        }
        j = i;
    }
    splits.reverse();
    Segmentation { splits, threshold }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::costmodel::compute::{FullModel, Gpu};
    use crate::costmodel::link::Network;

    fn p40_cluster() -> Cluster {
        let gpu = Gpu::P40;
        Cluster {
            intra: gpu.intra_node_link(),
            inter: Network::Eth100.link(gpu.reduce_secs_per_byte()),
            gpus_per_node: 8,
        }
    }

    fn half_sizes(m: FullModel) -> Vec<u64> {
        m.inventory().iter().map(|p| 2 * p.numel as u64).collect()
    }

    fn step(
        sizes: &[u64],
        p: &ComputeProfile,
        seg: &Segmentation,
        cost: impl Fn(u64) -> f64,
    ) -> f64 {
        simulate_step(
            p.forward_secs,
            &p.grad_ready_secs,
            p.backward_secs,
            sizes,
            seg,
            true,
            cost,
        )
        .step_secs
    }

    /// The DP's finishing time is the one the event simulation replays.
    #[test]
    fn split_is_replayed_exactly_by_the_simulation() {
        let ready = [0.1, 0.1, 0.3, 0.35, 0.9, 1.0];
        let sizes = [10, 400, 20, 20, 300, 5];
        let cost = |b: u64| 0.05 + b as f64 * 1e-3;
        for threshold in [0, 25, 100, 1000, u64::MAX] {
            let seg = best_split(&sizes, &ready, threshold, cost);
            let t = simulate_step(0.0, &ready, 1.0, &sizes, &seg, true, cost);
            // Brute force over all 2^5 split sets: none finishes earlier.
            for mask in 0u32..32 {
                let splits = (1..6).filter(|i| mask & (1 << (i - 1)) != 0).collect();
                let other = Segmentation { splits, threshold };
                let o = simulate_step(0.0, &ready, 1.0, &sizes, &other, true, cost);
                assert!(
                    t.comm_finish_secs <= o.comm_finish_secs + 1e-12,
                    "threshold {threshold}: {seg:?} {} vs {other:?} {}",
                    t.comm_finish_secs,
                    o.comm_finish_secs
                );
            }
        }
    }

    #[test]
    fn auto_is_no_worse_than_one_segment_or_one_per_tensor() {
        let c = p40_cluster();
        for m in FullModel::ALL {
            let sizes = half_sizes(m);
            let prof = Gpu::P40.profile(m, m.seed_local_batch());
            for world in [8, 64, 1024] {
                let k = 8;
                let alg = crate::costmodel::allreduce::best_hybrid(world, k, &c).expect("ok");
                let cost = |b: u64| allreduce_secs(alg, b, world, &c).expect("ok");
                let (seg, t) = auto_plan(&sizes, &prof, &c, world, alg).expect("ok");
                assert!((step(&sizes, &prof, &seg, cost) - t.step_secs).abs() < 1e-12);
                let per = step(&sizes, &prof, &Segmentation::per_tensor(sizes.len()), cost);
                assert!(t.step_secs <= per + 1e-12, "{} P={world}", m.name());
                for th in THRESHOLDS {
                    let one = step(&sizes, &prof, &Segmentation::single(th), cost);
                    assert!(t.step_secs <= one + 1e-12, "{} P={world} t={th}", m.name());
                }
            }
        }
    }

    #[test]
    fn auto_segments_reads_the_inventory_and_checks_the_profile() {
        let c = p40_cluster();
        let inv = FullModel::Resnet50.inventory();
        let prof = Gpu::P40.profile(FullModel::Resnet50, 32);
        let seg = auto_segments(&inv, &prof, &c, 256, Algorithm::Ring).expect("ok");
        assert!(seg.splits.windows(2).all(|w| w[0] < w[1]));
        assert!(seg.splits.iter().all(|&s| s > 0 && s < inv.len()));
        assert!(matches!(
            auto_segments(&inv[..10], &prof, &c, 256, Algorithm::Ring),
            Err(CostError::ProfileMismatch { .. })
        ));
        assert!(matches!(
            auto_segments(&inv, &prof, &c, 12, Algorithm::Hierarchical { group: 8 }),
            Err(CostError::Group { .. })
        ));
    }
}
