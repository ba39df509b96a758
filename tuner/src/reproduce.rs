//! `jizhi-tune reproduce`: the seed paper's 10-epoch experiments (a)-(e) on the proxy
//! AlexNet-BN, batch 3,072 standing for 64K, no augmentation, one table of results.
//!
//! Each experiment is a child `jizhi-tune trial` process (the very command the tuner runs), so
//! `--jobs` experiments run side by side sharing the cores and a failing one cannot take the
//! others down.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use jizhi_trainer::{LossScale, LrDecay, OptimizerKind, Precision, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::commands::BadInput;
use crate::format::{duration, percent, short_number};
use crate::trial::{command_line, TrialLine, DYNAMIC_LOSS_SCALE};

/// Options of `jizhi-tune reproduce`.
#[derive(Debug, Args, Clone)]
pub struct ReproduceArgs {
    /// Epochs of every experiment.
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// Run only these experiments: groups (a-e) or single runs (c2), comma-separated.
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// Compute threads of each experiment [default: cores / jobs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Experiments run at the same time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Also write the table as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Fraction of the training set each experiment uses (1 = the experiments as specified).
    #[arg(long, default_value_t = 1.0)]
    pub data_fraction: f64,
    /// Seed of every experiment.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Data folder (Fashion-MNIST IDX files).
    #[arg(long, default_value = jizhi_trainer::data::FASHION_MNIST_DIR)]
    pub data_dir: PathBuf,
}

/// One experiment: a name, what it tests and its training configuration.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Short id: the group letter, plus a digit where a group has several runs.
    pub id: &'static str,
    /// What the run stands for.
    pub title: &'static str,
    /// The trial to run.
    pub cfg: TrainConfig,
}

/// Batch that stands for 64K on the proxy.
const LARGE_BATCH: usize = 3072;
/// Peak LR of the large-batch runs: the issue's 0.05 x 3000 / 256, used as the PyTorch
/// reference runs used it.
const LARGE_LR: f64 = 0.586;
/// The trust coefficient the large-batch variants (d), (e) start from.
const LARS_ETA: f64 = 0.01;

/// The experiments (a)-(e) with `epochs` epochs, as the issue specifies them.
pub fn experiments(base: &TrainConfig) -> Vec<Experiment> {
    let small = TrainConfig {
        batch: 256,
        optimizer: OptimizerKind::Sgd,
        peak_lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        warmup_epochs: 0.0,
        lr_decay: LrDecay::Cosine,
        precision: Precision::Fp32,
        ..base.clone()
    };
    let large_sgd = TrainConfig {
        batch: LARGE_BATCH,
        peak_lr: LARGE_LR,
        warmup_epochs: 2.0,
        lr_decay: LrDecay::Poly,
        poly_power: 2.0,
        ..small.clone()
    };
    let lars = |eta: f64| TrainConfig {
        optimizer: OptimizerKind::Lars,
        lars_eta: eta,
        decay_bias_and_bn: false,
        ..large_sgd.clone()
    };
    let half = |p: Precision| TrainConfig {
        precision: p,
        loss_scale: DYNAMIC_LOSS_SCALE,
        ..lars(LARS_ETA)
    };
    vec![
        Experiment {
            id: "a",
            title: "batch 256 SGD baseline",
            cfg: small,
        },
        Experiment {
            id: "b",
            title: "batch 3K SGD, linear scaling + warmup",
            cfg: large_sgd.clone(),
        },
        Experiment {
            id: "c1",
            title: "batch 3K LARS eta 0.001",
            cfg: lars(0.001),
        },
        Experiment {
            id: "c2",
            title: "batch 3K LARS eta 0.01",
            cfg: lars(0.01),
        },
        Experiment {
            id: "c3",
            title: "batch 3K LARS eta 0.02",
            cfg: lars(0.02),
        },
        Experiment {
            id: "d1",
            title: "fp16 + master weights + loss scaling (vs c2)",
            cfg: half(Precision::Fp16),
        },
        Experiment {
            id: "d2",
            title: "fp16-naive LARS, no master weights (vs c2)",
            cfg: half(Precision::Fp16Naive),
        },
        Experiment {
            id: "e1",
            title: "weight decay on bias/BN too (vs c2)",
            cfg: TrainConfig {
                decay_bias_and_bn: true,
                ..lars(LARS_ETA)
            },
        },
        Experiment {
            id: "e2",
            title: "BN5 off (vs c2)",
            cfg: TrainConfig {
                bn5: false,
                ..lars(LARS_ETA)
            },
        },
    ]
}

/// The experiments `only` names (all when None); an unknown name is bad input.
pub fn select(all: Vec<Experiment>, only: Option<&str>) -> Result<Vec<Experiment>> {
    let Some(only) = only else { return Ok(all) };
    let wanted: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for w in &wanted {
        if !all
            .iter()
            .any(|e| e.id == *w || e.id.starts_with(*w) && w.len() == 1)
        {
            let ids: Vec<&str> = all.iter().map(|e| e.id).collect();
            return Err(BadInput(format!(
                "--only: unknown experiment `{w}`, expected a-e or one of {}",
                ids.join(", ")
            ))
            .into());
        }
    }
    if wanted.is_empty() {
        return Err(BadInput("--only: empty list".into()).into());
    }
    Ok(all
        .into_iter()
        .filter(|e| {
            wanted
                .iter()
                .any(|w| e.id == *w || (w.len() == 1 && e.id.starts_with(*w)))
        })
        .collect())
}

/// The settings of a run in one line: what differs between the experiments.
pub fn settings(cfg: &TrainConfig) -> String {
    let mut s = format!("batch {} ", cfg.batch);
    match cfg.optimizer {
        OptimizerKind::Sgd => s.push_str("SGD"),
        OptimizerKind::Lars => s.push_str(&format!("LARS eta {}", short_number(cfg.lars_eta))),
    }
    s.push_str(&format!(", lr {}", short_number(cfg.peak_lr)));
    if cfg.warmup_epochs > 0.0 {
        s.push_str(&format!(", warmup {}", short_number(cfg.warmup_epochs)));
    }
    match cfg.lr_decay {
        LrDecay::Cosine => s.push_str(", cosine"),
        LrDecay::Poly => s.push_str(&format!(", poly {}", short_number(cfg.poly_power))),
    }
    s.push_str(&format!(
        ", m {}, wd {}",
        short_number(cfg.momentum),
        short_number(cfg.weight_decay)
    ));
    if cfg.decay_bias_and_bn {
        s.push_str(" incl. bias/BN");
    }
    s.push_str(match cfg.precision {
        Precision::Fp32 => ", fp32",
        Precision::Fp16 => ", fp16",
        Precision::Bf16 => ", bf16",
        Precision::Fp16Naive => ", fp16-naive",
    });
    if cfg.precision != Precision::Fp32 {
        s.push_str(match cfg.loss_scale {
            LossScale::Dynamic { .. } => " dyn. scale",
            LossScale::Static { .. } => " static scale",
        });
    }
    if !cfg.bn5 {
        s.push_str(", no BN5");
    }
    s
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Experiment id (a, b, c1, ...).
    pub id: String,
    /// What it stands for.
    pub experiment: String,
    /// Its settings.
    pub settings: String,
    /// Epochs run.
    pub epochs: u32,
    /// Test top-1 after the last epoch (None if the run failed).
    pub test_top1: Option<f64>,
    /// Wall seconds of the run.
    pub wall_secs: f64,
    /// Steps skipped for overflow, over all epochs.
    pub skipped_steps: u64,
    /// Mean over epochs of the fraction of gradient values that underflowed to zero.
    pub underflow_fraction: f64,
    /// Why training stopped early, or why the run failed.
    pub note: Option<String>,
}

/// The table as printed: one line per experiment under a header.
pub fn table(rows: &[Row]) -> String {
    let head = [
        "exp",
        "experiment",
        "settings",
        "top-1",
        "wall",
        "skipped",
        "underflow",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.experiment.clone(),
                r.settings.clone(),
                r.test_top1.map_or("failed".into(), percent),
                duration(r.wall_secs),
                r.skipped_steps.to_string(),
                format!("{:.2e}", r.underflow_fraction),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| -> String {
        let mut out = String::new();
        for (i, (s, w)) in c.iter().zip(width).enumerate() {
            let pad = w - s.chars().count();
            // numbers right-aligned, text left-aligned
            if i >= 3 {
                out.push_str(&" ".repeat(pad));
                out.push_str(s);
            } else {
                out.push_str(s);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str(if i + 1 < c.len() { "  " } else { "\n" });
        }
        out
    };
    let mut out = line(&head.map(String::from));
    for c in &cells {
        out.push_str(&line(c));
    }
    for r in rows.iter().filter(|r| r.note.is_some()) {
        out.push_str(&format!(
            "{}: {}\n",
            r.id,
            r.note.as_deref().unwrap_or_default()
        ));
    }
    out
}

/// Runs one experiment as a child trial, printing its progress to stderr.
fn run_one(exp: &Experiment, log: &Mutex<()>) -> Row {
    let t0 = Instant::now();
    let mut row = Row {
        id: exp.id.into(),
        experiment: exp.title.into(),
        settings: settings(&exp.cfg),
        epochs: exp.cfg.epochs,
        test_top1: None,
        wall_secs: 0.0,
        skipped_steps: 0,
        underflow_fraction: 0.0,
        note: None,
    };
    let say = |msg: String| {
        let _guard = log.lock().unwrap_or_else(|p| p.into_inner());
        eprintln!("[{}] {msg}", exp.id);
    };
    say(format!("{}: {}", exp.title, row.settings));
    let result = (|| -> Result<()> {
        let exe = std::env::current_exe().context("locating the jizhi-tune executable")?;
        let mut child = Command::new(exe)
            .args(command_line(&exp.cfg, None))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the trial")?;
        let stderr = child.stderr.take();
        let err_text = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut e) = stderr {
                let _ = std::io::Read::read_to_string(&mut e, &mut s);
            }
            s
        });
        let stdout = child.stdout.take().context("trial stdout")?;
        let mut underflow = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the trial's progress")?;
            match serde_json::from_str::<TrialLine>(&line) {
                Ok(TrialLine::Epoch(e)) => {
                    row.skipped_steps += e.skipped_steps;
                    underflow.push(e.underflow_fraction);
                    say(format!(
                        "epoch {}/{}: test top-1 {}, loss {:.4}, {:.0} images/s, {} elapsed",
                        e.epoch,
                        exp.cfg.epochs,
                        percent(e.val_top1),
                        e.train_loss,
                        e.images_per_sec,
                        duration(e.wall_secs)
                    ));
                }
                Ok(TrialLine::Final(f)) => {
                    row.test_top1 = Some(f.final_val_top1);
                    row.note = f.diverged;
                }
                Err(_) => tracing::debug!(%line, "not a progress line"),
            }
        }
        let status = child.wait().context("waiting for the trial")?;
        let err_text = err_text.join().unwrap_or_default();
        if !underflow.is_empty() {
            row.underflow_fraction = underflow.iter().sum::<f64>() / underflow.len() as f64;
        }
        if !status.success() || row.test_top1.is_none() {
            let last = err_text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no output");
            anyhow::bail!("trial failed ({status}): {last}");
        }
        Ok(())
    })();
    row.wall_secs = t0.elapsed().as_secs_f64();
    if let Err(e) = result {
        row.test_top1 = None;
        row.note = Some(format!("{e:#}"));
        say(format!("failed: {e:#}"));
    } else {
        say(format!(
            "done: test top-1 {} in {}",
            row.test_top1.map_or("-".into(), percent),
            duration(row.wall_secs)
        ));
    }
    row
}

/// Runs the selected experiments, `jobs` at a time, and prints the table (and writes `--out`).
pub fn run(args: &ReproduceArgs) -> Result<()> {
    if args.epochs == 0 {
        return Err(BadInput("--epochs must be at least 1".into()).into());
    }
    if args.jobs == 0 {
        return Err(BadInput("--jobs must be at least 1".into()).into());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or((cores / args.jobs).max(1));
    let mut base = TrainConfig::proxy_default(&args.data_dir);
    base.epochs = args.epochs;
    base.threads = threads;
    base.seed = args.seed;
    base.data_fraction = args.data_fraction;
    base.augment = false;
    let chosen = select(experiments(&base), args.only.as_deref())?;
    for e in &chosen {
        e.cfg
            .validate()
            .map_err(|err| BadInput(format!("experiment {}: {err}", e.id)))?;
    }
    let missing: Vec<&str> = jizhi_trainer::data::FILES
        .iter()
        .copied()
        .filter(|f| !args.data_dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(BadInput(format!(
            "--data-dir {}: Fashion-MNIST is missing ({}); install it with \
             `sudo apt-get install dataset-fashion-mnist`",
            args.data_dir.display(),
            missing.join(", ")
        ))
        .into());
    }
    eprintln!(
        "reproduce: {} experiment(s), {} epoch(s) each, {} at a time with {threads} thread(s) each",
        chosen.len(),
        args.epochs,
        args.jobs.min(chosen.len())
    );
    let log = Mutex::new(());
    let next = Mutex::new(0usize);
    let rows: Mutex<Vec<Option<Row>>> = Mutex::new(vec![None; chosen.len()]);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(chosen.len()) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(exp) = chosen.get(i) else { break };
                let row = run_one(exp, &log);
                rows.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(row);
            });
        }
    });
    let rows: Vec<Row> = rows
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    print!("{}", table(&rows));
    if let Some(path) = &args.out {
        let json = serde_json::to_string_pretty(&rows)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if rows.iter().any(|r| r.test_top1.is_none()) {
        anyhow::bail!(
            "{} experiment(s) failed",
            rows.iter().filter(|r| r.test_top1.is_none()).count()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            ..TrainConfig::proxy_default("/data")
        }
    }

    #[test]
    fn experiments_follow_the_issue() {
        let all = experiments(&base());
        let ids: Vec<&str> = all.iter().map(|e| e.id).collect();
        assert_eq!(ids, ["a", "b", "c1", "c2", "c3", "d1", "d2", "e1", "e2"]);
        let by = |id: &str| &all.iter().find(|e| e.id == id).expect("listed").cfg;
        let a = by("a");
        assert_eq!(
            (a.batch, a.optimizer, a.peak_lr, a.lr_decay),
            (256, OptimizerKind::Sgd, 0.05, LrDecay::Cosine)
        );
        assert_eq!((a.momentum, a.weight_decay, a.augment), (0.9, 5e-4, false));
        let b = by("b");
        assert_eq!(
            (b.batch, b.optimizer, b.peak_lr, b.warmup_epochs),
            (3072, OptimizerKind::Sgd, 0.586, 2.0)
        );
        for (id, eta) in [("c1", 0.001), ("c2", 0.01), ("c3", 0.02)] {
            let c = by(id);
            assert_eq!(
                (c.optimizer, c.lars_eta, c.peak_lr, c.poly_power),
                (OptimizerKind::Lars, eta, 0.586, 2.0)
            );
            assert!(!c.decay_bias_and_bn && c.bn5 && c.precision == Precision::Fp32);
        }
        // (d) and (e) each change one thing against c2
        let c2 = by("c2");
        assert_eq!(
            *by("d1"),
            TrainConfig {
                precision: Precision::Fp16,
                loss_scale: DYNAMIC_LOSS_SCALE,
                ..c2.clone()
            }
        );
        assert_eq!(
            *by("d2"),
            TrainConfig {
                precision: Precision::Fp16Naive,
                loss_scale: DYNAMIC_LOSS_SCALE,
                ..c2.clone()
            }
        );
        assert_eq!(
            *by("e1"),
            TrainConfig {
                decay_bias_and_bn: true,
                ..c2.clone()
            }
        );
        assert_eq!(
            *by("e2"),
            TrainConfig {
                bn5: false,
                ..c2.clone()
            }
        );
        assert!(all
            .iter()
            .all(|e| e.cfg.epochs == 10 && e.cfg.validate().is_ok()));
    }

    #[test]
    fn only_selects_groups_and_single_runs() {
        let pick = |s: &str| -> Vec<&'static str> {
            select(experiments(&base()), Some(s))
                .expect("valid")
                .iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(pick("a,c"), ["a", "c1", "c2", "c3"]);
        assert_eq!(pick("d2, b"), ["b", "d2"]);
        for bad in ["f", "c9", ","] {
            let err = select(experiments(&base()), Some(bad)).expect_err(bad);
            assert!(err.downcast_ref::<BadInput>().is_some(), "{bad}: {err}");
        }
    }

    #[test]
    fn table_lines_up_and_shows_failures() {
        let rows = vec![
            Row {
                id: "a".into(),
                experiment: "batch 256 SGD baseline".into(),
                settings: settings(&experiments(&base())[0].cfg),
                epochs: 10,
                test_top1: Some(0.9234),
                wall_secs: 125.0,
                skipped_steps: 0,
                underflow_fraction: 0.0,
                note: None,
            },
            Row {
                id: "d2".into(),
                experiment: "fp16-naive".into(),
                settings: "x".into(),
                epochs: 10,
                test_top1: None,
                wall_secs: 3.0,
                skipped_steps: 12,
                underflow_fraction: 0.0123,
                note: Some("trial failed".into()),
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("exp")
                && lines[0].contains("top-1")
                && lines[0].contains("underflow")
        );
        assert!(
            lines[1].contains("92.3%") && lines[1].contains("2m05s"),
            "{t}"
        );
        assert!(
            lines[1].contains("batch 256 SGD, lr 0.05, cosine, m 0.9, wd 0.0005, fp32"),
            "{t}"
        );
        assert!(
            lines[2].contains("failed") && lines[2].contains("1.23e-2"),
            "{t}"
        );
        assert_eq!(lines[1].len(), lines[2].len(), "columns line up:\n{t}");
        assert_eq!(lines[3], "d2: trial failed");
    }
}
