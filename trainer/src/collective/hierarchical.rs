//! Hierarchical all-reduce over groups of `k` consecutive ranks: reduce-scatter inside each
//! group, then `k` rings (one per part of the message) among the P/k ranks holding that part
//! (the part's group leaders), then all-gather inside each group.

use super::element::Element;
use super::exchange::{part, Exchange};
use super::ring::{self, Members};
use super::CollectiveError;

/// Hierarchical all-reduce with groups of `group` ranks (`group` divides the world size).
///
/// Expects the inputs to be ready and leaves the last writes unsynced, like the ring.
pub(super) fn all_reduce<T: Element>(
    ex: &mut Exchange<'_, T>,
    group: usize,
) -> Result<(), CollectiveError> {
    let k = group;
    let groups = ex.world() / k;
    let (base, j) = (ex.rank() / k * k, ex.rank() % k);
    let whole = 0..ex.len();
    let mine = part(&whole, k, j);
    if k > 1 {
        // Reduce-scatter in the group: member j sums part j of every member, starting from its
        // own and going round the group, one rounded hop per member.
        let members: Vec<usize> = (1..k).map(|d| base + (j + d) % k).collect();
        // SAFETY: we write our part j; group members write their own parts, not part j, and
        // read our other parts only.
        unsafe { ex.reduce(mine.clone(), &members) };
    }
    if groups > 1 {
        if k > 1 {
            ex.sync()?;
        }
        let leaders = Members {
            first: j,
            stride: k,
            count: groups,
        };
        ring::all_reduce_among(ex, leaders, mine)?;
    }
    if k > 1 {
        // All-gather in the group: copy every other member's finished part.
        ex.sync()?;
        for d in 1..k {
            let owner = (j + d) % k;
            // SAFETY: the owner does not write its own part in this phase (it copies the
            // others), and nobody reads our parts other than part j.
            unsafe { ex.copy(part(&whole, k, owner), base + owner) };
        }
    }
    Ok(())
}
