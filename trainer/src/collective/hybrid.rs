//! Hybrid all-reduce: per message, hierarchical below a size threshold (fewer steps, so less
//! latency) and the flat ring at or above it (the least traffic per rank).

use super::element::Element;
use super::exchange::Exchange;
use super::{hierarchical, ring, CollectiveError};

/// Hierarchical with groups of `group` for messages under `threshold` bytes, else the ring.
pub(super) fn all_reduce<T: Element>(
    ex: &mut Exchange<'_, T>,
    group: usize,
    threshold: u64,
) -> Result<(), CollectiveError> {
    if ex.bytes() < threshold {
        hierarchical::all_reduce(ex, group)
    } else {
        ring::all_reduce(ex)
    }
}
