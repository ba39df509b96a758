//! Runs one training from the command line and prints every epoch report.
//!
//! `cargo run -p jizhi-trainer --release --example train -- batch=256 threads=2 epochs=2 lr=0.1`
//! Keys: batch threads epochs fraction lr warmup poly wd momentum nesterov eta precision
//! (fp32|fp16|bf16|fp16-naive) optimizer (sgd|lars) scale (static factor) dyn (dynamic init)
//! seed bn5 fusion.

use jizhi_trainer::{train, LossScale, OptimizerKind, Precision, TrainConfig};

fn main() {
    let mut cfg = TrainConfig::proxy_default(jizhi_trainer::data::FASHION_MNIST_DIR);
    for arg in std::env::args().skip(1) {
        let Some((k, v)) = arg.split_once('=') else {
            eprintln!("ignoring argument {arg:?} (expected key=value)");
            continue;
        };
        let f = || {
            v.parse::<f64>()
                .unwrap_or_else(|_| panic!("{k}: not a number: {v}"))
        };
        match k {
            "batch" => cfg.batch = f() as usize,
            "threads" => cfg.threads = f() as usize,
            "epochs" => cfg.epochs = f() as u32,
            "fraction" => cfg.data_fraction = f(),
            "lr" => cfg.peak_lr = f(),
            "warmup" => cfg.warmup_epochs = f(),
            "poly" => cfg.poly_power = f(),
            "wd" => cfg.weight_decay = f(),
            "momentum" => cfg.momentum = f(),
            "nesterov" => cfg.nesterov = v == "true" || v == "1",
            "eta" => cfg.lars_eta = f(),
            "seed" => cfg.seed = f() as u64,
            "bn5" => cfg.bn5 = v == "true" || v == "1",
            "fusion" => cfg.fusion_threshold_bytes = f() as u64,
            "scale" => cfg.loss_scale = LossScale::Static { factor: f() },
            "dyn" => {
                cfg.loss_scale = LossScale::Dynamic {
                    init: f(),
                    growth_interval: 200,
                }
            }
            "optimizer" => {
                cfg.optimizer = if v == "lars" {
                    OptimizerKind::Lars
                } else {
                    OptimizerKind::Sgd
                }
            }
            "precision" => {
                cfg.precision = match v {
                    "fp16" => Precision::Fp16,
                    "bf16" => Precision::Bf16,
                    "fp16-naive" => Precision::Fp16Naive,
                    _ => Precision::Fp32,
                }
            }
            _ => eprintln!("unknown key {k}"),
        }
    }
    eprintln!("{cfg:?}");
    let out = train(&cfg, &mut |r| {
        println!(
            "epoch {} step {} loss {:.4} top1 {:.4} img/s {:.0} scale {} skipped {} underflow {:.2e} wait {:.3}s wall {:.1}s",
            r.epoch, r.step, r.train_loss, r.val_top1, r.images_per_sec, r.loss_scale, r.skipped_steps, r.underflow_fraction, r.data_wait_secs, r.wall_secs
        )
    });
    match out {
        Ok(o) => println!(
            "final {:.4} best {:.4} diverged {:?} allreduce/step {} wall {:.1}s",
            o.final_val_top1, o.best_val_top1, o.diverged, o.allreduce_calls_per_step, o.wall_secs
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
