//! Inverted dropout: kept units are scaled by 1/(1-p) in training, identity in evaluation.

use rand::Rng;

/// Draws a mask of `len` multipliers: 0 with probability `p`, else `1/(1-p)`.
pub fn sample_mask(rng: &mut impl Rng, p: f32, len: usize, mask: &mut Vec<f32>) {
    let keep = 1.0 / (1.0 - p);
    mask.clear();
    mask.extend((0..len).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }));
}

/// `y = x * mask`.
pub fn forward(x: &[f32], mask: &[f32], y: &mut [f32]) {
    for ((o, &v), &m) in y.iter_mut().zip(x).zip(mask) {
        *o = v * m;
    }
}

/// In place: `x *= mask`.
pub fn forward_in_place(mask: &[f32], x: &mut [f32]) {
    for (v, &m) in x.iter_mut().zip(mask) {
        *v *= m;
    }
}

/// In place: `grad` holds dL/dy on entry and dL/dx on return.
pub fn backward(mask: &[f32], grad: &mut [f32]) {
    for (g, &m) in grad.iter_mut().zip(mask) {
        *g *= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};
    use rand::SeedableRng;

    #[test]
    fn dropout_backward_matches_finite_differences_with_fixed_mask() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut mask = Vec::new();
        sample_mask(&mut rng, 0.5, 300, &mut mask);
        let zeros = mask.iter().filter(|&&m| m == 0.0).count();
        assert!((100..200).contains(&zeros), "{zeros}");
        assert!(mask.iter().all(|&m| m == 0.0 || m == 2.0));
        let x = rand_vec(41, 300, 1.0);
        let r = rand_vec(42, 300, 1.0);
        let f = |x: &[f32]| {
            let mut y = vec![0.0; 300];
            forward(x, &mask, &mut y);
            y
        };
        let mut g = r.clone();
        backward(&mask, &mut g);
        assert_close(&g, &numeric_grad(&x, &r, f), 1e-2, "dropout dx");
    }
}
