//! Segmented fusion and the event simulation of one training step: buckets queue on one
//! communication stream, each starting once its segment's last gradient is final (or once
//! backward ends, without overlap), while backward continues.

use std::ops::Range;

use crate::fusion::plan_buckets;

/// Where the gradients (in backward order) are split into segments, and the fusion threshold
/// applied inside each segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segmentation {
    /// Indices (ascending, each in `1..tensors`) at which a new segment starts; empty = S = 1.
    pub splits: Vec<usize>,
    /// Fusion threshold in bytes inside a segment (0 = one message per tensor).
    pub threshold: u64,
}

impl Segmentation {
    /// One segment (S = 1) fused under `threshold`.
    pub fn single(threshold: u64) -> Self {
        Segmentation {
            splits: Vec::new(),
            threshold,
        }
    }

    /// One segment per tensor (each gradient's all-reduce starts as soon as it is final).
    pub fn per_tensor(tensors: usize) -> Self {
        Segmentation {
            splits: (1..tensors).collect(),
            threshold: 0,
        }
    }

    /// Number of segments over `tensors` gradients.
    pub fn segments(&self, tensors: usize) -> usize {
        if tensors == 0 {
            0
        } else {
            self.splits.len() + 1
        }
    }

    /// The segments as index ranges covering `0..tensors` in order (invalid split points —
    /// out of range or not ascending — are ignored).
    pub fn ranges(&self, tensors: usize) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for &s in &self.splits {
            if s > start && s < tensors {
                out.push(start..s);
                start = s;
            }
        }
        if start < tensors {
            out.push(start..tensors);
        }
        out
    }

    /// The all-reduce messages: fusion buckets of each segment (via
    /// [`crate::fusion::plan_buckets`]), as index ranges into `sizes`, with the segment each
    /// belongs to.
    pub fn buckets(&self, sizes: &[u64]) -> Vec<(Range<usize>, Range<usize>)> {
        let mut out = Vec::new();
        for seg in self.ranges(sizes.len()) {
            for b in plan_buckets(&sizes[seg.clone()], self.threshold) {
                out.push((b.start + seg.start..b.end + seg.start, seg.clone()));
            }
        }
        out
    }
}

/// What one simulated step looks like (seconds; communication times from backward's start).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StepTimeline {
    /// Forward pass.
    pub forward_secs: f64,
    /// Backward pass.
    pub backward_secs: f64,
    /// Sum of all all-reduce durations (the stream's busy time).
    pub comm_busy_secs: f64,
    /// When the last all-reduce finishes (0 with nothing to send).
    pub comm_finish_secs: f64,
    /// Messages sent.
    pub messages: usize,
    /// Forward + max(backward, communication finishing).
    pub step_secs: f64,
}

/// Simulates one step: `ready[i]` is when gradient `i` is final, `sizes[i]` its bytes on the
/// wire, `cost(bytes)` one all-reduce's seconds. With `overlap`, a segment's buckets queue as
/// soon as its last gradient is final; without, all queue when backward ends.
pub fn simulate_step(
    forward_secs: f64,
    ready: &[f64],
    backward_secs: f64,
    sizes: &[u64],
    seg: &Segmentation,
    overlap: bool,
    mut cost: impl FnMut(u64) -> f64,
) -> StepTimeline {
    let mut free = 0.0f64;
    let mut busy = 0.0;
    let buckets = seg.buckets(sizes);
    for (bucket, segment) in &buckets {
        let bytes: u64 = sizes[bucket.clone()].iter().sum();
        let at = if overlap {
            ready[segment.end - 1]
        } else {
            backward_secs
        };
        let d = cost(bytes);
        free = free.max(at) + d;
        busy += d;
    }
    StepTimeline {
        forward_secs,
        backward_secs,
        comm_busy_secs: busy,
        comm_finish_secs: free,
        messages: buckets.len(),
        step_secs: forward_secs + backward_secs.max(free),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_buckets_cover_the_tensors_in_order() {
        let seg = Segmentation {
            splits: vec![2, 3],
            threshold: 100,
        };
        assert_eq!(seg.ranges(5), vec![0..2, 2..3, 3..5]);
        assert_eq!(seg.segments(5), 3);
        let b = seg.buckets(&[60, 60, 10, 30, 30]);
        let msgs: Vec<_> = b.iter().map(|(m, _)| m.clone()).collect();
        assert_eq!(msgs, vec![0..1, 1..2, 2..3, 3..5]);
        assert_eq!(b[3].1, 3..5);
        assert_eq!(
            Segmentation::per_tensor(3).ranges(3),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(
            Segmentation::single(0).ranges(0),
            Vec::<Range<usize>>::new()
        );
        // Split points out of order or out of range do not break the cover.
        let odd = Segmentation {
            splits: vec![3, 1, 9],
            threshold: 0,
        };
        assert_eq!(odd.ranges(4), vec![0..3, 3..4]);
    }

    #[test]
    fn overlap_hides_communication_behind_backward() {
        // Four gradients final at 1, 2, 3, 4 s; each message costs 0.5 s per tensor.
        let ready = [1.0, 2.0, 3.0, 4.0];
        let sizes = [1, 1, 1, 1];
        let cost = |b: u64| 0.5 * b as f64;
        let per = Segmentation::per_tensor(4);
        let t = simulate_step(1.0, &ready, 4.0, &sizes, &per, true, cost);
        // The last message starts at 4 s and ends at 4.5 s.
        assert_eq!(t.comm_finish_secs, 4.5);
        assert_eq!(t.step_secs, 5.5);
        assert_eq!(t.messages, 4);
        // Without overlap all four queue at 4 s.
        let t = simulate_step(1.0, &ready, 4.0, &sizes, &per, false, cost);
        assert_eq!(t.comm_finish_secs, 6.0);
        assert_eq!(t.step_secs, 7.0);
        // A queue: messages longer than the gaps back up behind each other.
        let slow = |_: u64| 2.0;
        let t = simulate_step(0.0, &ready, 4.0, &sizes, &per, true, slow);
        assert_eq!(t.comm_finish_secs, 1.0 + 4.0 * 2.0);
    }

    /// Whatever the split, the prediction lies between compute alone and compute plus every
    /// message sent after backward.
    #[test]
    fn overlap_is_bounded_by_compute_and_compute_plus_communication() {
        let ready: Vec<f64> = (1..=20).map(|i| i as f64 * 0.01).collect();
        let sizes: Vec<u64> = (0..20).map(|i| 1000 + 997 * (i % 7)).collect();
        let cost = |b: u64| 1e-3 + b as f64 * 3e-6;
        for mask in [0u32, 1, 0b1010_1010_1010, 0xFFFFF, 0x12345] {
            let splits: Vec<usize> = (1..20).filter(|i| mask & (1 << i) != 0).collect();
            for threshold in [0, 2000, 5000, 1 << 20] {
                let seg = Segmentation {
                    splits: splits.clone(),
                    threshold,
                };
                let t = simulate_step(0.05, &ready, 0.2, &sizes, &seg, true, cost);
                let compute = 0.05 + 0.2;
                assert!(t.step_secs >= compute);
                assert!(t.step_secs <= compute + t.comm_busy_secs + 1e-12);
                let serial = simulate_step(0.05, &ready, 0.2, &sizes, &seg, false, cost);
                assert!((serial.step_secs - (compute + serial.comm_busy_secs)).abs() < 1e-12);
                assert!(t.step_secs <= serial.step_secs + 1e-12);
            }
        }
    }
}
