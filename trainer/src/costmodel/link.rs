//! Link parameters of the α-β-γ model, the presets the simulator offers, and the least-squares
//! fit that calibrates α and β from timed collectives.

use super::CostError;

/// Costs of one message over one link: `alpha + n·beta` to move `n` bytes, `n·gamma` to add
/// `n` received bytes into a local buffer.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Link {
    /// Latency per message (seconds).
    pub alpha: f64,
    /// Transfer time per byte (seconds / byte).
    pub beta: f64,
    /// Reduction (addition) time per byte (seconds / byte).
    pub gamma: f64,
}

impl Link {
    /// The link that is no faster than either in any term (a ring runs at its slowest hop).
    pub fn slowest(self, other: Link) -> Link {
        Link {
            alpha: self.alpha.max(other.alpha),
            beta: self.beta.max(other.beta),
            gamma: self.gamma.max(other.gamma),
        }
    }

    /// Per-hop link of a flat ring over `world` ranks whose all-reduce time was fitted as the
    /// line `fit.alpha + n·fit.beta`: inverts `2(P−1)α + 2(P−1)/P·n·β` (the reduction is
    /// folded into β; γ is left at zero because one line cannot separate them).
    pub fn from_ring_fit(fit: Link, world: usize) -> Result<Link, CostError> {
        if world < 2 {
            return Err(CostError::Fit(format!(
                "a ring of {world} rank(s) moves no data; calibrate with at least 2"
            )));
        }
        let p = world as f64;
        Ok(Link {
            alpha: fit.alpha / (2.0 * (p - 1.0)),
            beta: fit.beta / (2.0 * (p - 1.0) / p),
            gamma: 0.0,
        })
    }
}

/// Links inside a node and between nodes of `gpus_per_node` ranks each (ranks packed by node).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cluster {
    /// Between two ranks of the same node.
    pub intra: Link,
    /// Between two nodes.
    pub inter: Link,
    /// Ranks per node (G).
    pub gpus_per_node: usize,
}

impl Cluster {
    /// The slowest link a collective over `span` consecutive ranks crosses: inside one node
    /// when the ranks fit in one, otherwise the one between nodes.
    pub fn link_spanning(&self, span: usize) -> Link {
        if span <= self.gpus_per_node {
            self.intra
        } else {
            self.intra.slowest(self.inter)
        }
    }

    /// The slowest link of a ring among the leaders (ranks `0, group, 2·group, …`) of
    /// `world` ranks: inside a node when they all fit in one; only between nodes when each
    /// leader has a node of its own (groups are whole nodes); otherwise both.
    pub fn leaders_link(&self, world: usize, group: usize) -> Link {
        let g = self.gpus_per_node.max(1);
        if world <= g {
            self.intra
        } else if group.is_multiple_of(g) {
            self.inter
        } else {
            self.intra.slowest(self.inter)
        }
    }
}

/// Networks between nodes. Values are per message hop as a collective library sees them:
/// β from ~90 % of line rate (what NCCL's bus bandwidth reaches on these fabrics), α the
/// end-to-end latency of one ring step (verbs round trip plus the library's proxy and kernel
/// start), which is several µs above the wire's own latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// 100 Gb/s Ethernet with RoCE (the seed's cluster): α 15 µs, 11.25 GB/s.
    Eth100,
    /// InfiniBand EDR, 100 Gb/s: α 5 µs, 11.25 GB/s.
    IbEdr,
    /// InfiniBand HDR, 200 Gb/s: α 4 µs, 22.5 GB/s.
    IbHdr,
    /// InfiniBand NDR, 400 Gb/s (one NIC per GPU in H200 nodes): α 3 µs, 45 GB/s.
    IbNdr,
}

impl Network {
    /// Every network, in the order the help lists them.
    pub const ALL: [Network; 4] = [
        Network::Eth100,
        Network::IbEdr,
        Network::IbHdr,
        Network::IbNdr,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Network::Eth100 => "100gbe",
            Network::IbEdr => "ib-edr",
            Network::IbHdr => "ib-hdr",
            Network::IbNdr => "ib-ndr",
        }
    }

    /// The network of a command-line name.
    pub fn from_name(name: &str) -> Option<Network> {
        Network::ALL.into_iter().find(|n| n.name() == name)
    }

    /// Link between nodes, with the reduction cost `gamma` of the GPUs at its ends.
    pub fn link(self, gamma: f64) -> Link {
        let (alpha_us, gbytes_per_s) = match self {
            Network::Eth100 => (15.0, 11.25),
            Network::IbEdr => (5.0, 11.25),
            Network::IbHdr => (4.0, 22.5),
            Network::IbNdr => (3.0, 45.0),
        };
        Link {
            alpha: alpha_us * 1e-6,
            beta: 1.0 / (gbytes_per_s * 1e9),
            gamma,
        }
    }
}

/// Least-squares line `secs = alpha + beta·bytes` through timed collectives of several sizes;
/// `gamma` is zero (a single line cannot tell transfer from reduction). Residuals are weighed
/// relative to each time (weights 1/secs²), so sizes spanning decades count alike instead of
/// the largest message deciding the latency. A negative intercept (noise around a near-zero
/// latency) is clamped to zero.
pub fn fit_alpha_beta(samples: &[(u64, f64)]) -> Result<Link, CostError> {
    if samples.len() < 2 {
        return Err(CostError::Fit(format!(
            "need at least 2 samples, got {}",
            samples.len()
        )));
    }
    if let Some(&(b, s)) = samples.iter().find(|(_, s)| !s.is_finite() || *s <= 0.0) {
        return Err(CostError::Fit(format!(
            "sample ({b} bytes, {s} s) is not a positive time"
        )));
    }
    let w = |s: f64| 1.0 / (s * s);
    let sw: f64 = samples.iter().map(|&(_, s)| w(s)).sum();
    let mean_x = samples.iter().map(|&(b, s)| w(s) * b as f64).sum::<f64>() / sw;
    let mean_y = samples.iter().map(|&(_, s)| w(s) * s).sum::<f64>() / sw;
    let sxx: f64 = samples
        .iter()
        .map(|&(b, s)| w(s) * (b as f64 - mean_x).powi(2))
        .sum();
    if sxx <= 0.0 || samples.iter().all(|&(b, _)| b == samples[0].0) {
        return Err(CostError::Fit(
            "all samples have the same size; a line needs at least two sizes".into(),
        ));
    }
    let sxy: f64 = samples
        .iter()
        .map(|&(b, s)| w(s) * (b as f64 - mean_x) * (s - mean_y))
        .sum();
    let beta = sxy / sxx;
    Ok(Link {
        alpha: (mean_y - beta * mean_x).max(0.0),
        beta,
        gamma: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn fit_recovers_an_exact_line() {
        let (alpha, beta) = (12e-6, 1.0 / 8e9);
        let samples: Vec<(u64, f64)> = (10..=26)
            .map(|e| 1u64 << e)
            .map(|b| (b, alpha + beta * b as f64))
            .collect();
        let l = fit_alpha_beta(&samples).expect("fit");
        assert!(close(l.alpha, alpha, 1e-6), "{} vs {alpha}", l.alpha);
        assert!(close(l.beta, beta, 1e-9), "{} vs {beta}", l.beta);
        assert_eq!(l.gamma, 0.0);
    }

    #[test]
    fn fit_averages_out_symmetric_noise() {
        let (alpha, beta) = (50e-6, 2e-10);
        // Each size measured twice, ±3 % around the line: the fit lands within 1 % of it.
        let samples: Vec<(u64, f64)> = (12..=24)
            .flat_map(|e| {
                let b = 1u64 << e;
                let t = alpha + beta * b as f64;
                [(b, t * 1.03), (b, t * 0.97)]
            })
            .collect();
        let l = fit_alpha_beta(&samples).expect("fit");
        assert!(close(l.beta, beta, 0.01), "{} vs {beta}", l.beta);
        assert!(close(l.alpha, alpha, 0.01), "{} vs {alpha}", l.alpha);
    }

    /// A small message's latency is not drowned by the largest message's absolute error.
    #[test]
    fn latency_survives_a_noisy_large_message() {
        let (alpha, beta) = (40e-6, 1e-9);
        let mut samples: Vec<(u64, f64)> = (10..=24)
            .map(|e| 1u64 << e)
            .map(|b| (b, alpha + beta * b as f64))
            .collect();
        samples.last_mut().expect("samples").1 *= 1.10;
        let l = fit_alpha_beta(&samples).expect("fit");
        assert!(close(l.alpha, alpha, 0.05), "{} vs {alpha}", l.alpha);
        assert!(close(l.beta, beta, 0.10), "{} vs {beta}", l.beta);
    }

    #[test]
    fn fit_refuses_degenerate_input() {
        assert!(matches!(fit_alpha_beta(&[]), Err(CostError::Fit(_))));
        assert!(matches!(
            fit_alpha_beta(&[(8, 1e-6)]),
            Err(CostError::Fit(_))
        ));
        assert!(matches!(
            fit_alpha_beta(&[(8, 1e-6), (8, 2e-6)]),
            Err(CostError::Fit(_))
        ));
        assert!(matches!(
            fit_alpha_beta(&[(8, 1e-6), (16, f64::NAN)]),
            Err(CostError::Fit(_))
        ));
    }

    #[test]
    fn ring_fit_inverts_the_ring_formula() {
        // A 4-rank ring with α = 2 µs, β = 1 ns/B costs 6α + 1.5·n·β.
        let line = Link {
            alpha: 6.0 * 2e-6,
            beta: 1.5e-9,
            gamma: 0.0,
        };
        let hop = Link::from_ring_fit(line, 4).expect("ring");
        assert!(close(hop.alpha, 2e-6, 1e-12));
        assert!(close(hop.beta, 1e-9, 1e-12));
        assert!(Link::from_ring_fit(line, 1).is_err());
    }

    #[test]
    fn presets_and_spans() {
        for n in Network::ALL {
            assert_eq!(Network::from_name(n.name()), Some(n));
        }
        assert_eq!(Network::from_name("token-ring"), None);
        let eth = Network::Eth100.link(1e-12);
        assert!(close(eth.beta, 1.0 / 11.25e9, 1e-12));
        let intra = Link {
            alpha: 1e-6,
            beta: 1e-10,
            gamma: 1e-12,
        };
        let c = Cluster {
            intra,
            inter: eth,
            gpus_per_node: 8,
        };
        assert_eq!(c.link_spanning(8), intra);
        let across = c.link_spanning(9);
        assert_eq!(across.alpha, eth.alpha);
        assert_eq!(across.beta, intra.beta.max(eth.beta));
        // Leaders of whole-node groups talk over the network only; of half nodes, over both.
        assert_eq!(c.leaders_link(64, 8), eth);
        assert_eq!(c.leaders_link(64, 4), across);
        assert_eq!(c.leaders_link(8, 2), intra);
    }
}
