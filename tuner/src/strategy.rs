//! Which points to try: the coarse grid (thinned by a space-filling rule) and the refinement
//! around the best coarse results.
//!
//! Proposals are a pure function of the search space and the finished results, consumed in trial-id
//! order, so a resumed search proposes exactly the trials an uninterrupted one would.

use crate::format::round_significant;
use crate::plan::Point;
use crate::space::{Domain, Param, ParamValue, Scale, SearchSpace};

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
            let mut i = 0;
            loop {
                let v = match scale {
                    Scale::Linear => min + coarse_step * i as f64,
                    Scale::Log => min * coarse_step.powi(i),
                };
                if v > max * (1.0 + 1e-9) || i > 10_000 {
                    break;
                }
                let v = tidy(v, *integer);
                if out.last() != Some(&v) {
                    out.push(v);
                }
                i += 1;
            }
            out.into_iter().map(ParamValue::Num).collect()
        }
    }
}

/// Rounds away float noise (and to whole numbers for integer parameters).
fn tidy(v: f64, integer: bool) -> f64 {
    if integer {
        v.round()
    } else {
        round_significant(v, 6)
    }
}

/// Every combination of the coarse values, in row-major order of the parameters.
fn full_grid(space: &SearchSpace) -> Vec<Vec<usize>> {
    let sizes: Vec<usize> = space
        .params
        .iter()
        .map(|p| coarse_values(p).len())
        .collect();
    let total: usize = sizes.iter().product();
    (0..total)
        .map(|mut flat| {
            let mut idx = vec![0; sizes.len()];
            for (d, &n) in sizes.iter().enumerate().rev() {
                idx[d] = flat % n;
                flat /= n;
            }
            idx
        })
        .collect()
}

/// The coarse points of a study: the whole grid, or a space-filling subset of `coarse_points`.
pub fn coarse_points(space: &SearchSpace) -> Vec<Point> {
    let values: Vec<Vec<ParamValue>> = space.params.iter().map(coarse_values).collect();
    let grid = full_grid(space);
    let chosen = space_filling_subset(&grid, &values, space.stages.coarse_points as usize);
    chosen
        .into_iter()
        .map(|i| {
            let mut point = fixed_point(space);
            for (d, p) in space.params.iter().enumerate() {
                point.insert(p.name.clone(), values[d][grid[i][d]].clone());
            }
            point
        })
        .collect()
}

/// The fixed (unsearched) values every point carries.
fn fixed_point(space: &SearchSpace) -> Point {
    space.fixed.iter().cloned().collect()
}

/// Greedy maximin design: start nearest the centre, then add the point farthest from those chosen.
/// Returns grid indices in the order chosen (ties go to the lower index, so it is deterministic).
fn space_filling_subset(grid: &[Vec<usize>], values: &[Vec<ParamValue>], k: usize) -> Vec<usize> {
    if grid.len() <= k {
        return (0..grid.len()).collect();
    }
    let unit = |i: usize| -> Vec<f64> {
        grid[i]
            .iter()
            .zip(values)
            .map(|(&j, vals)| {
                if vals.len() > 1 {
                    j as f64 / (vals.len() - 1) as f64
                } else {
                    0.5
                }
            })
            .collect()
    };
    let coords: Vec<Vec<f64>> = (0..grid.len()).map(unit).collect();
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let centre = vec![0.5; values.len()];
    let first = (0..grid.len())
        .min_by(|&a, &b| dist(&coords[a], &centre).total_cmp(&dist(&coords[b], &centre)))
        .unwrap_or(0);
    let mut chosen = vec![first];
    let mut nearest: Vec<f64> = coords.iter().map(|c| dist(c, &coords[first])).collect();
    while chosen.len() < k {
        let mut best = None;
        for (i, &d) in nearest.iter().enumerate() {
            if chosen.contains(&i) {
                continue;
            }
            if best.is_none_or(|(_, bd)| d > bd + 1e-12) {
                best = Some((i, d));
            }
        }
        let Some((next, _)) = best else { break };
        chosen.push(next);
        for (i, n) in nearest.iter_mut().enumerate() {
            *n = n.min(dist(&coords[i], &coords[next]));
        }
    }
    chosen.sort_unstable();
    chosen
}

/// The neighbour of `value` one fine step down (`-1`) or up (`+1`), if it stays in the domain.
fn neighbour(param: &Param, value: &ParamValue, direction: i32) -> Option<ParamValue> {
    match (&param.domain, value) {
        (
            Domain::Values {
                values, fine_step, ..
            },
            v,
        ) => {
            let at = values.iter().position(|x| x == v)? as i64;
            let to = at + direction as i64 * *fine_step as i64;
            (0..values.len() as i64)
                .contains(&to)
                .then(|| values[to as usize].clone())
        }
        (
            Domain::Range {
                scale,
                min,
                max,
                integer,
                fine_step,
                ..
            },
            ParamValue::Num(v),
        ) => {
            let moved = match (scale, direction > 0) {
                (Scale::Linear, true) => v + fine_step,
                (Scale::Linear, false) => v - fine_step,
                (Scale::Log, true) => v * fine_step,
                (Scale::Log, false) => v / fine_step,
            };
            let moved = tidy(moved.clamp(*min, *max), *integer);
            (moved != *v).then_some(ParamValue::Num(moved))
        }
        _ => None,
    }
}

/// Refine proposals for one batch size, given its finished coarse points best first.
///
/// Around each of the best `top_k` points: the point itself (re-run at the higher fidelity), then
/// its neighbours one fine step along each parameter, most influential parameter first, lower
/// value before higher. The first `points` distinct proposals are returned.
pub fn refine_points(space: &SearchSpace, best_first: &[Point]) -> Vec<Point> {
    let want = space.stages.refine_points as usize;
    let bases: Vec<&Point> = best_first
        .iter()
        .take(space.stages.refine_top_k as usize)
        .collect();
    let mut per_base: Vec<Vec<Point>> = Vec::new();
    for base in &bases {
        let mut list = vec![(*base).clone()];
        for param in &space.params {
            let Some(value) = base.get(&param.name) else {
                continue;
            };
            for direction in [-1, 1] {
                if let Some(v) = neighbour(param, value, direction) {
                    let mut p = (*base).clone();
                    p.insert(param.name.clone(), v);
                    list.push(p);
                }
            }
        }
        per_base.push(list);
    }
    // Interleave the bases so every region gets its centre before any gets a second neighbour.
    let mut out: Vec<Point> = Vec::new();
    let longest = per_base.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for list in &per_base {
            if let Some(p) = list.get(i) {
                if out.len() < want && !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::parse;
    use std::path::Path;

    const SPACE: &str = r#"
[study]
name = "t"
[trainer]
model = "alexnet-bn"
epochs = 2
precision = "fp32"
optimizer = "lars"
[batch]
sizes = [65536]
[params.peak_lr]
scale = "log"
min = 0.5
max = 8.0
coarse_step = 2.0
fine_step = 1.5
[params.loss_scale]
values = ["dynamic", 128, 1024]
coarse_step = 2
fine_step = 1
[stages.coarse]
points = 4
epochs = 1
[stages.refine]
points = 3
epochs = 2
"#;

    fn space() -> SearchSpace {
        match parse(Path::new("t.toml"), SPACE) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn coarse_grid_follows_the_steps() {
        let s = space();
        let lr: Vec<String> = coarse_values(&s.params[0])
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(lr, ["0.5", "1", "2", "4", "8"]);
        let scale: Vec<String> = coarse_values(&s.params[1])
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(scale, ["dynamic", "1024"]);
    }

    #[test]
    fn subset_is_spread_and_deterministic() {
        let s = space();
        let a = coarse_points(&s);
        assert_eq!(a.len(), 4);
        assert_eq!(a, coarse_points(&s));
        // The extremes of the learning-rate range are both covered.
        let lrs: Vec<String> = a.iter().map(|p| p["peak_lr"].to_string()).collect();
        assert!(
            lrs.contains(&"0.5".to_string()) && lrs.contains(&"8".to_string()),
            "{lrs:?}"
        );
        // Every point carries the fixed parameters too.
        assert!(a.iter().all(|p| p.contains_key("warmup_epochs")));
    }

    #[test]
    fn refinement_starts_at_the_best_and_steps_the_learning_rate() {
        let s = space();
        let lr = |p: &Point| match p["peak_lr"] {
            ParamValue::Num(v) => v,
            _ => f64::NAN,
        };
        // A best point inside the range, so both learning-rate neighbours exist.
        let best = coarse_points(&s)
            .into_iter()
            .find(|p| lr(p) > 0.5 && lr(p) < 8.0)
            .expect("an inner point");
        let r = refine_points(&s, &[best.clone()]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], best);
        assert!((lr(&r[1]) - lr(&best) / 1.5).abs() < 1e-4);
        assert!((lr(&r[2]) - lr(&best) * 1.5).abs() < 1e-4);
    }
}
