//! Divergence rules, checked after every optimiser step: a run that has diverged stops at once
//! and says why (the tuner records the reason as "diverged: <reason>").
//!
//! The rules live in the training loop rather than in the tuner because only the loop sees every
//! step (progress lines come once per epoch), so a diverged run wastes no further steps, and the
//! data still flows one way: the trainer decides, its final record carries the reason.

use std::collections::VecDeque;

/// Steps whose mean loss is compared with the start (one noisy step must not stop a run).
pub const LOSS_WINDOW: usize = 5;

/// Watches one run's loss and loss scale step by step.
#[derive(Debug, Clone)]
pub struct DivergenceCheck {
    /// The loss the run started at (`None` until the first step of a fresh run).
    start_loss: Option<f64>,
    /// Steps of linear warmup: the loss may rise above its start before they are over.
    warmup_steps: u64,
    /// A dynamic loss scale below this means fp16 cannot hold the gradients.
    min_loss_scale: f64,
    /// The latest losses, at most [`LOSS_WINDOW`].
    recent: VecDeque<f64>,
}

/// What the check knows of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepFacts {
    /// The step's number, from 1.
    pub step: u64,
    /// Its training loss (unscaled).
    pub loss: f64,
    /// The loss scale after the step, when it is dynamic.
    pub dynamic_scale: Option<f64>,
}

impl DivergenceCheck {
    /// A check for a run with `warmup_steps` of warmup; `resumed_start` is the start loss of a
    /// run that continues from a checkpoint (its first step is in the past).
    pub fn new(warmup_steps: u64, min_loss_scale: f64, resumed_start: Option<f64>) -> Self {
        DivergenceCheck {
            start_loss: resumed_start,
            warmup_steps,
            min_loss_scale,
            recent: VecDeque::new(),
        }
    }

    /// The loss the run is compared with, once known.
    pub fn start_loss(&self) -> Option<f64> {
        self.start_loss
    }

    /// Records a step; returns why the run has diverged, if it has.
    pub fn after_step(&mut self, s: StepFacts) -> Option<String> {
        if !s.loss.is_finite() {
            return Some(format!(
                "non-finite training loss ({}) at step {}",
                s.loss, s.step
            ));
        }
        if let Some(scale) = s.dynamic_scale.filter(|&scale| scale < self.min_loss_scale) {
            return Some(format!(
                "loss scale collapsed to {scale:e} (below {:e}) at step {}",
                self.min_loss_scale, s.step
            ));
        }
        let start = *self.start_loss.get_or_insert(s.loss);
        if self.recent.len() == LOSS_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(s.loss);
        if s.step > self.warmup_steps && self.recent.len() == LOSS_WINDOW {
            let mean = self.recent.iter().sum::<f64>() / LOSS_WINDOW as f64;
            if mean > start {
                return Some(format!(
                    "training loss {mean:.4} (mean of the last {LOSS_WINDOW} steps) is above its start {start:.4} \
                     after warmup, at step {}",
                    s.step
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64, loss: f64) -> StepFacts {
        StepFacts {
            step,
            loss,
            dynamic_scale: None,
        }
    }

    #[test]
    fn a_falling_loss_never_diverges() {
        let mut c = DivergenceCheck::new(0, 1.0, None);
        for i in 1..100 {
            assert_eq!(c.after_step(step(i, 5.0 / i as f64)), None);
        }
    }

    #[test]
    fn non_finite_loss_stops_at_once() {
        let mut c = DivergenceCheck::new(1000, 1.0, None);
        assert_eq!(c.after_step(step(1, 4.0)), None);
        let why = c.after_step(step(2, f64::NAN)).expect("NaN diverges");
        assert!(
            why.contains("non-finite") && why.contains("step 2"),
            "{why}"
        );
        assert!(c.after_step(step(3, f64::INFINITY)).is_some());
    }

    #[test]
    fn a_rising_loss_diverges_only_after_warmup() {
        let mut c = DivergenceCheck::new(10, 1.0, None);
        assert_eq!(c.after_step(step(1, 4.0)), None);
        // Above the start during warmup: allowed.
        for i in 2..=10 {
            assert_eq!(c.after_step(step(i, 6.0)), None, "step {i}");
        }
        let why = c
            .after_step(step(11, 6.0))
            .expect("above the start after warmup");
        assert!(
            why.contains("above its start 4.0000") && why.contains("step 11"),
            "{why}"
        );
    }

    #[test]
    fn one_spike_is_not_divergence() {
        let mut c = DivergenceCheck::new(0, 1.0, None);
        for (i, loss) in [4.0, 3.0, 2.5, 2.0, 7.0, 2.0, 1.8].into_iter().enumerate() {
            assert_eq!(
                c.after_step(step(i as u64 + 1, loss)),
                None,
                "step {}",
                i + 1
            );
        }
    }

    #[test]
    fn a_resumed_run_compares_with_the_start_it_was_given() {
        let mut c = DivergenceCheck::new(0, 1.0, Some(3.0));
        for i in 1..=4 {
            assert_eq!(c.after_step(step(100 + i, 3.5)), None);
        }
        assert!(c.after_step(step(105, 3.5)).is_some());
        assert_eq!(c.start_loss(), Some(3.0));
    }

    #[test]
    fn a_dynamic_scale_below_the_floor_collapses() {
        let mut c = DivergenceCheck::new(0, 1.0, None);
        let ok = StepFacts {
            step: 1,
            loss: 2.0,
            dynamic_scale: Some(1.0),
        };
        assert_eq!(c.after_step(ok), None);
        let low = StepFacts {
            step: 2,
            loss: 2.0,
            dynamic_scale: Some(0.5),
        };
        let why = c.after_step(low).expect("collapse");
        assert!(why.contains("loss scale collapsed to 5e-1"), "{why}");
    }
}
