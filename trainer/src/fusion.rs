//! Gradient fusion: which consecutive gradient tensors (in backward order) share one all-reduce.

use std::ops::Range;

/// Packs consecutive tensors into buckets of at most `threshold` bytes.
///
/// A tensor larger than the threshold is a bucket of its own; `threshold == 0` disables
/// fusion (one bucket per tensor). Returns index ranges into `sizes` covering it in order.
pub fn plan_buckets(sizes: &[u64], threshold: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    if threshold == 0 {
        return (0..sizes.len()).map(|i| i..i + 1).collect();
    }
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        let fits = bytes.checked_add(s).is_some_and(|t| t <= threshold);
        if i > start && !fits {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(s);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Hands every bucket of the flat gradient buffer (a contiguous slice) to `reduce`, the
/// collective of the data-parallel group; returns the number of calls made. The trainer
/// runs a single rank today, so it passes the identity.
pub fn allreduce_buckets(
    grads: &mut [f32],
    buckets: &[Range<usize>],
    mut reduce: impl FnMut(&mut [f32]),
) -> u64 {
    for b in buckets {
        reduce(&mut grads[b.clone()]);
    }
    buckets.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_while_under_threshold() {
        assert_eq!(plan_buckets(&[10, 20, 30, 40], 60), vec![0..3, 3..4]);
        assert_eq!(plan_buckets(&[10, 20, 30, 40], 100), vec![0..4]);
        assert_eq!(plan_buckets(&[10, 20, 30, 40], 30), vec![0..2, 2..3, 3..4]);
    }

    #[test]
    fn oversized_tensor_goes_alone() {
        assert_eq!(
            plan_buckets(&[10, 500, 10, 10], 100),
            vec![0..1, 1..2, 2..4]
        );
        assert_eq!(plan_buckets(&[500], 100), vec![0..1]);
        assert_eq!(plan_buckets(&[500, 600], 100), vec![0..1, 1..2]);
    }

    #[test]
    fn zero_threshold_means_one_call_per_tensor() {
        assert_eq!(plan_buckets(&[1, 2, 3], 0), vec![0..1, 1..2, 2..3]);
        assert_eq!(plan_buckets(&[0, 0], 0), vec![0..1, 1..2]);
    }

    #[test]
    fn edge_cases() {
        assert!(plan_buckets(&[], 100).is_empty());
        assert_eq!(plan_buckets(&[100, 100], 100), vec![0..1, 1..2]);
        assert_eq!(plan_buckets(&[u64::MAX, 1], u64::MAX), vec![0..1, 1..2]);
        let mut g = vec![1.0f32; 10];
        assert_eq!(
            allreduce_buckets(&mut g, &[0..4, 4..10], |b| b
                .iter_mut()
                .for_each(|v| *v *= 2.0)),
            2
        );
        assert!(g.iter().all(|&v| v == 2.0));
        assert_eq!(allreduce_buckets(&mut g, &[0..10], |_| {}), 1);
    }
}
