//! Learning-rate schedule: linear warmup, then polynomial decay to zero at the last step.

/// Warmup + polynomial decay, indexed by optimiser step (skipped steps included).
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    peak: f64,
    warmup_steps: u64,
    total_steps: u64,
    power: f64,
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
        }
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
        self.peak * (1.0 - t).powf(self.power)
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
}
