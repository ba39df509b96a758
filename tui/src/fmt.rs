//! Number, batch and duration text, in the same conventions as the tuner's printed output.

/// A fraction as a percentage with one decimal (`0.587` → `58.7%`).
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", v * 100.0)
    } else {
        "-".into()
    }
}

/// A duration as `1h02m`, `3m05s` or `12s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A nominal batch size as `64K` when it is a multiple of 1024, else the plain number.
pub fn batch(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}K", n / 1024)
    } else {
        n.to_string()
    }
}

/// A number in at most `width` characters, without float noise (`2.8284` → `2.83`).
pub fn compact(v: f64, width: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    for decimals in (0..=4).rev() {
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= width {
            return s;
        }
    }
    format!("{v:.0e}")
}

/// Images per second as `1650` or `12.3k`.
pub fn rate(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_reads_naturally() {
        assert_eq!(percent(0.587), "58.7%");
        assert_eq!(percent(f64::NAN), "-");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(batch(49152), "48K");
        assert_eq!(batch(1000), "1000");
        assert_eq!(compact(2.828427, 5), "2.828");
        assert_eq!(compact(0.1 + 0.2, 5), "0.3");
        assert_eq!(compact(65536.0, 5), "65536");
        assert_eq!(rate(1650.4), "1650");
        assert_eq!(rate(12_345.0), "12.3k");
    }
}
