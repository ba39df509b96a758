//! Rectified linear unit.

/// `y = max(x, 0)`.
pub fn forward(x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = relu(v);
    }
}

/// `max(v, 0)` with -0 and NaN mapped to +0.
///
/// `f32::max` may return either zero for `-0.0`; this form is exactly what the vector kernels'
/// `max(v, 0)` instruction gives, so the portable and vector paths stay bit-identical (the sign
/// of a zero survives rounding to half precision).
#[inline]
pub fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// In place: `grad` holds dL/dy on entry and dL/dx on return; `y` is the forward output.
pub fn backward(y: &[f32], grad: &mut [f32]) {
    for (g, &v) in grad.iter_mut().zip(y) {
        // the gradient at exactly 0 is taken as 0, as in PyTorch
        *g = if v > 0.0 { *g } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};

    /// Zeros of either sign and NaN come out as +0, as the vector kernels' `max(v, 0)` gives.
    #[test]
    fn relu_maps_negative_zero_and_nan_to_positive_zero() {
        for v in [-0.0f32, 0.0, -1.5, f32::NAN, f32::NEG_INFINITY] {
            assert_eq!(relu(v).to_bits(), 0, "{v}");
        }
        assert_eq!(relu(2.5), 2.5);
        assert_eq!(relu(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn relu_backward_matches_finite_differences() {
        // keep inputs away from the kink so the finite difference is valid
        let x: Vec<f32> = rand_vec(21, 200, 1.0)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v })
            .collect();
        let r = rand_vec(22, 200, 1.0);
        let f = |x: &[f32]| {
            let mut y = vec![0.0; x.len()];
            forward(x, &mut y);
            y
        };
        let y = f(&x);
        let mut g = r.clone();
        backward(&y, &mut g);
        assert_close(&g, &numeric_grad(&x, &r, f), 1e-2, "relu dx");
    }
}
