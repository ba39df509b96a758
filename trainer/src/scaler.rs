//! Loss scaling for the half-precision modes.

use crate::config::{LossScale, Precision};

/// Current loss scale and its dynamic-update state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    scale: f64,
    /// (growth interval, clean steps since the last change) for dynamic scaling.
    dynamic: Option<(u32, u32)>,
}

impl LossScaler {
    /// The scaler for `cfg` in `precision` (fp32 always uses a fixed scale of 1).
    pub fn new(cfg: LossScale, precision: Precision) -> Self {
        if precision == Precision::Fp32 {
            return LossScaler {
                scale: 1.0,
                dynamic: None,
            };
        }
        match cfg {
            LossScale::Static { factor } => LossScaler {
                scale: factor,
                dynamic: None,
            },
            LossScale::Dynamic {
                init,
                growth_interval,
            } => LossScaler {
                scale: init,
                dynamic: Some((growth_interval.max(1), 0)),
            },
        }
    }

    /// The factor the loss gradient is multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Whether the scale adapts.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic.is_some()
    }

    /// Records one step: `finite == false` (overflow, step skipped) halves a dynamic scale,
    /// `growth_interval` consecutive clean steps double it.
    pub fn update(&mut self, finite: bool) {
        if let Some((interval, clean)) = &mut self.dynamic {
            if finite {
                *clean += 1;
                if *clean >= *interval {
                    self.scale *= 2.0;
                    *clean = 0;
                }
            } else {
                self.scale *= 0.5;
                *clean = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_scale_halves_and_grows() {
        let mut s = LossScaler::new(
            LossScale::Dynamic {
                init: 1024.0,
                growth_interval: 2,
            },
            Precision::Fp16,
        );
        s.update(false);
        assert_eq!(s.scale(), 512.0);
        s.update(true);
        assert_eq!(s.scale(), 512.0);
        s.update(true);
        assert_eq!(s.scale(), 1024.0);
        s.update(true);
        s.update(false);
        s.update(true);
        assert_eq!(s.scale(), 512.0);
        let fp32 = LossScaler::new(LossScale::Static { factor: 8.0 }, Precision::Fp32);
        assert_eq!(fp32.scale(), 1.0);
    }
}
