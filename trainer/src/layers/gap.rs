//! Global average pooling: `[n, h*w, c]` NHWC maps to `[n, c]` features.

use crate::parallel::Par;

/// The mean over all pixels of each channel of `hw`-pixel maps with `c` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalAvgPool {
    /// Pixels per map (h * w).
    pub hw: usize,
    /// Channels.
    pub c: usize,
}

impl GlobalAvgPool {
    /// A pool over `hw`-pixel maps of `c` channels.
    pub fn new(hw: usize, c: usize) -> Self {
        GlobalAvgPool { hw, c }
    }

    /// Writes the per-channel means of `n` samples of `x` to `y` (`[n, c]`).
    pub fn forward(&self, par: &Par, x: &[f32], n: usize, y: &mut [f32]) {
        let (hw, c) = (self.hw, self.c);
        let inv = 1.0 / hw as f32;
        par.run_split(n, &mut y[..n * c], c, |r, yp| {
            for (ys, s) in yp.chunks_exact_mut(c).zip(r) {
                ys.fill(0.0);
                for px in x[s * hw * c..(s + 1) * hw * c].chunks_exact(c) {
                    for (o, &v) in ys.iter_mut().zip(px) {
                        *o += v;
                    }
                }
                ys.iter_mut().for_each(|v| *v *= inv);
            }
        });
    }

    /// Spreads `dy` (`[n, c]`) evenly over every pixel: `dx` (`[n, hw, c]`) is overwritten.
    pub fn backward(&self, par: &Par, dy: &[f32], n: usize, dx: &mut [f32]) {
        let (hw, c) = (self.hw, self.c);
        let inv = 1.0 / hw as f32;
        par.run_split(n, &mut dx[..n * hw * c], hw * c, |r, dp| {
            for (ds, s) in dp.chunks_exact_mut(hw * c).zip(r) {
                let g = &dy[s * c..(s + 1) * c];
                for px in ds.chunks_exact_mut(c) {
                    for (d, &v) in px.iter_mut().zip(g) {
                        *d = v * inv;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};

    #[test]
    fn gap_backward_matches_finite_differences() {
        let (n, hw, c) = (3, 12, 5);
        let p = GlobalAvgPool::new(hw, c);
        let x = rand_vec(41, n * hw * c, 1.0);
        let r = rand_vec(42, n * c, 1.0);
        let par = Par::new(2);
        let f = |x: &[f32]| {
            let mut y = vec![0.0; n * c];
            p.forward(&par, x, n, &mut y);
            y
        };
        let y = f(&x);
        // channel 2 of sample 1 is the mean of its 12 pixels
        let want: f32 = (0..hw).map(|i| x[(hw + i) * c + 2]).sum::<f32>() / hw as f32;
        assert!((y[c + 2] - want).abs() < 1e-6);
        let mut dx = vec![9.0; n * hw * c];
        p.backward(&par, &r, n, &mut dx);
        assert_close(&dx, &numeric_grad(&x, &r, f), 1e-2, "gap dx");
    }
}
