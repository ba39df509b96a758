//! One data-parallel rank: its copy of the network (weights equal on every rank, activations
//! and BN running statistics its own), its dropout stream and its share of the batch.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::CLASSES;
use crate::layers::loss::softmax_cross_entropy;
use crate::model::{GradReady, Model};
use crate::parallel::Par;
use crate::precision::{round_counting, HalfFormat, Underflow};

/// RNG stream of rank 0's dropout masks; rank r uses this + r.
const DROPOUT_STREAM: u64 = 3;

/// A rank's model, dropout generator, compute threads and loss gradient.
#[derive(Debug)]
pub struct Replica {
    /// The rank's copy of the network.
    pub model: Model,
    /// The rank's dropout mask generator.
    pub dropout_rng: ChaCha8Rng,
    /// The rank's compute threads.
    pub par: Par,
    dlogits: Vec<f32>,
}

impl Replica {
    /// Rank `rank`'s replica of `model`, computing on `threads` threads.
    pub fn new(model: Model, seed: u64, rank: usize, threads: usize) -> Replica {
        let mut dropout_rng = ChaCha8Rng::seed_from_u64(seed);
        dropout_rng.set_stream(DROPOUT_STREAM + rank as u64);
        Replica {
            model,
            dropout_rng,
            par: Par::new(threads),
            dlogits: Vec::new(),
        }
    }

    /// Forward pass and loss on `n` images; keeps dL/dlogits multiplied by `grad_scale` (the
    /// loss scale times this rank's weight in the global mean). Returns the mean loss.
    pub fn forward_loss(
        &mut self,
        images: &[f32],
        labels: &[u8],
        n: usize,
        grad_scale: f32,
        fmt: Option<HalfFormat>,
        weights_in_half: bool,
    ) -> f64 {
        self.model.prepare_compute_weights(fmt, weights_in_half);
        let logits = self
            .model
            .forward(&self.par, images, n, Some(&mut self.dropout_rng), fmt);
        self.dlogits.resize(n * CLASSES, 0.0);
        softmax_cross_entropy(logits, labels, CLASSES, grad_scale, &mut self.dlogits).0
    }

    /// Backward pass of the last forward, announcing each gradient when final.
    pub fn backward(&mut self, fmt: Option<HalfFormat>, ready: &mut GradReady<'_>) -> Underflow {
        let mut u = round_counting(fmt, &mut self.dlogits);
        u.add(
            self.model
                .backward_announcing(&self.par, &self.dlogits, fmt, ready),
        );
        u
    }
}

/// Contiguous shares of `n` images over `world` ranks; the first `n % world` get one more.
pub fn shares(n: usize, world: usize) -> Vec<Range<usize>> {
    let (base, extra) = (n / world, n % world);
    let mut at = 0;
    (0..world)
        .map(|r| {
            let len = base + usize::from(r < extra);
            at += len;
            at - len..at
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_evenly() {
        assert_eq!(shares(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(
            shares(8, 8).iter().map(|r| r.len()).collect::<Vec<_>>(),
            vec![1; 8]
        );
        assert_eq!(shares(5, 1), vec![0..5]);
    }
}
