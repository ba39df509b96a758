//! How a finished trial is judged: by the study's objective (accuracy or time to target, speed as
//! the tie-breaker), by the modelled cluster step time (else throughput) for the speed group, by
//! overflow and underflow statistics for numerics.

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
    /// Lowest modelled cluster step time, median training images/s breaking ties; trials
    /// without a modelled step time (no `[cluster]`) rank after those with one, by images/s.
    Speed,
    /// Lowest numerics penalty (skipped steps, divergence, loss-scale collapse, underflow), then
    /// accuracy.
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
                // One key for both cases: minus the modelled step time, or minus infinity
                // without one, so that measured images/s alone orders what the model does not.
                let modelled = t
                    .modelled_step_secs
                    .filter(|s| s.is_finite())
                    .map_or(f64::NEG_INFINITY, |s| -s);
                median_speed(t).map(|speed| (modelled, speed))
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
            Judge::Speed if score.is_finite() => {
                format!("modelled cluster step {:.2} ms", -1e3 * score)
            }
            Judge::Speed => "measured images/s (no modelled cluster)".into(),
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

/// Weight of the mean gradient underflow fraction in the numerics penalty: a skipped step loses
/// a whole gradient and an underflowed value one element of it, so a fraction of values lost
/// counts like the same fraction of steps lost.
pub const UNDERFLOW_WEIGHT: f64 = 1.0;

/// The numerics penalty, lower is better: the fraction of steps skipped, plus 1 for a diverged
/// trial, plus 0.5 for a loss scale that collapsed below 1 (the scaler gave up), plus
/// [`UNDERFLOW_WEIGHT`] times the mean over epochs of the fraction of gradient values that
/// underflowed to zero in half precision.
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
    let underflow = t
        .epochs
        .iter()
        .map(|e| e.underflow_fraction)
        .filter(|u| u.is_finite())
        .sum::<f64>()
        / t.epochs.len() as f64;
    Some(fraction + diverged + collapsed + UNDERFLOW_WEIGHT * underflow)
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
    fn the_modelled_cluster_step_time_decides_speed_before_images_per_second() {
        let mut slow_here_fast_there = record(1, 0.80, 1000.0, 0);
        slow_here_fast_there.modelled_step_secs = Some(0.10);
        let mut fast_here_slow_there = record(2, 0.80, 3000.0, 0);
        fast_here_slow_there.modelled_step_secs = Some(0.20);
        let ids = |ts: &[&TrialRecord]| -> Vec<u64> {
            Judge::Speed
                .best_first(ts.iter().copied())
                .iter()
                .map(|(t, _)| t.id)
                .collect()
        };
        assert_eq!(ids(&[&fast_here_slow_there, &slow_here_fast_there]), [1, 2]);
        // Equal modelled times: measured images/s breaks the tie.
        let mut tie = record(3, 0.80, 2000.0, 0);
        tie.modelled_step_secs = Some(0.10);
        assert_eq!(ids(&[&slow_here_fast_there, &tie]), [3, 1]);
        // Without a modelled time a trial ranks after those with one, by images/s among its kind.
        let unmodelled_fast = record(4, 0.80, 9000.0, 0);
        let unmodelled_slow = record(5, 0.80, 500.0, 0);
        assert_eq!(
            ids(&[&unmodelled_slow, &unmodelled_fast, &fast_here_slow_there]),
            [2, 4, 5]
        );
        let best = Judge::Speed.best_first([&slow_here_fast_there])[0].1;
        assert_eq!(
            Judge::Speed.describe(best),
            "modelled cluster step 100.00 ms"
        );
    }

    #[test]
    fn underflow_counts_in_the_numerics_penalty() {
        let clean = record(1, 0.70, 1000.0, 0);
        let mut flushed = record(2, 0.80, 1000.0, 0);
        flushed.epochs[0].underflow_fraction = 0.2;
        // 20 of 100 steps skipped weighs the same as 20% of gradient values flushed to zero.
        let skipping = record(3, 0.75, 1000.0, 20);
        let ranked: Vec<u64> = Judge::Numerics
            .best_first([&flushed, &skipping, &clean])
            .iter()
            .map(|(t, _)| t.id)
            .collect();
        assert_eq!(ranked, [1, 2, 3], "equal penalties fall back to accuracy");
        assert_eq!(numerics_penalty(&flushed), Some(0.2));
        let mut diverged = record(4, 0.1, 1000.0, 0);
        diverged.status = TrialStatus::Diverged;
        diverged.epochs[0].underflow_fraction = 0.5;
        assert_eq!(numerics_penalty(&diverged), Some(1.5));
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
