//! Mixed-precision LARS trainer used by every jizhi-tune trial.
//!
//! Trains the 28x28 proxies of AlexNet-BN and ResNet on Fashion-MNIST on the CPU with explicit
//! forward/backward layers (im2col + `gemm`, NHWC), emulating GPU half-precision training
//! (fp16 / bf16 with fp32 master weights and loss scaling, or naive fp16), momentum SGD or
//! LARS, warmup + polynomial decay, on P data-parallel ranks whose gradients are summed by a
//! [`collective::Collective`] (in-process, or NCCL on GPUs) in fused segments that overlap the
//! backward pass; [`costmodel`] predicts what those settings give on a GPU cluster. Results are
//! bit-identical for the same configuration (seed, thread count and resolved segments included).
//!
//! Entry point: [`train`].

pub mod bench;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod costmodel;
pub mod data;
pub mod divergence;
pub mod error;
pub mod fusion;
pub mod inventory;
pub mod layers;
pub mod linalg;
pub mod models;
/// The networks under their former path.
pub use models as model;
pub mod optim;
pub mod parallel;
pub mod params;
pub mod precision;
pub mod ranks;
pub mod report;
pub mod scaler;
pub mod schedule;
mod step;
mod train;

pub use config::{LossScale, LrDecay, ModelKind, OptimizerKind, Precision, TrainConfig};
pub use error::TrainError;
pub use params::{ParamInfo, ParamKind};
pub use report::{EpochReport, TrainOutcome};
pub use step::{allreduce_calls_per_step, pinned_segments, resolved_segments};
pub use train::train;
