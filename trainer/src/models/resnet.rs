//! Residual networks: ResNet-50 (bottleneck blocks) and the 28x28 ResNet-20-style proxy
//! (basic blocks). The last BN gamma of every residual branch starts at zero, so each block
//! starts as the identity (Goyal et al. 2017) and very large batches train stably early on.
//!
//! ResNet-50 (`resnet50`, 224x224x3 input; torchvision's layout and names):
//! ```text
//! conv1 7x7/2 pad 3 3->64, bn1, relu, maxpool 3/2 pad 1 (224 -> 112 -> 56)
//! layer1..layer4: [3, 4, 6, 3] bottlenecks of width 64/128/256/512 (out 4x width):
//!   conv1 1x1, bn1, relu; conv2 3x3 (stride 2 at the first block of layers 2-4), bn2, relu;
//!   conv3 1x1, bn3 (gamma 0); + shortcut (1x1 conv + BN projection at each first block); relu
//! global average pool (7x7), fc 2048->1000
//! ```
//! Proxy (`resnet20-proxy`, 28x28x1 input):
//! ```text
//! conv1 3x3 1->16, bn1, relu (28x28)
//! layer1..layer3: 3 basic blocks each, 16/32/64 channels (28, 14, 7):
//!   conv1 3x3 (stride 2 at the first block of layers 2-3), bn1, relu; conv2 3x3, bn2 (gamma 0);
//!   + shortcut (1x1/2 conv + BN projection where the shape changes); relu
//! global average pool (7x7), fc 64->10
//! ```

use rand_chacha::ChaCha8Rng;

use super::blocks::{Announcer, ConvBlock, ConvBn, ConvBnSpec, Dense, Pool};
use crate::layers::{
    batchnorm::BatchNorm, conv::Conv2d, gap::GlobalAvgPool, pool::MaxPool, residual,
};
use crate::parallel::Par;
use crate::params::{ParamBuilder, ParamStore};
use crate::precision::{round_counting_par, round_par, HalfFormat, Underflow, View};

/// A residual block: a chain of conv + BN layers (ReLU between them) plus a shortcut,
/// summed and passed through a ReLU.
#[derive(Debug)]
struct ResBlock {
    /// The residual branch; the last layer has no ReLU and starts with gamma 0.
    main: Vec<ConvBn>,
    /// 1x1 projection + BN where the shape changes, else the identity.
    down: Option<ConvBn>,
    /// relu(main + shortcut).
    out: Vec<f32>,
}

impl ResBlock {
    fn forward(
        &mut self,
        par: &Par,
        w: &[f32],
        x: View<'_>,
        n: usize,
        train: bool,
        fmt: Option<HalfFormat>,
    ) {
        for i in 0..self.main.len() {
            let (prev, rest) = self.main.split_at_mut(i);
            let xin = prev.last().map_or(x, |p| p.a.view());
            rest[0].forward(par, w, xin, n, train, fmt);
        }
        if let Some(d) = &mut self.down {
            d.forward(par, w, x, n, train, fmt);
        }
        let skip = self.down.as_ref().map_or(x, |d| d.a.view());
        let last = &self.main[self.main.len() - 1];
        self.out.resize(n * last.out_len(), 0.0);
        residual::forward(par, last.a.view(), skip, &mut self.out, true);
        round_par(par, fmt, &mut self.out);
    }

    /// `cur` holds dL/d(block output) on entry and dL/d(block input) on return.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: View<'_>,
        n: usize,
        cur: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        skip: &mut Vec<f32>,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        // masking half values is exact: no rounding needed
        residual::backward(par, Some(&self.out), cur);
        skip.clear();
        skip.extend_from_slice(cur);
        // the shortcut was registered last, so its gradients are the first final ones
        if let Some(d) = &self.down {
            d.backward(par, w, grads, x, n, skip, spare, true, fmt, u, ready);
        }
        for i in (0..self.main.len()).rev() {
            let xin = if i == 0 { x } else { self.main[i - 1].a.view() };
            self.main[i].backward(par, w, grads, xin, n, cur, spare, true, fmt, u, ready);
        }
        for (g, &s) in cur.iter_mut().zip(skip.iter()) {
            *g += s;
        }
        u.add(round_counting_par(par, fmt, cur));
    }
}

/// The network's layers and the buffers of one forward/backward pass.
#[derive(Debug)]
pub(crate) struct Resnet {
    stem: ConvBlock,
    blocks: Vec<ResBlock>,
    gap: GlobalAvgPool,
    fc: Dense,
    feat: Vec<f32>,
    logits: Vec<f32>,
    skip: Vec<f32>,
}

/// Input side of ResNet-50.
pub(crate) const RESNET50_SIDE: usize = 224;

impl Resnet {
    /// The 28x28 ResNet-20-style proxy.
    pub fn proxy(pb: &mut ParamBuilder, rng: &mut ChaCha8Rng) -> Self {
        let side = crate::data::SIDE;
        let stem_conv = Conv2d::same3x3(side, side, 1, 16);
        let stem = ConvBlock::new(
            ConvBn::new(pb, rng, stem_conv, spec("conv1", "bn1", 1.0, true)),
            None,
        );
        let mut net = Builder {
            side,
            cin: 16,
            blocks: Vec::new(),
        };
        for (s, width) in [16, 32, 64].into_iter().enumerate() {
            for b in 0..3 {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                net.basic(pb, rng, &format!("layer{}.{b}", s + 1), width, stride);
            }
        }
        net.finish(stem, pb, rng, crate::data::CLASSES)
    }

    /// ResNet-50 on `side x side x 3` inputs (224 for ImageNet; any side from 32 works).
    pub fn resnet50(pb: &mut ParamBuilder, rng: &mut ChaCha8Rng, side: usize) -> Self {
        let stem_conv = Conv2d::new(side, side, 3, 64, 7, 2, 3);
        let s1 = stem_conv.oh();
        let pool = Pool::Window(MaxPool::new(s1, s1, 64, 3, 2, 1));
        let stem_cb = ConvBn::new(pb, rng, stem_conv, spec("conv1", "bn1", 1.0, true));
        let mut net = Builder {
            side: pool.out_side(),
            cin: 64,
            blocks: Vec::new(),
        };
        let stem = ConvBlock::new(stem_cb, Some(pool));
        for (s, (blocks, width)) in [3, 4, 6, 3]
            .into_iter()
            .zip([64, 128, 256, 512])
            .enumerate()
        {
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                net.bottleneck(pb, rng, &format!("layer{}.{b}", s + 1), width, stride);
            }
        }
        net.finish(stem, pb, rng, 1000)
    }

    /// Looks every parameter range up in the built store.
    pub fn bind(&mut self, ps: &ParamStore) {
        self.stem.cb.bind(ps);
        for b in &mut self.blocks {
            b.main.iter_mut().for_each(|c| c.bind(ps));
            if let Some(d) = &mut b.down {
                d.bind(ps);
            }
        }
        self.fc.bind(ps);
    }

    /// Every batch norm, in forward (registration) order.
    pub fn bns(&self) -> Vec<&BatchNorm> {
        let mut v = vec![&self.stem.cb.bn];
        for b in &self.blocks {
            v.extend(b.main.iter().map(|c| &c.bn));
            v.extend(b.down.as_ref().map(|d| &d.bn));
        }
        v
    }

    /// Every batch norm, in forward (registration) order (mutable).
    pub fn bns_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut v = vec![&mut self.stem.cb.bn];
        for b in &mut self.blocks {
            v.extend(b.main.iter_mut().map(|c| &mut c.bn));
            v.extend(b.down.as_mut().map(|d| &mut d.bn));
        }
        v
    }

    /// Logits of `n` samples of `x` (already rounded to `fmt`).
    pub fn forward(
        &mut self,
        par: &Par,
        w: &[f32],
        x: &[f32],
        n: usize,
        train: bool,
        fmt: Option<HalfFormat>,
    ) -> &[f32] {
        self.stem.forward(par, w, x.into(), n, train, fmt);
        for i in 0..self.blocks.len() {
            let (prev, rest) = self.blocks.split_at_mut(i);
            let xin = prev.last().map_or(self.stem.out(), |b| (&b.out).into());
            rest[0].forward(par, w, xin, n, train, fmt);
        }
        let last = &self.blocks[self.blocks.len() - 1].out;
        self.feat.resize(n * self.gap.c, 0.0);
        self.gap.forward(par, last, n, &mut self.feat);
        round_par(par, fmt, &mut self.feat);
        self.fc
            .forward(par, w, &self.feat, n, &mut self.logits, fmt);
        &self.logits
    }

    /// Backward from `cur` = dL/dlogits (`spare` is scratch), after a forward on `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &mut self,
        par: &Par,
        w: &[f32],
        grads: &mut [f32],
        x: &[f32],
        n: usize,
        cur: &mut Vec<f32>,
        spare: &mut Vec<f32>,
        fmt: Option<HalfFormat>,
        u: &mut Underflow,
        ready: &mut Announcer<'_>,
    ) {
        let mut skip = std::mem::take(&mut self.skip);
        self.fc
            .backward(par, w, grads, &self.feat, cur, n, spare, fmt, u, ready);
        std::mem::swap(cur, spare);
        spare.resize(n * self.gap.hw * self.gap.c, 0.0);
        self.gap.backward(par, cur, n, spare);
        u.add(round_counting_par(par, fmt, spare));
        std::mem::swap(cur, spare);
        for i in (0..self.blocks.len()).rev() {
            let xin = if i == 0 {
                self.stem.out()
            } else {
                (&self.blocks[i - 1].out).into()
            };
            self.blocks[i].backward(par, w, grads, xin, n, cur, spare, &mut skip, fmt, u, ready);
        }
        self.stem
            .backward(par, w, grads, x.into(), n, cur, spare, false, fmt, u, ready);
        self.skip = skip;
    }
}

fn spec<'a>(conv: &'a str, bn: &'a str, gamma: f32, relu: bool) -> ConvBnSpec<'a> {
    ConvBnSpec {
        conv,
        bn,
        bias: false,
        gamma,
        relu,
    }
}

/// Stacks residual blocks, tracking the map side and channels.
struct Builder {
    side: usize,
    cin: usize,
    blocks: Vec<ResBlock>,
}

impl Builder {
    /// The 1x1 projection shortcut where stride or channels change.
    fn shortcut(
        &self,
        pb: &mut ParamBuilder,
        rng: &mut ChaCha8Rng,
        p: &str,
        cout: usize,
        stride: usize,
    ) -> Option<ConvBn> {
        (stride != 1 || self.cin != cout).then(|| {
            let conv = Conv2d::new(self.side, self.side, self.cin, cout, 1, stride, 0);
            let (c, b) = (format!("{p}.downsample.conv"), format!("{p}.downsample.bn"));
            ConvBn::new(pb, rng, conv, spec(&c, &b, 1.0, false))
        })
    }

    fn push(&mut self, main: Vec<ConvBn>, down: Option<ConvBn>) {
        let last = &main[main.len() - 1].conv;
        (self.side, self.cin) = (last.oh(), last.cout);
        self.blocks.push(ResBlock {
            main,
            down,
            out: Vec::new(),
        });
    }

    /// 3x3 + 3x3 basic block.
    fn basic(
        &mut self,
        pb: &mut ParamBuilder,
        rng: &mut ChaCha8Rng,
        p: &str,
        width: usize,
        stride: usize,
    ) {
        let (s, cin) = (self.side, self.cin);
        let c1 = Conv2d::new(s, s, cin, width, 3, stride, 1);
        let s2 = c1.oh();
        let c2 = Conv2d::same3x3(s2, s2, width, width);
        let main = vec![
            ConvBn::new(
                pb,
                rng,
                c1,
                spec(&format!("{p}.conv1"), &format!("{p}.bn1"), 1.0, true),
            ),
            ConvBn::new(
                pb,
                rng,
                c2,
                spec(&format!("{p}.conv2"), &format!("{p}.bn2"), 0.0, false),
            ),
        ];
        let down = self.shortcut(pb, rng, p, width, stride);
        self.push(main, down);
    }

    /// 1x1 + 3x3 (strided) + 1x1 bottleneck with 4x expansion.
    fn bottleneck(
        &mut self,
        pb: &mut ParamBuilder,
        rng: &mut ChaCha8Rng,
        p: &str,
        width: usize,
        stride: usize,
    ) {
        let (s, cin) = (self.side, self.cin);
        let c1 = Conv2d::new(s, s, cin, width, 1, 1, 0);
        let c2 = Conv2d::new(s, s, width, width, 3, stride, 1);
        let s2 = c2.oh();
        let c3 = Conv2d::new(s2, s2, width, 4 * width, 1, 1, 0);
        let main = vec![
            ConvBn::new(
                pb,
                rng,
                c1,
                spec(&format!("{p}.conv1"), &format!("{p}.bn1"), 1.0, true),
            ),
            ConvBn::new(
                pb,
                rng,
                c2,
                spec(&format!("{p}.conv2"), &format!("{p}.bn2"), 1.0, true),
            ),
            ConvBn::new(
                pb,
                rng,
                c3,
                spec(&format!("{p}.conv3"), &format!("{p}.bn3"), 0.0, false),
            ),
        ];
        let down = self.shortcut(pb, rng, p, 4 * width, stride);
        self.push(main, down);
    }

    fn finish(
        self,
        stem: ConvBlock,
        pb: &mut ParamBuilder,
        rng: &mut ChaCha8Rng,
        classes: usize,
    ) -> Resnet {
        Resnet {
            stem,
            blocks: self.blocks,
            gap: GlobalAvgPool::new(self.side * self.side, self.cin),
            fc: Dense::new(pb, rng, "fc", self.cin, classes),
            feat: Vec::new(),
            logits: Vec::new(),
            skip: Vec::new(),
        }
    }
}
