//! `[scheduler]`: concurrency, time limits, retries and launcher of a study's trials, the same
//! settings as the run's command-line options (an option given on the command line wins).
//!
//! Time limits are seconds (`600`, `2.5`) or a text of whole amounts with units `h`, `m`, `s`
//! (`"90s"`, `"30m"`, `"1h30m"`); 0 means no limit.

use super::schema::RawScheduler;
use super::validate::Checker;
use super::{SchedulerKeys, SpaceError};

/// `[scheduler]`, checked key by key.
pub(super) fn check(c: &Checker, raw: Option<&RawScheduler>) -> Result<SchedulerKeys, SpaceError> {
    let Some(s) = raw else {
        return Ok(SchedulerKeys::default());
    };
    if let Some(n) = s.concurrency {
        c.ensure(n >= 1, "scheduler.concurrency", "must be at least 1")?;
    }
    if let Some(n) = s.max_retries {
        c.ensure(
            (0..=i64::from(u32::MAX)).contains(&n),
            "scheduler.max_retries",
            "must be a whole number >= 0",
        )?;
    }
    let limit = |key: &str, v: &Option<toml::Value>| -> Result<Option<f64>, SpaceError> {
        v.as_ref()
            .map(|v| {
                duration_secs(v).ok_or_else(|| {
                    c.err(
                        key,
                        format!(
                            "`{v}` is not a time limit: give seconds (600) or a text such as \
                             \"90s\", \"30m\" or \"1h30m\"; 0 means no limit"
                        ),
                    )
                })
            })
            .transpose()
    };
    let launcher = match &s.launcher {
        None => None,
        Some(text) => {
            let words: Vec<String> = text.split_whitespace().map(String::from).collect();
            c.ensure(
                !words.is_empty(),
                "scheduler.launcher",
                "is empty: name the program trials are run through, or leave the key out",
            )?;
            Some(words)
        }
    };
    Ok(SchedulerKeys {
        concurrency: s.concurrency.map(|n| n as usize),
        trial_timeout_secs: limit("scheduler.trial_timeout", &s.trial_timeout)?,
        stall_timeout_secs: limit("scheduler.stall_timeout", &s.stall_timeout)?,
        max_retries: s.max_retries.map(|n| n as u32),
        launcher,
    })
}

/// Seconds of a time limit written as a number of seconds or a text such as `"1h30m"`.
fn duration_secs(v: &toml::Value) -> Option<f64> {
    let secs = match v {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(f) => *f,
        toml::Value::String(s) => duration_text_secs(s)?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// `"90s"`, `"30m"`, `"1h30m"`, `"2h"`, or a plain number of seconds.
fn duration_text_secs(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Some(secs);
    }
    let mut total = 0.0;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        let amount: u64 = digits.parse().ok()?;
        total += amount as f64 * unit;
        digits.clear();
    }
    // Every amount has its unit, and there was at least one.
    (digits.is_empty() && !text.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_read_as_seconds() {
        let text = |s: &str| duration_secs(&toml::Value::String(s.into()));
        assert_eq!(text("90s"), Some(90.0));
        assert_eq!(text("30m"), Some(1800.0));
        assert_eq!(text("1h30m"), Some(5400.0));
        assert_eq!(text("2h"), Some(7200.0));
        assert_eq!(text("45"), Some(45.0));
        assert_eq!(duration_secs(&toml::Value::Integer(600)), Some(600.0));
        assert_eq!(duration_secs(&toml::Value::Float(2.5)), Some(2.5));
        assert_eq!(duration_secs(&toml::Value::Integer(0)), Some(0.0));
        for bad in ["", "m", "10x", "1h30", "-5", "1.5m"] {
            assert_eq!(text(bad), None, "{bad:?}");
        }
        assert_eq!(duration_secs(&toml::Value::Integer(-1)), None);
        assert_eq!(duration_secs(&toml::Value::Boolean(true)), None);
    }
}
