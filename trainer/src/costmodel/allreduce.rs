//! Cost of one all-reduce of `n` bytes over P ranks: flat ring, hierarchical and hybrid.

use super::link::{Cluster, Link};
use super::CostError;
use crate::collective::Algorithm;

/// Ring all-reduce (reduce-scatter then all-gather) of `bytes` over `world` ranks on `link`:
/// `2(P−1)α + 2(P−1)/P·n·β + (P−1)/P·n·γ`.
pub fn ring(bytes: f64, world: usize, link: &Link) -> f64 {
    if world <= 1 {
        return 0.0;
    }
    let p = world as f64;
    let steps = p - 1.0;
    2.0 * steps * link.alpha + 2.0 * steps / p * bytes * link.beta + steps / p * bytes * link.gamma
}

/// Reduce of `bytes` from `k` ranks onto one (reduce-scatter, then gather to the leader):
/// `2(k−1)α + 2(k−1)/k·n·β + (k−1)/k·n·γ`.
pub fn reduce(bytes: f64, k: usize, link: &Link) -> f64 {
    if k <= 1 {
        return 0.0;
    }
    let k = k as f64;
    let steps = k - 1.0;
    2.0 * steps * link.alpha + 2.0 * steps / k * bytes * link.beta + steps / k * bytes * link.gamma
}

/// Broadcast of `bytes` from one rank to `k` (scatter, then all-gather):
/// `2(k−1)α + 2(k−1)/k·n·β`.
pub fn broadcast(bytes: f64, k: usize, link: &Link) -> f64 {
    if k <= 1 {
        return 0.0;
    }
    let k = k as f64;
    let steps = k - 1.0;
    2.0 * steps * link.alpha + 2.0 * steps / k * bytes * link.beta
}

/// Flat ring over every rank; the ring runs at the slowest link it crosses.
pub fn flat_ring(bytes: f64, world: usize, cluster: &Cluster) -> f64 {
    ring(bytes, world, &cluster.link_spanning(world))
}

/// Hierarchical all-reduce: reduce inside groups of `group` consecutive ranks, ring all-reduce
/// among the `world / group` leaders, broadcast back inside the groups.
pub fn hierarchical(
    bytes: f64,
    world: usize,
    group: usize,
    cluster: &Cluster,
) -> Result<f64, CostError> {
    check(world, group)?;
    let inside = cluster.link_spanning(group);
    let leaders = world / group;
    Ok(reduce(bytes, group, &inside)
        + ring(bytes, leaders, &cluster.leaders_link(world, group))
        + broadcast(bytes, group, &inside))
}

/// Seconds of one all-reduce of `bytes` over `world` ranks with `algorithm`.
pub fn allreduce_secs(
    algorithm: Algorithm,
    bytes: u64,
    world: usize,
    cluster: &Cluster,
) -> Result<f64, CostError> {
    if world == 0 {
        return Err(CostError::NoRanks);
    }
    let n = bytes as f64;
    match algorithm {
        Algorithm::Ring => Ok(flat_ring(n, world, cluster)),
        Algorithm::Hierarchical { group } => hierarchical(n, world, group, cluster),
        Algorithm::Hybrid { group, threshold } => {
            if bytes < threshold {
                hierarchical(n, world, group, cluster)
            } else {
                check(world, group)?;
                Ok(flat_ring(n, world, cluster))
            }
        }
    }
}

/// The message size from which the flat ring is no slower than the hierarchical algorithm
/// (both costs are lines in `n`): the threshold that makes [`Algorithm::Hybrid`] take the
/// cheaper of the two for every message. `u64::MAX` when hierarchical is never slower, 0 when
/// the ring always wins.
pub fn hybrid_crossover(world: usize, group: usize, cluster: &Cluster) -> Result<u64, CostError> {
    check(world, group)?;
    let probe = (1u64 << 30) as f64;
    let ring_at = |n: f64| flat_ring(n, world, cluster);
    let hier_at = |n: f64| hierarchical(n, world, group, cluster);
    let (r0, h0) = (ring_at(0.0), hier_at(0.0)?);
    let (r_slope, h_slope) = (
        (ring_at(probe) - r0) / probe,
        (hier_at(probe)? - h0) / probe,
    );
    if r0 <= h0 && r_slope <= h_slope {
        return Ok(0);
    }
    if h_slope <= r_slope {
        return Ok(u64::MAX);
    }
    // r0 > h0 and the ring's slope is smaller: they cross at a positive size.
    let cross = (r0 - h0) / (h_slope - r_slope);
    Ok(cross.ceil().min(u64::MAX as f64) as u64)
}

/// The hybrid algorithm with group `group` and the crossover threshold.
pub fn best_hybrid(world: usize, group: usize, cluster: &Cluster) -> Result<Algorithm, CostError> {
    Ok(Algorithm::Hybrid {
        group,
        threshold: hybrid_crossover(world, group, cluster)?,
    })
}

fn check(world: usize, group: usize) -> Result<(), CostError> {
    if world == 0 {
        return Err(CostError::NoRanks);
    }
    if group == 0 || !world.is_multiple_of(group) {
        return Err(CostError::Group { group, world });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    /// Round numbers so the hand computations below stay readable.
    fn cluster() -> Cluster {
        Cluster {
            intra: Link {
                alpha: 1e-6,
                beta: 1e-10,
                gamma: 1e-11,
            },
            inter: Link {
                alpha: 10e-6,
                beta: 1e-9,
                gamma: 1e-11,
            },
            gpus_per_node: 4,
        }
    }

    #[test]
    fn ring_matches_hand_computation() {
        let c = cluster();
        // 4 ranks in one node, 1 MB: 2·3·1µs + 2·3/4·1e6·1e-10 + 3/4·1e6·1e-11
        //   = 6e-6 + 1.5e-4 + 7.5e-6 = 1.635e-4 s.
        assert!(close(flat_ring(1e6, 4, &c), 1.635e-4));
        // 8 ranks across two nodes run at the inter-node link:
        //   2·7·10µs + 2·7/8·1e6·1e-9 + 7/8·1e6·1e-11 = 1.4e-4 + 1.75e-3 + 8.75e-6.
        assert!(close(flat_ring(1e6, 8, &c), 1.4e-4 + 1.75e-3 + 8.75e-6));
        assert_eq!(flat_ring(1e9, 1, &c), 0.0);
    }

    #[test]
    fn hierarchical_matches_hand_computation() {
        let c = cluster();
        // 16 ranks, groups of 4 (one node each), 1 MB.
        // reduce in node: 2·3·1µs + 2·3/4·1e6·1e-10 + 3/4·1e6·1e-11 = 1.635e-4
        // leaders' ring of 4 across nodes: 2·3·10µs + 2·3/4·1e6·1e-9 + 3/4·1e6·1e-11
        //   = 6e-5 + 1.5e-3 + 7.5e-6 = 1.5675e-3
        // broadcast in node: 2·3·1µs + 2·3/4·1e6·1e-10 = 1.56e-4
        let t = hierarchical(1e6, 16, 4, &c).expect("valid group");
        assert!(close(t, 1.635e-4 + 1.5675e-3 + 1.56e-4), "{t}");
        // One group is a reduce plus a broadcast; groups of one are the flat ring.
        let one = hierarchical(1e6, 4, 4, &c).expect("valid");
        assert!(close(one, 1.635e-4 + 1.56e-4));
        assert!(close(
            hierarchical(1e6, 16, 1, &c).expect("valid"),
            flat_ring(1e6, 16, &c)
        ));
        assert_eq!(
            hierarchical(1e6, 16, 3, &c),
            Err(CostError::Group {
                group: 3,
                world: 16
            })
        );
    }

    /// With a slower link inside nodes than between them (PCIe vs a fast network), the
    /// leaders' ring runs at the network's speed, the flat ring at the slower one.
    #[test]
    fn leaders_ring_crosses_only_the_network() {
        let mut c = cluster();
        c.intra.beta = 2e-9;
        c.inter.beta = 1e-9;
        // 8 ranks, whole-node groups of 4: 2 leaders, ring on the inter link alone:
        //   2·1·10µs + 2·1/2·1e6·1e-9 + 1/2·1e6·1e-11 = 2e-5 + 1e-3 + 5e-6.
        let inside = reduce(1e6, 4, &c.intra) + broadcast(1e6, 4, &c.intra);
        let t = hierarchical(1e6, 8, 4, &c).expect("valid");
        assert!(close(t, inside + 2e-5 + 1e-3 + 5e-6), "{t}");
        // The flat ring of 8 runs at the 2 ns/B PCIe-like hop.
        assert!(close(
            flat_ring(1e6, 8, &c),
            2.0 * 7.0 * 10e-6 + 2.0 * 7.0 / 8.0 * 1e6 * 2e-9 + 7.0 / 8.0 * 1e6 * 1e-11
        ));
    }

    #[test]
    fn hierarchy_wins_small_messages_ring_wins_large_ones() {
        let c = cluster();
        let (p, k) = (1024, 4);
        let small = 4096.0;
        let large = 256e6;
        assert!(hierarchical(small, p, k, &c).expect("ok") < flat_ring(small, p, &c));
        assert!(hierarchical(large, p, k, &c).expect("ok") > flat_ring(large, p, &c));
        let t = hybrid_crossover(p, k, &c).expect("ok");
        assert!(t > 4096 && t < 256_000_000, "{t}");
        let hybrid = best_hybrid(p, k, &c).expect("ok");
        for n in [1u64, 4096, t - 1, t, t + 1, 1 << 28] {
            let h = allreduce_secs(hybrid, n, p, &c).expect("ok");
            let best =
                flat_ring(n as f64, p, &c).min(hierarchical(n as f64, p, k, &c).expect("ok"));
            assert!(h <= best * (1.0 + 1e-9), "hybrid at {n} B: {h} vs {best}");
        }
    }

    #[test]
    fn algorithm_dispatch_and_errors() {
        let c = cluster();
        assert_eq!(
            allreduce_secs(Algorithm::Ring, 1000, 0, &c),
            Err(CostError::NoRanks)
        );
        let h = Algorithm::Hybrid {
            group: 4,
            threshold: 1000,
        };
        assert!(close(
            allreduce_secs(h, 999, 16, &c).expect("ok"),
            hierarchical(999.0, 16, 4, &c).expect("ok")
        ));
        assert!(close(
            allreduce_secs(h, 1000, 16, &c).expect("ok"),
            flat_ring(1000.0, 16, &c)
        ));
        assert!(allreduce_secs(
            Algorithm::Hybrid {
                group: 5,
                threshold: 0
            },
            1000,
            16,
            &c
        )
        .is_err());
    }
}
