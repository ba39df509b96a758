//! The transformed space the strategy works in: every parameter mapped onto [0, 1] (log ranges by
//! their logarithm, lists by position), and back onto its coarse or fine steps.

use crate::format::round_significant;
use crate::space::{Domain, Param, ParamValue, Scale};

/// The grid values of a parameter on its coarse steps.
pub fn coarse_values(param: &Param) -> Vec<ParamValue> {
    match &param.domain {
        Domain::Values {
            values,
            coarse_step,
            ..
        } => values.iter().step_by(*coarse_step).cloned().collect(),
        Domain::Range {
            scale,
            min,
            max,
            integer,
            coarse_step,
            ..
        } => {
            let mut out: Vec<f64> = Vec::new();
            for i in 0..10_000 {
                let v = match scale {
                    Scale::Linear => min + coarse_step * i as f64,
                    Scale::Log => min * coarse_step.powi(i),
                };
                if v > max * (1.0 + 1e-9) {
                    break;
                }
                let v = tidy(v, *integer);
                if out.last() != Some(&v) {
                    out.push(v);
                }
            }
            out.into_iter().map(ParamValue::Num).collect()
        }
    }
}

/// Rounds away float noise (and to whole numbers for integer parameters).
pub fn tidy(v: f64, integer: bool) -> f64 {
    if integer {
        v.round()
    } else {
        round_significant(v, 6)
    }
}

/// The unit coordinate of a value of `param` (0.5 for a one-value domain; NaN if not in it).
pub fn to_unit(param: &Param, value: &ParamValue) -> f64 {
    match (&param.domain, value) {
        (Domain::Values { values, .. }, v) => match values.iter().position(|x| x == v) {
            Some(_) if values.len() == 1 => 0.5,
            Some(i) => i as f64 / (values.len() - 1) as f64,
            None => f64::NAN,
        },
        (
            Domain::Range {
                scale, min, max, ..
            },
            ParamValue::Num(v),
        ) => {
            if max <= min {
                return 0.5;
            }
            match scale {
                Scale::Linear => (v - min) / (max - min),
                Scale::Log => (v / min).ln() / (max / min).ln(),
            }
        }
        _ => f64::NAN,
    }
}

/// The unit width of one coarse step of `param`.
pub fn coarse_width(param: &Param) -> f64 {
    step_width(param, true)
}

/// The unit width of one fine step of `param`.
pub fn fine_width(param: &Param) -> f64 {
    step_width(param, false)
}

fn step_width(param: &Param, coarse: bool) -> f64 {
    match &param.domain {
        Domain::Values {
            values,
            coarse_step,
            fine_step,
        } => {
            let step = if coarse { *coarse_step } else { *fine_step };
            if values.len() <= 1 {
                1.0
            } else {
                step as f64 / (values.len() - 1) as f64
            }
        }
        Domain::Range {
            scale,
            min,
            max,
            coarse_step,
            fine_step,
            ..
        } => {
            let step = if coarse { *coarse_step } else { *fine_step };
            if max <= min {
                return 1.0;
            }
            match scale {
                Scale::Linear => step / (max - min),
                Scale::Log => step.ln() / (max / min).ln(),
            }
        }
    }
}

/// The value at unit coordinate `u`, snapped onto the parameter's fine steps (from `min`).
pub fn from_unit_fine(param: &Param, u: f64) -> ParamValue {
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.5
    };
    match &param.domain {
        Domain::Values { values, .. } => {
            let i = (u * (values.len() - 1) as f64).round() as usize;
            values[i.min(values.len() - 1)].clone()
        }
        Domain::Range {
            scale,
            min,
            max,
            integer,
            fine_step,
            ..
        } => {
            let snapped = match scale {
                Scale::Linear => {
                    let v = min + u * (max - min);
                    let k = ((v - min) / fine_step).round();
                    let s = min + k * fine_step;
                    if s > *max + 1e-12 {
                        s - fine_step
                    } else {
                        s
                    }
                }
                Scale::Log => {
                    let v = min * (max / min).powf(u);
                    let k = ((v / min).ln() / fine_step.ln()).round();
                    let s = min * fine_step.powf(k);
                    if s > *max * (1.0 + 1e-9) {
                        s / fine_step
                    } else {
                        s
                    }
                }
            };
            ParamValue::Num(tidy(snapped.clamp(*min, *max), *integer))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Effect;

    fn lr() -> Param {
        Param {
            name: "peak_lr".into(),
            domain: Domain::Range {
                scale: Scale::Log,
                min: 0.5,
                max: 8.0,
                integer: false,
                coarse_step: 2.0,
                fine_step: 1.5,
            },
            effect: Effect::Accuracy,
            start: ParamValue::Num(1.0),
            when: Vec::new(),
        }
    }

    #[test]
    fn log_ranges_map_by_their_logarithm() {
        let p = lr();
        assert!((to_unit(&p, &ParamValue::Num(2.0)) - 0.5).abs() < 1e-12);
        assert!((coarse_width(&p) - 0.25).abs() < 1e-12);
        let back: Vec<String> = coarse_values(&p).iter().map(|v| v.to_string()).collect();
        assert_eq!(back, ["0.5", "1", "2", "4", "8"]);
    }

    #[test]
    fn fine_snapping_stays_on_the_fine_steps_inside_the_range() {
        let p = lr();
        // 0.5 * 1.5^k: 0.5, 0.75, 1.125, 1.6875, 2.53, 3.8, 5.7 (8.54 is outside).
        assert_eq!(from_unit_fine(&p, 1.0), ParamValue::Num(5.69531));
        assert_eq!(from_unit_fine(&p, 0.0), ParamValue::Num(0.5));
        assert_eq!(from_unit_fine(&p, 0.5), ParamValue::Num(1.6875));
    }
}
