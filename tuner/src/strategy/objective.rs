//! How a finished trial is judged: by the study's objective (accuracy or time to target, speed as
//! the tie-breaker), by throughput for the speed group, by overflow statistics for numerics.

use crate::ranking;
use crate::space::{Effect, Objective, SearchSpace};
use jizhi_store::{TrialRecord, TrialStatus};
use std::cmp::Ordering;

/// What ranks the trials of one stage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judge {
    /// The study's objective; images/s breaks ties.
    Objective {
        /// Accuracy or time to target.
        objective: Objective,
        /// Target top-1 of `time-to-target`.
        target: Option<f64>,
    },
    /// Median training images/s over the epochs.
    Speed,
    /// Fewest skipped (overflowed) steps, no loss-scale collapse, then accuracy.
    Numerics,
}

impl Judge {
    /// The judge of a parameter group in a study.
    pub fn of(space: &SearchSpace, effect: Effect) -> Judge {
        match effect {
            Effect::Speed => Judge::Speed,
            Effect::Numerics => Judge::Numerics,
            Effect::Accuracy => Judge::Objective {
                objective: space.study.objective,
                target: space.study.target_top1,
            },
        }
    }

    /// The trial's (primary, secondary) score, higher is better; `None` without a result.
    pub fn score(&self, t: &TrialRecord) -> Option<(f64, f64)> {
        let speed = median_speed(t).unwrap_or(0.0);
        match *self {
            Judge::Objective { objective, target } => {
                ranking::score(t, objective, target).map(|s| (s, speed))
            }
            Judge::Speed => {
                if t.status != TrialStatus::Finished {
                    return None;
                }
                median_speed(t).map(|s| (s, t.final_val_top1.unwrap_or(0.0)))
            }
            Judge::Numerics => numerics_penalty(t).map(|p| (-p, t.final_val_top1.unwrap_or(0.0))),
        }
    }

    /// The trials with a result, best first (ties: lower id first, so the order is canonical).
    pub fn best_first<'a>(
        &self,
        trials: impl IntoIterator<Item = &'a TrialRecord>,
    ) -> Vec<(&'a TrialRecord, f64)> {
        let mut scored: Vec<(&TrialRecord, (f64, f64))> = trials
            .into_iter()
            .filter_map(|t| self.score(t).map(|s| (t, s)))
            .collect();
        scored.sort_by(|a, b| {
            b.1 .0
                .partial_cmp(&a.1 .0)
                .unwrap_or(Ordering::Equal)
                .then(b.1 .1.partial_cmp(&a.1 .1).unwrap_or(Ordering::Equal))
                .then(a.0.id.cmp(&b.0.id))
        });
        scored.into_iter().map(|(t, s)| (t, s.0)).collect()
    }

    /// What the score measures, for messages.
    pub fn describe(&self, score: f64) -> String {
        match *self {
            Judge::Objective {
                objective: Objective::TimeToTarget,
                ..
            } if score > 1e8 => {
                format!(
                    "target reached after {}",
                    crate::format::duration(1e9 - score)
                )
            }
            Judge::Objective { .. } => format!("val top-1 {}", crate::format::percent(score)),
            Judge::Speed => format!("{} images/s", crate::format::short_number(score)),
            Judge::Numerics => format!("numerics penalty {:.3}", -score),
        }
    }
}

/// Median images/s over a trial's epochs.
pub fn median_speed(t: &TrialRecord) -> Option<f64> {
    let mut v: Vec<f64> = t
        .epochs
        .iter()
        .map(|e| e.images_per_sec)
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Fraction of steps skipped, plus 1 for a diverged trial and 0.5 for a loss scale that collapsed
/// below 1 (the scaler gave up), minus nothing: lower is better.
fn numerics_penalty(t: &TrialRecord) -> Option<f64> {
    if !matches!(t.status, TrialStatus::Finished | TrialStatus::Diverged) {
        return None;
    }
    let last = t.epochs.last()?;
    let skipped: u64 = t.epochs.iter().map(|e| e.skipped_steps).sum();
    let fraction = skipped as f64 / last.step.max(1) as f64;
    let diverged = if t.status == TrialStatus::Diverged {
        1.0
    } else {
        0.0
    };
    let collapsed = if last.loss_scale < 1.0 { 0.5 } else { 0.0 };
    Some(fraction + diverged + collapsed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jizhi_store::EpochMetrics;

    /// A finished trial with one epoch of these figures.
    pub fn record(id: u64, top1: f64, speed: f64, skipped: u64) -> TrialRecord {
        TrialRecord {
            id,
            stage: "coarse".into(),
            batch: 1,
            proxy_batch: 1,
            params: Default::default(),
            status: TrialStatus::Finished,
            attempts: 1,
            error: None,
            final_val_top1: Some(top1),
            wall_secs: Some(1.0),
            modelled_step_secs: None,
            epochs: vec![EpochMetrics {
                epoch: 1,
                step: 100,
                train_loss: 1.0,
                val_top1: top1,
                images_per_sec: speed,
                loss_scale: 1024.0,
                skipped_steps: skipped,
                wall_secs: 1.0,
                underflow_fraction: 0.0,
            }],
        }
    }

    #[test]
    fn each_group_is_judged_by_what_it_affects() {
        let a = record(1, 0.80, 1000.0, 30);
        let b = record(2, 0.70, 2000.0, 0);
        let acc = Judge::Objective {
            objective: Objective::MaxValTop1,
            target: None,
        };
        assert_eq!(acc.best_first([&a, &b])[0].0.id, 1);
        assert_eq!(Judge::Speed.best_first([&a, &b])[0].0.id, 2);
        assert_eq!(Judge::Numerics.best_first([&a, &b])[0].0.id, 2);
    }

    #[test]
    fn speed_breaks_accuracy_ties_and_ids_break_the_rest() {
        let a = record(1, 0.80, 1000.0, 0);
        let b = record(2, 0.80, 2000.0, 0);
        let c = record(3, 0.80, 2000.0, 0);
        let acc = Judge::Objective {
            objective: Objective::MaxValTop1,
            target: None,
        };
        let ids: Vec<u64> = acc
            .best_first([&c, &a, &b])
            .iter()
            .map(|(t, _)| t.id)
            .collect();
        assert_eq!(ids, [2, 3, 1]);
    }
}
