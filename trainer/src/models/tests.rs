use std::ops::Range;

use super::*;
use crate::config::TrainConfig;
use crate::data::CLASSES;
use crate::inventory;
use crate::layers::gradcheck::rand_vec;
use crate::layers::loss::softmax_cross_entropy;
use crate::optim::Optimizer;
use crate::precision::round;

const PROXIES: [ModelKind; 2] = [ModelKind::AlexnetBnProxy, ModelKind::Resnet20Proxy];

impl Model {
    /// Training-mode forward (batch statistics) with dropout disabled (test helper).
    fn forward_train_no_dropout(&mut self, par: &Par, x: &[f32], n: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let logits = self.forward(par, x, n, Some(&mut rng), None).to_vec();
        match &mut self.net {
            Net::Alexnet(a) => {
                // undo dropout: recompute the dense head with all-ones masks
                let w = self.params.forward_values().to_vec();
                a.redo_head_without_dropout(par, &w, n);
                a.logits().to_vec()
            }
            Net::Resnet(_) => logits,
        }
    }

    /// Sets every BN gamma of value 0 (the zero-initialised ones) to `v`.
    fn lift_zero_gammas(&mut self, v: f32) {
        let ranges = self.params.ranges_backward();
        for (info, r) in self.params.inventory().to_vec().iter().zip(ranges) {
            if info.name.ends_with(".gamma")
                && self.params.values[r.clone()].iter().all(|&g| g == 0.0)
            {
                self.params.values[r].fill(v);
            }
        }
    }
}

/// Announced inventory index ranges with the gradients they carried.
type Announced = Vec<(Range<usize>, Vec<f32>)>;

/// Runs forward + backward on `n` random inputs, recording every announcement.
fn announced(m: &mut Model, n: usize, par: &Par) -> (f64, Announced) {
    let x = rand_vec(71, n * m.input_len(), 1.0);
    let k = m.classes();
    let labels: Vec<u8> = (0..n).map(|i| (i * 3 % k.min(256)) as u8).collect();
    let logits = m.forward_train_no_dropout(par, &x, n);
    assert_eq!(logits.len(), n * k);
    assert!(logits.iter().all(|v| v.is_finite()), "non-finite logits");
    let mut d = vec![0.0; n * k];
    let (loss, _) = softmax_cross_entropy(&logits, &labels, k, 1.0, &mut d);
    let mut seen: Announced = Vec::new();
    m.backward_announcing(par, &d, None, &mut |idx, g| seen.push((idx, g.to_vec())));
    (loss, seen)
}

/// Every parameter is announced exactly once, in backward order, with its final gradient.
fn check_announcements(m: &Model, seen: &[(Range<usize>, Vec<f32>)]) {
    let mut next = 0;
    for (idx, _) in seen {
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
    for (idx, announced) in seen {
        let flat = ranges[idx.start].start..ranges[idx.end - 1].end;
        assert_eq!(
            &m.params.grads[flat],
            &announced[..],
            "a gradient changed after it was announced"
        );
    }
}

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

#[test]
fn resnet_proxy_has_the_resnet20_layout() {
    let m = Model::new(ModelKind::Resnet20Proxy, true, 0);
    let inv = m.inventory();
    let convs = inv
        .iter()
        .filter(|p| p.shape.len() == 4 && !p.name.contains("downsample"))
        .count();
    assert_eq!(convs, 19, "stem + 3 stages x 3 blocks x 2 convs");
    let downs: Vec<&str> = inv
        .iter()
        .filter(|p| p.name.ends_with("downsample.conv.weight"))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        downs,
        [
            "layer3.0.downsample.conv.weight",
            "layer2.0.downsample.conv.weight"
        ]
    );
    let fc = inv.iter().find(|p| p.name == "fc.weight").expect("fc");
    assert_eq!(fc.shape, vec![64, 10]);
    assert_eq!(inv[0].name, "fc.bias");
    assert_eq!(inv[inv.len() - 1].name, "conv1.weight");
    assert!(
        inv.iter()
            .all(|p| !p.name.ends_with(".bias") || p.name == "fc.bias"),
        "ResNet convolutions have no bias"
    );
    // the last BN of every residual branch starts at gamma 0, every other at 1
    let ranges = m.params.ranges_backward();
    for (info, r) in inv.iter().zip(ranges) {
        if info.name.ends_with(".gamma") {
            let want = if info.name.ends_with("bn2.gamma") {
                0.0
            } else {
                1.0
            };
            assert!(
                m.params.values[r].iter().all(|&g| g == want),
                "{}",
                info.name
            );
        }
    }
    assert_eq!(m.bn_running_stats().len(), 1 + 9 * 2 + 2);
}

/// The trainable full-size networks have exactly the inventories the cost model plans with.
#[test]
fn full_size_models_match_the_inventories() {
    for bn5 in [true, false] {
        let m = Model::new(ModelKind::AlexnetBn, bn5, 0);
        assert_eq!(
            m.inventory(),
            &inventory::alexnet_bn(bn5)[..],
            "alexnet-bn bn5={bn5}"
        );
    }
    let m = Model::new(ModelKind::Resnet50, false, 0);
    assert_eq!(m.inventory(), &inventory::resnet50()[..]);
}

#[test]
fn gradients_are_announced_final_in_backward_order() {
    let par = Par::new(2);
    for kind in PROXIES {
        let mut m = Model::new(kind, true, 4);
        let (_, seen) = announced(&mut m, 3, &par);
        check_announcements(&m, &seen);
    }
}

/// ResNet-50 at 224x224: forward + backward of one image, every gradient announced in order;
/// with the zero-initialised gammas every residual branch is silent, so only the shortcuts,
/// the last BN of each branch, the stem and fc receive gradient.
#[test]
fn resnet50_trains_one_image_at_full_size() {
    let par = Par::new(2);
    let mut m = Model::new(ModelKind::Resnet50, false, 1);
    assert_eq!(m.input_len(), 224 * 224 * 3);
    let (loss, seen) = announced(&mut m, 1, &par);
    assert!(loss.is_finite() && loss > 0.0);
    check_announcements(&m, &seen);
    let ranges = m.params.ranges_backward();
    for (info, r) in m.inventory().iter().zip(ranges) {
        let g = &m.params.grads[r];
        assert!(g.iter().all(|v| v.is_finite()), "{}", info.name);
        let inner = info.name.starts_with("layer")
            && !info.name.contains("downsample")
            && !info.name.contains(".bn3.");
        let nonzero = g.iter().any(|&v| v != 0.0);
        assert_eq!(
            nonzero,
            !inner,
            "{}: gradient {}",
            info.name,
            if nonzero { "non-zero" } else { "zero" }
        );
    }
}

/// With the gammas lifted off zero, ResNet-50's gradients match finite differences (checked on
/// a 64x64 input, where the architecture is the same and a forward pass is 12x cheaper).
#[test]
fn resnet50_gradient_matches_finite_differences() {
    let par = Par::new(2);
    let mut m = Model::resnet50_at(2, 64);
    m.lift_zero_gammas(0.5);
    fd_check(
        &mut m,
        &par,
        2,
        &[
            "conv1.weight",
            "layer1.0.conv2.weight",
            "layer3.1.bn2.gamma",
            "layer4.2.bn3.gamma",
            "layer2.0.downsample.conv.weight",
            "fc.weight",
        ],
        0,
    );
}

#[test]
fn alexnet_bn_trains_one_batch_at_full_size() {
    let par = Par::new(2);
    for bn5 in [true, false] {
        let mut m = Model::new(ModelKind::AlexnetBn, bn5, 1);
        assert_eq!((m.input_len(), m.classes()), (224 * 224 * 3, 1000));
        let (loss, seen) = announced(&mut m, 2, &par);
        assert!(loss.is_finite() && loss > 0.0);
        check_announcements(&m, &seen);
        let ranges = m.params.ranges_backward();
        for (info, r) in m.inventory().iter().zip(ranges) {
            let g = &m.params.grads[r];
            assert!(g.iter().all(|v| v.is_finite()), "{}", info.name);
            // conv biases feed BN, which cancels them: their gradient is (near) zero by design
            if !info.name.starts_with("conv") || info.name.ends_with(".weight") {
                assert!(g.iter().any(|&v| v != 0.0), "{} has no gradient", info.name);
            }
        }
    }
}

/// Checks the largest-gradient entry of the named tensors (all tensors when empty) against
/// central differences of the training-mode loss; at least `min_checked` must be checked.
fn fd_check(m: &mut Model, par: &Par, n: usize, names: &[&str], min_checked: usize) {
    let x = rand_vec(61, n * m.input_len(), 1.0);
    let k = m.classes();
    let labels: Vec<u8> = (0..n).map(|i| ((1 + 2 * i) % k.min(256)) as u8).collect();
    let loss_of = |m: &mut Model| -> f64 {
        let logits = m.forward_train_no_dropout(par, &x, n);
        let mut d = vec![0.0; n * k];
        softmax_cross_entropy(&logits, &labels, k, 1.0, &mut d).0
    };
    let logits = m.forward_train_no_dropout(par, &x, n);
    let mut d = vec![0.0; n * k];
    softmax_cross_entropy(&logits, &labels, k, 1.0, &mut d);
    m.backward(par, &d, None);
    let grads = m.params.grads.clone();
    let ranges = m.params.ranges_backward();
    let inv = m.inventory().to_vec();
    let mut checked = 0;
    for (info, r) in inv.iter().zip(ranges) {
        if !names.is_empty() && !names.contains(&info.name.as_str()) {
            continue;
        }
        // the largest-gradient entry of each tensor: its FD signal is well above f32 noise
        let i = r
            .clone()
            .max_by(|&a, &b| grads[a].abs().total_cmp(&grads[b].abs()))
            .unwrap_or(r.start);
        if grads[i].abs() < 1e-4 {
            assert!(names.is_empty(), "{} has no gradient to check", info.name);
            continue;
        }
        let orig = m.params.values[i];
        // small step: a larger one crosses ReLU/max-pool kinks somewhere in the batch
        let eps = 1e-3f32;
        m.params.values[i] = orig + eps;
        let lp = loss_of(m);
        m.params.values[i] = orig - eps;
        let lm = loss_of(m);
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
    assert!(
        checked >= min_checked.max(names.len()),
        "only {checked} tensors checked"
    );
}

/// Whole-network gradient check on the largest entry of every tensor (dropout off so the loss
/// is smooth; the ResNet's zero gammas lifted so every branch carries gradient).
#[test]
fn model_gradient_matches_finite_differences() {
    let par = Par::new(2);
    let mut m = Model::new(ModelKind::AlexnetBnProxy, true, 3);
    fd_check(&mut m, &par, 4, &[], 21);
    let mut m = Model::new(ModelKind::Resnet20Proxy, true, 3);
    m.lift_zero_gammas(0.7);
    fd_check(&mut m, &par, 4, &[], 50);
}

/// The same seed and thread count give bit-identical ResNet training steps.
#[test]
fn resnet_proxy_steps_are_bit_deterministic() {
    let run = |threads: usize| -> (Vec<f32>, Vec<f32>) {
        let par = Par::new(threads);
        let mut cfg = TrainConfig::proxy_default(crate::data::FASHION_MNIST_DIR);
        cfg.model = ModelKind::Resnet20Proxy;
        let mut m = Model::new(cfg.model, true, 9);
        let ranges = m.params.ranges_backward();
        let mut opt = Optimizer::new(&cfg, m.inventory(), &ranges);
        let n = 6;
        for step in 0..3u64 {
            let x = rand_vec(100 + step, n * m.input_len(), 1.0);
            let labels: Vec<u8> = (0..n).map(|i| ((i as u64 + step) % 10) as u8).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(step);
            let logits = m.forward(&par, &x, n, Some(&mut rng), None).to_vec();
            let mut d = vec![0.0; n * CLASSES];
            softmax_cross_entropy(&logits, &labels, CLASSES, 1.0, &mut d);
            m.backward(&par, &d, None);
            opt.step(&mut m.params, 0.1, None);
        }
        let running = m
            .bn_running_stats()
            .iter()
            .flat_map(|(a, _)| a.to_vec())
            .collect();
        (m.params.values.clone(), running)
    };
    let a = run(2);
    assert_eq!(a, run(2), "two runs with the same seed and threads differ");
    let fresh = Model::new(ModelKind::Resnet20Proxy, true, 9);
    assert_ne!(a.0, fresh.params.values, "training changed nothing");
}

/// In fp16 every stored activation is a half value; the logits are, and overflow shows as inf.
#[test]
fn resnet_proxy_rounds_activations_to_half() {
    let par = Par::new(2);
    let mut m = Model::new(ModelKind::Resnet20Proxy, true, 5);
    m.prepare_compute_weights(Some(HalfFormat::F16), false);
    assert!(!m.params.compute.is_empty());
    let n = 3;
    let x = rand_vec(81, n * m.input_len(), 1.0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let logits = m
        .forward(&par, &x, n, Some(&mut rng), Some(HalfFormat::F16))
        .to_vec();
    let mut rounded = logits.clone();
    round(Some(HalfFormat::F16), &mut rounded);
    assert_eq!(logits, rounded, "logits are not half values");
    let fp32 = Model::new(ModelKind::Resnet20Proxy, true, 5)
        .forward(&par, &x, n, Some(&mut ChaCha8Rng::seed_from_u64(0)), None)
        .to_vec();
    assert_ne!(logits, fp32, "fp16 emulation changed nothing");
    let mut d = vec![0.0; n * CLASSES];
    softmax_cross_entropy(&logits, &[1, 2, 3], CLASSES, 65536.0 * 65536.0, &mut d);
    round(Some(HalfFormat::F16), &mut d);
    m.backward(&par, &d, Some(HalfFormat::F16));
    assert!(
        m.params.grads.iter().any(|g| g.is_infinite()),
        "a 2^32 loss scale must overflow half"
    );
}
