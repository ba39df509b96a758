//! Moving gradients between a rank's backward pass and its communication thread: announced
//! gradients are staged into whole segments, each segment is all-reduced bucket by bucket in
//! the element type the precision mode puts on the wire.

use std::ops::Range;
use std::sync::mpsc::Sender;

use half::{bf16, f16};

use crate::collective::{Collective, CollectiveError, Payload};
use crate::config::Precision;
use crate::ranks::segments::Segment;

/// Element type gradients travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// f32 (fp32 training).
    F32,
    /// IEEE half (fp16 modes): sums overflow to inf as on GPUs.
    F16,
    /// bfloat16.
    Bf16,
}

impl Wire {
    /// The wire type of a precision mode.
    pub fn of(precision: Precision) -> Wire {
        match precision {
            Precision::Fp32 => Wire::F32,
            Precision::Fp16 | Precision::Fp16Naive => Wire::F16,
            Precision::Bf16 => Wire::Bf16,
        }
    }
}

/// All-reduces `buf` (one segment, staged as f32) over the ranks of `comm`, one call per bucket.
///
/// Half gradients are already rounded to their format, so the conversions are exact; the sum
/// itself is rounded the way the collective rounds it.
pub fn reduce_segment(
    comm: &mut dyn Collective,
    wire: Wire,
    buckets: &[Range<usize>],
    buf: &mut [f32],
) -> Result<(), CollectiveError> {
    for b in buckets {
        let part = &mut buf[b.clone()];
        match wire {
            Wire::F32 => comm.all_reduce(Payload::F32(part))?,
            Wire::F16 => {
                let mut h: Vec<f16> = part.iter().map(|&v| f16::from_f32(v)).collect();
                comm.all_reduce(Payload::F16(&mut h))?;
                part.iter_mut().zip(&h).for_each(|(d, s)| *d = s.to_f32());
            }
            Wire::Bf16 => {
                let mut h: Vec<bf16> = part.iter().map(|&v| bf16::from_f32(v)).collect();
                comm.all_reduce(Payload::Bf16(&mut h))?;
                part.iter_mut().zip(&h).for_each(|(d, s)| *d = s.to_f32());
            }
        }
    }
    Ok(())
}

/// Collects the gradients a backward pass announces (in backward order, contiguous from the
/// start of the flat buffer) and sends each segment to the communication thread once whole.
#[derive(Debug)]
pub struct Stager<'a> {
    segments: &'a [Segment],
    next: usize,
    buf: Vec<f32>,
    to_comm: Sender<(usize, Vec<f32>)>,
}

impl<'a> Stager<'a> {
    /// A stager for `segments` sending complete ones to `to_comm`.
    pub fn new(segments: &'a [Segment], to_comm: Sender<(usize, Vec<f32>)>) -> Self {
        let cap = segments.first().map_or(0, |s| s.flat.len());
        Stager {
            segments,
            next: 0,
            buf: Vec::with_capacity(cap),
            to_comm,
        }
    }

    /// Takes the next announced gradients (they continue where the previous ones ended).
    pub fn push(&mut self, mut grads: &[f32]) {
        while !grads.is_empty() && self.next < self.segments.len() {
            let want = self.segments[self.next].flat.len() - self.buf.len();
            let take = want.min(grads.len());
            self.buf.extend_from_slice(&grads[..take]);
            grads = &grads[take..];
            if self.buf.len() == self.segments[self.next].flat.len() {
                let cap = self.segments.get(self.next + 1).map_or(0, |s| s.flat.len());
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
                // a closed channel means the communication thread failed; its error is reported
                let _ = self.to_comm.send((self.next, full));
                self.next += 1;
            }
        }
    }

    /// Segments handed over so far.
    pub fn sent(&self) -> usize {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn stager_sends_whole_segments_in_order() {
        let segs = crate::ranks::segments::plan(&[0..2, 2..5, 5..6], &[8, 12, 4], &[1], 1 << 20);
        let (tx, rx) = channel();
        let mut st = Stager::new(&segs, tx);
        st.push(&[1.0]);
        assert!(rx.try_recv().is_err());
        // one announcement spanning the segment boundary
        st.push(&[2.0, 3.0, 4.0]);
        assert_eq!(rx.try_recv().ok(), Some((0, vec![1.0, 2.0])));
        st.push(&[5.0, 6.0]);
        assert_eq!(rx.try_recv().ok(), Some((1, vec![3.0, 4.0, 5.0, 6.0])));
        assert_eq!(st.sent(), 2);
    }
}
