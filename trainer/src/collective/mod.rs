//! Collectives: element-wise sums of gradient buffers across the data-parallel ranks of a trial.
//!
//! [`Collective`] is one rank's handle on a communicator. Implementations: in-process shared
//! memory for CPU ranks (threads of one process) and NCCL for GPU ranks. The all-reduce
//! algorithms (flat ring, hierarchical, hybrid) are chosen by [`Algorithm`].
//!
//! ```
//! use jizhi_trainer::collective::{in_process, Algorithm, Payload};
//!
//! let ranks = in_process(4, Algorithm::Ring).unwrap();
//! let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
//!     let running: Vec<_> = ranks
//!         .into_iter()
//!         .map(|mut rank| {
//!             s.spawn(move || {
//!                 let mut grad = vec![rank.rank() as f32; 5];
//!                 rank.all_reduce(Payload::F32(&mut grad)).unwrap();
//!                 grad
//!             })
//!         })
//!         .collect();
//!     running.into_iter().map(|r| r.join().unwrap()).collect()
//! });
//! assert!(sums.iter().all(|g| g == &vec![6.0; 5]));
//! ```

mod element;
mod exchange;
mod hierarchical;
mod hybrid;
mod ring;
mod shared;
#[cfg(test)]
mod tests;

pub use shared::{in_process, SharedMemoryRank};

use half::{bf16, f16};

/// A buffer to be reduced, in the element type it travels in.
#[derive(Debug)]
pub enum Payload<'a> {
    /// IEEE single precision.
    F32(&'a mut [f32]),
    /// IEEE half precision (sums carry the loss scale, as on GPUs).
    F16(&'a mut [f16]),
    /// bfloat16.
    Bf16(&'a mut [bf16]),
}

impl Payload<'_> {
    /// Elements in the buffer.
    pub fn len(&self) -> usize {
        match self {
            Payload::F32(b) => b.len(),
            Payload::F16(b) => b.len(),
            Payload::Bf16(b) => b.len(),
        }
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes in the buffer.
    pub fn bytes(&self) -> u64 {
        let width = match self {
            Payload::F32(_) => 4,
            Payload::F16(_) | Payload::Bf16(_) => 2,
        };
        (self.len() * width) as u64
    }

    /// Divides every element by `divisor` (in f32, rounded back to the element type).
    pub fn divide(&mut self, divisor: f32) {
        use element::Element;
        match self {
            Payload::F32(b) => f32::divide(b, divisor),
            Payload::F16(b) => f16::divide(b, divisor),
            Payload::Bf16(b) => bf16::divide(b, divisor),
        }
    }
}

/// How an all-reduce treats its inputs, beyond summing them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReduceOptions {
    /// Divide every rank's input by the world size before summing, so the result is the mean
    /// and loss-scaled fp16 gradients do not overflow in the sum.
    pub prescale: bool,
}

/// How an all-reduce is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Algorithm {
    /// Flat ring over all ranks: reduce-scatter then all-gather, chunked.
    Ring,
    /// Reduce inside groups of `group` ranks, all-reduce among the group leaders, broadcast back.
    Hierarchical {
        /// Ranks per group (k); must divide the world size.
        group: usize,
    },
    /// Per message: hierarchical below `threshold` bytes, ring at or above it.
    Hybrid {
        /// Ranks per group (k) of the hierarchical part.
        group: usize,
        /// Message size in bytes from which the ring is used.
        threshold: u64,
    },
}

/// Why a collective call failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// The communicator cannot be built as asked (world or group size, unknown device...).
    #[error("invalid communicator: {0}")]
    Invalid(String),
    /// Ranks called the collective with different lengths or element types.
    #[error("ranks disagree: {0}")]
    Mismatch(String),
    /// Another rank of the communicator failed or went away.
    #[error("peer rank failed: {0}")]
    PeerFailed(String),
    /// The GPU library (CUDA, NCCL) is missing or returned an error.
    #[error("GPU collective: {0}")]
    Gpu(String),
}

/// One rank's handle on a communicator of `world()` ranks.
pub trait Collective: Send {
    /// This rank's index, `0..world()`.
    fn rank(&self) -> usize;

    /// Ranks in the communicator.
    fn world(&self) -> usize;

    /// Replaces `data` on every rank by its element-wise sum over all ranks.
    ///
    /// Every rank calls it with the same length and element type, in the same order.
    fn all_reduce(&mut self, data: Payload<'_>) -> Result<(), CollectiveError>;

    /// [`Collective::all_reduce`] with [`ReduceOptions`] (e.g. the mean instead of the sum).
    fn all_reduce_with(
        &mut self,
        mut data: Payload<'_>,
        options: ReduceOptions,
    ) -> Result<(), CollectiveError> {
        if options.prescale && self.world() > 1 {
            data.divide(self.world() as f32);
        }
        self.all_reduce(data)
    }
}

impl Algorithm {
    /// Checks that the algorithm can run on `world` ranks (group sizes divide the world size).
    pub fn validate(&self, world: usize) -> Result<(), CollectiveError> {
        if world == 0 {
            return Err(CollectiveError::Invalid(
                "world size must be at least 1".into(),
            ));
        }
        match *self {
            Algorithm::Ring => Ok(()),
            Algorithm::Hierarchical { group } | Algorithm::Hybrid { group, .. } => {
                if group == 0 || world % group != 0 {
                    Err(CollectiveError::Invalid(format!(
                        "group size {group} does not divide world size {world}"
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }
}
