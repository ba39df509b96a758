//! Space-filling designs: the whole grid when it is small enough, else a greedy maximin subset.

/// Axes with fewer values than this have no inside worth preferring (with three values, two of
/// them are faces): the face rule ignores them.
const FACE_MIN_VALUES: usize = 4;

/// Grids larger than this are sampled (by a seeded stride) before the maximin selection.
const MAX_CANDIDATES: usize = 20_000;

/// Picks `k` combinations from the grid whose axis `d` has `sizes[d]` values; returns each as one
/// index per axis. The whole grid when it has at most `k` points (row-major order); else a greedy
/// maximin design in the unit cube: the first point is `start` (or the one nearest the centre),
/// each next one the farthest from those chosen, where the faces of the cube count as chosen at half
/// weight so the design prefers the inside to the corners (a corner is rarely where an optimum is).
/// Ties go to the lower grid index, so the design is a pure function of its inputs.
pub fn maximin(sizes: &[usize], k: usize, start: Option<&[usize]>, seed: u64) -> Vec<Vec<usize>> {
    let total: usize = sizes.iter().product();
    if total == 0 || k == 0 {
        return Vec::new();
    }
    let decode = |mut flat: usize| {
        let mut idx = vec![0; sizes.len()];
        for (d, &n) in sizes.iter().enumerate().rev() {
            idx[d] = flat % n;
            flat /= n;
        }
        idx
    };
    if total <= k {
        return (0..total).map(decode).collect();
    }
    // A stride coprime with the total visits a seeded, evenly spread sample of a huge grid.
    let candidates: Vec<Vec<usize>> = if total <= MAX_CANDIDATES {
        (0..total).map(decode).collect()
    } else {
        let mut stride = (total / MAX_CANDIDATES).max(1) * 2 + 1;
        while gcd(stride, total) != 1 {
            stride += 2;
        }
        let offset = (seed as usize) % total;
        (0..MAX_CANDIDATES)
            .map(|i| decode((offset + i * stride) % total))
            .collect()
    };
    let unit = |idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .zip(sizes)
            .map(|(&j, &n)| {
                if n > 1 {
                    j as f64 / (n - 1) as f64
                } else {
                    0.5
                }
            })
            .collect()
    };
    let coords: Vec<Vec<f64>> = candidates.iter().map(|c| unit(c)).collect();
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let first = match start {
        Some(s) => {
            let target = unit(s);
            argmin_by(&coords, |c| dist(c, &target))
        }
        None => argmin_by(&coords, |c| dist(c, &vec![0.5; sizes.len()])),
    };
    // Distance to the nearest face, as if a chosen point sat mirrored behind it, at half weight.
    let face = |c: &[f64]| {
        let b = c
            .iter()
            .zip(sizes)
            .filter(|(_, &n)| n >= FACE_MIN_VALUES)
            .map(|(x, _)| x.min(1.0 - x))
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            0.5 * (2.0 * b).powi(2)
        } else {
            f64::INFINITY
        }
    };
    let mut chosen = vec![first];
    let mut nearest: Vec<f64> = coords
        .iter()
        .map(|c| dist(c, &coords[first]).min(face(c)))
        .collect();
    nearest[first] = -1.0;
    while chosen.len() < k.min(coords.len()) {
        let mut best: Option<(usize, f64)> = None;
        for (i, &d) in nearest.iter().enumerate() {
            if d >= 0.0 && best.is_none_or(|(_, bd)| d > bd + 1e-12) {
                best = Some((i, d));
            }
        }
        let Some((next, _)) = best else { break };
        chosen.push(next);
        nearest[next] = -1.0;
        for (i, n) in nearest.iter_mut().enumerate() {
            if *n >= 0.0 {
                *n = n.min(dist(&coords[i], &coords[next]));
            }
        }
    }
    chosen.into_iter().map(|i| candidates[i].clone()).collect()
}

fn argmin_by(coords: &[Vec<f64>], f: impl Fn(&[f64]) -> f64) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, c) in coords.iter().enumerate() {
        let v = f(c);
        if v < best.1 - 1e-12 {
            best = (i, v);
        }
    }
    best.0
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_grids_are_taken_whole() {
        let all = maximin(&[2, 3], 10, None, 0);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], [0, 0]);
        assert_eq!(all[5], [1, 2]);
    }

    #[test]
    fn large_grids_get_a_spread_deterministic_subset() {
        let a = maximin(&[5, 5], 9, None, 0);
        assert_eq!(a, maximin(&[5, 5], 9, None, 0));
        assert_eq!(a.len(), 9);
        assert_eq!(a[0], [2, 2], "the centre first");
        // Spread: no two chosen points are grid neighbours (the 3x3 interior is the maximin answer).
        for (i, p) in a.iter().enumerate() {
            for q in &a[i + 1..] {
                assert_ne!(p, q);
            }
        }
        // Both halves of each axis are covered.
        for d in 0..2 {
            assert!(
                a.iter().any(|p| p[d] < 2) && a.iter().any(|p| p[d] > 2),
                "{a:?}"
            );
        }
    }

    #[test]
    fn huge_grids_are_sampled_and_still_deterministic() {
        let sizes = [9; 6];
        let a = maximin(&sizes, 20, None, 3);
        assert_eq!(a.len(), 20);
        assert_eq!(a, maximin(&sizes, 20, None, 3));
    }

    #[test]
    fn short_axes_are_spread_too() {
        // 8 learning rates × 3 warmups: the design must not sit at the middle warmup only.
        let a = maximin(&[8, 3], 6, None, 0);
        assert!(
            a.iter().any(|p| p[1] == 0) && a.iter().any(|p| p[1] == 2),
            "{a:?}"
        );
    }

    #[test]
    fn a_given_start_comes_first() {
        let a = maximin(&[5, 5], 4, Some(&[1, 3]), 0);
        assert_eq!(a[0], [1, 3]);
    }
}
