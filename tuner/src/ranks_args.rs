//! Command-line options of the data-parallel ranks, shared by `trial` and `bench train`.

use anyhow::{bail, Result};
use clap::Args;
use jizhi_trainer::collective::Algorithm;
use jizhi_trainer::ranks::segments::Segments;
use jizhi_trainer::TrainConfig;

/// Message size from which the hybrid algorithm switches to the ring unless set.
const HYBRID_THRESHOLD: u64 = crate::space::DEFAULT_HYBRID_THRESHOLD_BYTES;

/// How a trial's ranks split the batch and sum their gradients.
#[derive(Debug, Clone, Args)]
pub struct RanksArgs {
    /// Data-parallel ranks (P); the global batch is split among them.
    #[arg(long, default_value_t = 1)]
    pub ranks: usize,
    /// Batch-norm statistics over the global batch (default: each rank's own share, as on P GPUs).
    #[arg(long)]
    pub sync_bn: bool,
    /// All-reduce algorithm: ring, hierarchical or hybrid.
    #[arg(long, default_value = "ring")]
    pub algorithm: String,
    /// Ranks per group (k) of the hierarchical and hybrid algorithms.
    #[arg(long, default_value_t = 1)]
    pub group_size: usize,
    /// Message size in bytes from which the hybrid algorithm uses the ring.
    #[arg(long, default_value_t = HYBRID_THRESHOLD)]
    pub hybrid_threshold: u64,
    /// All-reduce segments of the backward pass: a count, split points `at:I,J,...`, or `auto`.
    #[arg(long, default_value = "1")]
    pub segments: String,
}

/// The GPU cluster a trial's speed settings are modelled on.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Also report the cost model's step time of the full-size model with this trial's fusion
    /// threshold, segments and algorithm on this many GPUs.
    #[arg(long, value_name = "GPUS")]
    pub model_cluster: Option<usize>,
    /// GPU of the modelled cluster: p40 or h200.
    #[arg(long, default_value = "p40")]
    pub model_gpu: String,
    /// Network of the modelled cluster: 100gbe, ib-edr, ib-hdr or ib-ndr.
    #[arg(long, default_value = "100gbe")]
    pub model_network: String,
}

impl ClusterArgs {
    /// The modelled step time for `cfg`, if a cluster was asked for.
    pub fn modelled_step_secs(&self, cfg: &TrainConfig) -> Result<Option<f64>> {
        let Some(gpus) = self.model_cluster else {
            return Ok(None);
        };
        use jizhi_trainer::costmodel::{trial::modelled_step_secs, Gpu, Network};
        let Some(gpu) = Gpu::from_name(&self.model_gpu) else {
            bail!(
                "--model-gpu: unknown `{}`, expected p40 or h200",
                self.model_gpu
            );
        };
        let Some(network) = Network::from_name(&self.model_network) else {
            bail!(
                "--model-network: unknown `{}`, expected 100gbe, ib-edr, ib-hdr or ib-ndr",
                self.model_network
            );
        };
        if gpus == 0 {
            bail!("--model-cluster must be at least 1 GPU");
        }
        match modelled_step_secs(cfg, gpus, gpu, network) {
            Ok(s) => Ok(Some(s)),
            Err(e) => bail!("--model-cluster {gpus}: {e}"),
        }
    }
}

impl RanksArgs {
    /// Writes these options into `cfg`.
    pub fn apply(&self, cfg: &mut TrainConfig) -> Result<()> {
        cfg.ranks = self.ranks;
        cfg.sync_bn = self.sync_bn;
        let group = self.group_size;
        cfg.algorithm = match self.algorithm.as_str() {
            "ring" => Algorithm::Ring,
            "hierarchical" => Algorithm::Hierarchical { group },
            "hybrid" => Algorithm::Hybrid {
                group,
                threshold: self.hybrid_threshold,
            },
            other => bail!("--algorithm: unknown `{other}`, expected ring, hierarchical or hybrid"),
        };
        cfg.segments = match self.segments.parse::<Segments>() {
            Ok(s) => s,
            Err(e) => bail!("--segments: {e}"),
        };
        Ok(())
    }
}

/// The options that reproduce `cfg`'s ranks; none for a single rank with default settings, so
/// the command lines of single-rank trials stay as they were.
pub fn command_args(cfg: &TrainConfig) -> Vec<String> {
    let mut args = Vec::new();
    let mut push = |k: &str, v: String| {
        args.push(format!("--{k}"));
        args.push(v);
    };
    if cfg.ranks != 1 {
        push("ranks", cfg.ranks.to_string());
    }
    match cfg.algorithm {
        Algorithm::Ring => {}
        Algorithm::Hierarchical { group } => {
            push("algorithm", "hierarchical".into());
            push("group-size", group.to_string());
        }
        Algorithm::Hybrid { group, threshold } => {
            push("algorithm", "hybrid".into());
            push("group-size", group.to_string());
            push("hybrid-threshold", threshold.to_string());
        }
    }
    if cfg.segments != Segments::Count(1) {
        push("segments", cfg.segments.to_string());
    }
    if cfg.sync_bn {
        args.push("--sync-bn".into());
    }
    args
}

/// The options that model a trial's speed settings on `cluster`.
pub fn cluster_args(cluster: &crate::space::ModelledCluster) -> Vec<String> {
    vec![
        "--model-cluster".into(),
        cluster.gpus.to_string(),
        "--model-gpu".into(),
        cluster.gpu.name().into(),
        "--model-network".into(),
        cluster.network.name().into(),
    ]
}
