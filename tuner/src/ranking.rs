//! How trials compare under the study's objective.

use crate::space::Objective;
use jizhi_store::{TrialRecord, TrialStatus};
use std::cmp::Ordering;

/// A trial's score under the objective (higher is better); `None` for trials without a result.
pub fn score(trial: &TrialRecord, objective: Objective, target: Option<f64>) -> Option<f64> {
    if !matches!(trial.status, TrialStatus::Finished | TrialStatus::Diverged) {
        return None;
    }
    let final_top1 = trial.final_val_top1?;
    match (objective, target) {
        (Objective::TimeToTarget, Some(target)) => {
            // Reaching the target beats any accuracy short of it; sooner beats later.
            let reached = trial.epochs.iter().find(|e| e.val_top1 >= target);
            Some(match reached {
                Some(e) => 1e9 - e.wall_secs,
                None => final_top1,
            })
        }
        _ => Some(final_top1),
    }
}

/// Orders trials best first (ties: lower id first, so the order is canonical).
pub fn best_first<'a>(
    trials: impl IntoIterator<Item = &'a TrialRecord>,
    objective: Objective,
    target: Option<f64>,
) -> Vec<&'a TrialRecord> {
    let mut scored: Vec<(f64, &TrialRecord)> = trials
        .into_iter()
        .filter_map(|t| score(t, objective, target).map(|s| (s, t)))
        .collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(a.1.id.cmp(&b.1.id)));
    scored.into_iter().map(|(_, t)| t).collect()
}
