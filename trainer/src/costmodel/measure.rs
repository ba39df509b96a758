//! Compute profile of the trainer's proxy model measured on this CPU: the forward time and the
//! time at which `Model::backward_announcing` announces each gradient, medians over steps.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::compute::ComputeProfile;
use crate::config::ModelKind;
use crate::data::CLASSES;
use crate::layers::loss::softmax_cross_entropy;
use crate::model::Model;
use crate::parallel::Par;
use crate::params::ParamInfo;

/// A measured profile and the inventory it belongs to.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The model's parameters in backward order (f32 bytes).
    pub inventory: Vec<ParamInfo>,
    /// Medians over the timed steps.
    pub profile: ComputeProfile,
}

/// Times `steps` training forward/backward passes of the proxy (after one untimed warm-up) on
/// `batch` random images with `threads` threads.
pub fn measure_proxy(kind: ModelKind, batch: usize, threads: usize, steps: usize) -> Measured {
    measure_model(kind, true, batch, threads, steps)
}

/// [`measure_proxy`] with the pool5 batch norm on or off (`bn5`), as the run has it.
pub fn measure_model(
    kind: ModelKind,
    bn5: bool,
    batch: usize,
    threads: usize,
    steps: usize,
) -> Measured {
    let par = Par::new(threads);
    let mut model = Model::new(kind, bn5, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = batch.max(1);
    let x: Vec<f32> = (0..n * model.input_len())
        .map(|_| rng.random::<f32>() - 0.5)
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % CLASSES) as u8).collect();
    let tensors = model.inventory().len();
    let mut forward = Vec::new();
    let mut ready: Vec<Vec<f64>> = vec![Vec::new(); tensors];
    let mut backward = Vec::new();
    let mut dlogits = vec![0.0f32; n * CLASSES];
    for step in 0..=steps.max(1) {
        let t0 = Instant::now();
        let logits = model.forward(&par, &x, n, Some(&mut rng), None).to_vec();
        let fwd = t0.elapsed().as_secs_f64();
        softmax_cross_entropy(&logits, &labels, CLASSES, 1.0, &mut dlogits);
        let t1 = Instant::now();
        let mut at = vec![0.0f64; tensors];
        model.backward_announcing(&par, &dlogits, None, &mut |idx, _| {
            let t = t1.elapsed().as_secs_f64();
            at[idx].iter_mut().for_each(|v| *v = t);
        });
        let bwd = t1.elapsed().as_secs_f64();
        if step == 0 {
            continue; // warm-up: buffers allocated, caches filled
        }
        forward.push(fwd);
        backward.push(bwd);
        for (r, t) in ready.iter_mut().zip(at) {
            r.push(t);
        }
    }
    // Medians per gradient, kept in order (a median of each can step back by noise).
    let mut last = 0.0f64;
    let grad_ready_secs: Vec<f64> = ready
        .iter_mut()
        .map(|r| {
            last = last.max(median(r));
            last
        })
        .collect();
    Measured {
        inventory: model.inventory().to_vec(),
        profile: ComputeProfile {
            forward_secs: median(&mut forward),
            backward_secs: median(&mut backward).max(last),
            grad_ready_secs,
        },
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_profile_covers_every_gradient_in_order() {
        let m = measure_proxy(ModelKind::AlexnetBnProxy, 8, 1, 3);
        let p = &m.profile;
        assert_eq!(p.grad_ready_secs.len(), m.inventory.len());
        assert!(p.forward_secs > 0.0);
        assert!(p.grad_ready_secs.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            p.grad_ready_secs[0] > 0.0,
            "fc8 needs its weight gradient first"
        );
        assert!(*p.grad_ready_secs.last().expect("tensors") <= p.backward_secs);
        // The convolutions dominate: conv1's gradient comes well after fc8's.
        assert!(p.grad_ready_secs[m.inventory.len() - 1] > 2.0 * p.grad_ready_secs[1]);
    }
}
