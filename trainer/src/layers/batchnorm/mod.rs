//! Per-channel batch normalisation over `[rows, C]` (rows = N*H*W in NHWC), optionally fused
//! with the ReLU that follows it (one pass instead of two over the largest tensors).

use std::sync::Arc;

use crate::layers::relu;
use crate::parallel::{reduce_f64, Par};
use crate::precision::{round_counting, HalfFormat, Underflow, View, ViewMut};

#[cfg(target_arch = "x86_64")]
mod simd;

/// Rows an epilogue writes before rounding them to the half format, so the rounding reads
/// values that are still in L1.
const ROUND_ROWS: usize = 64;

/// Sums per-channel batch-norm statistics over the data-parallel ranks that share one batch
/// (synchronised BN); without it every rank normalises over its local batch, as on P GPUs.
pub trait StatSync: Send + Sync + std::fmt::Debug {
    /// Replaces `sums` by its element-wise sum over all ranks and returns the total row count.
    /// Every rank calls it the same number of times, in the same order, with equal lengths.
    fn sum(&self, sums: &mut [f64], rows: usize) -> usize;
}

/// Statistics over this rank's local batch only.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStats;

impl StatSync for LocalStats {
    fn sum(&self, _sums: &mut [f64], rows: usize) -> usize {
        rows
    }
}

/// Batch norm state: running statistics plus the batch statistics kept for backward.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Channels.
    pub c: usize,
    /// Weight of the new batch statistic in the running average (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
    /// Running mean used in evaluation.
    pub running_mean: Vec<f32>,
    /// Running (unbiased) variance used in evaluation.
    pub running_var: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    sync: Arc<dyn StatSync>,
}

impl BatchNorm {
    /// A fresh batch norm over `c` channels (running mean 0, variance 1).
    pub fn new(c: usize) -> Self {
        BatchNorm {
            c,
            momentum: 0.1,
            eps: 1e-5,
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
            mean: vec![0.0; c],
            invstd: vec![1.0; c],
            sync: Arc::new(LocalStats),
        }
    }

    /// Sets where the batch statistics are summed (local batch by default).
    pub fn set_sync(&mut self, sync: Arc<dyn StatSync>) {
        self.sync = sync;
    }

    /// Training forward: normalises with the batch statistics, updates the running ones,
    /// and writes `y = gamma * xhat + beta` (then `max(y, 0)` if `relu`), rounded to `fmt`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train(
        &mut self,
        par: &Par,
        x: View<'_>,
        rows: usize,
        gamma: &[f32],
        beta: &[f32],
        y: ViewMut<'_>,
        relu: bool,
        fmt: Option<HalfFormat>,
    ) {
        let c = self.c;
        let vectorised = vectorised(c);
        let parts = par.run_ranges(rows, |r| {
            stats(x.slice(r.start * c..r.end * c), c, vectorised)
        });
        let mut acc = reduce_f64(&parts, 2 * c);
        let rows_all = self.sync.sum(&mut acc, rows);
        let m = rows_all.max(1) as f64;
        for j in 0..c {
            let mean = acc[j] / m;
            let var = (acc[c + j] / m - mean * mean).max(0.0);
            self.mean[j] = mean as f32;
            self.invstd[j] = (1.0 / (var + self.eps as f64).sqrt()) as f32;
            // PyTorch keeps the unbiased variance in the running estimate.
            let unbiased = if rows_all > 1 {
                var * m / (m - 1.0)
            } else {
                var
            };
            let mo = self.momentum;
            self.running_mean[j] = (1.0 - mo) * self.running_mean[j] + mo * mean as f32;
            self.running_var[j] = (1.0 - mo) * self.running_var[j] + mo * unbiased as f32;
        }
        let (mean, invstd) = (self.mean.clone(), self.invstd.clone());
        self.apply(par, x, rows, &mean, &invstd, gamma, beta, y, relu, fmt);
    }

    /// Evaluation forward with the running statistics, rounded to `fmt`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_eval(
        &self,
        par: &Par,
        x: View<'_>,
        rows: usize,
        gamma: &[f32],
        beta: &[f32],
        y: ViewMut<'_>,
        relu: bool,
        fmt: Option<HalfFormat>,
    ) {
        let invstd: Vec<f32> = self
            .running_var
            .iter()
            .map(|&v| 1.0 / (v + self.eps).sqrt())
            .collect();
        self.apply(
            par,
            x,
            rows,
            &self.running_mean,
            &invstd,
            gamma,
            beta,
            y,
            relu,
            fmt,
        );
    }

    /// `y = (x - mean) * invstd * gamma + beta`, folded into one multiply-add per value;
    /// rounded to `fmt` every [`ROUND_ROWS`] rows (`relu(round(v)) == round(relu(v))`, so the
    /// fused output is exactly the rounded BN output passed through the ReLU).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        par: &Par,
        x: View<'_>,
        rows: usize,
        mean: &[f32],
        invstd: &[f32],
        gamma: &[f32],
        beta: &[f32],
        y: ViewMut<'_>,
        relu: bool,
        fmt: Option<HalfFormat>,
    ) {
        let c = self.c;
        let vectorised = vectorised(c);
        let scale: Vec<f32> = gamma.iter().zip(invstd).map(|(&g, &i)| g * i).collect();
        let shift: Vec<f32> = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((&b, &m), &s)| b - m * s)
            .collect();
        assert!(y.len() >= rows * c, "batch norm: output too small");
        if let Some(f) = y.format() {
            assert_eq!(fmt, Some(f), "batch norm: half output of another format");
        }
        let ranges = par.ranges(rows);
        let parts = y.split(&ranges, c);
        par.run(ranges.into_iter().zip(parts).collect(), |(r, mut yp)| {
            let xp = x.slice(r.start * c..r.end * c);
            if vectorised {
                #[cfg(target_arch = "x86_64")]
                return simd::apply(xp, c, &scale, &shift, yp, relu, fmt);
            }
            let (mut start, mut scratch) = (0, Vec::new());
            xp.for_each_block(ROUND_ROWS * c, |xb| {
                let block = start..start + xb.len();
                start = block.end;
                yp.fill(block, fmt, &mut scratch, |yb| {
                    for (yr, xr) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
                        for (((o, &v), &s), &t) in yr.iter_mut().zip(xr).zip(&scale).zip(&shift) {
                            let v = v * s + t;
                            *o = if relu { relu::relu(v) } else { v };
                        }
                    }
                });
            });
        });
    }

    /// Training backward, in place: `grad` holds dL/dy on entry and dL/dx on return, rounded
    /// to `dx_fmt` as it is produced (the returned count: dx values that flushed to zero).
    /// With `relu_out = Some(y)` the ReLU that followed is folded in (`y` is its output).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        x: View<'_>,
        relu_out: Option<View<'_>>,
        grad: &mut [f32],
        rows: usize,
        gamma: &[f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
        dx_fmt: Option<HalfFormat>,
    ) -> Underflow {
        let c = self.c;
        // the layer keeps its ReLU output stored like its input; checked here, not only in the
        // vector kernels (which read both with one format), so every machine rejects a mix
        assert!(relu_out.is_none_or(|y| y.len() == x.len() && y.format() == x.format()));
        let vectorised = vectorised(c);
        let (mean, invstd) = (&self.mean, &self.invstd);
        // pass 1: fold the ReLU mask into the gradient in place and sum g and g*(x - mean)
        let parts = par.run_split(rows, &mut grad[..rows * c], c, |r, gp| {
            let xs = x.slice(r.start * c..r.end * c);
            let ys = relu_out.map(|y| y.slice(r.start * c..r.end * c));
            if vectorised {
                #[cfg(target_arch = "x86_64")]
                return simd::backward_sums(xs, ys, gp, c, mean, BLOCK_ROWS);
            }
            if let Some(y) = ys {
                let mut gblocks = gp.chunks_mut(ROUND_ROWS * c);
                y.for_each_block(ROUND_ROWS * c, |yb| {
                    let gb = gblocks.next().expect("gradient blocks match output blocks");
                    // a select, not a branch, so it vectorises
                    for (g, &y) in gb.iter_mut().zip(yb) {
                        *g = if y > 0.0 { *g } else { 0.0 };
                    }
                });
            }
            let gp: &[f32] = gp;
            let mut i = 0;
            blocked_sums(xs, c, |xr, sdy, sdx| {
                let gr = &gp[i * c..(i + 1) * c];
                i += 1;
                for (((sdy, sdx), (&g, &x)), &mu) in sdy
                    .iter_mut()
                    .zip(sdx.iter_mut())
                    .zip(gr.iter().zip(xr))
                    .zip(mean)
                {
                    *sdy += g;
                    *sdx += g * (x - mu);
                }
            })
        });
        let mut acc = reduce_f64(&parts, 2 * c);
        // the parameter gradients are this rank's share (summed later with all other gradients);
        // dx needs the sums over every row the statistics were taken over
        for j in 0..c {
            dbeta[j] = acc[j] as f32;
            dgamma[j] = (acc[c + j] * invstd[j] as f64) as f32;
        }
        let m = self.sync.sum(&mut acc, rows).max(1) as f32;
        // dx = gamma*invstd * (g - mean(g) - xhat * mean(g*xhat)) = a*g + b*x + k per channel
        let mut ca = vec![0.0f32; c];
        let mut cb = vec![0.0f32; c];
        let mut ck = vec![0.0f32; c];
        for j in 0..c {
            let sdy = acc[j] as f32;
            let sdxhat = (acc[c + j] * invstd[j] as f64) as f32;
            let gi = gamma[j] * invstd[j];
            ca[j] = gi;
            cb[j] = -gi * invstd[j] * sdxhat / m;
            ck[j] = -gi * sdy / m - cb[j] * mean[j];
        }
        // pass 2: dx = a*g + b*x + k (the mask is already in g), rounded block by block
        let parts = par.run_split(rows, &mut grad[..rows * c], c, |r, gp| {
            let xs = x.slice(r.start * c..r.end * c);
            if vectorised {
                #[cfg(target_arch = "x86_64")]
                {
                    let (nonzero, flushed) = simd::backward_dx(xs, gp, c, &ca, &cb, &ck, dx_fmt);
                    return Underflow { nonzero, flushed };
                }
            }
            let mut u = Underflow::default();
            let mut gblocks = gp.chunks_mut(ROUND_ROWS * c);
            xs.for_each_block(ROUND_ROWS * c, |xb| {
                let gb = gblocks.next().expect("gradient blocks match input blocks");
                for (gr, xr) in gb.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
                    for ((((g, &x), &a), &b), &k) in
                        gr.iter_mut().zip(xr).zip(&ca).zip(&cb).zip(&ck)
                    {
                        *g = a * *g + b * x + k;
                    }
                }
                u.add(round_counting(dx_fmt, gb));
            });
            u
        });
        let mut u = Underflow::default();
        parts.into_iter().for_each(|p| u.add(p));
        u
    }
}

/// Rows summed in f32 before a block's sums are added to the f64 totals: the inner loops run
/// at f32 SIMD width while each f32 sum stays short enough to keep its rounding error small.
const BLOCK_ROWS: usize = 32;

/// Whether the AVX-512 kernels run for `c` channels; decided once per pass, on the calling
/// thread (where the tests can switch them off to compare with the portable loops).
fn vectorised(c: usize) -> bool {
    #[cfg(test)]
    if tests::PORTABLE_ONLY.with(|p| p.get()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    return simd::usable(c);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = c;
        false
    }
}

/// Per-channel sums of `x` and `x*x` over the rows of `x` (`[sums; squares]`).
fn stats(x: View<'_>, c: usize, vectorised: bool) -> Vec<f64> {
    if vectorised {
        #[cfg(target_arch = "x86_64")]
        return simd::stats(x, c, BLOCK_ROWS);
    }
    blocked_sums(x, c, |row, s, q| {
        for ((s, q), &v) in s.iter_mut().zip(q.iter_mut()).zip(row) {
            *s += v;
            *q += v * v;
        }
    })
}

/// Two per-channel sums over the rows of `x` (`[rows, c]`): `add(row, a, b)` adds one row's
/// contributions to the f32 block accumulators `a` and `b`. Returns `[a totals, b totals]` in f64.
fn blocked_sums(
    x: View<'_>,
    c: usize,
    mut add: impl FnMut(&[f32], &mut [f32], &mut [f32]),
) -> Vec<f64> {
    let mut total = vec![0.0f64; 2 * c];
    let mut block = vec![0.0f32; 2 * c];
    x.for_each_block(BLOCK_ROWS * c, |rows| {
        block.fill(0.0);
        let (a, b) = block.split_at_mut(c);
        for row in rows.chunks_exact(c) {
            add(row, a, b);
        }
        for (t, &v) in total.iter_mut().zip(block.iter()) {
            *t += v as f64;
        }
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, numeric_grad, rand_vec};
    use crate::precision::{round, Stored};
    use std::cell::Cell;

    thread_local! {
        /// Set by a test to run the portable loops where the AVX-512 kernels would run.
        pub(super) static PORTABLE_ONLY: Cell<bool> = const { Cell::new(false) };
    }

    /// Everything one training forward, evaluation forward and backward produce.
    type Outputs = (
        Vec<f32>,
        Vec<f32>,
        Vec<f32>,
        Vec<f32>,
        Vec<f32>,
        Underflow,
        Vec<f32>,
    );

    #[allow(clippy::too_many_arguments)]
    fn passes(
        portable: bool,
        x: &[f32],
        rows: usize,
        c: usize,
        gamma: &[f32],
        beta: &[f32],
        dy: &[f32],
        relu: bool,
        fmt: Option<HalfFormat>,
        store_half: bool,
    ) -> Outputs {
        PORTABLE_ONLY.with(|p| p.set(portable));
        let par = Par::new(2);
        // half-stored (a conv output) or f32-stored and rounded in place (BN5 on pool5)
        let storage = if store_half { fmt } else { None };
        let mut stored = Stored::default();
        stored.resize(storage, rows * c);
        stored
            .view_mut()
            .fill(0..rows * c, fmt, &mut Vec::new(), |o| o.copy_from_slice(x));
        let mut bn = BatchNorm::new(c);
        // the training output is stored like the input; the evaluation output is f32, rounded
        let (mut y, mut ye) = (Stored::default(), vec![0.0; rows * c]);
        y.resize(storage, rows * c);
        bn.forward_train(
            &par,
            stored.view(),
            rows,
            gamma,
            beta,
            y.view_mut(),
            relu,
            fmt,
        );
        let ye_out = (&mut ye[..]).into();
        bn.forward_eval(&par, stored.view(), rows, gamma, beta, ye_out, relu, fmt);
        let mut g = dy.to_vec();
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        let y_relu = relu.then(|| y.view());
        let u = bn.backward(
            &par,
            stored.view(),
            y_relu,
            &mut g,
            rows,
            gamma,
            &mut dg,
            &mut db,
            fmt,
        );
        PORTABLE_ONLY.with(|p| p.set(false));
        let mut running = bn.running_mean.clone();
        running.extend(&bn.running_var);
        (y.to_f32(), ye, g, dg, db, u, running)
    }

    /// The AVX-512 kernels (channel counts that are multiples of 16: one vector, several, a
    /// group of four plus one) give the portable loops' values, counts and running statistics,
    /// bit for bit, for f32 and half-stored inputs, with and without the fused ReLU.
    #[test]
    fn vector_kernels_match_the_portable_loops() {
        if crate::precision::simd() {
            assert!(vectorised(16) && vectorised(288) && !vectorised(24));
        }
        let rows = 301; // several sum blocks per thread, and a short last one
        for c in [16, 48, 80, 288] {
            let x: Vec<f32> = rand_vec(31, rows * c, 1.0)
                .iter()
                .enumerate()
                .map(|(i, v)| v * (1.0 + (i % 7) as f32) + (i % c) as f32 * 0.1)
                .collect();
            let gamma = rand_vec(32, c, 1.0);
            let beta = rand_vec(33, c, 0.5);
            let dy = rand_vec(34, rows * c, 1e-5); // tiny, so some of dx flushes in f16
            let cases = [
                (None, false),
                (Some(HalfFormat::F16), true),
                (Some(HalfFormat::F16), false),
                (Some(HalfFormat::Bf16), true),
                (Some(HalfFormat::Bf16), false),
            ];
            for (fmt, store_half) in cases {
                for relu in [false, true] {
                    let run = |portable| {
                        let out = passes(
                            portable, &x, rows, c, &gamma, &beta, &dy, relu, fmt, store_half,
                        );
                        // bits, so a zero of the other sign counts as a difference
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        let (y, ye, g, dg, db, u, running) = out;
                        let u = (u.flushed, u.nonzero);
                        let floats = [y, ye, g, dg, db, running].map(|v| bits(&v));
                        (floats, u)
                    };
                    let (fast, slow) = (run(false), run(true));
                    let case = format!("c {c} {fmt:?} half-stored {store_half} relu {relu}");
                    assert_eq!(fast, slow, "{case}");
                    if fmt == Some(HalfFormat::F16) {
                        assert!(fast.1 .0 > 0, "the test should exercise flushes");
                    }
                }
            }
        }
    }

    fn check(threads: usize) {
        let relu = false;
        let (rows, c) = (37, 5);
        let par = Par::new(threads);
        // offset and scale per channel so the statistics are not trivial
        let x: Vec<f32> = rand_vec(11, rows * c, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % c) as f32) + (i % c) as f32)
            .collect();
        let gamma = vec![1.0, 0.5, -1.5, 2.0, 0.8];
        let beta = vec![0.0, 0.3, -0.2, 0.1, 0.5];
        let r = rand_vec(12, rows * c, 1.0);
        let fwd = |x: &[f32], g: &[f32], b: &[f32]| {
            let mut bn = BatchNorm::new(c);
            let mut y = vec![0.0; rows * c];
            bn.forward_train(&par, x.into(), rows, g, b, (&mut y[..]).into(), relu, None);
            y
        };
        let mut bn = BatchNorm::new(c);
        let mut y = vec![0.0; rows * c];
        bn.forward_train(
            &par,
            (&x).into(),
            rows,
            &gamma,
            &beta,
            (&mut y[..]).into(),
            relu,
            None,
        );
        let mut grad = r.clone();
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        bn.backward(
            &par,
            (&x).into(),
            relu.then_some((&y).into()),
            &mut grad,
            rows,
            &gamma,
            &mut dg,
            &mut db,
            None,
        );
        assert_close(
            &grad,
            &numeric_grad(&x, &r, |x| fwd(x, &gamma, &beta)),
            1e-2,
            "bn dx",
        );
        assert_close(
            &dg,
            &numeric_grad(&gamma, &r, |g| fwd(&x, g, &beta)),
            1e-2,
            "bn dgamma",
        );
        assert_close(
            &db,
            &numeric_grad(&beta, &r, |b| fwd(&x, &gamma, b)),
            1e-2,
            "bn dbeta",
        );
    }

    #[test]
    fn bn_backward_matches_finite_differences() {
        check(1);
        check(3);
    }

    /// The fused BN+ReLU equals BN followed by the stand-alone ReLU (whose own backward is
    /// checked against finite differences in relu.rs); FD on the fused op would cross kinks.
    #[test]
    fn fused_relu_equals_composition() {
        let (rows, c) = (50, 4);
        let par = Par::new(2);
        let x = rand_vec(13, rows * c, 2.0);
        let gamma = vec![1.0, -0.5, 2.0, 0.7];
        let beta = vec![0.1, 0.2, -0.3, 0.0];
        let r = rand_vec(14, rows * c, 1.0);
        let mut bn = BatchNorm::new(c);
        let mut y = vec![0.0; rows * c];
        bn.forward_train(
            &par,
            (&x).into(),
            rows,
            &gamma,
            &beta,
            (&mut y[..]).into(),
            false,
            None,
        );
        let mut z = vec![0.0; rows * c];
        crate::layers::relu::forward(&y, &mut z);
        let mut g1 = r.clone();
        crate::layers::relu::backward(&z, &mut g1);
        let (mut dg1, mut db1) = (vec![0.0; c], vec![0.0; c]);
        bn.backward(
            &par,
            (&x).into(),
            None,
            &mut g1,
            rows,
            &gamma,
            &mut dg1,
            &mut db1,
            None,
        );

        let mut bn2 = BatchNorm::new(c);
        let mut z2 = vec![0.0; rows * c];
        bn2.forward_train(
            &par,
            (&x).into(),
            rows,
            &gamma,
            &beta,
            (&mut z2[..]).into(),
            true,
            None,
        );
        assert_eq!(z, z2);
        let mut g2 = r.clone();
        let (mut dg2, mut db2) = (vec![0.0; c], vec![0.0; c]);
        bn2.backward(
            &par,
            (&x).into(),
            Some((&z2).into()),
            &mut g2,
            rows,
            &gamma,
            &mut dg2,
            &mut db2,
            None,
        );
        assert_close(&g2, &g1, 1e-5, "fused dx");
        assert_close(&dg2, &dg1, 1e-5, "fused dgamma");
        assert_close(&db2, &db1, 1e-5, "fused dbeta");
    }

    #[test]
    fn running_stats_follow_pytorch() {
        let mut bn = BatchNorm::new(1);
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let mut y = [0.0f32; 4];
        bn.forward_train(
            &Par::new(1),
            (&x[..]).into(),
            4,
            &[1.0],
            &[0.0],
            (&mut y[..]).into(),
            false,
            None,
        );
        assert!((bn.running_mean[0] - 0.25).abs() < 1e-6);
        // unbiased var = 5/3; 0.9 * 1 + 0.1 * 5/3
        assert!((bn.running_var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
        let s: f32 = y.iter().sum();
        assert!(s.abs() < 1e-5);
    }

    #[test]
    fn rounding_inside_the_epilogues_equals_rounding_after_them() {
        let (rows, c) = (301, 6); // several rounding blocks per thread, and a short last one
        let par = Par::new(2);
        let x = rand_vec(21, rows * c, 1.0);
        let gamma = vec![1.0, 0.5, -1.5, 2.0, 0.8, 1e-3];
        let beta = vec![0.0, 0.3, -0.2, 0.1, 0.5, 0.0];
        // tiny output gradients so that some of dx flushes in f16
        let dy = rand_vec(22, rows * c, 1e-5);
        for fmt in [HalfFormat::F16, HalfFormat::Bf16] {
            for relu in [false, true] {
                let mut bn = BatchNorm::new(c);
                let mut plain = vec![0.0; rows * c];
                bn.forward_train(
                    &par,
                    (&x).into(),
                    rows,
                    &gamma,
                    &beta,
                    (&mut plain[..]).into(),
                    relu,
                    None,
                );
                round(Some(fmt), &mut plain);
                let mut fused = vec![0.0; rows * c];
                let mut bn2 = BatchNorm::new(c);
                bn2.forward_train(
                    &par,
                    (&x).into(),
                    rows,
                    &gamma,
                    &beta,
                    (&mut fused[..]).into(),
                    relu,
                    Some(fmt),
                );
                assert_eq!(plain, fused, "{fmt:?} relu {relu} forward");
                let (mut eval_plain, mut eval_fused) = (vec![0.0; rows * c], vec![0.0; rows * c]);
                bn2.forward_eval(
                    &par,
                    (&x).into(),
                    rows,
                    &gamma,
                    &beta,
                    (&mut eval_plain[..]).into(),
                    relu,
                    None,
                );
                round(Some(fmt), &mut eval_plain);
                bn2.forward_eval(
                    &par,
                    (&x).into(),
                    rows,
                    &gamma,
                    &beta,
                    (&mut eval_fused[..]).into(),
                    relu,
                    Some(fmt),
                );
                assert_eq!(eval_plain, eval_fused, "{fmt:?} relu {relu} eval");

                let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
                let mut g_plain = dy.clone();
                let y = relu.then_some((&fused).into());
                let u0 = bn.backward(
                    &par,
                    (&x).into(),
                    y,
                    &mut g_plain,
                    rows,
                    &gamma,
                    &mut dg,
                    &mut db,
                    None,
                );
                assert_eq!(u0, Underflow::default());
                let u_plain = round_counting(Some(fmt), &mut g_plain);
                let mut g_fused = dy.clone();
                let u_fused = bn.backward(
                    &par,
                    (&x).into(),
                    y,
                    &mut g_fused,
                    rows,
                    &gamma,
                    &mut dg,
                    &mut db,
                    Some(fmt),
                );
                assert_eq!(g_plain, g_fused, "{fmt:?} relu {relu} dx");
                assert_eq!(u_plain, u_fused, "{fmt:?} relu {relu} counts");
                if fmt == HalfFormat::F16 {
                    assert!(u_fused.flushed > 0, "the test should exercise flushes");
                }
            }
        }
    }
}
