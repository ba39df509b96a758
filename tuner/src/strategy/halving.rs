//! Successive halving between stages: only the best part of a stage goes on; the rest are dropped
//! with the reason.

use super::objective::Judge;
use jizhi_store::TrialRecord;

/// A trial a stage dropped, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    /// The trial.
    pub id: u64,
    /// Why, in words.
    pub reason: String,
}

/// Splits a stage's trials into survivors (best first) and the pruned: the best
/// `ceil(keep_fraction × n)` (at least `min_keep`) survive; trials without a result are pruned.
pub fn halve<'a>(
    trials: &[&'a TrialRecord],
    judge: &Judge,
    keep_fraction: f64,
    min_keep: usize,
    stage: &str,
) -> (Vec<&'a TrialRecord>, Vec<Pruned>) {
    let ranked = judge.best_first(trials.iter().copied());
    let keep = ((ranked.len() as f64 * keep_fraction).ceil() as usize)
        .max(min_keep)
        .min(ranked.len());
    let cut = keep
        .checked_sub(1)
        .and_then(|i| ranked.get(i))
        .map(|(_, s)| *s);
    let mut pruned = Vec::new();
    for (rank, (t, score)) in ranked.iter().enumerate().skip(keep) {
        pruned.push(Pruned {
            id: t.id,
            reason: format!(
                "successive halving after stage {stage}: ranked {} of {} ({}), only the best {keep} go on{}",
                rank + 1,
                ranked.len(),
                judge.describe(*score),
                cut.map(|c| format!(" (cut at {})", judge.describe(c))).unwrap_or_default()
            ),
        });
    }
    for t in trials {
        if !ranked.iter().any(|(r, _)| r.id == t.id) {
            pruned.push(Pruned {
                id: t.id,
                reason: format!("stage {stage}: no result to go on with"),
            });
        }
    }
    pruned.sort_by_key(|p| p.id);
    (
        ranked.into_iter().take(keep).map(|(t, _)| t).collect(),
        pruned,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Objective;
    use crate::strategy::objective::tests::record;

    #[test]
    fn the_worst_half_is_dropped_with_its_rank() {
        let trials: Vec<TrialRecord> = (1..=5).map(|i| record(i, 0.1 * i as f64, 1.0, 0)).collect();
        let refs: Vec<&TrialRecord> = trials.iter().collect();
        let judge = Judge::Objective {
            objective: Objective::MaxValTop1,
            target: None,
        };
        let (keep, pruned) = halve(&refs, &judge, 0.5, 1, "coarse");
        let kept: Vec<u64> = keep.iter().map(|t| t.id).collect();
        assert_eq!(kept, [5, 4, 3]);
        let ids: Vec<u64> = pruned.iter().map(|p| p.id).collect();
        assert_eq!(ids, [1, 2]);
        assert!(
            pruned[0].reason.contains("ranked 5 of 5"),
            "{}",
            pruned[0].reason
        );
        assert!(pruned[0].reason.contains("coarse"), "{}", pruned[0].reason);
    }
}
