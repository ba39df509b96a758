//! Max pooling on NHWC maps: the 2x2/stride-2 pool of the proxies (odd sizes are floored:
//! 7 -> 3) and the general `k x k` pool with stride and padding of the full-size models
//! (overlapping 3x3/stride-2 windows in AlexNet and ResNet-50).

use crate::parallel::Par;
use crate::precision::View;

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
    pub fn forward(&self, par: &Par, x: View<'_>, n: usize, y: &mut [f32], arg: &mut [u8]) {
        let (w, c, ol, il) = (self.w, self.c, self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        par.run_split2(
            n,
            &mut y[..n * ol],
            ol,
            &mut arg[..n * ol],
            ol,
            |r, yp, ap| {
                // a half-stored sample is widened once (max pooling of half values is exact)
                let mut buf = Vec::new();
                for (k, s) in r.clone().enumerate() {
                    let xs = x.f32s(s * il..(s + 1) * il, &mut buf);
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

/// A `k x k` max pool with `stride` and `pad` (padded taps never win) over `h x w x c` maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Window side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding on every side.
    pub pad: usize,
}

impl MaxPool {
    /// A pool over `h x w x c` inputs; the window index fits the `u8` tap record (k <= 15).
    pub fn new(h: usize, w: usize, c: usize, k: usize, stride: usize, pad: usize) -> Self {
        assert!(
            (1..=15).contains(&k) && stride >= 1 && pad < k,
            "max pool: bad window"
        );
        assert!(
            h + 2 * pad >= k && w + 2 * pad >= k,
            "max pool: window larger than input"
        );
        MaxPool {
            h,
            w,
            c,
            k,
            stride,
            pad,
        }
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    /// Input values per sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.oh() * self.ow() * self.c
    }

    /// Input pixel of tap `t` (= ky*k + kx) of output (py, px), if inside the map.
    #[inline]
    fn pixel(&self, py: usize, px: usize, t: usize) -> Option<usize> {
        let iy = (py * self.stride + t / self.k).checked_sub(self.pad)?;
        let ix = (px * self.stride + t % self.k).checked_sub(self.pad)?;
        (iy < self.h && ix < self.w).then_some(iy * self.w + ix)
    }

    /// Writes the window maxima to `y` and the winning tap (first max on ties) to `arg`.
    pub fn forward(&self, par: &Par, x: View<'_>, n: usize, y: &mut [f32], arg: &mut [u8]) {
        let (c, ol, il) = (self.c, self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        par.run_split2(
            n,
            &mut y[..n * ol],
            ol,
            &mut arg[..n * ol],
            ol,
            |r, yp, ap| {
                // a half-stored sample is widened once (max pooling of half values is exact)
                let mut buf = Vec::new();
                for (k, s) in r.clone().enumerate() {
                    let xs = x.f32s(s * il..(s + 1) * il, &mut buf);
                    for py in 0..oh {
                        for px in 0..ow {
                            let o = k * ol + (py * ow + px) * c;
                            let (ym, am) = (&mut yp[o..o + c], &mut ap[o..o + c]);
                            ym.fill(f32::NEG_INFINITY);
                            am.fill(0);
                            for t in 0..self.k * self.k {
                                if let Some(p) = self.pixel(py, px, t) {
                                    for ((m, a), &v) in ym
                                        .iter_mut()
                                        .zip(am.iter_mut())
                                        .zip(&xs[p * c..(p + 1) * c])
                                    {
                                        if v > *m {
                                            *m = v;
                                            *a = t as u8;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        );
    }

    /// Routes each output gradient to the tap that won (summed where windows overlap);
    /// `dx` is fully overwritten.
    pub fn backward(&self, par: &Par, dy: &[f32], arg: &[u8], n: usize, dx: &mut [f32]) {
        let (c, ol, il) = (self.c, self.out_len(), self.in_len());
        let (oh, ow) = (self.oh(), self.ow());
        par.run_split(n, &mut dx[..n * il], il, |r, dp| {
            dp.fill(0.0);
            for (k, s) in r.clone().enumerate() {
                let dxs = &mut dp[k * il..(k + 1) * il];
                for py in 0..oh {
                    for px in 0..ow {
                        let o = s * ol + (py * ow + px) * c;
                        for j in 0..c {
                            // the winner is always inside the map: a padded tap is never > a real one
                            if let Some(p) = self.pixel(py, px, arg[o + j] as usize) {
                                dxs[p * c + j] += dy[o + j];
                            }
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
                p.forward(&par, x.into(), n, &mut y, &mut a);
                y
            };
            let mut y = vec![0.0; n * p.out_len()];
            let mut a = vec![0u8; n * p.out_len()];
            p.forward(&par, (&x).into(), n, &mut y, &mut a);
            let mut dx = vec![1.0; len];
            p.backward(&par, &r, &a, n, &mut dx);
            assert_close(&dx, &numeric_grad(&x, &r, f), 1e-2, "pool dx");
        }
    }

    #[test]
    fn general_pool_backward_matches_finite_differences() {
        // overlapping 3x3/2 (AlexNet), padded 3x3/2 (ResNet-50 stem), and 2x2/2
        for (h, w, k, s, pad) in [(7, 7, 3, 2, 0), (6, 5, 3, 2, 1), (4, 6, 2, 2, 0)] {
            let p = MaxPool::new(h, w, 3, k, s, pad);
            let n = 2;
            let len = n * p.in_len();
            let x: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % len) as f32 * 0.05 - 1.0)
                .collect();
            let r: Vec<f32> = (0..n * p.out_len())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let par = Par::new(2);
            let f = |x: &[f32]| {
                let mut y = vec![0.0; n * p.out_len()];
                let mut a = vec![0u8; n * p.out_len()];
                p.forward(&par, x.into(), n, &mut y, &mut a);
                y
            };
            let mut y = vec![0.0; n * p.out_len()];
            let mut a = vec![0u8; n * p.out_len()];
            p.forward(&par, (&x).into(), n, &mut y, &mut a);
            assert!(y.iter().all(|v| v.is_finite()), "a window saw only padding");
            let mut dx = vec![1.0; len];
            p.backward(&par, &r, &a, n, &mut dx);
            assert_close(&dx, &numeric_grad(&x, &r, f), 1e-2, "max pool dx");
            if (k, s, pad) == (2, 2, 0) {
                // the same as the proxies' fast 2x2 pool
                let q = MaxPool2::new(h, w, 3);
                let mut y2 = vec![0.0; n * q.out_len()];
                let mut a2 = vec![0u8; n * q.out_len()];
                q.forward(&par, (&x).into(), n, &mut y2, &mut a2);
                assert_eq!(y, y2);
            }
        }
        assert_eq!(MaxPool::new(55, 55, 1, 3, 2, 0).oh(), 27);
        assert_eq!(MaxPool::new(112, 112, 1, 3, 2, 1).oh(), 56);
    }

    /// Pooling half-stored input gives what the rounded f32 input gives, maxima and taps.
    #[test]
    fn pooling_half_stored_input_equals_pooling_its_values() {
        use crate::layers::gradcheck::rand_vec;
        use crate::precision::{round, HalfFormat, Stored};
        let (n, par) = (3, Par::new(2));
        let two = MaxPool2::new(7, 6, 16);
        let window = MaxPool::new(7, 6, 16, 3, 2, 1);
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            let mut x = rand_vec(41, n * two.in_len(), 1.0);
            round(Some(fmt), &mut x);
            let mut stored = Stored::default();
            stored.resize(Some(fmt), x.len());
            stored
                .view_mut()
                .fill(0..x.len(), Some(fmt), &mut Vec::new(), |o| {
                    o.copy_from_slice(&x)
                });
            let run = |xin: View<'_>, general: bool| {
                let ol = if general {
                    window.out_len()
                } else {
                    two.out_len()
                };
                let (mut y, mut a) = (vec![0.0; n * ol], vec![0u8; n * ol]);
                if general {
                    window.forward(&par, xin, n, &mut y, &mut a);
                } else {
                    two.forward(&par, xin, n, &mut y, &mut a);
                }
                (y, a)
            };
            for general in [false, true] {
                assert_eq!(
                    run(stored.view(), general),
                    run((&x).into(), general),
                    "{fmt:?}"
                );
            }
        }
    }
}
