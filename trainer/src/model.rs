//! The 28x28 proxy of AlexNet-BN, with explicit forward and backward passes.
//!
//! ```text
//! conv1 3x3 1->16, bn1, relu, pool  (28 -> 14)
//! conv2 3x3 16->32, bn2, relu, pool (14 -> 7)
//! conv3 3x3 32->48, bn3, relu
//! conv4 3x3 48->48, bn4, relu
//! conv5 3x3 48->32, bn5, relu, pool (7 -> 3, floor) = pool5 [3x3x32]
//! bn_pool5 (per-channel BatchNorm over the 32 pool5 channels; `TrainConfig::bn5` toggles it)
//! fc6 288->256, relu, dropout 0.5
//! fc7 256->256, relu, dropout 0.5
//! fc8 256->10
//! ```
//! Tensors are NHWC; the flattened pool5 feature order is (h, w, c).

use std::ops::Range;

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::ModelKind;
use crate::data::{CLASSES, SIDE};
use crate::layers::{
    batchnorm::BatchNorm, conv::Conv3x3, dropout, linear::Linear, pool::MaxPool2, relu,
};
use crate::parallel::Par;
use crate::params::{two_mut, ParamBuilder, ParamInfo, ParamKind, ParamStore};
use crate::precision::{
    round, round_counting, round_counting_par, round_par, HalfFormat, Underflow,
};

/// RNG stream used for weight initialisation.
const INIT_STREAM: u64 = 0;
/// Dropout probability of fc6 and fc7 unless set otherwise.
const DROPOUT: f32 = 0.5;

/// Samples N(0, std^2) values (Box-Muller; the `rand` crate has no normal distribution).
fn normal_vec(rng: &mut ChaCha8Rng, len: usize, std: f64) -> Vec<f32> {
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

/// conv + BN + ReLU (+ max pool) with its activations.
#[derive(Debug)]
struct ConvBlock {
    conv: Conv3x3,
    bn: BatchNorm,
    pool: Option<MaxPool2>,
    w: Range<usize>,
    b: Range<usize>,
    gamma: Range<usize>,
    beta: Range<usize>,
    /// conv output (BN input).
    c: Vec<f32>,
    /// BN + ReLU output.
    a: Vec<f32>,
    /// pooled output and winning taps.
    p: Vec<f32>,
    arg: Vec<u8>,
}

impl ConvBlock {
    fn out(&self) -> &[f32] {
        if self.pool.is_some() {
            &self.p
        } else {
            &self.a
        }
    }

    fn forward(
        &mut self,
        par: &Par,
        w: &[f32],
        x: &[f32],
        n: usize,
        train: bool,
        fmt: Option<HalfFormat>,
    ) {
        let ol = self.conv.out_len();
        let rows = n * self.conv.h * self.conv.w;
        self.c.resize(n * ol, 0.0);
        self.conv.forward(
            par,
            x,
            n,
            &w[self.w.clone()],
            &w[self.b.clone()],
            &mut self.c,
        );
        round_par(par, fmt, &mut self.c);
        self.a.resize(n * ol, 0.0);
        let (g, bt) = (&w[self.gamma.clone()], &w[self.beta.clone()]);
        if train {
            self.bn
                .forward_train(par, &self.c, rows, g, bt, &mut self.a, true);
        } else {
            self.bn
                .forward_eval(par, &self.c, rows, g, bt, &mut self.a, true);
        }
        // relu(round(v)) == round(relu(v)), so rounding the fused output is exact emulation
        round_par(par, fmt, &mut self.a);
        if let Some(pool) = &self.pool {
            self.p.resize(n * pool.out_len(), 0.0);
            self.arg.resize(n * pool.out_len(), 0);
            // max pooling of half values is exact: no rounding needed
            pool.forward(par, &self.a, n, &mut self.p, &mut self.arg);
        }
    }

    /// `cur` holds dL/d(block output) on entry and dL/d(block input) on return (if `want_dx`).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: &[f32],
        n: usize,
        cur: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        want_dx: bool,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        let rows = n * self.conv.h * self.conv.w;
        if let Some(pool) = &self.pool {
            spare.resize(n * pool.in_len(), 0.0);
            pool.backward(par, cur, &self.arg, n, spare);
            std::mem::swap(cur, spare);
        }
        {
            let (dg, db) = two_mut(grads, self.gamma.clone(), self.beta.clone());
            self.bn.backward(
                par,
                &self.c,
                Some(&self.a),
                cur,
                rows,
                &w[self.gamma.clone()],
                dg,
                db,
            );
            u.add(round_counting(fmt, dg));
            u.add(round_counting(fmt, db));
        }
        ready.done(grads, &self.gamma, &self.beta);
        u.add(round_counting_par(par, fmt, cur));
        let (dw, db) = two_mut(grads, self.w.clone(), self.b.clone());
        if want_dx {
            spare.resize(n * self.conv.in_len(), 0.0);
            self.conv
                .backward(par, x, cur, n, &w[self.w.clone()], dw, db, Some(spare));
            u.add(round_counting_par(par, fmt, spare));
            std::mem::swap(cur, spare);
        } else {
            self.conv
                .backward(par, x, cur, n, &w[self.w.clone()], dw, db, None);
        }
        u.add(round_counting(fmt, dw));
        u.add(round_counting(fmt, db));
        ready.done(grads, &self.w, &self.b);
    }
}

/// Called during backward each time a layer's parameter gradients are final, in backward order:
/// the inventory indices (consecutive, ascending over the pass) and those gradients (contiguous
/// in the flat buffer), so communication can start while the rest of the backward pass runs.
pub type GradReady<'a> = dyn FnMut(Range<usize>, &[f32]) + 'a;

/// Turns "these two parameters are final" into inventory indices for a [`GradReady`] callback.
struct Announcer<'a> {
    /// Start offset of each inventory entry in the flat buffer (ascending).
    starts: &'a [usize],
    ready: &'a mut GradReady<'a>,
}

impl Announcer<'_> {
    /// Announces the parameters at flat ranges `a` and `b` (adjacent in the buffer).
    fn done(&mut self, grads: &[f32], a: &Range<usize>, b: &Range<usize>) {
        let (lo, hi) = (a.start.min(b.start), a.end.max(b.end));
        let first = self.starts.partition_point(|&s| s < lo);
        let end = self.starts.partition_point(|&s| s < hi);
        (self.ready)(first..end, &grads[lo..hi]);
    }
}

/// A dense layer with its parameter ranges.
#[derive(Debug)]
struct Dense {
    lin: Linear,
    w: Range<usize>,
    b: Range<usize>,
}

/// The network plus all buffers of one forward/backward pass (reused across steps).
#[derive(Debug)]
pub struct Model {
    /// Parameters, compute copies and gradients.
    pub params: ParamStore,
    blocks: Vec<ConvBlock>,
    bn_pool5: Option<(BatchNorm, Range<usize>, Range<usize>)>,
    fc: [Dense; 3],
    /// Dropout probability after fc6 and fc7 in training.
    dropout: f32,
    n: usize,
    trained_forward: bool,
    input: Vec<f32>,
    bn5_out: Vec<f32>,
    /// fc6, fc7, fc8 outputs (fc6/fc7 before ReLU).
    fc_out: [Vec<f32>; 3],
    /// inputs of fc7 and fc8 (ReLU + dropout outputs).
    hid: [Vec<f32>; 2],
    masks: [Vec<f32>; 2],
    g_cur: Vec<f32>,
    g_spare: Vec<f32>,
}

impl Model {
    /// Builds the network with Kaiming-normal weights, zero biases, BN gamma 1 / beta 0.
    pub fn new(kind: ModelKind, bn5: bool, seed: u64) -> Model {
        match kind {
            ModelKind::AlexnetBnProxy => Self::alexnet_bn_proxy(bn5, seed),
        }
    }

    fn alexnet_bn_proxy(bn5: bool, seed: u64) -> Model {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(INIT_STREAM);
        let mut pb = ParamBuilder::default();
        // (side, cin, cout, pooled)
        let spec = [
            (SIDE, 1, 16, true),
            (SIDE / 2, 16, 32, true),
            (SIDE / 4, 32, 48, false),
            (SIDE / 4, 48, 48, false),
            (SIDE / 4, 48, 32, true),
        ];
        let mut conv_ids = Vec::new();
        for (i, &(side, cin, cout, _)) in spec.iter().enumerate() {
            let conv = Conv3x3::new(side, side, cin, cout);
            let std = (2.0 / conv.k() as f64).sqrt();
            let w = pb.add(
                &format!("conv{}.weight", i + 1),
                ParamKind::Weight,
                conv.weight_shape(),
                normal_vec(&mut rng, conv.k() * cout, std),
            );
            let b = pb.add(
                &format!("conv{}.bias", i + 1),
                ParamKind::Bias,
                vec![cout],
                vec![0.0; cout],
            );
            let g = pb.add(
                &format!("bn{}.gamma", i + 1),
                ParamKind::Bn,
                vec![cout],
                vec![1.0; cout],
            );
            let bt = pb.add(
                &format!("bn{}.beta", i + 1),
                ParamKind::Bn,
                vec![cout],
                vec![0.0; cout],
            );
            conv_ids.push((conv, w, b, g, bt));
        }
        let c5 = spec[4].2;
        let bnp = bn5.then(|| {
            let g = pb.add("bn_pool5.gamma", ParamKind::Bn, vec![c5], vec![1.0; c5]);
            let b = pb.add("bn_pool5.beta", ParamKind::Bn, vec![c5], vec![0.0; c5]);
            (g, b)
        });
        let feat = 3 * 3 * c5;
        let dims = [(feat, 256), (256, 256), (256, CLASSES)];
        let mut fc_ids = Vec::new();
        for (i, &(inp, out)) in dims.iter().enumerate() {
            let std = (2.0 / inp as f64).sqrt();
            let w = pb.add(
                &format!("fc{}.weight", i + 6),
                ParamKind::Weight,
                vec![inp, out],
                normal_vec(&mut rng, inp * out, std),
            );
            let b = pb.add(
                &format!("fc{}.bias", i + 6),
                ParamKind::Bias,
                vec![out],
                vec![0.0; out],
            );
            fc_ids.push((Linear::new(inp, out), w, b));
        }
        let params = pb.build();
        let blocks = conv_ids
            .into_iter()
            .zip(spec)
            .map(|((conv, w, b, g, bt), (side, _, cout, pooled))| ConvBlock {
                conv,
                bn: BatchNorm::new(cout),
                pool: pooled.then(|| MaxPool2::new(side, side, cout)),
                w: params.slot(w),
                b: params.slot(b),
                gamma: params.slot(g),
                beta: params.slot(bt),
                c: Vec::new(),
                a: Vec::new(),
                p: Vec::new(),
                arg: Vec::new(),
            })
            .collect();
        let bn_pool5 = bnp.map(|(g, b)| (BatchNorm::new(c5), params.slot(g), params.slot(b)));
        let fc: Vec<Dense> = fc_ids
            .into_iter()
            .map(|(lin, w, b)| Dense {
                lin,
                w: params.slot(w),
                b: params.slot(b),
            })
            .collect();
        let fc: [Dense; 3] = match fc.try_into() {
            Ok(f) => f,
            Err(_) => unreachable!("three dense layers are built above"),
        };
        Model {
            params,
            blocks,
            bn_pool5,
            fc,
            dropout: DROPOUT,
            n: 0,
            trained_forward: false,
            input: Vec::new(),
            bn5_out: Vec::new(),
            fc_out: Default::default(),
            hid: Default::default(),
            masks: Default::default(),
            g_cur: Vec::new(),
            g_spare: Vec::new(),
        }
    }

    /// Sets the training dropout probability of fc6 and fc7 (0.5 by default; 0 turns it off).
    pub fn set_dropout(&mut self, p: f32) {
        self.dropout = p;
    }

    /// Makes every batch norm sum its statistics through `sync` (synchronised BN across ranks).
    pub fn set_bn_sync(&mut self, sync: std::sync::Arc<dyn crate::layers::batchnorm::StatSync>) {
        for b in &mut self.blocks {
            b.bn.set_sync(sync.clone());
        }
        if let Some((bn, _, _)) = &mut self.bn_pool5 {
            bn.set_sync(sync);
        }
    }

    /// Parameter inventory (name, kind, shape, bytes) in backward order.
    pub fn inventory(&self) -> &[ParamInfo] {
        self.params.inventory()
    }

    /// Input values per sample.
    pub fn input_len(&self) -> usize {
        SIDE * SIDE
    }

    /// Refreshes the half-rounded compute copy of the weights (mixed precision) or drops it.
    pub fn prepare_compute_weights(&mut self, fmt: Option<HalfFormat>, weights_in_half: bool) {
        match fmt {
            Some(f) if !weights_in_half => {
                self.params.compute.clear();
                self.params.compute.extend_from_slice(&self.params.values);
                round(Some(f), &mut self.params.compute);
            }
            _ => self.params.compute.clear(),
        }
    }

    /// Forward pass of `n` samples of `x`; `dropout_rng = Some` means training mode
    /// (batch statistics, running-stat updates, dropout). Returns the logits `[n, 10]`.
    pub fn forward(
        &mut self,
        par: &Par,
        x: &[f32],
        n: usize,
        dropout_rng: Option<&mut ChaCha8Rng>,
        fmt: Option<HalfFormat>,
    ) -> &[f32] {
        let train = dropout_rng.is_some();
        self.n = n;
        self.trained_forward = train;
        self.input.clear();
        self.input.extend_from_slice(&x[..n * self.input_len()]);
        round_par(par, fmt, &mut self.input);
        let w = self.params.forward_values();
        for i in 0..self.blocks.len() {
            let (prev, rest) = self.blocks.split_at_mut(i);
            let xin: &[f32] = match prev.last() {
                Some(p) => p.out(),
                None => &self.input,
            };
            rest[0].forward(par, w, xin, n, train, fmt);
        }
        let pool5 = self.blocks[self.blocks.len() - 1].out();
        let feat: &[f32] = match &mut self.bn_pool5 {
            Some((bn, g, b)) => {
                let rows = pool5.len() / bn.c;
                self.bn5_out.resize(pool5.len(), 0.0);
                if train {
                    bn.forward_train(
                        par,
                        pool5,
                        rows,
                        &w[g.clone()],
                        &w[b.clone()],
                        &mut self.bn5_out,
                        false,
                    );
                } else {
                    bn.forward_eval(
                        par,
                        pool5,
                        rows,
                        &w[g.clone()],
                        &w[b.clone()],
                        &mut self.bn5_out,
                        false,
                    );
                }
                round_par(par, fmt, &mut self.bn5_out);
                &self.bn5_out
            }
            None => pool5,
        };
        let mut rng = dropout_rng;
        for i in 0..3 {
            let d = &self.fc[i];
            let out = &mut self.fc_out[i];
            out.resize(n * d.lin.out, 0.0);
            let xin: &[f32] = if i == 0 { feat } else { &self.hid[i - 1] };
            d.lin
                .forward(par, xin, n, &w[d.w.clone()], &w[d.b.clone()], out);
            round(fmt, out);
            if i < 2 {
                let h = &mut self.hid[i];
                h.resize(out.len(), 0.0);
                relu::forward(out, h);
                if let Some(r) = rng.as_deref_mut() {
                    dropout::sample_mask(r, self.dropout, h.len(), &mut self.masks[i]);
                    dropout::forward_in_place(&self.masks[i], h);
                    round(fmt, h); // x2 can overflow half
                }
            }
        }
        &self.fc_out[2]
    }

    /// Backward pass after a training forward: writes every parameter gradient (rounded to
    /// `fmt`) from `dlogits`, and returns how many gradient values underflowed in the casts.
    pub fn backward(&mut self, par: &Par, dlogits: &[f32], fmt: Option<HalfFormat>) -> Underflow {
        self.backward_announcing(par, dlogits, fmt, &mut |_, _| {})
    }

    /// [`Model::backward`], calling `ready` as soon as each layer's gradients are final.
    pub fn backward_announcing(
        &mut self,
        par: &Par,
        dlogits: &[f32],
        fmt: Option<HalfFormat>,
        ready: &mut GradReady<'_>,
    ) -> Underflow {
        let starts: Vec<usize> = self
            .params
            .ranges_backward()
            .iter()
            .map(|r| r.start)
            .collect();
        let mut ready = Announcer {
            starts: &starts,
            ready,
        };
        let n = self.n;
        let mut u = Underflow::default();
        let train = self.trained_forward;
        let mut cur = std::mem::take(&mut self.g_cur);
        let mut spare = std::mem::take(&mut self.g_spare);
        cur.clear();
        cur.extend_from_slice(&dlogits[..n * CLASSES]);
        let params = &mut self.params;
        let (w, grads): (&[f32], &mut [f32]) = if params.compute.is_empty() {
            (&params.values, &mut params.grads)
        } else {
            (&params.compute, &mut params.grads)
        };
        let pool5 = self.blocks[self.blocks.len() - 1].out();
        let feat: &[f32] = if self.bn_pool5.is_some() {
            &self.bn5_out
        } else {
            pool5
        };
        for i in (0..3).rev() {
            let d = &self.fc[i];
            let xin: &[f32] = if i == 0 { feat } else { &self.hid[i - 1] };
            spare.resize(n * d.lin.inp, 0.0);
            let (dw, db) = two_mut(grads, d.w.clone(), d.b.clone());
            d.lin
                .backward(par, xin, &cur, n, &w[d.w.clone()], dw, db, Some(&mut spare));
            u.add(round_counting(fmt, dw));
            u.add(round_counting(fmt, db));
            u.add(round_counting(fmt, &mut spare));
            ready.done(grads, &d.w, &d.b);
            std::mem::swap(&mut cur, &mut spare);
            if i > 0 {
                if train {
                    dropout::backward(&self.masks[i - 1], &mut cur);
                    round(fmt, &mut cur);
                }
                relu::backward(&self.fc_out[i - 1], &mut cur);
            }
        }
        if let Some((bn, g, b)) = &self.bn_pool5 {
            let rows = pool5.len() / bn.c;
            let (dg, db) = two_mut(grads, g.clone(), b.clone());
            bn.backward(par, pool5, None, &mut cur, rows, &w[g.clone()], dg, db);
            u.add(round_counting(fmt, dg));
            u.add(round_counting(fmt, db));
            ready.done(grads, g, b);
            u.add(round_counting(fmt, &mut cur));
        }
        for i in (0..self.blocks.len()).rev() {
            let xin: &[f32] = if i == 0 {
                &self.input
            } else {
                self.blocks[i - 1].out()
            };
            self.blocks[i].backward(
                par,
                w,
                grads,
                xin,
                n,
                &mut cur,
                &mut spare,
                i > 0,
                fmt,
                &mut u,
                &mut ready,
            );
        }
        self.g_cur = cur;
        self.g_spare = spare;
        u
    }

    /// Mutable batch-norm running statistics (mean, var) of every BN layer, in forward order.
    pub fn bn_running_stats_mut(&mut self) -> Vec<(&mut Vec<f32>, &mut Vec<f32>)> {
        let mut v: Vec<_> = self
            .blocks
            .iter_mut()
            .map(|b| (&mut b.bn.running_mean, &mut b.bn.running_var))
            .collect();
        if let Some((bn, _, _)) = &mut self.bn_pool5 {
            v.push((&mut bn.running_mean, &mut bn.running_var));
        }
        v
    }

    /// Batch-norm running statistics (mean, var) of every BN layer, in forward order.
    pub fn bn_running_stats(&self) -> Vec<(&[f32], &[f32])> {
        let mut v: Vec<_> = self
            .blocks
            .iter()
            .map(|b| (&b.bn.running_mean[..], &b.bn.running_var[..]))
            .collect();
        if let Some((bn, _, _)) = &self.bn_pool5 {
            v.push((&bn.running_mean[..], &bn.running_var[..]));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::rand_vec;
    use crate::layers::loss::softmax_cross_entropy;

    #[test]
    fn inventory_is_in_backward_order() {
        let m = Model::new(ModelKind::AlexnetBnProxy, true, 0);
        let names: Vec<&str> = m.inventory().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names[0], "fc8.bias");
        assert_eq!(names[1], "fc8.weight");
        assert_eq!(*names.last().unwrap_or(&""), "conv1.weight");
        assert!(names.contains(&"bn_pool5.gamma"));
        let total: usize = m.inventory().iter().map(|p| p.numel).sum();
        assert_eq!(total, m.params.numel());
        let ranges = m.params.ranges_backward();
        for (r, info) in ranges.iter().zip(m.inventory()) {
            assert_eq!(r.len(), info.numel);
        }
        let m2 = Model::new(ModelKind::AlexnetBnProxy, false, 0);
        assert_eq!(m2.inventory().len() + 2, m.inventory().len());
    }

    /// Every parameter is announced exactly once, in backward order, with its final gradient.
    #[test]
    fn gradients_are_announced_final_in_backward_order() {
        let par = Par::new(2);
        let n = 3;
        let x = rand_vec(71, n * 784, 1.0);
        let mut m = Model::new(ModelKind::AlexnetBnProxy, true, 4);
        let logits = m.forward_train_no_dropout(&par, &x, n).to_vec();
        let mut d = vec![0.0; n * CLASSES];
        softmax_cross_entropy(&logits, &[0, 4, 9], CLASSES, 1.0, &mut d);
        let mut seen: Vec<(Range<usize>, Vec<f32>)> = Vec::new();
        m.backward_announcing(&par, &d, None, &mut |idx, g| seen.push((idx, g.to_vec())));
        let mut next = 0;
        for (idx, _) in &seen {
            assert_eq!(
                idx.start,
                next,
                "announcements skip or repeat: {:?}",
                seen.iter().map(|s| s.0.clone()).collect::<Vec<_>>()
            );
            assert!(idx.end > idx.start);
            next = idx.end;
        }
        assert_eq!(next, m.inventory().len());
        let ranges = m.params.ranges_backward();
        for (idx, announced) in &seen {
            let flat = ranges[idx.start].start..ranges[idx.end - 1].end;
            assert_eq!(
                &m.params.grads[flat],
                &announced[..],
                "a gradient changed after it was announced"
            );
        }
    }

    /// Whole-network gradient check on a few parameters (dropout off so the loss is smooth).
    #[test]
    fn model_gradient_matches_finite_differences() {
        let par = Par::new(2);
        let n = 4;
        let x = rand_vec(61, n * 784, 1.0);
        let labels: Vec<u8> = vec![1, 3, 5, 7];
        let mut m = Model::new(ModelKind::AlexnetBnProxy, true, 3);
        let loss_of = |m: &mut Model| -> f64 {
            // training-mode BN (batch statistics) but no dropout: pass an RNG-free forward via p=0 masks
            let logits = m.forward_train_no_dropout(&par, &x, n).to_vec();
            let mut d = vec![0.0; n * CLASSES];
            softmax_cross_entropy(&logits, &labels, CLASSES, 1.0, &mut d).0
        };
        let logits = m.forward_train_no_dropout(&par, &x, n).to_vec();
        let mut d = vec![0.0; n * CLASSES];
        softmax_cross_entropy(&logits, &labels, CLASSES, 1.0, &mut d);
        m.backward(&par, &d, None);
        let grads = m.params.grads.clone();
        let ranges = m.params.ranges_backward();
        let inv = m.inventory().to_vec();
        let mut checked = 0;
        for (info, r) in inv.iter().zip(ranges) {
            // the largest-gradient entry of each tensor is checked: its FD signal is well above f32 noise
            let i = r
                .clone()
                .max_by(|&a, &b| grads[a].abs().total_cmp(&grads[b].abs()))
                .unwrap_or(r.start);
            if grads[i].abs() < 1e-4 {
                continue;
            }
            let orig = m.params.values[i];
            // small step: a larger one crosses ReLU/max-pool kinks somewhere in the batch
            let eps = 1e-3f32;
            m.params.values[i] = orig + eps;
            let lp = loss_of(&mut m);
            m.params.values[i] = orig - eps;
            let lm = loss_of(&mut m);
            m.params.values[i] = orig;
            let num = (lp - lm) / (2.0 * eps as f64);
            let rel = (num - grads[i] as f64).abs() / num.abs().max(1e-3);
            assert!(
                rel < 5e-2,
                "{}: analytic {} numeric {num} (rel {rel:.3e})",
                info.name,
                grads[i]
            );
            checked += 1;
        }
        assert!(checked > 20, "only {checked} tensors checked");
    }

    impl Model {
        /// Training-mode forward with dropout disabled (test helper).
        fn forward_train_no_dropout(&mut self, par: &Par, x: &[f32], n: usize) -> &[f32] {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            self.forward(par, x, n, Some(&mut rng), None);
            // undo dropout: recompute the dense head with all-ones masks
            for mask in self.masks.iter_mut() {
                mask.iter_mut().for_each(|v| *v = 1.0);
            }
            let w = self.params.forward_values().to_vec();
            let feat: Vec<f32> = if self.bn_pool5.is_some() {
                self.bn5_out.clone()
            } else {
                self.blocks[4].out().to_vec()
            };
            for i in 0..3 {
                let d = &self.fc[i];
                let xin: Vec<f32> = if i == 0 {
                    feat.clone()
                } else {
                    self.hid[i - 1].clone()
                };
                let out = &mut self.fc_out[i];
                d.lin
                    .forward(par, &xin, n, &w[d.w.clone()], &w[d.b.clone()], out);
                if i < 2 {
                    relu::forward(&self.fc_out[i], &mut self.hid[i]);
                }
            }
            &self.fc_out[2]
        }
    }
}
