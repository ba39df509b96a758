//! Building blocks shared by the networks: weight initialisation, parameter handles, the
//! gradient announcer, conv + BN (+ ReLU) with its activations, pooling and dense layers.

use std::ops::Range;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::layers::{
    batchnorm::BatchNorm,
    conv::Conv2d,
    linear::Linear,
    pool::{MaxPool, MaxPool2},
};
use crate::parallel::Par;
use crate::params::{two_mut, ParamBuilder, ParamId, ParamKind, ParamStore};
use crate::precision::{
    round_counting, round_counting_par, round_par, HalfFormat, Stored, Underflow, View,
};

/// RNG stream used for weight initialisation.
pub(crate) const INIT_STREAM: u64 = 0;

/// Samples N(0, std^2) values (Box-Muller; the `rand` crate has no normal distribution).
pub(crate) fn normal_vec(rng: &mut ChaCha8Rng, len: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(len);
    out
}

/// A parameter's registration handle and, once the store is built, its flat range.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    id: ParamId,
    /// Range in the flat value/gradient buffers.
    pub r: Range<usize>,
}

impl Param {
    pub fn new(id: ParamId) -> Self {
        Param { id, r: 0..0 }
    }

    /// Looks the range up in the built store.
    pub fn bind(&mut self, ps: &ParamStore) {
        self.r = ps.slot(self.id);
    }
}

/// Called during backward each time a layer's parameter gradients are final, in backward order:
/// the inventory indices (consecutive, ascending over the pass) and those gradients (contiguous
/// in the flat buffer), so communication can start while the rest of the backward pass runs.
pub type GradReady<'a> = dyn FnMut(Range<usize>, &[f32]) + 'a;

/// Turns "these parameters are final" into inventory indices for a [`GradReady`] callback.
pub(crate) struct Announcer<'a> {
    /// Start offset of each inventory entry in the flat buffer (ascending).
    pub starts: &'a [usize],
    /// The callback.
    pub ready: &'a mut GradReady<'a>,
}

impl Announcer<'_> {
    /// Announces the parameters covering the flat ranges `rs` (adjacent in the buffer).
    pub fn done(&mut self, grads: &[f32], rs: &[&Range<usize>]) {
        let lo = rs.iter().map(|r| r.start).min().unwrap_or(0);
        let hi = rs.iter().map(|r| r.end).max().unwrap_or(0);
        let first = self.starts.partition_point(|&s| s < lo);
        let end = self.starts.partition_point(|&s| s < hi);
        (self.ready)(first..end, &grads[lo..hi]);
    }
}

/// Kaiming-normal weights (std sqrt(2 / fan_in)) of a `shape` whose last axis is the output.
fn add_weight(pb: &mut ParamBuilder, rng: &mut ChaCha8Rng, name: &str, shape: Vec<usize>) -> Param {
    let numel: usize = shape.iter().product();
    let fan_in = numel / shape[shape.len() - 1];
    let std = (2.0 / fan_in as f64).sqrt();
    Param::new(pb.add(name, ParamKind::Weight, shape, normal_vec(rng, numel, std)))
}

fn add_const(pb: &mut ParamBuilder, name: &str, kind: ParamKind, c: usize, v: f32) -> Param {
    Param::new(pb.add(name, kind, vec![c], vec![v; c]))
}

/// Where a [`ConvBn`] is registered and how it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvBnSpec<'a> {
    /// Parameter name prefix of the convolution (`conv1` gives `conv1.weight`).
    pub conv: &'a str,
    /// Parameter name prefix of the batch norm.
    pub bn: &'a str,
    /// Whether the convolution has a bias (AlexNet) or not (ResNet).
    pub bias: bool,
    /// Initial BN gamma (0 for the last BN of a residual branch).
    pub gamma: f32,
    /// Whether a ReLU follows the BN (fused into it).
    pub relu: bool,
}

/// Convolution, batch norm and (optionally) ReLU, with the activations backward needs.
#[derive(Debug)]
pub(crate) struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    relu: bool,
    w: Param,
    b: Option<Param>,
    gamma: Param,
    beta: Param,
    /// conv output (BN input), kept at 16 bits in the half modes.
    c: Stored,
    /// BN (+ ReLU) output, kept at 16 bits in the half modes.
    pub a: Stored,
}

impl ConvBn {
    /// Registers the convolution's and the BN's parameters (weights drawn from `rng`).
    pub fn new(
        pb: &mut ParamBuilder,
        rng: &mut ChaCha8Rng,
        conv: Conv2d,
        spec: ConvBnSpec<'_>,
    ) -> Self {
        let w = add_weight(
            pb,
            rng,
            &format!("{}.weight", spec.conv),
            conv.weight_shape(),
        );
        let b = spec.bias.then(|| {
            add_const(
                pb,
                &format!("{}.bias", spec.conv),
                ParamKind::Bias,
                conv.cout,
                0.0,
            )
        });
        let gamma = add_const(
            pb,
            &format!("{}.gamma", spec.bn),
            ParamKind::Bn,
            conv.cout,
            spec.gamma,
        );
        let beta = add_const(
            pb,
            &format!("{}.beta", spec.bn),
            ParamKind::Bn,
            conv.cout,
            0.0,
        );
        ConvBn {
            conv,
            bn: BatchNorm::new(conv.cout),
            relu: spec.relu,
            w,
            b,
            gamma,
            beta,
            c: Stored::default(),
            a: Stored::default(),
        }
    }

    /// Looks the parameter ranges up in the built store.
    pub fn bind(&mut self, ps: &ParamStore) {
        for p in [&mut self.w, &mut self.gamma, &mut self.beta] {
            p.bind(ps);
        }
        if let Some(b) = &mut self.b {
            b.bind(ps);
        }
    }

    /// Output values per sample.
    pub fn out_len(&self) -> usize {
        self.conv.out_len()
    }

    /// Computes `self.a` from `x` (`n` samples), rounding every stored activation to `fmt`.
    pub fn forward(
        &mut self,
        par: &Par,
        w: &[f32],
        x: View<'_>,
        n: usize,
        train: bool,
        fmt: Option<HalfFormat>,
    ) {
        let ol = self.conv.out_len();
        let rows = n * self.conv.oh() * self.conv.ow();
        self.c.resize(fmt, n * ol);
        let bias = self.b.as_ref().map(|b| &w[b.r.clone()]);
        // both outputs are rounded inside the kernels that write them, while still in cache
        self.conv.forward(
            par,
            x,
            n,
            &w[self.w.r.clone()],
            bias,
            self.c.view_mut(),
            fmt,
        );
        self.a.resize(fmt, n * ol);
        let (g, bt) = (&w[self.gamma.r.clone()], &w[self.beta.r.clone()]);
        let (c, a) = (self.c.view(), self.a.view_mut());
        if train {
            self.bn
                .forward_train(par, c, rows, g, bt, a, self.relu, fmt);
        } else {
            self.bn.forward_eval(par, c, rows, g, bt, a, self.relu, fmt);
        }
    }

    /// `cur` holds dL/d`a` on entry and dL/dx on return (if `want_dx`; `spare` is scratch).
    /// Announces the BN's then the convolution's gradients as each becomes final.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: View<'_>,
        n: usize,
        cur: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        want_dx: bool,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        let rows = n * self.conv.oh() * self.conv.ow();
        {
            let (dg, db) = two_mut(grads, self.gamma.r.clone(), self.beta.r.clone());
            let relu_out = self.relu.then(|| self.a.view());
            // dx (`cur`) is rounded and counted inside the BN's last pass
            u.add(self.bn.backward(
                par,
                self.c.view(),
                relu_out,
                cur,
                rows,
                &w[self.gamma.r.clone()],
                dg,
                db,
                fmt,
            ));
            u.add(round_counting(fmt, dg));
            u.add(round_counting(fmt, db));
        }
        ready.done(grads, &[&self.gamma.r, &self.beta.r]);
        let (dw, db) = match &self.b {
            Some(b) => {
                let (dw, db) = two_mut(grads, self.w.r.clone(), b.r.clone());
                (dw, Some(db))
            }
            None => (&mut grads[self.w.r.clone()], None),
        };
        let dx = if want_dx {
            spare.resize(n * self.conv.in_len(), 0.0);
            Some(&mut spare[..])
        } else {
            None
        };
        // dx (`spare`) is rounded and counted chunk by chunk inside the convolution
        u.add(
            self.conv
                .backward(par, x, cur, n, &w[self.w.r.clone()], dw, db, dx, fmt),
        );
        u.add(round_counting(fmt, &mut grads[self.w.r.clone()]));
        match &self.b {
            Some(b) => {
                u.add(round_counting(fmt, &mut grads[b.r.clone()]));
                ready.done(grads, &[&self.w.r, &b.r]);
            }
            None => ready.done(grads, &[&self.w.r]),
        }
        if want_dx {
            std::mem::swap(cur, spare);
        }
    }
}

/// A max pool after a conv block: the proxies' 2x2/2 or a general window.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool {
    /// 2x2, stride 2.
    Two(MaxPool2),
    /// k x k with stride and padding.
    Window(MaxPool),
}

impl Pool {
    fn out_len(&self) -> usize {
        match self {
            Pool::Two(p) => p.out_len(),
            Pool::Window(p) => p.out_len(),
        }
    }

    fn in_len(&self) -> usize {
        match self {
            Pool::Two(p) => p.in_len(),
            Pool::Window(p) => p.in_len(),
        }
    }

    /// Output side (square maps).
    pub fn out_side(&self) -> usize {
        match self {
            Pool::Two(p) => p.oh(),
            Pool::Window(p) => p.oh(),
        }
    }

    fn forward(&self, par: &Par, x: View<'_>, n: usize, y: &mut [f32], arg: &mut [u8]) {
        match self {
            Pool::Two(p) => p.forward(par, x, n, y, arg),
            Pool::Window(p) => p.forward(par, x, n, y, arg),
        }
    }

    fn backward(&self, par: &Par, dy: &[f32], arg: &[u8], n: usize, dx: &mut [f32]) {
        match self {
            Pool::Two(p) => p.backward(par, dy, arg, n, dx),
            Pool::Window(p) => p.backward(par, dy, arg, n, dx),
        }
    }
}

/// conv + BN + ReLU (+ max pool) with its activations.
#[derive(Debug)]
pub(crate) struct ConvBlock {
    pub cb: ConvBn,
    pool: Option<Pool>,
    /// pooled output and winning taps.
    p: Vec<f32>,
    arg: Vec<u8>,
}

impl ConvBlock {
    /// `cb` followed by `pool`.
    pub fn new(cb: ConvBn, pool: Option<Pool>) -> Self {
        ConvBlock {
            cb,
            pool,
            p: Vec::new(),
            arg: Vec::new(),
        }
    }

    /// The block output of the last forward.
    pub fn out(&self) -> View<'_> {
        match self.pooled() {
            Some(p) => p.into(),
            None => self.cb.a.view(),
        }
    }

    /// The pooled output of the last forward (f32), if the block pools.
    pub fn pooled(&self) -> Option<&[f32]> {
        self.pool.is_some().then_some(&self.p[..])
    }

    /// Forward of `n` samples of `x`.
    pub fn forward(
        &mut self,
        par: &Par,
        w: &[f32],
        x: View<'_>,
        n: usize,
        train: bool,
        fmt: Option<HalfFormat>,
    ) {
        self.cb.forward(par, w, x, n, train, fmt);
        if let Some(pool) = &self.pool {
            self.p.resize(n * pool.out_len(), 0.0);
            self.arg.resize(n * pool.out_len(), 0);
            // max pooling of half values is exact: no rounding needed
            pool.forward(par, self.cb.a.view(), n, &mut self.p, &mut self.arg);
        }
    }

    /// `cur` holds dL/d(block output) on entry and dL/d(block input) on return (if `want_dx`).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: View<'_>,
        n: usize,
        cur: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        want_dx: bool,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        if let Some(pool) = &self.pool {
            spare.resize(n * pool.in_len(), 0.0);
            pool.backward(par, cur, &self.arg, n, spare);
            std::mem::swap(cur, spare);
        }
        self.cb
            .backward(par, w, grads, x, n, cur, spare, want_dx, fmt, u, ready);
    }
}

/// A dense layer with its parameters.
#[derive(Debug)]
pub(crate) struct Dense {
    pub lin: Linear,
    pub w: Param,
    pub b: Param,
}

impl Dense {
    /// Registers `name.weight` (Kaiming normal) and `name.bias` (zero).
    pub fn new(
        pb: &mut ParamBuilder,
        rng: &mut ChaCha8Rng,
        name: &str,
        inp: usize,
        out: usize,
    ) -> Self {
        let w = add_weight(pb, rng, &format!("{name}.weight"), vec![inp, out]);
        let b = add_const(pb, &format!("{name}.bias"), ParamKind::Bias, out, 0.0);
        Dense {
            lin: Linear::new(inp, out),
            w,
            b,
        }
    }

    /// Looks the parameter ranges up in the built store.
    pub fn bind(&mut self, ps: &ParamStore) {
        self.w.bind(ps);
        self.b.bind(ps);
    }

    /// `y = x W + b`, rounded to `fmt`.
    pub fn forward(
        &self,
        par: &Par,
        w: &[f32],
        x: &[f32],
        n: usize,
        y: &mut Vec<f32>,
        fmt: Option<HalfFormat>,
    ) {
        y.resize(n * self.lin.out, 0.0);
        self.lin
            .forward(par, x, n, &w[self.w.r.clone()], &w[self.b.r.clone()], y);
        round_par(par, fmt, y);
    }

    /// Writes the parameter gradients and dL/dx (into `dx`), announcing the parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: &[f32],
        dy: &[f32],
        n: usize,
        dx: &mut Vec<f32>,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        dx.resize(n * self.lin.inp, 0.0);
        let (dw, db) = two_mut(grads, self.w.r.clone(), self.b.r.clone());
        self.lin
            .backward(par, x, dy, n, &w[self.w.r.clone()], dw, db, Some(dx));
        u.add(round_counting(fmt, dw));
        u.add(round_counting(fmt, db));
        u.add(round_counting_par(par, fmt, dx));
        ready.done(grads, &[&self.w.r, &self.b.r]);
    }
}
