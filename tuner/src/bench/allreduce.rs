//! `jizhi-tune bench allreduce`: bus bandwidth of the in-process all-reduce (nccl-tests'
//! definition: message bytes / time × 2(P−1)/P) per rank count, algorithm and message size,
//! next to the bandwidth of a single-threaded memcpy of the same sizes measured in the same run.

use crate::commands::BadInput;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use half::{bf16, f16};
use jizhi_trainer::collective::{Algorithm, Collective, Payload, SharedMemoryRank};
use serde::Serialize;
use std::sync::mpsc;
use std::time::Instant;

/// Options of `jizhi-tune bench allreduce`.
#[derive(Debug, Args, Clone)]
pub struct AllreduceBenchArgs {
    /// Rank counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16")]
    pub ranks: Vec<usize>,
    /// Smallest message (bytes; K, M, G suffixes are powers of 1024).
    #[arg(long, value_parser = parse_bytes, default_value = "4K")]
    pub min_bytes: u64,
    /// Largest message; sizes go up by factors of 4 from the smallest.
    #[arg(long, value_parser = parse_bytes, default_value = "256M")]
    pub max_bytes: u64,
    /// Algorithms to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ring,hierarchical,hybrid"
    )]
    pub algorithm: Vec<AlgorithmName>,
    /// Ranks per group of the hierarchical and hybrid algorithms (reduced to a divisor of P).
    #[arg(long, default_value_t = 4)]
    pub group: usize,
    /// Message size from which the hybrid algorithm uses the ring.
    #[arg(long, value_parser = parse_bytes, default_value = "1M")]
    pub threshold: u64,
    /// Element type of the messages.
    #[arg(long, value_enum, default_value_t = PayloadType::F32)]
    pub payload: PayloadType,
    /// Timed repetitions per point (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
}

/// An all-reduce algorithm named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmName {
    /// Flat ring.
    Ring,
    /// Reduce-scatter in groups, rings among group leaders, all-gather in groups.
    Hierarchical,
    /// Hierarchical below the threshold, ring at or above.
    Hybrid,
}

/// Element type of a benchmark's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl PayloadType {
    /// Bytes per element.
    pub fn width(self) -> u64 {
        match self {
            PayloadType::F32 => 4,
            PayloadType::F16 | PayloadType::Bf16 => 2,
        }
    }
}

impl AlgorithmName {
    /// The algorithm at `world` ranks; the group is reduced to the largest common divisor.
    pub fn at(self, world: usize, group: usize, threshold: u64) -> Algorithm {
        let group = gcd(world, group.max(1));
        match self {
            AlgorithmName::Ring => Algorithm::Ring,
            AlgorithmName::Hierarchical => Algorithm::Hierarchical { group },
            AlgorithmName::Hybrid => Algorithm::Hybrid { group, threshold },
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// How an algorithm is shown in tables and JSON.
pub fn describe(algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::Ring => "ring".into(),
        Algorithm::Hierarchical { group } => format!("hierarchical k={group}"),
        Algorithm::Hybrid { group, threshold } => format!("hybrid k={group} <{}", human(threshold)),
    }
}

/// Parses a byte count: `4096`, `64K`, `1M`, `256MiB`, `1G` (suffixes are powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count (e.g. 4096, 64K, 256M)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A byte count the way people write it: 4 KiB, 1.5 MiB.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An element type the benchmarks fill buffers with.
pub trait BenchElement: Copy + Send + Sync + 'static {
    /// The value `v` in this type.
    fn of(v: f32) -> Self;
    /// The buffer as a collective payload.
    fn payload(buf: &mut [Self]) -> Payload<'_>;
}

impl BenchElement for f32 {
    fn of(v: f32) -> Self {
        v
    }
    fn payload(buf: &mut [Self]) -> Payload<'_> {
        Payload::F32(buf)
    }
}

impl BenchElement for f16 {
    fn of(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn payload(buf: &mut [Self]) -> Payload<'_> {
        Payload::F16(buf)
    }
}

impl BenchElement for bf16 {
    fn of(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn payload(buf: &mut [Self]) -> Payload<'_> {
        Payload::Bf16(buf)
    }
}

/// Runs `world` ranks, one thread each with its own buffer of `len` elements (touched first by
/// that thread). In each of `warmup + reps` rounds every rank runs `work` once per job, the
/// jobs back to back, so a slow spell of a shared machine hits every job alike. Rank 0 times
/// each run from a common start (an empty all-reduce, i.e. a barrier) to the end of its `work`,
/// which ends with a collective, so the time covers every rank. `report` gets every job's
/// samples, in seconds, once the rounds are done.
pub fn time_on_ranks<T: BenchElement, J: Sync>(
    world: usize,
    algorithm: Algorithm,
    len: usize,
    jobs: &[J],
    (warmup, reps): (usize, usize),
    work: impl Fn(&mut dyn Collective, &mut [T], &J) -> Result<()> + Sync,
    mut report: impl FnMut(usize, Vec<f64>),
) -> Result<()> {
    let ranks = SharedMemoryRank::group(world, algorithm)?;
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let running: Vec<_> = ranks
            .into_iter()
            .map(|mut rank| {
                let (tx, work) = (tx.clone(), &work);
                s.spawn(move || -> Result<()> {
                    let mut buf = vec![T::of(1.0); len];
                    let mut samples = vec![Vec::with_capacity(reps); jobs.len()];
                    for round in 0..warmup + reps {
                        for (j, job) in jobs.iter().enumerate() {
                            rank.all_reduce(T::payload(&mut []))?;
                            let start = Instant::now();
                            work(&mut rank, &mut buf, job)?;
                            if round >= warmup {
                                samples[j].push(start.elapsed().as_secs_f64());
                            }
                        }
                        if rank.rank() == 0 {
                            eprint!(
                                "\r  {world} ranks, {}: round {}/{}   ",
                                describe(algorithm),
                                round + 1,
                                warmup + reps
                            );
                        }
                    }
                    if rank.rank() == 0 {
                        eprint!("\r{:60}\r", "");
                        let _ = tx.send(samples);
                    }
                    Ok(())
                })
            })
            .collect();
        drop(tx);
        for samples in rx {
            for (j, s) in samples.into_iter().enumerate() {
                report(j, s);
            }
        }
        for (r, handle) in running.into_iter().enumerate() {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("rank {r} panicked"))?
                .with_context(|| format!("rank {r} of {world}"))?;
        }
        Ok(())
    })
}

/// Median of samples (sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    super::quantile(samples, 0.5)
}

/// One measured point.
#[derive(Debug, Clone, Serialize)]
struct Row {
    ranks: usize,
    algorithm: String,
    bytes: u64,
    secs: f64,
    alg_gbps: f64,
    bus_gbps: f64,
    memcpy_gbps: f64,
    of_memcpy: f64,
}

/// memcpy bandwidth at one size.
#[derive(Debug, Clone, Serialize)]
struct Memcpy {
    bytes: u64,
    gbps: f64,
}

/// The figures, printed as the last line.
#[derive(Debug, Serialize)]
struct Figures {
    payload: PayloadType,
    reps: usize,
    /// Largest message measured: the "large message" the two headline figures refer to.
    large_bytes: u64,
    /// memcpy bandwidth at that size.
    memcpy_gbps: f64,
    /// Best bus bandwidth at that size, over rank counts and algorithms.
    best_bus_gbps: f64,
    best_of_memcpy: f64,
    best_ranks: usize,
    best_algorithm: String,
    memcpy: Vec<Memcpy>,
    rows: Vec<Row>,
}

/// Runs the benchmark.
pub fn run(args: &AllreduceBenchArgs) -> Result<()> {
    validate(args)?;
    let sizes = sizes(args.min_bytes, args.max_bytes, args.payload.width());
    let memcpy = measure_memcpy(&sizes, args.reps);
    println!("{:>10}  {:>12}", "bytes", "memcpy GB/s");
    for m in &memcpy {
        println!("{:>10}  {:>12.2}", human(m.bytes), m.gbps);
    }
    println!(
        "\n{:>5}  {:<24} {:>10}  {:>11}  {:>9}  {:>9}  {:>9}",
        "ranks", "algorithm", "bytes", "median µs", "alg GB/s", "bus GB/s", "of memcpy"
    );
    let mut rows = Vec::new();
    for &world in &args.ranks {
        for name in &args.algorithm {
            let algorithm = name.at(world, args.group, args.threshold);
            let largest = *sizes.last().unwrap_or(&0);
            let len = (largest / args.payload.width()) as usize;
            let mut on_row = |j: usize, mut samples: Vec<f64>| {
                let bytes = sizes[j];
                let secs = median(&mut samples);
                let alg = bytes as f64 / secs / 1e9;
                let bus = alg * 2.0 * (world as f64 - 1.0) / world as f64;
                let row = Row {
                    ranks: world,
                    algorithm: describe(algorithm),
                    bytes,
                    secs,
                    alg_gbps: alg,
                    bus_gbps: bus,
                    memcpy_gbps: memcpy[j].gbps,
                    of_memcpy: bus / memcpy[j].gbps,
                };
                println!(
                    "{:>5}  {:<24} {:>10}  {:>11.1}  {:>9.2}  {:>9.2}  {:>8.0}%",
                    world,
                    row.algorithm,
                    human(bytes),
                    secs * 1e6,
                    alg,
                    bus,
                    100.0 * row.of_memcpy
                );
                rows.push(row);
            };
            let reps = (args.warmup, args.reps);
            match args.payload {
                PayloadType::F32 => time_on_ranks(
                    world,
                    algorithm,
                    len,
                    &sizes,
                    reps,
                    reduce_prefix::<f32>,
                    &mut on_row,
                ),
                PayloadType::F16 => time_on_ranks(
                    world,
                    algorithm,
                    len,
                    &sizes,
                    reps,
                    reduce_prefix::<f16>,
                    &mut on_row,
                ),
                PayloadType::Bf16 => time_on_ranks(
                    world,
                    algorithm,
                    len,
                    &sizes,
                    reps,
                    reduce_prefix::<bf16>,
                    &mut on_row,
                ),
            }?;
        }
    }
    let large_bytes = *sizes.last().unwrap_or(&0);
    let memcpy_gbps = memcpy.last().map_or(f64::NAN, |m| m.gbps);
    let best = rows
        .iter()
        .filter(|r| r.bytes == large_bytes && r.ranks > 1)
        .max_by(|a, b| a.bus_gbps.total_cmp(&b.bus_gbps));
    let figures = Figures {
        payload: args.payload,
        reps: args.reps,
        large_bytes,
        memcpy_gbps,
        best_bus_gbps: best.map_or(f64::NAN, |r| r.bus_gbps),
        best_of_memcpy: best.map_or(f64::NAN, |r| r.bus_gbps / memcpy_gbps),
        best_ranks: best.map_or(0, |r| r.ranks),
        best_algorithm: best.map_or_else(String::new, |r| r.algorithm.clone()),
        memcpy,
        rows,
    };
    println!(
        "\nlarge messages ({}): best bus bandwidth {:.2} GB/s ({} ranks, {}) = {:.0}% of memcpy {:.2} GB/s (goal ≥ 70%)",
        human(large_bytes),
        figures.best_bus_gbps,
        figures.best_ranks,
        figures.best_algorithm,
        100.0 * figures.best_of_memcpy,
        memcpy_gbps
    );
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// All-reduces the first `bytes` of the buffer.
fn reduce_prefix<T: BenchElement>(
    c: &mut dyn Collective,
    buf: &mut [T],
    &bytes: &u64,
) -> Result<()> {
    let n = bytes as usize / std::mem::size_of::<T>();
    Ok(c.all_reduce(T::payload(&mut buf[..n]))?)
}

fn validate(args: &AllreduceBenchArgs) -> Result<()> {
    let bad = |m: String| Err(BadInput(m).into());
    if args.ranks.is_empty() || args.ranks.contains(&0) {
        return bad("--ranks: every rank count must be at least 1".into());
    }
    if args.algorithm.is_empty() {
        return bad("--algorithm: name at least one of ring, hierarchical, hybrid".into());
    }
    if args.reps == 0 {
        return bad("--reps must be at least 1".into());
    }
    if args.min_bytes < args.payload.width() || args.max_bytes < args.min_bytes {
        return bad(format!(
            "--min-bytes {} / --max-bytes {}: need one element at least and min ≤ max",
            args.min_bytes, args.max_bytes
        ));
    }
    Ok(())
}

/// Message sizes from `min` by factors of 4, and `max` itself, in whole elements.
fn sizes(min: u64, max: u64, width: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut b = min;
    while b <= max {
        out.push(b / width * width);
        b = b.saturating_mul(4);
    }
    if out.last() != Some(&(max / width * width)) {
        out.push(max / width * width);
    }
    out
}

/// memcpy bandwidth (bytes copied per second) for every size, single-threaded.
fn measure_memcpy(sizes: &[u64], reps: usize) -> Vec<Memcpy> {
    let largest = *sizes.last().unwrap_or(&0) as usize;
    let src = vec![1u8; largest];
    let mut dst = vec![0u8; largest];
    sizes
        .iter()
        .map(|&bytes| {
            let n = bytes as usize;
            // Small copies are repeated within one sample so the clock's resolution does not matter.
            let inner = (1 << 22) / n.max(1) + 1;
            let mut samples: Vec<f64> = (0..reps + 1)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..inner {
                        dst[..n].copy_from_slice(std::hint::black_box(&src[..n]));
                        std::hint::black_box(&mut dst);
                    }
                    start.elapsed().as_secs_f64() / inner as f64
                })
                .skip(1)
                .collect();
            Memcpy {
                bytes,
                gbps: bytes as f64 / median(&mut samples) / 1e9,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64K"), Ok(65536));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999G").is_err());
    }

    #[test]
    fn sizes_grow_by_four_and_end_at_the_maximum() {
        assert_eq!(sizes(4096, 65536, 4), vec![4096, 16384, 65536]);
        assert_eq!(sizes(4096, 32768, 4), vec![4096, 16384, 32768]);
        assert_eq!(sizes(6, 6, 4), vec![4]);
    }

    #[test]
    fn groups_shrink_to_a_divisor_of_the_world() {
        assert_eq!(
            AlgorithmName::Hierarchical.at(2, 4, 0),
            Algorithm::Hierarchical { group: 2 }
        );
        assert_eq!(
            AlgorithmName::Hierarchical.at(12, 8, 0),
            Algorithm::Hierarchical { group: 4 }
        );
        assert_eq!(
            AlgorithmName::Hybrid.at(3, 4, 9),
            Algorithm::Hybrid {
                group: 1,
                threshold: 9
            }
        );
    }
}
