//! Communication cost model of data-parallel training: predicts step time and scaling
//! efficiency of P ranks from link parameters, per-layer compute times and the way gradients
//! are fused, segmented and all-reduced, and chooses the segmentation that minimises it.
//!
//! - [`link`]: α-β-γ parameters of the links inside and between nodes, presets, calibration fit.
//! - [`calibrate`]: α and β of the in-process collective, measured.
//! - [`allreduce`]: cost of one all-reduce (flat ring, hierarchical, hybrid) of `n` bytes.
//! - [`compute`]: per-layer forward/backward times of the full-size models on a given GPU.
//! - [`measure`]: the same profile measured on this CPU for the trainer's proxy model.
//! - [`timeline`]: segments and fusion buckets, and the event simulation of one step.
//! - [`auto`]: the best split points and fusion threshold ("auto" segments).
//! - [`predict`]: step time, images/s and scaling efficiency per configuration and rank count.

pub mod allreduce;
pub mod auto;
pub mod calibrate;
pub mod compute;
pub mod link;
pub mod measure;
pub mod predict;
pub mod timeline;
pub mod trial;

pub use allreduce::allreduce_secs;
pub use auto::{auto_plan, auto_segments};
pub use calibrate::{calibrate_in_process, Calibration};
pub use compute::{ComputeProfile, FullModel, Gpu};
pub use link::{fit_alpha_beta, Cluster, Link, Network};
pub use predict::{predict, Config, Prediction, Scenario};
pub use timeline::{simulate_step, Segmentation, StepTimeline};

/// Why a cost could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostError {
    /// A hierarchical group size that does not split the ranks evenly.
    #[error("group size {group} does not divide {world} ranks")]
    Group {
        /// Ranks per group asked for.
        group: usize,
        /// Ranks in the communicator.
        world: usize,
    },
    /// No ranks at all.
    #[error("a communicator needs at least one rank")]
    NoRanks,
    /// A compute profile that does not describe the inventory it is used with.
    #[error("compute profile has {profile} gradient times for {tensors} tensors")]
    ProfileMismatch {
        /// Entries in the profile.
        profile: usize,
        /// Tensors in the inventory.
        tensors: usize,
    },
    /// Too few or degenerate samples for a calibration fit.
    #[error("calibration fit: {0}")]
    Fit(String),
}
