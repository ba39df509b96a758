//! 2x2 max pooling with stride 2 on NHWC maps (odd sizes are floored: 7 -> 3).

use crate::parallel::Par;

/// A 2x2/stride-2 max pool over `h x w x c` maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2 {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl MaxPool2 {
    /// A pool over `h x w x c` inputs.
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        MaxPool2 { h, w, c }
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        self.h / 2
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        self.w / 2
    }

    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.oh() * self.ow() * self.c
    }

    /// Writes the window maxima to `y` and which of the 4 taps won (first max on ties) to `arg`.
    pub fn forward(&self, par: &Par, x: &[f32], n: usize, y: &mut [f32], arg: &mut [u8]) {
        let (w, c, ol, il) = (self.w, self.c, self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        par.run_split2(
            n,
            &mut y[..n * ol],
            ol,
            &mut arg[..n * ol],
            ol,
            |r, yp, ap| {
                for (k, s) in r.clone().enumerate() {
                    let xs = &x[s * il..(s + 1) * il];
                    for py in 0..oh {
                        for px in 0..ow {
                            let p00 = ((2 * py) * w + 2 * px) * c;
                            let (p01, p10) = (p00 + c, p00 + w * c);
                            let p11 = p10 + c;
                            let o = k * ol + (py * ow + px) * c;
                            for j in 0..c {
                                let (mut m, mut a) = (xs[p00 + j], 0u8);
                                if xs[p01 + j] > m {
                                    m = xs[p01 + j];
                                    a = 1;
                                }
                                if xs[p10 + j] > m {
                                    m = xs[p10 + j];
                                    a = 2;
                                }
                                if xs[p11 + j] > m {
                                    m = xs[p11 + j];
                                    a = 3;
                                }
                                yp[o + j] = m;
                                ap[o + j] = a;
                            }
                        }
                    }
                }
            },
        );
    }

    /// Routes each output gradient to the tap that won; `dx` is fully overwritten.
    pub fn backward(&self, par: &Par, dy: &[f32], arg: &[u8], n: usize, dx: &mut [f32]) {
        let (w, c, ol, il) = (self.w, self.c, self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        par.run_split(n, &mut dx[..n * il], il, |r, dp| {
            dp.fill(0.0);
            for (k, s) in r.clone().enumerate() {
                let dxs = &mut dp[k * il..(k + 1) * il];
                for py in 0..oh {
                    for px in 0..ow {
                        let p00 = ((2 * py) * w + 2 * px) * c;
                        let taps = [p00, p00 + c, p00 + w * c, p00 + w * c + c];
                        let o = s * ol + (py * ow + px) * c;
                        for j in 0..c {
                            dxs[taps[arg[o + j] as usize & 3] + j] = dy[o + j];
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad};

    #[test]
    fn pool_backward_matches_finite_differences() {
        for (h, w) in [(4, 6), (7, 7)] {
            let p = MaxPool2::new(h, w, 3);
            let n = 2;
            // distinct values spaced well beyond the finite-difference step
            let len = n * p.in_len();
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % len) as f32 * 0.05).collect();
            let r: Vec<f32> = (0..n * p.out_len())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let par = Par::new(2);
            let f = |x: &[f32]| {
                let mut y = vec![0.0; n * p.out_len()];
                let mut a = vec![0u8; n * p.out_len()];
                p.forward(&par, x, n, &mut y, &mut a);
                y
            };
            let mut y = vec![0.0; n * p.out_len()];
            let mut a = vec![0u8; n * p.out_len()];
            p.forward(&par, &x, n, &mut y, &mut a);
            let mut dx = vec![1.0; len];
            p.backward(&par, &r, &a, n, &mut dx);
            assert_close(&dx, &numeric_grad(&x, &r, f), 1e-2, "pool dx");
        }
    }
}
