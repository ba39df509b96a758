//! Hierarchical all-reduce over groups of `k` consecutive ranks: reduce-scatter inside each
//! group, then `k` rings (one per part of the message) among the P/k ranks holding that part
//! (the part's group leaders), then all-gather inside each group. With one group (k = P) the
//! sums are stored straight back into every member as they are formed.

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
    let mine = part(&(0..ex.len()), k, j);
    let members: Vec<usize> = (1..k).map(|d| base + (j + d) % k).collect();
    if groups == 1 {
        // One group: member j sums part j of every member and stores the sum straight back
        // into them (lines just read), so the all-gather costs no pass of its own.
        // SAFETY: we alone touch part j of any buffer in this call.
        unsafe { ex.reduce(mine, &members, &members) };
        return Ok(());
    }
    if k > 1 {
        // Reduce-scatter in the group: member j sums part j of every member, starting from its
        // own and going round the group, one rounded hop per member.
        // SAFETY: we write our part j; group members write their own parts, not part j, and
        // read only their own part of our buffer.
        unsafe { ex.reduce(mine.clone(), &members, &[]) };
        ex.sync()?;
    }
    let leaders = Members {
        first: j,
        stride: k,
        count: groups,
    };
    ring::all_reduce_among(ex, leaders, mine.clone())?;
    if k > 1 {
        // All-gather in the group: store our finished part into every other member.
        ex.sync()?;
        // SAFETY: we read our part j, which nobody writes now, and write part j of the other
        // members, which only we touch in this phase.
        unsafe { ex.push(mine, &members) };
    }
    Ok(())
}
