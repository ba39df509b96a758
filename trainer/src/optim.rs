//! Momentum SGD and LARS over the flat parameter buffers.

use std::ops::Range;

use crate::config::{OptimizerKind, TrainConfig};
use crate::params::{ParamInfo, ParamKind, ParamStore};
use crate::precision::{round, HalfFormat};

/// One parameter as the optimiser sees it.
#[derive(Debug, Clone)]
struct Slot {
    range: Range<usize>,
    /// Bias/BN parameter exempt from weight decay and LARS scaling.
    excluded: bool,
}

/// Optimiser state: the momentum buffer laid out like the parameters.
#[derive(Debug, Clone)]
pub struct Optimizer {
    kind: OptimizerKind,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    eta: f64,
    eps: f64,
    slots: Vec<Slot>,
    velocity: Vec<f32>,
}

/// L2 norm accumulated in f64.
fn norm(x: &[f32]) -> f64 {
    x.iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt()
}

impl Optimizer {
    /// An optimiser for the parameters described by `inventory` / `ranges` (both backward order).
    pub fn new(cfg: &TrainConfig, inventory: &[ParamInfo], ranges: &[Range<usize>]) -> Self {
        let slots: Vec<Slot> = inventory
            .iter()
            .zip(ranges)
            .map(|(info, r)| Slot {
                range: r.clone(),
                excluded: info.kind != ParamKind::Weight && !cfg.decay_bias_and_bn,
            })
            .collect();
        let total = ranges.iter().map(|r| r.end).max().unwrap_or(0);
        Optimizer {
            kind: cfg.optimizer,
            momentum: cfg.momentum as f32,
            nesterov: cfg.nesterov,
            weight_decay: cfg.weight_decay as f32,
            eta: cfg.lars_eta,
            eps: cfg.lars_eps,
            slots,
            velocity: vec![0.0; total],
        }
    }

    /// The momentum buffer, laid out like the parameters.
    pub fn velocity(&self) -> &[f32] {
        &self.velocity
    }

    /// Replaces the momentum buffer (restoring a checkpoint); false if the length differs.
    pub fn set_velocity(&mut self, v: &[f32]) -> bool {
        if v.len() != self.velocity.len() {
            return false;
        }
        self.velocity.copy_from_slice(v);
        true
    }

    /// The LARS local learning rate `eta*||w|| / (||g|| + wd*||w|| + eps)` (1 if a norm is 0).
    pub fn lars_trust_ratio(eta: f64, wd: f64, eps: f64, w_norm: f64, g_norm: f64) -> f64 {
        if w_norm > 0.0 && g_norm > 0.0 {
            eta * w_norm / (g_norm + wd * w_norm + eps)
        } else {
            1.0
        }
    }

    /// Applies one update with learning rate `lr` from `params.grads` (already unscaled).
    /// With `weights_in_half = Some(fmt)` (fp16-naive) the new weights and momentum are
    /// rounded to that format, so updates below half resolution are lost.
    pub fn step(&mut self, params: &mut ParamStore, lr: f64, weights_in_half: Option<HalfFormat>) {
        let m = self.momentum;
        for slot in &self.slots {
            let r = slot.range.clone();
            let w = &mut params.values[r.clone()];
            let g = &params.grads[r.clone()];
            let v = &mut self.velocity[r];
            let wd = if slot.excluded {
                0.0
            } else {
                self.weight_decay
            };
            match self.kind {
                OptimizerKind::Sgd => {
                    // PyTorch SGD: v = m v + (g + wd w); w -= lr * (nesterov ? g' + m v : v)
                    let lr = lr as f32;
                    for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                        let d = g + wd * *w;
                        *v = m * *v + d;
                        let upd = if self.nesterov { d + m * *v } else { *v };
                        *w -= lr * upd;
                    }
                }
                OptimizerKind::Lars => {
                    // LARS: v = m v + lr * local_lr * (g + wd w); w -= v (nesterov: w -= m v + step)
                    let local = if slot.excluded {
                        1.0
                    } else {
                        Self::lars_trust_ratio(self.eta, wd as f64, self.eps, norm(w), norm(g))
                    };
                    let k = (lr * local) as f32;
                    for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                        let d = k * (g + wd * *w);
                        *v = m * *v + d;
                        let upd = if self.nesterov { m * *v + d } else { *v };
                        *w -= upd;
                    }
                }
            }
            if let Some(fmt) = weights_in_half {
                round(Some(fmt), w);
                round(Some(fmt), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamBuilder;

    fn store() -> ParamStore {
        let mut b = ParamBuilder::default();
        b.add("fc.weight", ParamKind::Weight, vec![2], vec![3.0, 4.0]);
        b.add("fc.bias", ParamKind::Bias, vec![1], vec![1.0]);
        b.build()
    }

    #[test]
    fn sgd_matches_pytorch_convention() {
        let mut cfg = TrainConfig::default();
        cfg.weight_decay = 0.1;
        cfg.momentum = 0.5;
        let mut p = store();
        let inv = p.inventory().to_vec();
        let mut opt = Optimizer::new(&cfg, &inv, &p.ranges_backward());
        // backward order: bias first
        p.grads.copy_from_slice(&[1.0, 1.0, 2.0]);
        opt.step(&mut p, 0.1, None);
        // bias: no decay: v = 1, w = 1 - 0.1
        assert!((p.values[0] - 0.9).abs() < 1e-6);
        // weight: v = 1 + 0.3 = 1.3, w = 3 - 0.13
        assert!((p.values[1] - 2.87).abs() < 1e-6);
        opt.step(&mut p, 0.1, None);
        // bias: v = 0.5 + 1 = 1.5
        assert!((p.values[0] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn lars_scales_weights_only() {
        let mut cfg = TrainConfig::default();
        cfg.optimizer = OptimizerKind::Lars;
        cfg.lars_eta = 0.01;
        cfg.weight_decay = 0.0;
        cfg.momentum = 0.0;
        let mut p = store();
        let inv = p.inventory().to_vec();
        let mut opt = Optimizer::new(&cfg, &inv, &p.ranges_backward());
        p.grads.copy_from_slice(&[1.0, 0.0, 10.0]);
        opt.step(&mut p, 2.0, None);
        // weight: ||w|| = 5, ||g|| = 10, local = 0.01 * 5 / 10 = 0.005; step = 2 * 0.005 * g
        assert!((p.values[1] - 3.0).abs() < 1e-6);
        assert!((p.values[2] - (4.0 - 0.1)).abs() < 1e-6);
        // bias: plain lr
        assert!((p.values[0] - (1.0 - 2.0)).abs() < 1e-6);
        assert_eq!(Optimizer::lars_trust_ratio(0.01, 0.0, 0.0, 0.0, 1.0), 1.0);
    }

    #[test]
    fn naive_half_loses_small_updates() {
        let mut cfg = TrainConfig::default();
        cfg.weight_decay = 0.0;
        cfg.momentum = 0.0;
        let mut p = store();
        let inv = p.inventory().to_vec();
        let mut opt = Optimizer::new(&cfg, &inv, &p.ranges_backward());
        p.grads.copy_from_slice(&[1e-4, 1e-4, 1e-4]);
        opt.step(&mut p, 1.0, Some(HalfFormat::F16));
        assert_eq!(p.values[0], 1.0); // 1 - 1e-4 rounds back to 1 in half
        let mut p2 = store();
        p2.grads.copy_from_slice(&[1e-4, 1e-4, 1e-4]);
        opt.step(&mut p2, 1.0, None);
        assert!(p2.values[0] < 1.0);
    }
}
