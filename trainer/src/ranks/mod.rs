//! Data-parallel ranks: a trial's P replicas, each training on its share of the global batch
//! with batch-norm statistics over that share (or synchronised across ranks), whose gradients
//! are summed by a [`Collective`] in segments that overlap the backward pass.
//!
//! On the CPU the ranks are threads of one process sharing the cores; the arithmetic is that of
//! P devices: per-rank losses and BN statistics, gradients summed in the wire format of the
//! precision mode (fp16 sums carry the loss scale and can overflow, as on GPUs).

pub mod auto;
pub mod bn_stats;
pub mod exchange;
pub mod replica;
pub mod segments;

use std::sync::mpsc::channel;

use crate::collective::{Collective, CollectiveError};
use crate::error::TrainError;
use crate::precision::{HalfFormat, Underflow};
use exchange::{reduce_segment, Stager, Wire};
use replica::{shares, Replica};
use segments::Segment;

/// What a rank's backward pass leaves: its underflow counts (or why its all-reduce failed)
/// and its communicator handle, `None` once dropped after a failure.
type RankResult = (
    Result<Underflow, CollectiveError>,
    Option<Box<dyn Collective>>,
);

/// The replicas of one trial and their communicators.
pub struct Ranks {
    replicas: Vec<Replica>,
    comms: Vec<Box<dyn Collective>>,
    segments: Vec<Segment>,
    wire: Wire,
}

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranks")
            .field("world", &self.world())
            .field("segments", &self.segments.len())
            .field("wire", &self.wire)
            .finish()
    }
}

impl Ranks {
    /// Ranks over `replicas` (rank order) joined by `comms`, all-reducing in `segments`.
    pub fn new(
        replicas: Vec<Replica>,
        comms: Vec<Box<dyn Collective>>,
        segments: Vec<Segment>,
        wire: Wire,
    ) -> Result<Ranks, TrainError> {
        if replicas.is_empty() || replicas.len() != comms.len() {
            return Err(TrainError::Internal(format!(
                "{} replicas for {} communicator handles",
                replicas.len(),
                comms.len()
            )));
        }
        Ok(Ranks {
            replicas,
            comms,
            segments,
            wire,
        })
    }

    /// Number of ranks (P).
    pub fn world(&self) -> usize {
        self.replicas.len()
    }

    /// Rank 0, whose model is evaluated and checkpointed and whose update the others copy.
    pub fn lead(&self) -> &Replica {
        &self.replicas[0]
    }

    /// Rank 0, mutably.
    pub fn lead_mut(&mut self) -> &mut Replica {
        &mut self.replicas[0]
    }

    /// Every rank, in rank order.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// Every rank, mutably.
    pub fn replicas_mut(&mut self) -> &mut [Replica] {
        &mut self.replicas
    }

    /// The all-reduce segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Replaces the all-reduce segments (e.g. by those a checkpoint was made with).
    pub fn set_segments(&mut self, segments: Vec<Segment>) {
        self.segments = segments;
    }

    /// All-reduce calls one step makes (fusion buckets over all segments; with one rank they are
    /// planned, but the sum over one rank needs no call).
    pub fn allreduce_calls(&self) -> u64 {
        self.segments.iter().map(|s| s.buckets.len() as u64).sum()
    }

    /// Forward pass and loss of every rank on its share of the `n` images; each rank's loss
    /// gradient carries `scale` times its weight in the global mean. Returns the global mean
    /// loss (unscaled).
    pub fn forward(
        &mut self,
        images: &[f32],
        labels: &[u8],
        n: usize,
        scale: f64,
        fmt: Option<HalfFormat>,
        weights_in_half: bool,
    ) -> f64 {
        let world = self.world();
        let parts = shares(n, world);
        let px = images.len() / n.max(1);
        let losses = on_ranks(&mut self.replicas, |rank, rep| {
            let s = &parts[rank];
            // ranks with more images weigh more; with equal shares the weight is exactly 1
            let weight = (s.len() * world) as f64 / n as f64;
            rep.forward_loss(
                &images[s.start * px..s.end * px],
                &labels[s.clone()],
                s.len(),
                (scale * weight) as f32,
                fmt,
                weights_in_half,
            )
        });
        losses
            .iter()
            .zip(&parts)
            .map(|(l, s)| l * (s.len() as f64 / n as f64))
            .sum()
    }

    /// Backward pass of every rank, each segment all-reduced as soon as its gradients are
    /// final. Afterwards every rank holds the sum over ranks of the (scaled) gradients.
    pub fn backward_allreduce(&mut self, fmt: Option<HalfFormat>) -> Result<Underflow, TrainError> {
        if let [only] = &mut self.replicas[..] {
            // the sum over one rank is its own gradient: no staging, no communication thread
            return Ok(only.backward(fmt, &mut |_, _| {}));
        }
        let comms = std::mem::take(&mut self.comms);
        let (segments, wire) = (&self.segments, self.wire);
        let results: Vec<RankResult> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .replicas
                .iter_mut()
                .zip(comms)
                .map(|(rep, comm)| s.spawn(move || rank_backward(rep, comm, segments, wire, fmt)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut underflow = Underflow::default();
        let mut first_err = None;
        for (r, comm) in results {
            match r {
                Ok(u) => underflow.add(u),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(c) = comm {
                self.comms.push(c);
            }
        }
        match first_err {
            None => Ok(underflow),
            Some(e) => Err(TrainError::Internal(format!(
                "gradient all-reduce failed: {e}"
            ))),
        }
    }

    /// Copies rank 0's parameter values to every other rank (after rank 0's update).
    pub fn broadcast_weights(&mut self) {
        let (lead, rest) = self.replicas.split_at_mut(1);
        for r in rest {
            r.model
                .params
                .values
                .copy_from_slice(&lead[0].model.params.values);
        }
    }
}

/// Runs `f` on every rank, on a thread per rank when there is more than one.
fn on_ranks<R: Send>(
    replicas: &mut [Replica],
    f: impl Fn(usize, &mut Replica) -> R + Sync,
) -> Vec<R> {
    if let [only] = replicas {
        return vec![f(0, only)];
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = replicas
            .iter_mut()
            .enumerate()
            .map(|(r, rep)| s.spawn(move || f(r, rep)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// One rank's backward pass with its communication thread beside it. Returns the rank's
/// underflow counts and its communicator handle (dropped on failure, so peers stop waiting).
fn rank_backward(
    rep: &mut Replica,
    mut comm: Box<dyn Collective>,
    segments: &[Segment],
    wire: Wire,
    fmt: Option<HalfFormat>,
) -> RankResult {
    let (to_comm, from_rank) = channel::<(usize, Vec<f32>)>();
    let (to_rank, from_comm) = channel::<(usize, Result<Vec<f32>, CollectiveError>)>();
    std::thread::scope(|s| {
        let comm_thread = s.spawn(move || {
            for (k, mut buf) in from_rank {
                let r = reduce_segment(comm.as_mut(), wire, &segments[k].buckets, &mut buf);
                let failed = r.is_err();
                let _ = to_rank.send((k, r.map(|()| buf)));
                if failed {
                    return None;
                }
            }
            Some(comm)
        });
        let underflow = {
            let mut stager = Stager::new(segments, to_comm);
            rep.backward(fmt, &mut |_, g| stager.push(g))
        };
        let mut result = Ok(underflow);
        for _ in 0..segments.len() {
            match from_comm.recv() {
                Ok((k, Ok(buf))) => {
                    rep.model.params.grads[segments[k].flat.clone()].copy_from_slice(&buf)
                }
                Ok((_, Err(e))) => {
                    result = Err(e);
                    break;
                }
                Err(_) => {
                    result = Err(CollectiveError::PeerFailed(
                        "the communication thread stopped".into(),
                    ));
                    break;
                }
            }
        }
        let comm = comm_thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (result, comm)
    })
}
