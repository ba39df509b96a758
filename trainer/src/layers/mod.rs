//! Layers with explicit forward and backward passes over NHWC f32 tensors.
//!
//! Every layer works on a whole batch and parallelises over samples (or rows) with
//! [`crate::parallel::Par`]; parameter gradients are *written* (not accumulated).

pub mod batchnorm;
pub mod conv;
pub mod dropout;
pub mod gap;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod relu;
pub mod residual;

#[cfg(test)]
pub(crate) mod gradcheck;
