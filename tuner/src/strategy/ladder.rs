//! The batch-size ladder: the best configuration at one batch size seeds the next, its learning
//! rate moved by the square-root or linear scaling rule.

use crate::plan::Point;
use crate::space::{Domain, LrScaling, ParamValue, SearchSpace};

/// The learning-rate factor from batch `from` to batch `to` under `rule`.
pub fn lr_factor(rule: LrScaling, from: u64, to: u64) -> f64 {
    let ratio = to as f64 / from.max(1) as f64;
    match rule {
        LrScaling::Sqrt => ratio.sqrt(),
        LrScaling::Linear => ratio,
    }
}

/// `best` (found at batch `from`) moved to batch `to`: the learning rate scaled, clamped to its range.
pub fn seed_point(space: &SearchSpace, best: &Point, from: u64, to: u64) -> Point {
    let mut out = best.clone();
    let factor = lr_factor(space.search.lr_scaling, from, to);
    if let Some(ParamValue::Num(lr)) = best.get("peak_lr") {
        let mut v = lr * factor;
        if let Some(Domain::Range { min, max, .. }) = space
            .params
            .iter()
            .find(|p| p.name == "peak_lr")
            .map(|p| &p.domain)
        {
            v = v.clamp(*min, *max);
        }
        out.insert(
            "peak_lr".into(),
            ParamValue::Num(crate::format::round_significant(v, 6)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_rules() {
        assert!((lr_factor(LrScaling::Sqrt, 32768, 65536) - 2f64.sqrt()).abs() < 1e-12);
        assert!((lr_factor(LrScaling::Linear, 32768, 49152) - 1.5).abs() < 1e-12);
    }
}
