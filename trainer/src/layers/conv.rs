//! 3x3 convolution, stride 1, padding 1, NHWC, computed as im2col + GEMM.
//!
//! With NHWC the convolution of `b` samples is `[b*H*W, 9*Cin] x [9*Cin, Cout]`; samples are
//! processed in small chunks so the im2col buffer stays in L2.

use crate::linalg::{matmul, MatRef};
use crate::parallel::{reduce_into, Par};

/// Bytes of im2col buffer one chunk aims for (half of a Zen 4 L2).
const CHUNK_BYTES: usize = 512 * 1024;

/// A 3x3/stride 1/pad 1 convolution; weights are HWIO (`[3, 3, cin, cout]` = `[9*cin, cout]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3x3 {
    /// Input (= output) height.
    pub h: usize,
    /// Input (= output) width.
    pub w: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
}

impl Conv3x3 {
    /// A convolution on `h x w` maps from `cin` to `cout` channels.
    pub fn new(h: usize, w: usize, cin: usize, cout: usize) -> Self {
        Conv3x3 { h, w, cin, cout }
    }

    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.cin
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.h * self.w * self.cout
    }

    /// GEMM inner dimension (im2col row length).
    pub fn k(&self) -> usize {
        9 * self.cin
    }

    /// Weight shape in storage order (HWIO).
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![3, 3, self.cin, self.cout]
    }

    /// Samples per chunk so that the im2col buffer is about `CHUNK_BYTES`.
    fn chunk(&self) -> usize {
        (CHUNK_BYTES / (self.h * self.w * self.k() * 4)).clamp(1, 64)
    }

    /// Unfolds `b` samples of `x` into `col` (`[b*h*w, 9*cin]`, column = (ky*3+kx)*cin + c).
    pub fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let (h, w, c, k) = (self.h, self.w, self.cin, self.k());
        let b = x.len() / self.in_len();
        for s in 0..b {
            let xs = &x[s * self.in_len()..(s + 1) * self.in_len()];
            for oy in 0..h {
                for ox in 0..w {
                    let row = &mut col[((s * h + oy) * w + ox) * k..][..k];
                    for ky in 0..3 {
                        let seg = &mut row[ky * 3 * c..(ky + 1) * 3 * c];
                        let iy = oy as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            seg.fill(0.0);
                            continue;
                        }
                        let line = &xs[iy as usize * w * c..(iy as usize + 1) * w * c];
                        if ox >= 1 && ox + 1 < w {
                            // interior: the three taps of this kernel row are contiguous in NHWC
                            seg.copy_from_slice(&line[(ox - 1) * c..(ox + 2) * c]);
                        } else {
                            for kx in 0..3 {
                                let ix = ox as isize + kx as isize - 1;
                                let dst = &mut seg[kx * c..(kx + 1) * c];
                                if ix < 0 || ix >= w as isize {
                                    dst.fill(0.0);
                                } else {
                                    dst.copy_from_slice(
                                        &line[ix as usize * c..(ix as usize + 1) * c],
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Folds `dcol` back onto the input layout: `dx` is overwritten with the summed taps.
    pub fn col2im(&self, dcol: &[f32], dx: &mut [f32]) {
        let (h, w, c, k) = (self.h, self.w, self.cin, self.k());
        dx.fill(0.0);
        let b = dx.len() / self.in_len();
        for s in 0..b {
            let xs = &mut dx[s * self.in_len()..(s + 1) * self.in_len()];
            for oy in 0..h {
                for ox in 0..w {
                    let row = &dcol[((s * h + oy) * w + ox) * k..][..k];
                    for ky in 0..3 {
                        let seg = &row[ky * 3 * c..(ky + 1) * 3 * c];
                        let iy = oy as isize + ky as isize - 1;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let line = &mut xs[iy as usize * w * c..(iy as usize + 1) * w * c];
                        if ox >= 1 && ox + 1 < w {
                            for (d, &v) in line[(ox - 1) * c..(ox + 2) * c].iter_mut().zip(seg) {
                                *d += v;
                            }
                        } else {
                            for kx in 0..3 {
                                let ix = ox as isize + kx as isize - 1;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let dst = &mut line[ix as usize * c..(ix as usize + 1) * c];
                                for (d, &v) in dst.iter_mut().zip(&seg[kx * c..(kx + 1) * c]) {
                                    *d += v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `y = conv(x) + bias` for `n` samples.
    pub fn forward(
        &self,
        par: &Par,
        x: &[f32],
        n: usize,
        weight: &[f32],
        bias: &[f32],
        y: &mut [f32],
    ) {
        let (hw, k, cout) = (self.h * self.w, self.k(), self.cout);
        let (il, ol) = (self.in_len(), self.out_len());
        let chunk = self.chunk();
        par.run_split(n, &mut y[..n * ol], ol, |r, yp| {
            let mut col = vec![0.0f32; chunk.min(r.len()) * hw * k];
            let mut s = r.start;
            while s < r.end {
                let b = chunk.min(r.end - s);
                let col = &mut col[..b * hw * k];
                self.im2col(&x[s * il..(s + b) * il], col);
                let yc = &mut yp[(s - r.start) * ol..(s - r.start + b) * ol];
                for row in yc.chunks_exact_mut(cout) {
                    row.copy_from_slice(bias);
                }
                matmul(
                    b * hw,
                    cout,
                    k,
                    yc,
                    cout,
                    true,
                    MatRef::rows(col, k),
                    MatRef::rows(weight, cout),
                );
                s += b;
            }
        });
    }

    /// Writes `dweight`, `dbias` and (if asked) `dx` from the output gradient `dy`.
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
        let (hw, k, cout) = (self.h * self.w, self.k(), self.cout);
        let (il, ol) = (self.in_len(), self.out_len());
        let chunk = self.chunk();
        let want_dx = dx.is_some();
        let mut empty: [f32; 0] = [];
        let (dx_buf, dx_stride) = match dx {
            Some(d) => (&mut d[..n * il], il),
            None => (&mut empty[..], 0),
        };
        let parts = par.run_split(n, dx_buf, dx_stride, |r, dxp| {
            let m = chunk.min(r.len()) * hw * k;
            let mut col = vec![0.0f32; m];
            let mut dcol = if want_dx { vec![0.0f32; m] } else { Vec::new() };
            let mut dw = vec![0.0f32; k * cout];
            let mut db = vec![0.0f32; cout];
            let mut s = r.start;
            while s < r.end {
                let b = chunk.min(r.end - s);
                let rows = b * hw;
                let col = &mut col[..rows * k];
                self.im2col(&x[s * il..(s + b) * il], col);
                let dyc = &dy[s * ol..(s + b) * ol];
                // dW += col^T * dy (gemm reads the transpose through strides, no copy)
                matmul(
                    k,
                    cout,
                    rows,
                    &mut dw,
                    cout,
                    true,
                    MatRef::transposed(col, k),
                    MatRef::rows(dyc, cout),
                );
                for row in dyc.chunks_exact(cout) {
                    for (a, &v) in db.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                if want_dx {
                    let dcol = &mut dcol[..rows * k];
                    matmul(
                        rows,
                        k,
                        cout,
                        dcol,
                        k,
                        false,
                        MatRef::rows(dyc, cout),
                        MatRef::transposed(weight, cout),
                    );
                    self.col2im(dcol, &mut dxp[(s - r.start) * il..(s - r.start + b) * il]);
                }
                s += b;
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
    fn conv_backward_matches_finite_differences() {
        let conv = Conv3x3::new(5, 4, 3, 4);
        let n = 3;
        let x = rand_vec(1, n * conv.in_len(), 1.0);
        let w = rand_vec(2, 9 * 3 * 4, 0.3);
        let b = rand_vec(3, 4, 0.1);
        let r = rand_vec(4, n * conv.out_len(), 1.0);
        for threads in [1, 2] {
            let par = Par::new(threads);
            let fwd = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; n * conv.out_len()];
                conv.forward(&par, x, n, w, b, &mut y);
                y
            };
            let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; 4], vec![0.0; x.len()]);
            conv.backward(&par, &x, &r, n, &w, &mut dw, &mut db, Some(&mut dx));
            assert_close(
                &dx,
                &numeric_grad(&x, &r, |x| fwd(x, &w, &b)),
                1e-2,
                "conv dx",
            );
            assert_close(
                &dw,
                &numeric_grad(&w, &r, |w| fwd(&x, w, &b)),
                1e-2,
                "conv dw",
            );
            assert_close(
                &db,
                &numeric_grad(&b, &r, |b| fwd(&x, &w, b)),
                1e-2,
                "conv db",
            );
        }
    }

    #[test]
    fn conv_forward_matches_direct_convolution() {
        let conv = Conv3x3::new(6, 7, 2, 3);
        let n = 2;
        let x = rand_vec(5, n * conv.in_len(), 1.0);
        let w = rand_vec(6, 9 * 2 * 3, 0.5);
        let b = vec![0.1, -0.2, 0.3];
        let mut y = vec![0.0; n * conv.out_len()];
        conv.forward(&Par::new(2), &x, n, &w, &b, &mut y);
        for s in 0..n {
            for oy in 0..6isize {
                for ox in 0..7isize {
                    for o in 0..3 {
                        let mut acc = b[o] as f64;
                        for ky in 0..3isize {
                            for kx in 0..3isize {
                                let (iy, ix) = (oy + ky - 1, ox + kx - 1);
                                if !(0..6).contains(&iy) || !(0..7).contains(&ix) {
                                    continue;
                                }
                                for c in 0..2 {
                                    let xv = x[s * 84 + (iy as usize * 7 + ix as usize) * 2 + c];
                                    let wv = w[((ky * 3 + kx) as usize * 2 + c) * 3 + o];
                                    acc += (xv * wv) as f64;
                                }
                            }
                        }
                        let got = y[s * 126 + (oy as usize * 7 + ox as usize) * 3 + o];
                        assert!((got as f64 - acc).abs() < 1e-4, "{got} vs {acc}");
                    }
                }
            }
        }
    }
}
