//! AlexNet-BN (You et al. 2017: BN after every convolution) plus the extra BN on the pool5
//! features (`bn5` switch), full size and as the 28x28 proxy.
//!
//! Full size (`alexnet-bn`, 224x224x3 input):
//! ```text
//! conv1 11x11/4 pad 2 3->96, bn1, relu, maxpool 3/2 (224 -> 55 -> 27)
//! conv2 5x5 pad 2 96->256, bn2, relu, maxpool 3/2 (27 -> 13)
//! conv3 3x3 256->384, bn3, relu; conv4 3x3 384->384, bn4, relu
//! conv5 3x3 384->256, bn5, relu, maxpool 3/2 (13 -> 6) = pool5 [6x6x256]
//! bn_pool5; fc6 9216->4096, relu, dropout; fc7 4096->4096, relu, dropout; fc8 4096->1000
//! ```
//! Proxy (`alexnet-bn-proxy`, 28x28x1 input):
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

use rand_chacha::ChaCha8Rng;

use super::blocks::{Announcer, ConvBlock, ConvBn, ConvBnSpec, Dense, Param, Pool};
use crate::layers::{
    batchnorm::BatchNorm,
    conv::Conv2d,
    dropout,
    pool::{MaxPool, MaxPool2},
    relu,
};
use crate::parallel::Par;
use crate::params::{two_mut, ParamBuilder, ParamKind, ParamStore};
use crate::precision::{round_counting, round_par, HalfFormat, Underflow, View};

/// Dropout probability of fc6 and fc7 unless set otherwise.
const DROPOUT: f32 = 0.5;

/// One convolution of the network: kernel, stride, pad, channels in/out, pooled after.
struct ConvLayer {
    k: usize,
    stride: usize,
    pad: usize,
    cin: usize,
    cout: usize,
    pool: bool,
}

const fn layer(
    k: usize,
    stride: usize,
    pad: usize,
    cin: usize,
    cout: usize,
    pool: bool,
) -> ConvLayer {
    ConvLayer {
        k,
        stride,
        pad,
        cin,
        cout,
        pool,
    }
}

/// The shape of one AlexNet-BN variant.
struct Shape {
    side: usize,
    convs: [ConvLayer; 5],
    /// 2x2/2 pools (proxy) or overlapping 3x3/2 pools (full size).
    small_pools: bool,
    hidden: usize,
    classes: usize,
}

const FULL: Shape = Shape {
    side: 224,
    convs: [
        layer(11, 4, 2, 3, 96, true),
        layer(5, 1, 2, 96, 256, true),
        layer(3, 1, 1, 256, 384, false),
        layer(3, 1, 1, 384, 384, false),
        layer(3, 1, 1, 384, 256, true),
    ],
    small_pools: false,
    hidden: 4096,
    classes: 1000,
};

const PROXY: Shape = Shape {
    side: crate::data::SIDE,
    convs: [
        layer(3, 1, 1, 1, 16, true),
        layer(3, 1, 1, 16, 32, true),
        layer(3, 1, 1, 32, 48, false),
        layer(3, 1, 1, 48, 48, false),
        layer(3, 1, 1, 48, 32, true),
    ],
    small_pools: true,
    hidden: 256,
    classes: crate::data::CLASSES,
};

/// The network's layers and the buffers of one forward/backward pass.
#[derive(Debug)]
pub(crate) struct AlexnetBn {
    blocks: Vec<ConvBlock>,
    bn_pool5: Option<(BatchNorm, Param, Param)>,
    fc: [Dense; 3],
    /// Dropout probability after fc6 and fc7 in training.
    pub dropout: f32,
    bn5_out: Vec<f32>,
    /// fc6, fc7, fc8 outputs (fc6/fc7 before ReLU).
    fc_out: [Vec<f32>; 3],
    /// inputs of fc7 and fc8 (ReLU + dropout outputs).
    hid: [Vec<f32>; 2],
    masks: [Vec<f32>; 2],
}

impl AlexnetBn {
    /// The 28x28 proxy.
    pub fn proxy(pb: &mut ParamBuilder, rng: &mut ChaCha8Rng, bn5: bool) -> Self {
        Self::build(&PROXY, pb, rng, bn5)
    }

    /// The full-size 224x224 network.
    pub fn full(pb: &mut ParamBuilder, rng: &mut ChaCha8Rng, bn5: bool) -> Self {
        Self::build(&FULL, pb, rng, bn5)
    }

    /// Input side of the full-size (`true`) or proxy network.
    pub fn side(full: bool) -> usize {
        if full {
            FULL.side
        } else {
            PROXY.side
        }
    }

    /// Input channels of the full-size (`true`) or proxy network.
    pub fn channels(full: bool) -> usize {
        if full {
            FULL.convs[0].cin
        } else {
            PROXY.convs[0].cin
        }
    }

    fn build(shape: &Shape, pb: &mut ParamBuilder, rng: &mut ChaCha8Rng, bn5: bool) -> Self {
        let mut side = shape.side;
        let mut blocks = Vec::new();
        for (i, l) in shape.convs.iter().enumerate() {
            let conv = Conv2d::new(side, side, l.cin, l.cout, l.k, l.stride, l.pad);
            let (cname, bname) = (format!("conv{}", i + 1), format!("bn{}", i + 1));
            let spec = ConvBnSpec {
                conv: &cname,
                bn: &bname,
                bias: true,
                gamma: 1.0,
                relu: true,
            };
            let cb = ConvBn::new(pb, rng, conv, spec);
            let (oh, c) = (conv.oh(), l.cout);
            let pool = l.pool.then(|| {
                if shape.small_pools {
                    Pool::Two(MaxPool2::new(oh, oh, c))
                } else {
                    Pool::Window(MaxPool::new(oh, oh, c, 3, 2, 0))
                }
            });
            side = pool.as_ref().map_or(oh, |p| p.out_side());
            blocks.push(ConvBlock::new(cb, pool));
        }
        let c5 = shape.convs[4].cout;
        let bn_pool5 = bn5.then(|| {
            let g = Param::new(pb.add("bn_pool5.gamma", ParamKind::Bn, vec![c5], vec![1.0; c5]));
            let b = Param::new(pb.add("bn_pool5.beta", ParamKind::Bn, vec![c5], vec![0.0; c5]));
            (BatchNorm::new(c5), g, b)
        });
        let feat = side * side * c5;
        let h = shape.hidden;
        let fc = [
            Dense::new(pb, rng, "fc6", feat, h),
            Dense::new(pb, rng, "fc7", h, h),
            Dense::new(pb, rng, "fc8", h, shape.classes),
        ];
        AlexnetBn {
            blocks,
            bn_pool5,
            fc,
            dropout: DROPOUT,
            bn5_out: Vec::new(),
            fc_out: Default::default(),
            hid: Default::default(),
            masks: Default::default(),
        }
    }

    /// Looks every parameter range up in the built store.
    pub fn bind(&mut self, ps: &ParamStore) {
        self.blocks.iter_mut().for_each(|b| b.cb.bind(ps));
        if let Some((_, g, b)) = &mut self.bn_pool5 {
            g.bind(ps);
            b.bind(ps);
        }
        self.fc.iter_mut().for_each(|d| d.bind(ps));
    }

    /// Every batch norm, in forward order.
    pub fn bns(&self) -> Vec<&BatchNorm> {
        let mut v: Vec<&BatchNorm> = self.blocks.iter().map(|b| &b.cb.bn).collect();
        v.extend(self.bn_pool5.as_ref().map(|(bn, _, _)| bn));
        v
    }

    /// Every batch norm, in forward order (mutable).
    pub fn bns_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v: Vec<&mut BatchNorm> = self.blocks.iter_mut().map(|b| &mut b.cb.bn).collect();
        v.extend(self.bn_pool5.as_mut().map(|(bn, _, _)| bn));
        v
    }

    /// Logits of `n` samples of `x` (already rounded to `fmt`); `rng = Some` means training.
    pub fn forward(
        &mut self,
        par: &Par,
        w: &[f32],
        x: &[f32],
        n: usize,
        rng: Option<&mut ChaCha8Rng>,
        fmt: Option<HalfFormat>,
    ) -> &[f32] {
        let train = rng.is_some();
        for i in 0..self.blocks.len() {
            let (prev, rest) = self.blocks.split_at_mut(i);
            let xin: View<'_> = match prev.last() {
                Some(p) => p.out(),
                None => x.into(),
            };
            rest[0].forward(par, w, xin, n, train, fmt);
        }
        let pool5 = pool5(&self.blocks);
        let feat: &[f32] = match &mut self.bn_pool5 {
            Some((bn, g, b)) => {
                let rows = pool5.len() / bn.c;
                self.bn5_out.resize(pool5.len(), 0.0);
                let (g, b) = (&w[g.r.clone()], &w[b.r.clone()]);
                let (x5, y5) = (pool5.into(), (&mut self.bn5_out[..]).into());
                if train {
                    bn.forward_train(par, x5, rows, g, b, y5, false, fmt);
                } else {
                    bn.forward_eval(par, x5, rows, g, b, y5, false, fmt);
                }
                &self.bn5_out
            }
            None => pool5,
        };
        let mut rng = rng;
        for i in 0..3 {
            let xin: &[f32] = if i == 0 { feat } else { &self.hid[i - 1] };
            self.fc[i].forward(par, w, xin, n, &mut self.fc_out[i], fmt);
            if i < 2 {
                let out = &self.fc_out[i];
                let h = &mut self.hid[i];
                h.resize(out.len(), 0.0);
                relu::forward(out, h);
                if let Some(r) = rng.as_deref_mut() {
                    dropout::sample_mask(r, self.dropout, h.len(), &mut self.masks[i]);
                    dropout::forward_in_place(&self.masks[i], h);
                    round_par(par, fmt, h); // x2 can overflow half
                }
            }
        }
        &self.fc_out[2]
    }

    /// Backward from `cur` = dL/dlogits (`spare` is scratch), after a forward on `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: &[f32],
        n: usize,
        train: bool,
        cur: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        let pool5 = pool5(&self.blocks);
        let feat: &[f32] = if self.bn_pool5.is_some() {
            &self.bn5_out
        } else {
            pool5
        };
        for i in (0..3).rev() {
            let xin: &[f32] = if i == 0 { feat } else { &self.hid[i - 1] };
            self.fc[i].backward(par, w, grads, xin, cur, n, spare, fmt, u, ready);
            std::mem::swap(cur, spare);
            if i > 0 {
                if train {
                    dropout::backward(&self.masks[i - 1], cur);
                    round_par(par, fmt, cur);
                }
                relu::backward(&self.fc_out[i - 1], cur);
            }
        }
        if let Some((bn, g, b)) = &self.bn_pool5 {
            let rows = pool5.len() / bn.c;
            let (dg, db) = two_mut(grads, g.r.clone(), b.r.clone());
            u.add(bn.backward(
                par,
                pool5.into(),
                None,
                cur,
                rows,
                &w[g.r.clone()],
                dg,
                db,
                fmt,
            ));
            u.add(round_counting(fmt, dg));
            u.add(round_counting(fmt, db));
            ready.done(grads, &[&g.r, &b.r]);
        }
        for i in (0..self.blocks.len()).rev() {
            let xin = if i == 0 {
                x.into()
            } else {
                self.blocks[i - 1].out()
            };
            self.blocks[i].backward(par, w, grads, xin, n, cur, spare, i > 0, fmt, u, ready);
        }
    }

    /// Test helper: recomputes the dense head of the last training forward with dropout off.
    #[cfg(test)]
    pub fn redo_head_without_dropout(&mut self, par: &Par, w: &[f32], n: usize) {
        for mask in self.masks.iter_mut() {
            mask.iter_mut().for_each(|v| *v = 1.0);
        }
        let feat: Vec<f32> = if self.bn_pool5.is_some() {
            self.bn5_out.clone()
        } else {
            pool5(&self.blocks).to_vec()
        };
        for i in 0..3 {
            let xin: Vec<f32> = if i == 0 {
                feat.clone()
            } else {
                self.hid[i - 1].clone()
            };
            self.fc[i].forward(par, w, &xin, n, &mut self.fc_out[i], None);
            if i < 2 {
                relu::forward(&self.fc_out[i], &mut self.hid[i]);
            }
        }
    }

    /// Logits of the last forward.
    #[cfg(test)]
    pub fn logits(&self) -> &[f32] {
        &self.fc_out[2]
    }
}

/// The last block's pooled output (pool5) of the last forward.
fn pool5(blocks: &[ConvBlock]) -> &[f32] {
    let last = &blocks[blocks.len() - 1];
    last.pooled().expect("the last AlexNet block pools")
}
