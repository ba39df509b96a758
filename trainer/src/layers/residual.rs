//! Residual addition `y = x + skip`, optionally fused with the ReLU that follows it in a
//! residual block (one pass over the block output instead of two).

use crate::layers::relu;
use crate::parallel::Par;
use crate::precision::View;

/// Values a thread adds per block (inputs stored at 16 bits are widened a block at a time).
const BLOCK: usize = 4096;

/// `y = x + skip` (then `max(y, 0)` if `relu`).
pub fn forward(par: &Par, x: View<'_>, skip: View<'_>, y: &mut [f32], relu: bool) {
    let n = y.len();
    par.run_split(n, y, 1, |r, yp| {
        let (mut xb, mut sb) = (Vec::new(), Vec::new());
        for (k, ob) in yp.chunks_mut(BLOCK).enumerate() {
            let at = r.start + k * BLOCK;
            let range = at..at + ob.len();
            let xs = x.f32s(range.clone(), &mut xb);
            let ss = skip.f32s(range, &mut sb);
            for ((o, &a), &b) in ob.iter_mut().zip(xs).zip(ss) {
                let v = a + b;
                *o = if relu { relu::relu(v) } else { v };
            }
        }
    });
}

/// In place: `grad` holds dL/dy on entry and dL/d(sum) on return, the gradient both inputs
/// receive unchanged; with `relu_out = Some(y)` the fused ReLU's mask is applied first.
pub fn backward(par: &Par, relu_out: Option<&[f32]>, grad: &mut [f32]) {
    if let Some(y) = relu_out {
        let n = grad.len();
        par.run_split(n, grad, 1, |r, gp| {
            // the gradient at exactly 0 is taken as 0, as in PyTorch
            for (g, &v) in gp.iter_mut().zip(&y[r]) {
                *g = if v > 0.0 { *g } else { 0.0 };
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};

    #[test]
    fn residual_backward_matches_finite_differences() {
        let len = 300;
        // keep the sum away from the ReLU kink so the finite difference is valid
        let x = rand_vec(31, len, 1.0);
        let skip: Vec<f32> = rand_vec(32, len, 1.0)
            .iter()
            .zip(&x)
            .map(|(&s, &a)| if (a + s).abs() < 0.05 { s + 0.2 } else { s })
            .collect();
        let r = rand_vec(33, len, 1.0);
        let par = Par::new(2);
        for relu in [false, true] {
            let f = |a: &[f32], b: &[f32]| {
                let mut y = vec![0.0; len];
                forward(&par, a.into(), b.into(), &mut y, relu);
                y
            };
            let y = f(&x, &skip);
            if relu {
                assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0));
            }
            let mut g = r.clone();
            backward(&par, relu.then_some(&y[..]), &mut g);
            assert_close(
                &g,
                &numeric_grad(&x, &r, |a| f(a, &skip)),
                1e-2,
                "residual dx",
            );
            assert_close(
                &g,
                &numeric_grad(&skip, &r, |b| f(&x, b)),
                1e-2,
                "residual dskip",
            );
        }
    }

    /// Adding half-stored inputs gives what their f32 values give, across several blocks.
    #[test]
    fn adding_half_stored_inputs_equals_adding_their_values() {
        use crate::precision::{round, HalfFormat, Stored};
        let len = 3 * BLOCK + 17;
        let par = Par::new(2);
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            let stored = |seed| {
                let mut v = rand_vec(seed, len, 1.0);
                round(Some(fmt), &mut v);
                let mut s = Stored::default();
                s.resize(Some(fmt), len);
                s.view_mut().fill(0..len, Some(fmt), &mut Vec::new(), |o| {
                    o.copy_from_slice(&v)
                });
                (v, s)
            };
            let ((x, xs), (k, ks)) = (stored(51), stored(52));
            let (mut want, mut got) = (vec![0.0; len], vec![0.0; len]);
            forward(&par, (&x).into(), (&k).into(), &mut want, true);
            forward(&par, xs.view(), ks.view(), &mut got, true);
            assert_eq!(got, want, "{fmt:?}");
        }
    }
}
