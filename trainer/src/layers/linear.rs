//! Fully connected layer `y = x W + b` with `W` stored `[in, out]` (row-major).

use crate::linalg::{matmul, MatRef};
use crate::parallel::{reduce_into, Par};

/// A dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    /// Input features.
    pub inp: usize,
    /// Output features.
    pub out: usize,
}

impl Linear {
    /// A dense layer from `inp` to `out` features.
    pub fn new(inp: usize, out: usize) -> Self {
        Linear { inp, out }
    }

    /// `y = x W + b` for `n` rows.
    pub fn forward(
        &self,
        par: &Par,
        x: &[f32],
        n: usize,
        weight: &[f32],
        bias: &[f32],
        y: &mut [f32],
    ) {
        let (i, o) = (self.inp, self.out);
        par.run_split(n, &mut y[..n * o], o, |r, yp| {
            for row in yp.chunks_exact_mut(o) {
                row.copy_from_slice(bias);
            }
            matmul(
                r.len(),
                o,
                i,
                yp,
                o,
                true,
                MatRef::rows(&x[r.start * i..r.end * i], i),
                MatRef::rows(weight, o),
            );
        });
    }

    /// Writes `dweight = x^T dy`, `dbias = colsum(dy)` and, if asked, `dx = dy W^T`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        x: &[f32],
        dy: &[f32],
        n: usize,
        weight: &[f32],
        dweight: &mut [f32],
        dbias: &mut [f32],
        dx: Option<&mut [f32]>,
    ) {
        let (i, o) = (self.inp, self.out);
        let mut empty: [f32; 0] = [];
        let (dx_buf, stride) = match dx {
            Some(d) => (&mut d[..n * i], i),
            None => (&mut empty[..], 0),
        };
        let want_dx = stride != 0;
        let parts = par.run_split(n, dx_buf, stride, |r, dxp| {
            let xs = &x[r.start * i..r.end * i];
            let dys = &dy[r.start * o..r.end * o];
            let mut dw = vec![0.0f32; i * o];
            matmul(
                i,
                o,
                r.len(),
                &mut dw,
                o,
                false,
                MatRef::transposed(xs, i),
                MatRef::rows(dys, o),
            );
            let mut db = vec![0.0f32; o];
            for row in dys.chunks_exact(o) {
                for (a, &v) in db.iter_mut().zip(row) {
                    *a += v;
                }
            }
            if want_dx {
                matmul(
                    r.len(),
                    i,
                    o,
                    dxp,
                    i,
                    false,
                    MatRef::rows(dys, o),
                    MatRef::transposed(weight, o),
                );
            }
            (dw, db)
        });
        dweight.fill(0.0);
        dbias.fill(0.0);
        let (dws, dbs): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        reduce_into(dweight, &dws);
        reduce_into(dbias, &dbs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};

    #[test]
    fn linear_backward_matches_finite_differences() {
        let l = Linear::new(7, 5);
        let n = 9;
        let x = rand_vec(31, n * 7, 1.0);
        let w = rand_vec(32, 35, 0.5);
        let b = rand_vec(33, 5, 0.5);
        let r = rand_vec(34, n * 5, 1.0);
        let par = Par::new(2);
        let f = |x: &[f32], w: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * 5];
            l.forward(&par, x, n, w, b, &mut y);
            y
        };
        let (mut dw, mut db, mut dx) = (vec![0.0; 35], vec![0.0; 5], vec![0.0; n * 7]);
        l.backward(&par, &x, &r, n, &w, &mut dw, &mut db, Some(&mut dx));
        assert_close(
            &dx,
            &numeric_grad(&x, &r, |x| f(x, &w, &b)),
            1e-2,
            "linear dx",
        );
        assert_close(
            &dw,
            &numeric_grad(&w, &r, |w| f(&x, w, &b)),
            1e-2,
            "linear dw",
        );
        assert_close(
            &db,
            &numeric_grad(&b, &r, |b| f(&x, &w, b)),
            1e-2,
            "linear db",
        );
    }
}
