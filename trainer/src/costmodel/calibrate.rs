//! Calibration of α and β by timing a real collective at several message sizes and fitting a
//! line; here the in-process communicator of CPU ranks (threads of this process).

use std::time::Instant;

use super::link::{fit_alpha_beta, Link};
use super::CostError;
use crate::collective::{in_process, Algorithm, CollectiveError, Payload};

/// Why a calibration failed.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The communicator could not be built or a call failed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// The timings do not make a line.
    #[error(transparent)]
    Fit(#[from] CostError),
}

/// Timings of one collective and the link they imply.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Ranks timed.
    pub world: usize,
    /// (bytes, median seconds of one all-reduce) per message size.
    pub samples: Vec<(u64, f64)>,
    /// Least-squares line through the samples: seconds = alpha + beta·bytes.
    pub line: Link,
    /// Per-hop link of the ring model that reproduces the line (see [`Link::from_ring_fit`]).
    pub hop: Link,
}

/// Times `reps` f32 ring all-reduces of each size in `sizes` (bytes) on `world` in-process
/// ranks, after one untimed call, and fits α and β.
pub fn calibrate_in_process(
    world: usize,
    sizes: &[u64],
    reps: usize,
) -> Result<Calibration, CalibrationError> {
    let mut samples = Vec::with_capacity(sizes.len());
    for &bytes in sizes {
        let mut secs = time_allreduce(world, Algorithm::Ring, bytes, reps.max(1))?;
        secs.sort_by(f64::total_cmp);
        samples.push((bytes, secs[secs.len() / 2]));
        tracing::debug!(
            bytes,
            secs = samples[samples.len() - 1].1,
            "timed all-reduce"
        );
    }
    let line = fit_alpha_beta(&samples)?;
    let hop = Link::from_ring_fit(line, world)?;
    Ok(Calibration {
        world,
        samples,
        line,
        hop,
    })
}

/// Seconds of each of `reps` all-reduces of `bytes` (f32) as rank 0 sees them.
pub fn time_allreduce(
    world: usize,
    algorithm: Algorithm,
    bytes: u64,
    reps: usize,
) -> Result<Vec<f64>, CollectiveError> {
    let ranks = in_process(world, algorithm)?;
    let len = (bytes / 4) as usize;
    std::thread::scope(|s| {
        let running: Vec<_> = ranks
            .into_iter()
            .map(|mut rank| {
                s.spawn(move || -> Result<Vec<f64>, CollectiveError> {
                    let mut buf = vec![1.0f32; len];
                    rank.all_reduce(Payload::F32(&mut buf))?;
                    let mut secs = Vec::with_capacity(reps);
                    for _ in 0..reps {
                        let t = Instant::now();
                        rank.all_reduce(Payload::F32(&mut buf))?;
                        secs.push(t.elapsed().as_secs_f64());
                    }
                    Ok(secs)
                })
            })
            .collect();
        let mut out = Ok(Vec::new());
        for (i, r) in running.into_iter().enumerate() {
            let got = r
                .join()
                .unwrap_or_else(|_| Err(CollectiveError::PeerFailed("rank panicked".into())));
            match (i, got) {
                (0, Ok(secs)) => out = Ok(secs),
                (_, Err(e)) if out.is_ok() => out = Err(e),
                _ => {}
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_ring_costs_grow_with_size() {
        let c = calibrate_in_process(2, &[4 << 10, 256 << 10, 4 << 20], 3).expect("calibrate");
        assert_eq!(c.samples.len(), 3);
        assert!(c.samples.iter().all(|&(_, s)| s > 0.0));
        // Copying and adding 4 MiB takes longer than 4 KiB, so the fitted β is positive.
        assert!(c.samples[2].1 > c.samples[0].1);
        assert!(c.line.beta > 0.0 && c.hop.beta > 0.0);
        assert!(c.hop.alpha >= 0.0);
    }

    #[test]
    fn a_bad_world_is_a_collective_error() {
        assert!(matches!(
            calibrate_in_process(0, &[1024, 4096], 1),
            Err(CalibrationError::Collective(_))
        ));
    }
}
