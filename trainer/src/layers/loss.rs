//! Softmax cross-entropy over the logits of a batch.

/// Mean loss over the batch and its gradient `dlogits = grad_scale * (softmax - onehot) / n`.
///
/// Returns the mean loss (f64; non-finite if the logits are) and the number of correct argmax predictions.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    grad_scale: f32,
    dlogits: &mut [f32],
) -> (f64, usize) {
    softmax_cross_entropy_smoothed(logits, labels, classes, 0.0, grad_scale, dlogits)
}

/// [`softmax_cross_entropy`] against label-smoothed targets `(1 - s) * onehot + s / classes`
/// (PyTorch's `label_smoothing = s`): the gradient is `grad_scale * (softmax - target) / n`.
pub fn softmax_cross_entropy_smoothed(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    smoothing: f32,
    grad_scale: f32,
    dlogits: &mut [f32],
) -> (f64, usize) {
    let n = labels.len();
    let mut total = 0.0f64;
    let mut correct = 0;
    let k = grad_scale / n.max(1) as f32;
    let off = smoothing / classes as f32;
    for ((z, d), &y) in logits
        .chunks_exact(classes)
        .zip(dlogits.chunks_exact_mut(classes))
        .zip(labels)
    {
        let y = y as usize;
        let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for (dv, &v) in d.iter_mut().zip(z) {
            let e = (v - max).exp();
            *dv = e;
            sum += e;
        }
        let lse = sum.ln() + max;
        let mut loss = lse - z[y];
        if smoothing != 0.0 {
            // -sum_k target_k log p_k = (1 - s)(lse - z_y) + (s / K) sum_k (lse - z_k)
            let mean_nll = z.iter().map(|&v| lse - v).sum::<f32>() / classes as f32;
            loss = (1.0 - smoothing) * loss + smoothing * mean_nll;
        }
        total += loss as f64;
        for dv in d.iter_mut() {
            *dv = (*dv / sum - off) * k;
        }
        d[y] -= (1.0 - smoothing) * k;
        if argmax(z) == y {
            correct += 1;
        }
    }
    (total / n.max(1) as f64, correct)
}

/// Index of the largest value (first on ties; NaN never wins).
pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// Number of rows of `logits` whose argmax equals the label.
pub fn count_correct(logits: &[f32], labels: &[u8], classes: usize) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(z, &y)| argmax(z) == y as usize)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_close, rand_vec};

    #[test]
    fn ce_backward_matches_finite_differences() {
        let (n, k) = (6, 10);
        let z = rand_vec(51, n * k, 3.0);
        let labels: Vec<u8> = (0..n).map(|i| (i * 3 % k) as u8).collect();
        let mut d = vec![0.0; n * k];
        let (loss, _) = softmax_cross_entropy(&z, &labels, k, 1.0, &mut d);
        assert!(loss > 0.0);
        let eps = 1e-2f32;
        let mut num = vec![0.0f32; n * k];
        let mut zp = z.clone();
        let mut scratch = vec![0.0; n * k];
        for i in 0..n * k {
            zp[i] = z[i] + eps;
            let lp = softmax_cross_entropy(&zp, &labels, k, 1.0, &mut scratch).0;
            zp[i] = z[i] - eps;
            let lm = softmax_cross_entropy(&zp, &labels, k, 1.0, &mut scratch).0;
            zp[i] = z[i];
            num[i] = ((lp - lm) / (2.0 * eps as f64)) as f32;
        }
        assert_close(&d, &num, 1e-2, "softmax-ce dlogits");
        // the loss scale multiplies the gradient only
        let mut d2 = vec![0.0; n * k];
        let (loss2, _) = softmax_cross_entropy(&z, &labels, k, 1024.0, &mut d2);
        assert_eq!(loss, loss2);
        assert!(d
            .iter()
            .zip(&d2)
            .all(|(a, b)| (a * 1024.0 - b).abs() <= 1e-4 * b.abs().max(1e-3)));
    }

    #[test]
    fn argmax_and_counting() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(count_correct(&[0.0, 1.0, 5.0, 1.0], &[1, 1], 2), 1);
    }

    #[test]
    fn smoothed_ce_matches_finite_differences_and_its_definition() {
        let (n, k) = (5, 10);
        let z = rand_vec(52, n * k, 3.0);
        let labels: Vec<u8> = (0..n).map(|i| (i * 7 % k) as u8).collect();
        let s = 0.1f32;
        let mut d = vec![0.0; n * k];
        let (loss, _) = softmax_cross_entropy_smoothed(&z, &labels, k, s, 1.0, &mut d);
        // the definition, in f64: -sum_k ((1-s) onehot + s/K) log softmax
        let mut want = 0.0f64;
        for (row, &y) in z.chunks_exact(k).zip(&labels) {
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            for (j, &v) in row.iter().enumerate() {
                let t = s as f64 / k as f64 + if j == y as usize { 1.0 - s as f64 } else { 0.0 };
                want -= t * (v as f64 - lse);
            }
        }
        want /= n as f64;
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
        let mut zp = z.clone();
        let mut scratch = vec![0.0; n * k];
        let eps = 1e-2f32;
        let num: Vec<f32> = (0..n * k)
            .map(|i| {
                zp[i] = z[i] + eps;
                let lp = softmax_cross_entropy_smoothed(&zp, &labels, k, s, 1.0, &mut scratch).0;
                zp[i] = z[i] - eps;
                let lm = softmax_cross_entropy_smoothed(&zp, &labels, k, s, 1.0, &mut scratch).0;
                zp[i] = z[i];
                ((lp - lm) / (2.0 * eps as f64)) as f32
            })
            .collect();
        assert_close(&d, &num, 1e-2, "smoothed ce dlogits");
        // smoothing 0 is the plain loss, bit for bit
        let (mut a, mut b) = (vec![0.0; n * k], vec![0.0; n * k]);
        let l0 = softmax_cross_entropy_smoothed(&z, &labels, k, 0.0, 8.0, &mut a);
        let l1 = softmax_cross_entropy(&z, &labels, k, 8.0, &mut b);
        assert_eq!((l0, a), (l1, b));
    }
}
