//! What an all-reduce algorithm sees of a call: every rank's buffer in shared memory, and the
//! barrier that separates its steps. Ranks reduce straight from each other's buffers, so a
//! step moves each byte once (no send and receive copies).

use super::element::Element;
use super::CollectiveError;
use std::marker::PhantomData;
use std::ops::Range;

/// Elements reduced at a time when several sources are summed, so the destination block stays
/// in cache across the sources.
const REDUCE_BLOCK_BYTES: usize = 32 * 1024;

/// One rank's view of one all-reduce call.
pub(super) struct Exchange<'a, T> {
    rank: usize,
    world: usize,
    len: usize,
    /// Address of every rank's buffer (this rank's included), each `len` elements of `T`.
    bases: &'a [usize],
    sync: &'a mut dyn FnMut() -> Result<(), CollectiveError>,
    elem: PhantomData<T>,
}

impl<'a, T: Element> Exchange<'a, T> {
    /// A view over `bases` (one buffer of `len` elements per rank) for `rank`.
    pub(super) fn new(
        rank: usize,
        len: usize,
        bases: &'a [usize],
        sync: &'a mut dyn FnMut() -> Result<(), CollectiveError>,
    ) -> Self {
        Exchange {
            rank,
            world: bases.len(),
            len,
            bases,
            sync,
            elem: PhantomData,
        }
    }

    /// This rank.
    pub(super) fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks taking part.
    pub(super) fn world(&self) -> usize {
        self.world
    }

    /// Elements in every rank's buffer.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes in every rank's buffer.
    pub(super) fn bytes(&self) -> u64 {
        (self.len * std::mem::size_of::<T>()) as u64
    }

    /// Waits until every rank has finished its current step.
    pub(super) fn sync(&mut self) -> Result<(), CollectiveError> {
        (self.sync)()
    }

    /// `own[range] = own[range] + srcs[0][range] + srcs[1][range] + ...`, one rounded hop per
    /// source, in the order given.
    ///
    /// # Safety
    /// Until the next [`Exchange::sync`], no rank writes `range` of a buffer in `srcs`, and no
    /// other rank reads or writes `range` of this rank's buffer.
    pub(super) unsafe fn reduce(&self, range: Range<usize>, srcs: &[usize]) {
        assert!(range.end <= self.len && srcs.iter().all(|&s| s != self.rank && s < self.world));
        let block = (REDUCE_BLOCK_BYTES / std::mem::size_of::<T>()).max(1);
        let mut start = range.start;
        while start < range.end {
            let end = (start + block).min(range.end);
            // SAFETY: the caller guarantees exclusive access to this range of our buffer.
            let dst = unsafe { self.slice_mut(self.rank, start..end) };
            for &src in srcs {
                // SAFETY: the caller guarantees nobody writes this range of `src` meanwhile.
                T::accumulate(dst, unsafe { self.slice(src, start..end) });
            }
            start = end;
        }
    }

    /// `own[range] = src[range]`.
    ///
    /// # Safety
    /// As for [`Exchange::reduce`] with `srcs = [src]`.
    pub(super) unsafe fn copy(&self, range: Range<usize>, src: usize) {
        assert!(range.end <= self.len && src != self.rank && src < self.world);
        // SAFETY: as guaranteed by the caller.
        unsafe {
            self.slice_mut(self.rank, range.clone())
                .copy_from_slice(self.slice(src, range));
        }
    }

    /// # Safety
    /// Nobody writes `range` of `rank`'s buffer while the slice lives.
    unsafe fn slice(&self, rank: usize, range: Range<usize>) -> &[T] {
        let base = self.bases[rank] as *const T;
        // SAFETY: every buffer holds `len` elements and outlives the call; `range` is inside.
        unsafe { std::slice::from_raw_parts(base.add(range.start), range.len()) }
    }

    /// # Safety
    /// Nobody else reads or writes `range` of `rank`'s buffer while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, rank: usize, range: Range<usize>) -> &mut [T] {
        let base = self.bases[rank] as *mut T;
        // SAFETY: as for `slice`, plus the exclusivity the caller guarantees.
        unsafe { std::slice::from_raw_parts_mut(base.add(range.start), range.len()) }
    }
}

/// Part `i` of `parts` near-equal consecutive parts of `range`.
pub(super) fn part(range: &Range<usize>, parts: usize, i: usize) -> Range<usize> {
    let len = range.len();
    range.start + len * i / parts..range.start + len * (i + 1) / parts
}

#[cfg(test)]
mod tests {
    use super::part;

    #[test]
    fn parts_cover_the_range_in_order() {
        for len in [0usize, 1, 5, 7, 1000] {
            for parts in 1..=9 {
                let r = 3..3 + len;
                let ps: Vec<_> = (0..parts).map(|i| part(&r, parts, i)).collect();
                assert_eq!(ps[0].start, 3);
                assert_eq!(ps[parts - 1].end, 3 + len);
                assert!(ps.windows(2).all(|w| w[0].end == w[1].start));
                assert!(ps.iter().all(|p| p.len() <= len.div_ceil(parts)));
            }
        }
    }
}
