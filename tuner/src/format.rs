//! Number and duration formatting shared by every printed table and progress line.

/// A number with at most 6 significant digits and no trailing zeros (`0.30000000000000004` → `0.3`).
pub fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let rounded = round_significant(v, 6);
    if rounded.abs() >= 1e7 || rounded.abs() < 1e-4 {
        return format!("{rounded:e}");
    }
    let s = format!("{rounded:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `v` rounded to `digits` significant digits.
pub fn round_significant(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let magnitude = v.abs().log10().floor() as i32;
    let factor = 10f64.powi(digits - 1 - magnitude);
    (v * factor).round() / factor
}

// The tuner prints durations, batch sizes and percentages exactly as the dashboard shows them.
pub use jizhi_tui::fmt::{batch, duration, percent};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_float_noise() {
        assert_eq!(short_number(0.1 + 0.2), "0.3");
        assert_eq!(short_number(64.0), "64");
        assert_eq!(short_number(65536.0), "65536");
        assert_eq!(short_number(0.0005), "0.0005");
    }

    #[test]
    fn durations_and_batches_read_naturally() {
        assert_eq!(duration(12.4), "12s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(batch(65536), "64K");
        assert_eq!(batch(3072), "3K");
        assert_eq!(batch(1000), "1000");
    }
}
