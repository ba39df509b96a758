//! Segmented fusion: the gradients, in backward order, are cut into segments; each segment's
//! all-reduce starts as soon as its last gradient is final, while the backward pass goes on.
//! Inside a segment, tensors are fused into buckets under the fusion threshold.

use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::fusion::plan_buckets;

/// Where the backward pass is split into all-reduce segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segments {
    /// This many segments of about equal gradient bytes (1 = all-reduce after the backward).
    Count(usize),
    /// A new segment starts at each of these tensor indices (backward order, ascending).
    At(Vec<usize>),
    /// Split points chosen by the cost model for this model and rank count.
    Auto,
}

impl Default for Segments {
    fn default() -> Self {
        Segments::Count(1)
    }
}

impl FromStr for Segments {
    type Err = String;

    /// `auto`, a count (`4`), or split points (`at:3,9,20`).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "auto" {
            return Ok(Segments::Auto);
        }
        if let Some(list) = s.strip_prefix("at:") {
            let at = list
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("split point {v:?} is not a tensor index"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Segments::At(at));
        }
        s.parse::<usize>()
            .map(Segments::Count)
            .map_err(|_| format!("segments {s:?}: expected `auto`, a count such as `4`, or split points such as `at:3,9`"))
    }
}

impl std::fmt::Display for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segments::Count(n) => write!(f, "{n}"),
            Segments::At(v) => {
                let parts: Vec<String> = v.iter().map(|i| i.to_string()).collect();
                write!(f, "at:{}", parts.join(","))
            }
            Segments::Auto => f.write_str("auto"),
        }
    }
}

/// One all-reduce segment of the flat gradient buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Tensor indices (backward order) it covers.
    pub tensors: Range<usize>,
    /// Its range of the flat gradient buffer.
    pub flat: Range<usize>,
    /// Fusion buckets, as ranges relative to `flat.start`, in order.
    pub buckets: Vec<Range<usize>>,
}

/// Split points (tensor indices where a segment starts, excluding 0) for `count` segments of
/// about equal bytes: a cut is placed where the running total first reaches each share.
pub fn equal_byte_splits(bytes: &[u64], count: usize) -> Vec<usize> {
    let total: u64 = bytes.iter().sum();
    let count = count.clamp(1, bytes.len().max(1));
    let mut splits = Vec::new();
    let mut acc = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        acc += b;
        let due = splits.len() + 1;
        if due < count
            && i + 1 < bytes.len()
            && acc as u128 * count as u128 >= total as u128 * due as u128
        {
            splits.push(i + 1);
        }
    }
    splits
}

/// Checks split points against `tensors` tensors: ascending, inside `1..tensors`.
pub fn check_splits(splits: &[usize], tensors: usize) -> Result<(), String> {
    let mut prev = 0;
    for &s in splits {
        if s <= prev || s >= tensors {
            return Err(format!(
                "segment split points must be ascending tensor indices in 1..{tensors}, got {splits:?}"
            ));
        }
        prev = s;
    }
    Ok(())
}

/// The segments for tensors with flat `ranges` (backward order, contiguous from 0) and wire
/// sizes `bytes`, cut at `splits`, each fused into buckets of at most `threshold` bytes.
pub fn plan(
    ranges: &[Range<usize>],
    bytes: &[u64],
    splits: &[usize],
    threshold: u64,
) -> Vec<Segment> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(splits);
    bounds.push(ranges.len());
    bounds
        .windows(2)
        .filter(|w| w[0] < w[1])
        .map(|w| {
            let tensors = w[0]..w[1];
            let flat = ranges[tensors.start].start..ranges[tensors.end - 1].end;
            let buckets = plan_buckets(&bytes[tensors.clone()], threshold)
                .into_iter()
                .map(|b| {
                    let lo = ranges[tensors.start + b.start].start - flat.start;
                    let hi = ranges[tensors.start + b.end - 1].end - flat.start;
                    lo..hi
                })
                .collect();
            Segment {
                tensors,
                flat,
                buckets,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(sizes: &[usize]) -> Vec<Range<usize>> {
        let mut at = 0;
        sizes
            .iter()
            .map(|&s| {
                at += s;
                at - s..at
            })
            .collect()
    }

    #[test]
    fn equal_bytes_cut_where_shares_are_reached() {
        assert_eq!(equal_byte_splits(&[10, 10, 10, 10], 2), vec![2]);
        assert_eq!(equal_byte_splits(&[10, 10, 10, 10], 4), vec![1, 2, 3]);
        assert_eq!(equal_byte_splits(&[100, 1, 1, 1], 2), vec![1]);
        assert!(equal_byte_splits(&[5, 5], 1).is_empty());
        // more segments than tensors: one per tensor
        assert_eq!(equal_byte_splits(&[1, 1, 1], 9), vec![1, 2]);
    }

    #[test]
    fn segments_cover_the_buffer_and_fuse_inside() {
        let sizes = [4, 2, 2, 8, 1];
        let r = ranges(&sizes);
        let bytes: Vec<u64> = sizes.iter().map(|&s| 4 * s as u64).collect();
        let segs = plan(&r, &bytes, &[3], 16);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].tensors, 0..3);
        assert_eq!(segs[0].flat, 0..8);
        // 16 bytes + (8 + 8) bytes
        assert_eq!(segs[0].buckets, vec![0..4, 4..8]);
        assert_eq!(segs[1].flat, 8..17);
        // the 32-byte tensor goes alone, then the last one
        assert_eq!(segs[1].buckets, vec![0..8, 8..9]);
        let one = plan(&r, &bytes, &[], 1 << 20);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].buckets, vec![0..17]);
    }

    #[test]
    fn split_points_are_checked() {
        assert!(check_splits(&[1, 3], 5).is_ok());
        assert!(check_splits(&[3, 1], 5).is_err());
        assert!(check_splits(&[0], 5).is_err());
        assert!(check_splits(&[5], 5).is_err());
    }

    #[test]
    fn segments_parse_and_print() {
        for s in ["auto", "3", "at:2,7"] {
            assert_eq!(
                s.parse::<Segments>().map(|p| p.to_string()),
                Ok(s.to_string())
            );
        }
        assert!("at:x".parse::<Segments>().is_err());
        assert!("many".parse::<Segments>().is_err());
    }
}
