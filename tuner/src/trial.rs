//! `jizhi-tune trial`: one training run whose progress goes to stdout as JSON lines.
//!
//! The tuner runs every trial as a child process of its own executable with this command, so a
//! crashing trial cannot take the tuner down and a cluster launcher can run the very same command.

use crate::cli::TrialArgs;
use anyhow::{bail, Context, Result};
use jizhi_trainer::{
    EpochReport, LossScale, LrDecay, ModelKind, OptimizerKind, Precision, TrainConfig,
};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// Dynamic loss scaling as PyTorch's GradScaler starts it: 2^16, doubled after 2000 clean steps.
pub const DYNAMIC_LOSS_SCALE: LossScale = LossScale::Dynamic {
    init: 65536.0,
    growth_interval: 2000,
};

/// One line of a trial's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TrialLine {
    /// An epoch finished and was evaluated.
    Epoch(EpochReport),
    /// The trial finished.
    Final(FinalRecord),
}

/// The last line of a finished trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalRecord {
    /// Validation top-1 after the last epoch.
    pub final_val_top1: f64,
    /// Best validation top-1 of any epoch.
    pub best_val_top1: f64,
    /// Why training stopped early, if it diverged.
    pub diverged: Option<String>,
    /// Collective calls per step under the fusion threshold.
    pub allreduce_calls_per_step: u64,
    /// Wall time of the whole run.
    pub wall_secs: f64,
    /// The cost model's step time of the full-size model on the cluster given by
    /// `--model-cluster`, with this trial's speed settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modelled_cluster_step_secs: Option<f64>,
}

/// Parses a precision name as the command line spells it.
pub fn precision(s: &str) -> Result<Precision> {
    Ok(match s {
        "fp32" => Precision::Fp32,
        "fp16" => Precision::Fp16,
        "bf16" => Precision::Bf16,
        "fp16-naive" => Precision::Fp16Naive,
        other => bail!("--precision: unknown `{other}`, expected fp32, fp16, bf16 or fp16-naive"),
    })
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Fp16 => "fp16",
        Precision::Bf16 => "bf16",
        Precision::Fp16Naive => "fp16-naive",
    }
}

impl TrialArgs {
    /// The trainer configuration these options describe.
    pub fn to_config(&self) -> Result<TrainConfig> {
        let mut cfg = TrainConfig::proxy_default(self.data_dir.clone());
        cfg.model = ModelKind::parse(&self.model).map_err(|e| anyhow::anyhow!("--model: {e}"))?;
        cfg.bn5 = !self.no_bn5;
        cfg.batch = self.batch;
        cfg.epochs = self.epochs;
        cfg.data_fraction = self.data_fraction;
        cfg.precision = precision(&self.precision)?;
        cfg.optimizer = match self.optimizer.as_str() {
            "sgd" => OptimizerKind::Sgd,
            "lars" => OptimizerKind::Lars,
            other => bail!("--optimizer: unknown `{other}`, expected sgd or lars"),
        };
        cfg.lars_eta = self.lars_eta;
        cfg.momentum = self.momentum;
        cfg.weight_decay = self.weight_decay;
        cfg.decay_bias_and_bn = self.decay_bias_and_bn;
        cfg.peak_lr = self.lr;
        cfg.warmup_epochs = self.warmup_epochs;
        cfg.poly_power = self.poly_power;
        cfg.lr_decay = match self.lr_decay.as_str() {
            "poly" => LrDecay::Poly,
            "cosine" => LrDecay::Cosine,
            other => bail!("--lr-decay: unknown `{other}`, expected poly or cosine"),
        };
        cfg.label_smoothing = self.label_smoothing;
        cfg.loss_scale = match self.loss_scale.as_str() {
            "dynamic" => DYNAMIC_LOSS_SCALE,
            n => LossScale::Static {
                factor: n.parse().with_context(|| {
                    format!("--loss-scale: `{n}` is neither a number nor `dynamic`")
                })?,
            },
        };
        cfg.min_loss_scale = self.min_loss_scale;
        cfg.fusion_threshold_bytes = self.fusion_threshold_bytes;
        cfg.threads = self.threads;
        cfg.seed = self.seed;
        cfg.checkpoint = self.checkpoint.clone();
        cfg.augment = self.augment;
        self.ranks.apply(&mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The `trial` command line that reproduces a configuration (what launchers run), modelling its
/// speed settings on `cluster` when one is given. Options at their defaults are left out, so
/// the commands recorded before an option existed still match.
pub fn command_line(
    cfg: &TrainConfig,
    cluster: Option<&crate::space::ModelledCluster>,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["trial".into()];
    let mut push = |k: &str, v: String| {
        args.push(format!("--{k}"));
        args.push(v);
    };
    push("model", cfg.model.name().into());
    push("data-dir", cfg.data_dir.display().to_string());
    push("batch", cfg.batch.to_string());
    push("epochs", cfg.epochs.to_string());
    push("data-fraction", cfg.data_fraction.to_string());
    push("precision", precision_name(cfg.precision).into());
    push(
        "optimizer",
        match cfg.optimizer {
            OptimizerKind::Sgd => "sgd".into(),
            OptimizerKind::Lars => "lars".into(),
        },
    );
    push("lars-eta", cfg.lars_eta.to_string());
    push("momentum", cfg.momentum.to_string());
    push("weight-decay", cfg.weight_decay.to_string());
    push("lr", cfg.peak_lr.to_string());
    push("warmup-epochs", cfg.warmup_epochs.to_string());
    push("poly-power", cfg.poly_power.to_string());
    if cfg.lr_decay == LrDecay::Cosine {
        push("lr-decay", "cosine".into());
    }
    if cfg.label_smoothing != 0.0 {
        push("label-smoothing", cfg.label_smoothing.to_string());
    }
    push(
        "loss-scale",
        match cfg.loss_scale {
            LossScale::Static { factor } => factor.to_string(),
            LossScale::Dynamic { .. } => "dynamic".into(),
        },
    );
    push(
        "fusion-threshold-bytes",
        cfg.fusion_threshold_bytes.to_string(),
    );
    push("threads", cfg.threads.to_string());
    push("seed", cfg.seed.to_string());
    // Only when changed, so that commands recorded before the option existed still match.
    if cfg.min_loss_scale != jizhi_trainer::config::DEFAULT_MIN_LOSS_SCALE {
        args.push("--min-loss-scale".into());
        args.push(cfg.min_loss_scale.to_string());
    }
    if let Some(path) = &cfg.checkpoint {
        args.push("--checkpoint".into());
        args.push(path.display().to_string());
    }
    if !cfg.bn5 {
        args.push("--no-bn5".into());
    }
    if cfg.augment {
        args.push("--augment".into());
    }
    if cfg.decay_bias_and_bn {
        args.push("--decay-bias-and-bn".into());
    }
    args.extend(crate::ranks_args::command_args(cfg));
    if let Some(cluster) = cluster {
        args.extend(crate::ranks_args::cluster_args(cluster));
    }
    args
}

/// Runs the trial, writing one JSON line per epoch and a final line to stdout.
pub fn run(args: &TrialArgs) -> Result<()> {
    let cfg = args.to_config()?;
    // computed first: a bad cluster option fails before any training
    let modelled = args.cluster.modelled_step_secs(&cfg)?;
    let stdout = std::io::stdout();
    let write_line = |line: &TrialLine| -> std::io::Result<()> {
        let mut out = stdout.lock();
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
        out.flush()
    };
    let mut write_error = None;
    let outcome = jizhi_trainer::train(&cfg, &mut |epoch: &EpochReport| {
        if let Err(e) = write_line(&TrialLine::Epoch(epoch.clone())) {
            write_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing progress to stdout");
    }
    write_line(&TrialLine::Final(FinalRecord {
        final_val_top1: outcome.final_val_top1,
        best_val_top1: outcome.best_val_top1,
        diverged: outcome.diverged.clone(),
        allreduce_calls_per_step: outcome.allreduce_calls_per_step,
        wall_secs: outcome.wall_secs,
        modelled_cluster_step_secs: modelled,
    }))
    .context("writing the final record to stdout")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(subcommand)]
        cmd: crate::cli::Command,
    }

    #[test]
    fn command_line_round_trips_the_config() {
        let mut cfg = TrainConfig::proxy_default("/data");
        cfg.batch = 3072;
        cfg.peak_lr = 2.5;
        cfg.warmup_epochs = 0.25;
        cfg.precision = Precision::Fp16;
        cfg.optimizer = OptimizerKind::Lars;
        cfg.loss_scale = LossScale::Static { factor: 1024.0 };
        cfg.bn5 = false;
        cfg.checkpoint = Some("/tmp/run.ckpt".into());
        cfg.augment = true;
        cfg.lr_decay = LrDecay::Cosine;
        cfg.label_smoothing = 0.1;
        cfg.model = ModelKind::Resnet20Proxy;
        cfg.min_loss_scale = 0.25;
        cfg.ranks = 4;
        cfg.sync_bn = true;
        cfg.algorithm = jizhi_trainer::collective::Algorithm::Hybrid {
            group: 2,
            threshold: 4096,
        };
        cfg.segments = jizhi_trainer::ranks::segments::Segments::At(vec![3, 9]);
        let cluster = crate::space::ModelledCluster {
            gpus: 1024,
            gpu: jizhi_trainer::costmodel::Gpu::H200,
            network: jizhi_trainer::costmodel::Network::IbNdr,
        };
        let mut argv = vec!["x".to_string()];
        argv.extend(command_line(&cfg, Some(&cluster)));
        let parsed = match Wrapper::try_parse_from(argv) {
            Ok(Wrapper {
                cmd: crate::cli::Command::Trial(t),
            }) => t,
            other => panic!("not a trial command: {:?}", other.err()),
        };
        let back = match parsed.to_config() {
            Ok(c) => c,
            Err(e) => panic!("{e:#}"),
        };
        assert_eq!(back, cfg);
        assert_eq!(parsed.cluster.model_cluster, Some(1024));
        assert_eq!(parsed.cluster.model_gpu, "h200");
        assert_eq!(parsed.cluster.model_network, "ib-ndr");
    }

    #[test]
    fn default_ranks_and_no_cluster_add_no_options() {
        let cfg = TrainConfig::proxy_default("/data");
        let args = command_line(&cfg, None).join(" ");
        for flag in [
            "--ranks",
            "--sync-bn",
            "--algorithm",
            "--group-size",
            "--segments",
            "--model-cluster",
            "--model-gpu",
        ] {
            assert!(!args.contains(flag), "{flag} in {args}");
        }
    }
}
