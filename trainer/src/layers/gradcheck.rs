//! Finite-difference helpers shared by the layer tests.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Deterministic uniform values in `[-scale, scale]`.
pub fn rand_vec(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

/// Central-difference gradient of `L(x) = sum(f(x) * r)`, accumulated in f64.
pub fn numeric_grad(x: &[f32], r: &[f32], f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    let eps = 1e-2f32;
    let loss = |x: &[f32]| -> f64 { f(x).iter().zip(r).map(|(&y, &r)| y as f64 * r as f64).sum() };
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + eps;
            let lp = loss(&xp);
            xp[i] = x[i] - eps;
            let lm = loss(&xp);
            xp[i] = x[i];
            ((lp - lm) / (2.0 * eps as f64)) as f32
        })
        .collect()
}

/// Asserts `got` is within relative (norm-wise) tolerance `rtol` of `want`.
pub fn assert_close(got: &[f32], want: &[f32], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let diff: f64 = got
        .iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    assert!(norm > 1e-6, "{what}: reference gradient is all zero");
    assert!(
        diff / norm < rtol,
        "{what}: relative error {:.3e} (norm {norm:.3e})",
        diff / norm
    );
    let max = want.iter().fold(0.0f64, |m, &b| m.max((b as f64).abs()));
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        assert!(
            ((a - b) as f64).abs() <= 5.0 * rtol * max + 1e-4,
            "{what}[{i}]: {a} vs {b}"
        );
    }
}
