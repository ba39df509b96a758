//! Learning-rate schedule: linear warmup, then polynomial (or cosine) decay to zero at the last
//! step.

use crate::config::LrDecay;

/// Warmup + polynomial decay, indexed by optimiser step (skipped steps included).
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    peak: f64,
    warmup_steps: u64,
    total_steps: u64,
    power: f64,
    decay: LrDecay,
}

impl LrSchedule {
    /// `warmup_epochs` (fractional) is converted to whole steps, rounding to nearest.
    pub fn new(
        peak: f64,
        warmup_epochs: f64,
        steps_per_epoch: u64,
        epochs: u64,
        power: f64,
    ) -> Self {
        let total_steps = (steps_per_epoch * epochs).max(1);
        let warmup_steps =
            ((warmup_epochs * steps_per_epoch as f64).round().max(0.0) as u64).min(total_steps);
        LrSchedule {
            peak,
            warmup_steps,
            total_steps,
            power,
            decay: LrDecay::Poly,
        }
    }

    /// The same warmup followed by `decay` instead of the polynomial.
    pub fn with_decay(mut self, decay: LrDecay) -> Self {
        self.decay = decay;
        self
    }

    /// Number of warmup steps.
    pub fn warmup_steps(&self) -> u64 {
        self.warmup_steps
    }

    /// Learning rate of 0-based step `step`.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            // (step+1)/warmup: the first step is small but not zero, the last reaches the peak
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = (self.total_steps - self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / decay).min(1.0);
        match self.decay {
            LrDecay::Poly => self.peak * (1.0 - t).powf(self.power),
            LrDecay::Cosine => self.peak * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_poly_decay() {
        let s = LrSchedule::new(2.0, 0.5, 10, 2, 2.0);
        assert_eq!(s.warmup_steps(), 5);
        assert!((s.lr(0) - 0.4).abs() < 1e-12);
        assert!((s.lr(4) - 2.0).abs() < 1e-12);
        assert!((s.lr(5) - 2.0).abs() < 1e-12);
        assert!((s.lr(10) - 2.0 * (1.0 - 5.0 / 15.0f64).powi(2)).abs() < 1e-12);
        assert!(s.lr(19) > 0.0 && s.lr(19) < s.lr(18));
        assert_eq!(s.lr(20), 0.0);
        let flat = LrSchedule::new(0.1, 0.0, 10, 1, 0.0);
        assert_eq!(flat.lr(9), 0.1);
    }

    #[test]
    fn cosine_decay_halves_at_the_middle() {
        let s = LrSchedule::new(0.05, 0.0, 10, 4, 2.0).with_decay(LrDecay::Cosine);
        assert_eq!(s.lr(0), 0.05);
        assert!((s.lr(20) - 0.025).abs() < 1e-12);
        assert!(s.lr(39) > 0.0 && s.lr(39) < 1e-3);
        assert!(s.lr(40).abs() < 1e-12);
    }
}
