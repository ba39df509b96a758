//! Command-line interface: the commands, their options and help text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Finds the hyperparameters that let very large batches train to full accuracy.
#[derive(Debug, Parser)]
#[command(
    name = "jizhi-tune",
    version,
    about = "Coarse-to-fine hyperparameter search for very large batch training",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  \
        jizhi-tune search-spaces/alexnet64k.toml              run the study (or resume it)\n  \
        jizhi-tune search-spaces/smoke.toml --headless --fresh\n  \
        jizhi-tune plan search-spaces/alexnet64k.toml         check a file and print the plan\n  \
        jizhi-tune show search-spaces/alexnet64k.toml         trials and best configuration\n  \
        jizhi-tune dashboard runs/alexnet64k                  the dashboard of a stored study\n  \
        jizhi-tune export runs/alexnet64k --format csv        every trial and epoch\n  \
        jizhi-tune store check runs/alexnet64k                what is intact in a store\n  \
        jizhi-tune bench train                                training throughput\n  \
        jizhi-tune bench store                                what the store costs\n  \
        jizhi-tune reproduce                                  the seed's experiments on the proxy\n  \
        jizhi-tune bench allreduce                            all-reduce bus bandwidth vs memcpy\n  \
        jizhi-tune bench fusion                               fused vs unfused gradient all-reduce\n  \
        jizhi-tune simulate --gpu p40 --network 100gbe        predicted scaling to 2048 GPUs"
)]
pub struct Cli {
    /// Search-space file of the study to run or resume.
    #[arg(value_name = "SPACE.toml", required = true)]
    pub space: Option<PathBuf>,

    /// Options of a study run.
    #[command(flatten)]
    pub run: RunArgs,

    /// A command other than running a study.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of `jizhi-tune SPACE.toml`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Store folder of the study [default: runs/<study name>/].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print one line per trial event instead of the live dashboard (the default in a terminal).
    #[arg(long)]
    pub headless: bool,
    /// Trials run at the same time [default: `scheduler.concurrency` from the file, else number
    /// of cores / threads per trial].
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// Compute threads of each trial.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads_per_trial: usize,
    /// Seed of the study [default: study.seed from the file].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Start over: the old store is moved aside (never deleted).
    #[arg(long)]
    pub fresh: bool,
    /// Run a changed search space as a new study NEW_NAME, in a store next to the old one that
    /// inherits its history (identical trials are not run again); the old store is unchanged.
    #[arg(long, value_name = "NEW_NAME", conflicts_with = "fresh")]
    pub fork: Option<String>,
    /// Stop a trial still running after this many seconds and record it as timed out
    /// [default: `scheduler.trial_timeout` from the file, else 0: no limit].
    #[arg(long, value_name = "SECS")]
    pub trial_timeout: Option<f64>,
    /// Stop a trial that prints no progress line for this many seconds and record it as stalled
    /// [default: `scheduler.stall_timeout` from the file, else 1800; 0: no limit].
    #[arg(long, value_name = "SECS")]
    pub stall_timeout: Option<f64>,
    /// Run a crashed trial (one that exits without a final record) again up to N more times
    /// [default: `scheduler.max_retries` from the file, else 2].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Run every trial command through this launcher (words separated by spaces), e.g.
    /// `srun -N1 -n1`; it gets the trial command as its arguments and must pass its stdout on
    /// [default: `scheduler.launcher` from the file, else none].
    #[arg(long, value_name = "COMMAND")]
    pub launcher: Option<String>,
}

/// The commands besides running a study.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one trial and print one JSON object per line (per epoch, then a final record).
    #[command(
        after_help = "Example:\n  jizhi-tune trial --batch 256 --epochs 2 --lr 0.1 --optimizer sgd"
    )]
    Trial(Box<TrialArgs>),
    /// Export every trial with its parameters, status and per-epoch metrics.
    #[command(
        after_help = "Examples:\n  jizhi-tune export runs/smoke --format json > trials.json\n  \
        jizhi-tune export search-spaces/smoke.toml --format csv          one row per epoch\n  \
        jizhi-tune export search-spaces/smoke.toml --format csv-trials   one row per trial"
    )]
    Export {
        /// A store folder or the study's search-space file.
        #[arg(value_name = "STORE|SPACE.toml")]
        target: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
        format: ExportFormat,
    },
    /// Rebuild a store from a JSON export (backups, moving a study between machines).
    Import(crate::import::ImportArgs),
    /// Check a store's files, or recover a damaged store into a new one.
    #[command(subcommand)]
    Store(crate::store_cmd::StoreCommand),
    /// Measure a part of the system; the last output line is one JSON object of the figures.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Predict step time and scaling efficiency on 1 to 2048 GPUs from the communication cost model.
    #[command(after_help = crate::simulate::AFTER_HELP)]
    Simulate(crate::simulate::SimulateArgs),
    /// Show a table of trials and the best configuration per batch size.
    #[command(after_help = "Example:\n  jizhi-tune show search-spaces/alexnet64k.toml")]
    Show {
        /// A store folder or the study's search-space file.
        #[arg(value_name = "STORE|SPACE.toml")]
        target: PathBuf,
    },
    /// Show the dashboard of a study that is not running (read from its store).
    #[command(
        after_help = "Example:\n  jizhi-tune dashboard search-spaces/alexnet64k.toml\n\n\
        A running study shows its dashboard in the terminal that started it."
    )]
    Dashboard {
        /// A store folder or the study's search-space file.
        #[arg(value_name = "STORE|SPACE.toml")]
        target: PathBuf,
    },
    /// Run the seed paper's 10-epoch experiments (a)-(e) on the proxy and print one table.
    #[command(
        after_help = "Examples:\n  jizhi-tune reproduce                         all experiments, 10 epochs\n  \
        jizhi-tune reproduce --only a,c --jobs 2     two at a time, sharing the cores\n  \
        jizhi-tune reproduce --out table.json        the table as JSON too"
    )]
    Reproduce(crate::reproduce::ReproduceArgs),
    /// Check the NCCL collectives on this machine's GPUs; prints one JSON line of the results.
    #[command(after_help = "Example:\n  jizhi-tune gpu-check\n\n\
        Exits non-zero, saying why, on a machine without a usable GPU.")]
    GpuCheck(crate::gpu_check::GpuCheckArgs),
    /// Validate a search-space file and print the planned stages, without running anything.
    #[command(after_help = "Example:\n  jizhi-tune plan search-spaces/alexnet64k.toml")]
    Plan {
        /// The search-space file.
        #[arg(value_name = "SPACE.toml")]
        space: PathBuf,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// An array of trial objects, each with its epochs (what `import` reads).
    Json,
    /// One row per trial epoch (a trial without epochs gets one row with empty metrics).
    Csv,
    /// One row per trial.
    CsvTrials,
}

/// Options of `jizhi-tune trial`: one training run of the trainer.
#[derive(Debug, Args, Clone)]
pub struct TrialArgs {
    /// Model: alexnet-bn-proxy or resnet20-proxy (the full-size alexnet-bn and resnet50 need
    /// ImageNet, which is not shipped).
    #[arg(long, default_value = "alexnet-bn-proxy")]
    pub model: String,
    /// Leave out the extra BN after pool5.
    #[arg(long)]
    pub no_bn5: bool,
    /// Data folder (Fashion-MNIST IDX files).
    #[arg(long, default_value = jizhi_trainer::data::FASHION_MNIST_DIR)]
    pub data_dir: PathBuf,
    /// Global batch size.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// Fraction of the training set used.
    #[arg(long, default_value_t = 1.0)]
    pub data_fraction: f64,
    /// Precision: fp32, fp16, bf16 or fp16-naive.
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// Optimiser: sgd or lars.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// LARS trust coefficient.
    #[arg(long, default_value_t = 0.01)]
    pub lars_eta: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Apply weight decay (and LARS) to bias and BN parameters too.
    #[arg(long)]
    pub decay_bias_and_bn: bool,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// Linear warmup epochs.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_epochs: f64,
    /// Power of the polynomial decay.
    #[arg(long, default_value_t = 2.0)]
    pub poly_power: f64,
    /// Decay after warmup: poly or cosine.
    #[arg(long, default_value = "poly")]
    pub lr_decay: String,
    /// Label smoothing of the cross-entropy targets, in [0, 1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Loss scale: a number or `dynamic`.
    #[arg(long, default_value = "dynamic")]
    pub loss_scale: String,
    /// A dynamic loss scale below this stops the trial as diverged.
    #[arg(long, value_name = "SCALE", default_value_t = jizhi_trainer::config::DEFAULT_MIN_LOSS_SCALE)]
    pub min_loss_scale: f64,
    /// Gradient fusion threshold in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub fusion_threshold_bytes: u64,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Augment training images (random 2-pixel crop and horizontal flip).
    #[arg(long)]
    pub augment: bool,
    /// Checkpoint file: saved after every epoch; when it exists, the run continues from it.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Data-parallel ranks.
    #[command(flatten)]
    pub ranks: crate::ranks_args::RanksArgs,
    /// The GPU cluster the speed settings are modelled on.
    #[command(flatten)]
    pub cluster: crate::ranks_args::ClusterArgs,
}
