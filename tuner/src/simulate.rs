//! `jizhi-tune simulate`: the cost model's predicted step time, throughput and scaling
//! efficiency of the full-size models from 1 to 2048 GPUs, per communication configuration,
//! next to what the seed system reported.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use jizhi_trainer::costmodel::{
    calibrate_in_process, measure::measure_proxy, predict, Calibration, Cluster, Config, FullModel,
    Gpu, Network, Prediction, Scenario,
};
use jizhi_trainer::ModelKind;

use crate::commands::BadInput;

/// Help text after the options: the model, its parameters, and how it compares with the seed.
pub const AFTER_HELP: &str = "\
The model: each gradient tensor (fp16, backward order) becomes final at a time derived from the
layer's FLOPs and the GPU's achieved rate; messages (fusion buckets inside segments) queue on one
communication stream, a segment's once its last gradient is final. A ring all-reduce of n bytes
over P ranks costs 2(P-1)a + 2(P-1)/P n b + (P-1)/P n g on its slowest link; hierarchical is a
reduce inside each node, a ring among the node leaders and a broadcast; hybrid takes the cheaper
per message. Step = forward + max(backward, last all-reduce done); efficiency = one-GPU step /
step (weak scaling, fixed local batch). 'all' searches split points (exact dynamic programming)
and the fusion threshold.

Against the seed (P40, 8 per node on PCIe, local batch 64 AlexNet / 32 ResNet-50):
  ResNet-50 efficiency with all techniques at 1024 / 2048 GPUs: seed 99 % / 97 %; predicted
  97.6 % / 95.4 % on 100gbe (a 15 us per ring step), 99.1 % / 98.4 % on ib-edr (5 us).
  Speed-up over NCCL-based training at 1024 GPUs: seed 3x AlexNet, 11x ResNet-50; predicted
  10x / 31x over the unfused ring on 100gbe, 4.5x / 11x on ib-edr, but only 1.5x / 1.2x over a
  fused ring. The plain baseline's time is latency, 161 tensors x 2(P-1) ring steps, so the
  ratio scales with the assumed per-step latency; the seed's 11x matches about 5 us per step.
  The model assumes no contention between communication and backward and a PCIe ring of
  10 GB/s inside nodes (the slowest link for every network faster than 100 Gb/s).

Examples:
  jizhi-tune simulate                                   P40s on 100 Gb/s Ethernet, both models
  jizhi-tune simulate --network ib-edr --model resnet50
  jizhi-tune simulate --gpu h200 --network ib-ndr --max-ranks 1024
  jizhi-tune simulate --calibrate                       also fit the in-process collective
  jizhi-tune simulate --json > prediction.json\n";

/// Options of `jizhi-tune simulate`.
#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Model(s) to predict.
    #[arg(long, value_enum, default_value_t = ModelArg::All)]
    pub model: ModelArg,
    /// GPU (compute rate, memory bandwidth, link inside a node).
    #[arg(long, value_enum, default_value_t = GpuArg::P40)]
    pub gpu: GpuArg,
    /// Network between nodes.
    #[arg(long, value_enum, default_value_t = NetworkArg::Eth100)]
    pub network: NetworkArg,
    /// Images per GPU per step [default: the seed's 64 for AlexNet-BN, 32 for ResNet-50].
    #[arg(long, value_name = "N")]
    pub local_batch: Option<usize>,
    /// Largest rank count; the table has every power of two up to it.
    #[arg(long, value_name = "P", default_value_t = 2048)]
    pub max_ranks: usize,
    /// Print one JSON object (rows and the comparison with the seed) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also time the in-process collective of CPU ranks, fit its α and β, measure the proxy
    /// model's compute profile here, and predict the proxy on those ranks.
    #[arg(long)]
    pub calibrate: bool,
    /// CPU ranks (threads) of the calibration; the proxy table goes up to this many.
    #[arg(long, value_name = "P", default_value_t = 2)]
    pub calibrate_ranks: usize,
}

/// Models of `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// AlexNet-BN (62 M parameters, 119 MiB in fp16, fc6 alone 72 MiB).
    AlexnetBn,
    /// ResNet-50 (161 gradient tensors, 48.7 MiB in fp16).
    Resnet50,
    /// Both.
    All,
}

/// GPUs of `--gpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpuArg {
    /// Tesla P40: 4.8 TFLOP/s achieved fp32 (40 % of 12), PCIe 3.0 inside the node (5 µs, 10 GB/s).
    P40,
    /// H200: 79 TFLOP/s achieved (8 % of 989 bf16), NVLink 4 inside the node (2 µs, 360 GB/s).
    H200,
}

/// Networks of `--network` (α per ring step, achieved bandwidth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// 100 Gb/s Ethernet, RoCE: 15 µs, 11.25 GB/s.
    #[value(name = "100gbe")]
    Eth100,
    /// InfiniBand EDR 100 Gb/s: 5 µs, 11.25 GB/s.
    IbEdr,
    /// InfiniBand HDR 200 Gb/s: 4 µs, 22.5 GB/s.
    IbHdr,
    /// InfiniBand NDR 400 Gb/s: 3 µs, 45 GB/s.
    IbNdr,
}

impl GpuArg {
    fn gpu(self) -> Gpu {
        match self {
            GpuArg::P40 => Gpu::P40,
            GpuArg::H200 => Gpu::H200,
        }
    }
}

impl NetworkArg {
    fn network(self) -> Network {
        match self {
            NetworkArg::Eth100 => Network::Eth100,
            NetworkArg::IbEdr => Network::IbEdr,
            NetworkArg::IbHdr => Network::IbHdr,
            NetworkArg::IbNdr => Network::IbNdr,
        }
    }
}

/// A figure the seed reported, and the model's prediction of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeedCheck {
    /// What is compared.
    pub figure: String,
    /// The seed's number.
    pub seed: f64,
    /// The cost model's number.
    pub predicted: f64,
}

/// Runs `jizhi-tune simulate`.
pub fn run(args: &SimulateArgs) -> Result<()> {
    if args.max_ranks == 0 {
        bail!(BadInput("--max-ranks must be at least 1".into()));
    }
    if args.local_batch == Some(0) {
        bail!(BadInput("--local-batch must be at least 1".into()));
    }
    if args.calibrate && args.calibrate_ranks < 2 {
        bail!(BadInput(
            "--calibrate-ranks must be at least 2 (one rank moves no data)".into()
        ));
    }
    let models: Vec<FullModel> = match args.model {
        ModelArg::AlexnetBn => vec![FullModel::AlexnetBn],
        ModelArg::Resnet50 => vec![FullModel::Resnet50],
        ModelArg::All => FullModel::ALL.to_vec(),
    };
    let (gpu, network) = (args.gpu.gpu(), args.network.network());
    let worlds: Vec<usize> = (0..usize::BITS)
        .map(|e| 1usize << e)
        .take_while(|&p| p <= args.max_ranks)
        .collect();
    let mut scenarios = Vec::new();
    let mut rows = Vec::new();
    for m in models {
        let s = Scenario::full(
            m,
            gpu,
            network,
            args.local_batch.unwrap_or(m.seed_local_batch()),
        );
        for &p in &worlds {
            for c in Config::ALL {
                rows.push(predict(&s, p, c)?);
            }
        }
        scenarios.push(s);
    }
    let checks = seed_checks(&rows);
    let proxy = if args.calibrate {
        Some(calibrated_proxy(args)?)
    } else {
        None
    };
    if args.json {
        let out = serde_json::json!({
            "gpu": gpu.name(),
            "network": network.name(),
            "scenarios": scenarios.iter().map(|s| serde_json::json!({
                "model": s.model,
                "local_batch": s.local_batch,
                "single_gpu_step_secs": s.profile.compute_secs(),
                "forward_secs": s.profile.forward_secs,
                "backward_secs": s.profile.backward_secs,
                "gradient_bytes": s.sizes.iter().sum::<u64>(),
                "tensors": s.sizes.len(),
                "cluster": s.cluster,
            })).collect::<Vec<_>>(),
            "rows": rows,
            "seed_checks": checks,
            "calibration": proxy.as_ref().map(|(c, _, _)| c),
            "proxy_rows": proxy.as_ref().map(|(_, _, r)| r),
        });
        println!("{out}");
        return Ok(());
    }
    print!("{}", render(gpu, network, &scenarios, &rows, &checks));
    if let Some((cal, scenario, rows)) = &proxy {
        print!("{}", render_calibration(cal, scenario, rows));
    }
    Ok(())
}

/// Sizes the calibration times (bytes of f32 payload): 4 KiB to 4 MiB, the range of the
/// proxy's messages (its whole gradient is 0.75 MiB). Larger buffers leave the caches and run
/// on a slower line, which one fit cannot describe.
const CALIBRATION_SIZES: [u64; 6] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/// Calibrates the in-process collective, measures the proxy, and predicts it on CPU ranks.
fn calibrated_proxy(args: &SimulateArgs) -> Result<(Calibration, Scenario, Vec<Prediction>)> {
    let world = args.calibrate_ranks;
    eprintln!(
        "calibrating: ring all-reduce on {world} in-process ranks at {} sizes...",
        CALIBRATION_SIZES.len()
    );
    let cal = calibrate_in_process(world, &CALIBRATION_SIZES, 9)?;
    let batch = args.local_batch.unwrap_or(PROXY_LOCAL_BATCH);
    eprintln!("measuring the proxy's forward and backward at local batch {batch}...");
    let measured = measure_proxy(ModelKind::AlexnetBnProxy, batch, 1, 7);
    let scenario = Scenario {
        model: "alexnet-bn-proxy".into(),
        sizes: measured.inventory.iter().map(|p| p.bytes).collect(),
        profile: measured.profile,
        // One shared-memory "node": every hop is the calibrated one.
        cluster: Cluster {
            intra: cal.hop,
            inter: cal.hop,
            gpus_per_node: world,
        },
        local_batch: batch,
    };
    let mut rows = Vec::new();
    for p in (0..usize::BITS)
        .map(|e| 1usize << e)
        .take_while(|&p| p <= world)
    {
        for c in Config::ALL {
            rows.push(predict(&scenario, p, c)?);
        }
    }
    Ok((cal, scenario, rows))
}

/// Local batch of the proxy when `--local-batch` is not given.
const PROXY_LOCAL_BATCH: usize = 32;

fn render_calibration(cal: &Calibration, scenario: &Scenario, rows: &[Prediction]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\ncalibration: f32 ring all-reduce on {} in-process ranks (median of 9 calls per size)",
        cal.world
    );
    for &(b, t) in &cal.samples {
        let _ = writeln!(
            s,
            "  {:>9} B  {:>10.1} µs  fit {:>10.1} µs",
            b,
            t * 1e6,
            (cal.line.alpha + cal.line.beta * b as f64) * 1e6
        );
    }
    let _ = writeln!(
        s,
        "  line: {:.1} µs + bytes / {:.2} GB/s;  per ring step: α {:.2} µs, β {:.3} ns/B ({:.2} GB/s)",
        cal.line.alpha * 1e6,
        1.0 / cal.line.beta / 1e9,
        cal.hop.alpha * 1e6,
        cal.hop.beta * 1e9,
        1.0 / cal.hop.beta / 1e9
    );
    let p = &scenario.profile;
    let _ = writeln!(
        s,
        "{} measured here: {} tensors, {:.2} MiB f32, local batch {}, forward {:.2} ms, backward {:.2} ms",
        scenario.model,
        scenario.sizes.len(),
        scenario.sizes.iter().sum::<u64>() as f64 / (1 << 20) as f64,
        scenario.local_batch,
        p.forward_secs * 1e3,
        p.backward_secs * 1e3
    );
    let _ = writeln!(
        s,
        "  (predicted as if every rank had its own core; CPU ranks sharing cores run slower)"
    );
    let _ = writeln!(
        s,
        "{:<17} {:>3}  {:<16} {:>9} {:>7} {:>5} {:>4}  {:<10}",
        "model", "P", "configuration", "step ms", "eff %", "msgs", "S", "threshold"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<17} {:>3}  {:<16} {:>9.3} {:>7.1} {:>5} {:>4}  {:<10}",
            r.model,
            r.world,
            r.config.label(),
            r.step_secs * 1e3,
            r.efficiency * 100.0,
            r.timeline.messages,
            r.segments,
            threshold(r.segmentation.threshold),
        );
    }
    s
}

/// The seed's headline figures next to the predictions, for those the rows cover.
pub fn seed_checks(rows: &[Prediction]) -> Vec<SeedCheck> {
    let find = |model: &str, world: usize, c: Config| {
        rows.iter()
            .find(|r| r.model == model && r.world == world && r.config == c)
    };
    let mut out = Vec::new();
    for (world, seed) in [(1024, 0.99), (2048, 0.97)] {
        if let Some(r) = find("resnet50", world, Config::All) {
            out.push(SeedCheck {
                figure: format!("resnet50 scaling efficiency at {world} GPUs, all techniques"),
                seed,
                predicted: r.efficiency,
            });
        }
    }
    // The seed's baseline is "NCCL-based training"; it is bracketed by the unfused ring (the
    // plain row) and the fused ring (what a Horovod-style framework does by default).
    for (model, seed) in [("alexnet-bn", 3.0), ("resnet50", 11.0)] {
        for (baseline, label) in [
            (Config::Plain, "plain NCCL-like (unfused ring)"),
            (Config::Fusion, "fused ring"),
        ] {
            if let (Some(base), Some(all)) =
                (find(model, 1024, baseline), find(model, 1024, Config::All))
            {
                out.push(SeedCheck {
                    figure: format!("{model} speed-up at 1024 GPUs over {label}"),
                    seed,
                    predicted: base.step_secs / all.step_secs,
                });
            }
        }
    }
    out
}

fn render(
    gpu: Gpu,
    network: Network,
    scenarios: &[Scenario],
    rows: &[Prediction],
    checks: &[SeedCheck],
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let us = |x: f64| x * 1e6;
    let gbs = |beta: f64| 1.0 / beta / 1e9;
    if let Some(sc) = scenarios.first() {
        let c = &sc.cluster;
        let _ = writeln!(
            s,
            "gpu {} ({:.1} TFLOP/s achieved), {} GPUs per node; inside a node α {:.1} µs, {:.1} GB/s; \
             between nodes ({}) α {:.1} µs, {:.2} GB/s; γ {:.2} ps/B; fp16 gradients",
            gpu.name(),
            gpu.achieved_flops() / 1e12,
            c.gpus_per_node,
            us(c.intra.alpha),
            gbs(c.intra.beta),
            network.name(),
            us(c.inter.alpha),
            gbs(c.inter.beta),
            c.intra.gamma * 1e12,
        );
    }
    for sc in scenarios {
        let _ = writeln!(
            s,
            "{}: {} tensors, {:.1} MiB, local batch {}, one GPU {:.1} ms/step (forward {:.1}, backward {:.1})",
            sc.model,
            sc.sizes.len(),
            sc.sizes.iter().sum::<u64>() as f64 / (1 << 20) as f64,
            sc.local_batch,
            sc.profile.compute_secs() * 1e3,
            sc.profile.forward_secs * 1e3,
            sc.profile.backward_secs * 1e3,
        );
    }
    let _ = writeln!(
        s,
        "\n{:<11} {:>5}  {:<16} {:>11} {:>12} {:>7} {:>5} {:>4}  {:<10}",
        "model", "P", "configuration", "step ms", "images/s", "eff %", "msgs", "S", "threshold"
    );
    let mut last = None;
    for r in rows {
        if last.is_some() && last != Some((r.model.as_str(), r.world)) {
            s.push('\n');
        }
        last = Some((r.model.as_str(), r.world));
        let _ = writeln!(
            s,
            "{:<11} {:>5}  {:<16} {:>11.2} {:>12.0} {:>7.1} {:>5} {:>4}  {:<10}",
            r.model,
            r.world,
            r.config.label(),
            r.step_secs * 1e3,
            r.images_per_sec,
            r.efficiency * 100.0,
            r.timeline.messages,
            r.segments,
            threshold(r.segmentation.threshold),
        );
    }
    if !checks.is_empty() {
        let _ = writeln!(s, "\nseed's figures vs this model:");
        for c in checks {
            let _ = writeln!(
                s,
                "  {:<72} seed {:>6}  predicted {:>7}",
                c.figure,
                figure(&c.figure, c.seed),
                figure(&c.figure, c.predicted)
            );
        }
    }
    s
}

fn figure(name: &str, v: f64) -> String {
    if name.contains("efficiency") {
        format!("{:.1} %", v * 100.0)
    } else {
        format!("{v:.1}×")
    }
}

fn threshold(t: u64) -> String {
    match t {
        0 => "none".into(),
        u64::MAX => "segment".into(),
        t if t >= 1 << 20 => format!("{} MiB", t >> 20),
        t => format!("{} KiB", t >> 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_rank_count_and_configuration() {
        let s = Scenario::full(FullModel::Resnet50, Gpu::P40, Network::Eth100, 32);
        let rows: Vec<Prediction> = [1, 1024, 2048]
            .iter()
            .flat_map(|&p| Config::ALL.map(|c| predict(&s, p, c).expect("ok")))
            .collect();
        let text = render(Gpu::P40, Network::Eth100, &[s], &rows, &seed_checks(&rows));
        assert!(text.contains("plain NCCL-like"));
        assert!(text.contains("all (seed)"));
        assert!(text.contains("resnet50 scaling efficiency at 2048 GPUs"));
        // Only the figures the rows cover: no AlexNet speed-up without AlexNet rows.
        assert_eq!(seed_checks(&rows).len(), 4);
        assert!(!text.contains("alexnet-bn speed-up"));
    }

    #[test]
    fn bad_options_are_bad_input() {
        let args = SimulateArgs {
            model: ModelArg::Resnet50,
            gpu: GpuArg::P40,
            network: NetworkArg::Eth100,
            local_batch: None,
            max_ranks: 0,
            json: false,
            calibrate: false,
            calibrate_ranks: 2,
        };
        let e = run(&args).expect_err("no ranks");
        assert!(crate::commands::is_bad_input(&e), "{e:#}");
        let e = run(&SimulateArgs {
            max_ranks: 8,
            local_batch: Some(0),
            ..args.clone()
        })
        .expect_err("empty batch");
        assert!(crate::commands::is_bad_input(&e));
        let e = run(&SimulateArgs {
            max_ranks: 8,
            calibrate: true,
            calibrate_ranks: 1,
            ..args
        })
        .expect_err("one rank");
        assert!(e.to_string().contains("--calibrate-ranks"));
    }

    #[test]
    fn thresholds_read_as_sizes() {
        assert_eq!(threshold(0), "none");
        assert_eq!(threshold(64 << 10), "64 KiB");
        assert_eq!(threshold(4 << 20), "4 MiB");
        assert_eq!(threshold(u64::MAX), "segment");
    }
}
