//! Flat ring all-reduce: reduce-scatter then all-gather over `m` chunks, `m - 1` steps each,
//! so every rank moves 2(m−1)/m of the message, as NCCL's ring does.

use super::element::Element;
use super::exchange::{part, Exchange};
use super::CollectiveError;
use std::ops::Range;

/// The ranks of one ring: `first`, `first + stride`, ... (`count` of them), in ring order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Members {
    pub first: usize,
    pub stride: usize,
    pub count: usize,
}

impl Members {
    fn rank(&self, position: usize) -> usize {
        self.first + self.stride * (position % self.count)
    }
}

/// Ring all-reduce of every rank's whole buffer.
pub(super) fn all_reduce<T: Element>(ex: &mut Exchange<'_, T>) -> Result<(), CollectiveError> {
    let ring = Members {
        first: 0,
        stride: 1,
        count: ex.world(),
    };
    all_reduce_among(ex, ring, 0..ex.len())
}

/// Ring all-reduce of `range` among `ring` (this rank is one of them; every rank of the
/// communicator calls it at the same time, each on a ring of the same size).
///
/// Expects the inputs to be ready (the caller has synced) and leaves the last writes
/// unsynced; the sum of chunk `c` is formed once, along the ring, and then copied, so every
/// member ends with the same bits.
pub(super) fn all_reduce_among<T: Element>(
    ex: &mut Exchange<'_, T>,
    ring: Members,
    range: Range<usize>,
) -> Result<(), CollectiveError> {
    let m = ring.count;
    if m < 2 {
        return Ok(());
    }
    let me = (ex.rank() - ring.first) / ring.stride;
    let left = ring.rank(me + m - 1);
    let chunk = |c: usize| part(&range, m, c % m);
    // Reduce-scatter: at step s this rank adds its left neighbour's partial sum of chunk
    // me−s−1 to its own; after m−1 steps it holds the full sum of chunk me+1.
    for s in 0..m - 1 {
        if s > 0 {
            ex.sync()?;
        }
        // SAFETY: in this step we write our chunk me−s−1 and read the left neighbour's same
        // chunk, which it does not write (it writes its chunk me−s−2); our right neighbour reads
        // our chunk me−s, not the one we write. Other rings touch other ranks or ranges.
        unsafe { ex.reduce(chunk(me + 2 * m - s - 1), &[left]) };
    }
    // All-gather: at step s this rank copies the finished chunk me−s from its left neighbour.
    for s in 0..m - 1 {
        ex.sync()?;
        // SAFETY: we write our chunk me−s and read the left neighbour's chunk me−s, which it
        // finished in an earlier step and does not write now (it writes its chunk me−s−1);
        // our right neighbour reads our chunk me−s+1.
        unsafe { ex.copy(chunk(me + m - s), left) };
    }
    Ok(())
}
