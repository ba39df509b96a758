//! The trainable networks, each with explicit forward and backward passes, behind one facade.
//!
//! - [`alexnet_bn`]: AlexNet-BN, full size (`alexnet-bn`) and its 28x28 proxy (`alexnet-bn-proxy`);
//! - [`resnet`]: ResNet-50 (`resnet50`) and the 28x28 ResNet-20-style proxy (`resnet20-proxy`);
//! - [`blocks`]: the conv + BN, pooling and dense blocks they are built from.
//!
//! Parameters live in one [`ParamStore`] laid out in backward order; a network's layers hold
//! ranges into it. Mixed precision is emulated by rounding every stored activation and gradient
//! to the half format (f32 storage, f32 accumulation).

pub mod alexnet_bn;
pub mod blocks;
pub mod resnet;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use blocks::GradReady;

use crate::config::ModelKind;
use crate::layers::batchnorm::{BatchNorm, StatSync};
use crate::parallel::Par;
use crate::params::{ParamBuilder, ParamInfo, ParamStore};
use crate::precision::{round_into, round_par, HalfFormat, Underflow};
use alexnet_bn::AlexnetBn;
use blocks::{Announcer, INIT_STREAM};
use resnet::Resnet;

/// One of the networks.
#[derive(Debug)]
enum Net {
    Alexnet(AlexnetBn),
    Resnet(Resnet),
}

/// The network plus all buffers of one forward/backward pass (reused across steps).
#[derive(Debug)]
pub struct Model {
    /// Parameters, compute copies and gradients.
    pub params: ParamStore,
    net: Net,
    input_len: usize,
    classes: usize,
    n: usize,
    trained_forward: bool,
    input: Vec<f32>,
    g_cur: Vec<f32>,
    g_spare: Vec<f32>,
}

impl Model {
    /// Builds the network with Kaiming-normal weights, zero biases, BN gamma 1 / beta 0 (0 for
    /// the last BN of every residual branch); `bn5` applies to AlexNet-BN only.
    pub fn new(kind: ModelKind, bn5: bool, seed: u64) -> Model {
        let side = match kind {
            ModelKind::Resnet50 => resnet::RESNET50_SIDE,
            _ => 0,
        };
        Self::build(kind, bn5, seed, side)
    }

    /// [`Model::new`] with ResNet-50 on `side x side` inputs (tests on small images).
    #[cfg(test)]
    pub(crate) fn resnet50_at(seed: u64, side: usize) -> Model {
        Self::build(ModelKind::Resnet50, false, seed, side)
    }

    fn build(kind: ModelKind, bn5: bool, seed: u64, side: usize) -> Model {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(INIT_STREAM);
        let mut pb = ParamBuilder::default();
        let (mut net, input_len, classes) = match kind {
            ModelKind::AlexnetBnProxy | ModelKind::AlexnetBn => {
                let full = kind == ModelKind::AlexnetBn;
                let net = if full {
                    AlexnetBn::full(&mut pb, &mut rng, bn5)
                } else {
                    AlexnetBn::proxy(&mut pb, &mut rng, bn5)
                };
                let s = AlexnetBn::side(full);
                let classes = if full { 1000 } else { crate::data::CLASSES };
                (
                    Net::Alexnet(net),
                    s * s * AlexnetBn::channels(full),
                    classes,
                )
            }
            ModelKind::Resnet20Proxy => {
                let s = crate::data::SIDE;
                (
                    Net::Resnet(Resnet::proxy(&mut pb, &mut rng)),
                    s * s,
                    crate::data::CLASSES,
                )
            }
            ModelKind::Resnet50 => (
                Net::Resnet(Resnet::resnet50(&mut pb, &mut rng, side)),
                side * side * 3,
                1000,
            ),
        };
        let params = pb.build();
        match &mut net {
            Net::Alexnet(a) => a.bind(&params),
            Net::Resnet(r) => r.bind(&params),
        }
        Model {
            params,
            net,
            input_len,
            classes,
            n: 0,
            trained_forward: false,
            input: Vec::new(),
            g_cur: Vec::new(),
            g_spare: Vec::new(),
        }
    }

    /// Sets the training dropout probability of AlexNet-BN's fc6 and fc7 (0.5 by default; 0
    /// turns it off). The ResNets have no dropout.
    pub fn set_dropout(&mut self, p: f32) {
        if let Net::Alexnet(a) = &mut self.net {
            a.dropout = p;
        }
    }

    fn bns_mut(&mut self) -> Vec<&mut BatchNorm> {
        match &mut self.net {
            Net::Alexnet(a) => a.bns_mut(),
            Net::Resnet(r) => r.bns_mut(),
        }
    }

    fn bns(&self) -> Vec<&BatchNorm> {
        match &self.net {
            Net::Alexnet(a) => a.bns(),
            Net::Resnet(r) => r.bns(),
        }
    }

    /// Makes every batch norm sum its statistics through `sync` (synchronised BN across ranks).
    pub fn set_bn_sync(&mut self, sync: std::sync::Arc<dyn StatSync>) {
        for bn in self.bns_mut() {
            bn.set_sync(sync.clone());
        }
    }

    /// Parameter inventory (name, kind, shape, bytes) in backward order.
    pub fn inventory(&self) -> &[ParamInfo] {
        self.params.inventory()
    }

    /// Input values per sample.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Logits per sample.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Refreshes the half-rounded compute copy of the weights (mixed precision) or drops it.
    pub fn prepare_compute_weights(&mut self, fmt: Option<HalfFormat>, weights_in_half: bool) {
        match fmt {
            Some(f) if !weights_in_half => {
                round_into(Some(f), &self.params.values, &mut self.params.compute);
            }
            _ => self.params.compute.clear(),
        }
    }

    /// Forward pass of `n` samples of `x`; `dropout_rng = Some` means training mode
    /// (batch statistics, running-stat updates, dropout). Returns the logits `[n, classes]`.
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
        self.input.extend_from_slice(&x[..n * self.input_len]);
        round_par(par, fmt, &mut self.input);
        let w = self.params.forward_values();
        match &mut self.net {
            Net::Alexnet(a) => a.forward(par, w, &self.input, n, dropout_rng, fmt),
            Net::Resnet(r) => r.forward(par, w, &self.input, n, train, fmt),
        }
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
        let mut cur = std::mem::take(&mut self.g_cur);
        let mut spare = std::mem::take(&mut self.g_spare);
        cur.clear();
        cur.extend_from_slice(&dlogits[..n * self.classes]);
        let params = &mut self.params;
        let (w, grads): (&[f32], &mut [f32]) = if params.compute.is_empty() {
            (&params.values, &mut params.grads)
        } else {
            (&params.compute, &mut params.grads)
        };
        let x = &self.input;
        match &mut self.net {
            Net::Alexnet(a) => a.backward(
                par,
                w,
                grads,
                x,
                n,
                self.trained_forward,
                &mut cur,
                &mut spare,
                fmt,
                &mut u,
                &mut ready,
            ),
            Net::Resnet(r) => r.backward(
                par, w, grads, x, n, &mut cur, &mut spare, fmt, &mut u, &mut ready,
            ),
        }
        self.g_cur = cur;
        self.g_spare = spare;
        u
    }

    /// Mutable batch-norm running statistics (mean, var) of every BN layer, in forward order.
    pub fn bn_running_stats_mut(&mut self) -> Vec<(&mut Vec<f32>, &mut Vec<f32>)> {
        self.bns_mut()
            .into_iter()
            .map(|bn| (&mut bn.running_mean, &mut bn.running_var))
            .collect()
    }

    /// Batch-norm running statistics (mean, var) of every BN layer, in forward order.
    pub fn bn_running_stats(&self) -> Vec<(&[f32], &[f32])> {
        self.bns()
            .into_iter()
            .map(|bn| (&bn.running_mean[..], &bn.running_var[..]))
            .collect()
    }
}

#[cfg(test)]
mod tests;
