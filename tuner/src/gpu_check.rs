//! `jizhi-tune gpu-check`: proves the NCCL collectives on this machine's GPUs in one run.
//!
//! Probes CUDA and NCCL, builds one communicator over the local GPUs, checks all-reduce of f32,
//! f16 and bf16 buffers against a sum computed on the host, then splits the communicator into
//! groups of every size that divides the world and checks the hierarchical all-reduce the same
//! way. Prints one JSON line with the results; exits non-zero when there is no GPU or a check
//! fails.

use anyhow::{bail, Context, Result};
use clap::Args;
use half::{bf16, f16};
use jizhi_trainer::collective::gpu_probe::{self, GpuInfo};
use jizhi_trainer::collective::nccl::{self, NcclCollective};
use jizhi_trainer::collective::{Collective, CollectiveError, Payload};
use serde::Serialize;
use serde_json::json;
use std::time::Instant;

/// Options of `jizhi-tune gpu-check`.
#[derive(Debug, Args, Clone)]
pub struct GpuCheckArgs {
    /// GPUs to use [default: all]; the first N devices.
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
    /// Elements of the largest buffer checked (the others are 0, 1 and 4099).
    #[arg(long, value_name = "N", default_value_t = (1 << 22) + 1)]
    pub elements: usize,
}

/// Element types a payload can travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum DType {
    F32,
    F16,
    Bf16,
}

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

/// The outcome of one all-reduce compared with the host's sum.
#[derive(Debug, Clone, Serialize)]
struct SumCheck {
    dtype: DType,
    elements: usize,
    ok: bool,
    max_abs_err: f64,
    ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs the check and prints its JSON line.
pub fn run(args: &GpuCheckArgs) -> Result<()> {
    let start = Instant::now();
    let probe = gpu_probe::probe();
    let Ok(info) = probe.info() else {
        println!(
            "{}",
            json!({ "gpu_check": "no-gpu", "reason": probe.to_string() })
        );
        bail!("{probe}; gpu-check needs a CUDA GPU and the NCCL library");
    };
    eprintln!("gpu-check: {probe}");
    let world = args.gpus.unwrap_or(info.devices.len());
    if world == 0 || world > info.devices.len() {
        bail!(crate::commands::BadInput(format!(
            "--gpus {world}: this machine has {} GPU(s)",
            info.devices.len()
        )));
    }
    let sizes = sizes(args.elements);
    let devices: Vec<usize> = (0..world).collect();
    let mut ranks = nccl::nccl_group(&devices).context("building the NCCL communicator")?;

    eprintln!("gpu-check: all-reduce over {world} rank(s)");
    let flat = check_all(&mut ranks, &sizes);
    let mut splits = Vec::new();
    for k in divisors(world) {
        eprintln!("gpu-check: split into groups of {k}");
        splits.push(check_split(&mut ranks, k, &sizes));
    }
    // Destroying a communicator waits for the other ranks' pending work: drop them together.
    nccl::on_every_rank(&mut ranks.into_iter().map(Some).collect::<Vec<_>>(), |r| {
        drop(r.take())
    });

    let ok = flat.iter().all(|c| c.ok) && splits.iter().all(|s| s["ok"] == true);
    println!(
        "{}",
        report(
            info,
            world,
            ok,
            &flat,
            &splits,
            start.elapsed().as_secs_f64()
        )
    );
    if !ok {
        bail!("a GPU collective check failed (see the JSON line above)");
    }
    Ok(())
}

fn report(
    info: &GpuInfo,
    world: usize,
    ok: bool,
    flat: &[SumCheck],
    splits: &[serde_json::Value],
    secs: f64,
) -> serde_json::Value {
    json!({
        "gpu_check": if ok { "ok" } else { "failed" },
        "devices": info.devices,
        "driver": info.driver_version,
        "nccl": info.nccl_version(),
        "world": world,
        "all_reduce": flat,
        "split": splits,
        "secs": secs,
    })
}

/// Splits into groups of `k`, checks the groups' shape and the hierarchical all-reduce.
fn check_split(ranks: &mut [NcclCollective], k: usize, sizes: &[usize]) -> serde_json::Value {
    let world = ranks.len();
    let built = nccl::on_every_rank(ranks, |r| r.hierarchical(k));
    let mut hier = Vec::new();
    let mut errors = Vec::new();
    for (rank, h) in built.into_iter().enumerate() {
        match h {
            Ok(h) => {
                let group_ok = h.group().world() == k && h.group().rank() == rank % k;
                let leader_ok = match h.leaders() {
                    Some(l) => rank % k == 0 && l.world() == world / k && l.rank() == rank / k,
                    None => rank % k != 0,
                };
                if !(group_ok && leader_ok) {
                    errors.push(format!("rank {rank}: wrong group or leaders' communicator"));
                }
                hier.push(h);
            }
            Err(e) => errors.push(format!("rank {rank}: {e}")),
        }
    }
    let checks = if hier.len() == world {
        check_all(&mut hier, sizes)
    } else {
        Vec::new()
    };
    let ok = errors.is_empty() && !checks.is_empty() && checks.iter().all(|c| c.ok);
    let mut hier: Vec<Option<_>> = hier.into_iter().map(Some).collect();
    nccl::on_every_rank(&mut hier, |h| drop(h.take()));
    json!({ "group": k, "leaders": world / k, "ok": ok, "errors": errors, "all_reduce": checks })
}

/// Every element type at every size.
fn check_all<C: Collective + Send>(ranks: &mut [C], sizes: &[usize]) -> Vec<SumCheck> {
    let mut out = Vec::new();
    for dtype in DTYPES {
        for &n in sizes {
            out.push(check_sum(ranks, dtype, n));
        }
    }
    out
}

/// All-reduces each rank's test buffer and compares every rank's result with the host's sum.
fn check_sum<C: Collective + Send>(ranks: &mut [C], dtype: DType, n: usize) -> SumCheck {
    let world = ranks.len();
    let start = Instant::now();
    let results = nccl::on_every_rank(ranks, |c| {
        let values = rank_values(c.rank(), n);
        reduce_as(c, dtype, &values)
    });
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let expected = expected_sum(world, n);
    let mut max_abs_err = 0.0f64;
    let mut error = None;
    for (rank, r) in results.into_iter().enumerate() {
        match r {
            Ok(got) if got.len() == n => {
                for (g, e) in got.iter().zip(&expected) {
                    max_abs_err = max_abs_err.max(f64::from((g - e).abs()));
                }
            }
            Ok(got) => {
                error = Some(format!(
                    "rank {rank}: {} elements back, {n} sent",
                    got.len()
                ))
            }
            Err(e) => error = Some(format!("rank {rank}: {e}")),
        }
    }
    SumCheck {
        dtype,
        elements: n,
        // The values are small integers, exact in every type: any difference is an error.
        ok: error.is_none() && max_abs_err == 0.0,
        max_abs_err,
        ms,
        error,
    }
}

/// The buffer sizes checked: empty, one element, odd, and the large one.
fn sizes(largest: usize) -> Vec<usize> {
    let mut s = vec![0, 1, 4099, largest];
    s.sort_unstable();
    s.dedup();
    s
}

/// Group sizes that tile a world of `world` ranks.
fn divisors(world: usize) -> Vec<usize> {
    (1..=world).filter(|k| world.is_multiple_of(*k)).collect()
}

/// Rank `rank`'s test values: integers in -5..=5, so sums of up to 51 ranks are exact in f16 and
/// bf16, and differ between ranks and positions.
fn rank_values(rank: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + rank * 3) % 11) as f32 - 5.0)
        .collect()
}

/// The element-wise sum of every rank's values, on the host.
fn expected_sum(world: usize, n: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; n];
    for rank in 0..world {
        for (s, v) in sum.iter_mut().zip(rank_values(rank, n)) {
            *s += v;
        }
    }
    sum
}

/// All-reduces `values` travelling as `dtype` and returns the result as f32.
fn reduce_as<C: Collective>(
    c: &mut C,
    dtype: DType,
    values: &[f32],
) -> Result<Vec<f32>, CollectiveError> {
    Ok(match dtype {
        DType::F32 => {
            let mut b = values.to_vec();
            c.all_reduce(Payload::F32(&mut b))?;
            b
        }
        DType::F16 => {
            let mut b: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            c.all_reduce(Payload::F16(&mut b))?;
            b.iter().map(|v| v.to_f32()).collect()
        }
        DType::Bf16 => {
            let mut b: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
            c.all_reduce(Payload::Bf16(&mut b))?;
            b.iter().map(|v| v.to_f32()).collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier, Mutex};

    /// A host stand-in for a communicator: ranks add into one shared buffer between barriers.
    struct HostSum {
        rank: usize,
        world: usize,
        shared: Arc<(Mutex<Vec<f64>>, Barrier)>,
        /// Adds this to its result, to play a faulty communicator.
        fault: f32,
    }

    impl Collective for HostSum {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world(&self) -> usize {
            self.world
        }
        fn all_reduce(&mut self, data: Payload<'_>) -> Result<(), CollectiveError> {
            let (sum, barrier) = &*self.shared;
            let mut mine: Vec<f32> = match &data {
                Payload::F32(b) => b.to_vec(),
                Payload::F16(b) => b.iter().map(|v| v.to_f32()).collect(),
                Payload::Bf16(b) => b.iter().map(|v| v.to_f32()).collect(),
            };
            if self.rank == 0 {
                *sum.lock().expect("lock") = vec![0.0; mine.len()];
            }
            barrier.wait();
            for (s, v) in sum.lock().expect("lock").iter_mut().zip(&mine) {
                *s += f64::from(*v);
            }
            barrier.wait();
            for (m, s) in mine.iter_mut().zip(sum.lock().expect("lock").iter()) {
                *m = *s as f32 + self.fault;
            }
            barrier.wait();
            match data {
                Payload::F32(b) => b.copy_from_slice(&mine),
                Payload::F16(b) => b
                    .iter_mut()
                    .zip(&mine)
                    .for_each(|(d, v)| *d = f16::from_f32(*v)),
                Payload::Bf16(b) => b
                    .iter_mut()
                    .zip(&mine)
                    .for_each(|(d, v)| *d = bf16::from_f32(*v)),
            }
            Ok(())
        }
    }

    fn host_ranks(world: usize, faulty_rank: Option<usize>) -> Vec<HostSum> {
        let shared = Arc::new((Mutex::new(Vec::new()), Barrier::new(world)));
        (0..world)
            .map(|rank| HostSum {
                rank,
                world,
                shared: shared.clone(),
                fault: if Some(rank) == faulty_rank { 1.0 } else { 0.0 },
            })
            .collect()
    }

    #[test]
    fn a_correct_communicator_passes_every_check() {
        for world in [1, 2, 3, 4] {
            let checks = check_all(&mut host_ranks(world, None), &sizes(1000));
            assert_eq!(checks.len(), 3 * 4);
            assert!(checks.iter().all(|c| c.ok), "world {world}: {checks:?}");
        }
    }

    #[test]
    fn a_wrong_sum_on_one_rank_fails_the_check() {
        let check = check_sum(&mut host_ranks(3, Some(2)), DType::Bf16, 10);
        assert!(!check.ok);
        assert_eq!(check.max_abs_err, 1.0);
        // A communicator that leaves the buffer alone is wrong as soon as there are two ranks.
        struct Identity(usize);
        impl Collective for Identity {
            fn rank(&self) -> usize {
                self.0
            }
            fn world(&self) -> usize {
                2
            }
            fn all_reduce(&mut self, _: Payload<'_>) -> Result<(), CollectiveError> {
                Ok(())
            }
        }
        assert!(!check_sum(&mut [Identity(0), Identity(1)], DType::F32, 5).ok);
    }

    #[test]
    fn an_error_from_a_rank_is_reported_with_its_message() {
        struct Broken;
        impl Collective for Broken {
            fn rank(&self) -> usize {
                0
            }
            fn world(&self) -> usize {
                1
            }
            fn all_reduce(&mut self, _: Payload<'_>) -> Result<(), CollectiveError> {
                Err(CollectiveError::Gpu(
                    "ncclAllReduce: ncclUnhandledCudaError".into(),
                ))
            }
        }
        let check = check_sum(&mut [Broken], DType::F16, 3);
        assert!(!check.ok);
        assert!(check
            .error
            .as_deref()
            .is_some_and(|e| e.contains("ncclUnhandledCudaError")));
    }

    #[test]
    fn test_values_sum_exactly_in_half_precision() {
        let exact = expected_sum(16, 200);
        for v in exact {
            assert_eq!(f16::from_f32(v).to_f32(), v);
            assert_eq!(bf16::from_f32(v).to_f32(), v);
        }
        assert_ne!(rank_values(0, 11), rank_values(1, 11));
    }

    #[test]
    fn group_sizes_and_buffer_sizes() {
        assert_eq!(divisors(1), [1]);
        assert_eq!(divisors(8), [1, 2, 4, 8]);
        assert_eq!(divisors(6), [1, 2, 3, 6]);
        assert_eq!(sizes(1), [0, 1, 4099]);
        assert_eq!(sizes(1 << 20), [0, 1, 4099, 1 << 20]);
    }
}
