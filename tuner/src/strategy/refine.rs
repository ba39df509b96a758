//! Refine proposals: around each of the best regions, the point that maximises an upper confidence
//! bound of the fitted surface inside the region's shrunk bounds (found by Nelder-Mead), snapped
//! onto the fine steps; a batch of proposals spreads out by believing each proposal's prediction.

use super::coords::{fine_width, from_unit_fine, to_unit};
use super::surrogate::Surface;
use crate::plan::Point;
use crate::space::Param;
use argmin::core::{CostFunction, Error, Executor, State};
use argmin::solver::neldermead::NelderMead;

/// Nelder-Mead iterations per proposal.
const MAX_ITERS: u64 = 300;

/// What one refine stage proposes from, for one batch size.
pub struct RefineInput<'a> {
    /// The searched parameters of the stage (the surface's axes, in order).
    pub params: &'a [&'a Param],
    /// The values of every other parameter.
    pub base: &'a Point,
    /// Centres of the regions to refine, unit coordinates, best first.
    pub centres: Vec<Vec<f64>>,
    /// Half-width of every region along each axis (unit).
    pub half_widths: Vec<f64>,
    /// The fitted surface, when there are enough results for one.
    pub surface: Option<Surface>,
    /// Proposals wanted.
    pub count: usize,
    /// Weight of the uncertainty in the acquisition.
    pub kappa: f64,
    /// Points already run at this fidelity: never proposed again.
    pub taken: Vec<Point>,
}

/// The proposals of one refine stage (at most `count`; fewer when the regions are exhausted).
pub fn propose(input: RefineInput, finish: &dyn Fn(Point) -> Point) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    if input.centres.is_empty() {
        return out;
    }
    let mut surface = input.surface.clone();
    let mut taken = input.taken.clone();
    let to_point = |x: &[f64]| {
        let mut p = input.base.clone();
        for (param, u) in input.params.iter().zip(x) {
            p.insert(param.name.clone(), from_unit_fine(param, *u));
        }
        finish(p)
    };
    let unit_of = |p: &Point| -> Vec<f64> {
        input
            .params
            .iter()
            .map(|q| p.get(&q.name).map_or(0.5, |v| to_unit(q, v)))
            .collect()
    };
    let mut misses = 0;
    let mut j = 0;
    while out.len() < input.count && misses < input.centres.len() {
        let centre = &input.centres[j % input.centres.len()];
        j += 1;
        let lo: Vec<f64> = centre
            .iter()
            .zip(&input.half_widths)
            .map(|(c, h)| (c - h).max(0.0))
            .collect();
        let hi: Vec<f64> = centre
            .iter()
            .zip(&input.half_widths)
            .map(|(c, h)| (c + h).min(1.0))
            .collect();
        let x = match &surface {
            Some(s) if !centre.is_empty() => maximise(s, centre, &lo, &hi, input.kappa),
            _ => centre.clone(),
        };
        let candidate = to_point(&x);
        let chosen = if !taken.contains(&candidate) {
            Some(candidate)
        } else {
            // The optimum is already known at this fidelity: the nearest untried fine-step neighbour.
            neighbours(input.params, &unit_of(&candidate), &lo, &hi)
                .into_iter()
                .map(|n| to_point(&n))
                .find(|p| !taken.contains(p))
        };
        match chosen {
            Some(p) => {
                misses = 0;
                if let Some(s) = &surface {
                    let u = unit_of(&p);
                    let (mu, _) = s.predict(&u);
                    surface = Some(s.believing(u, mu));
                }
                taken.push(p.clone());
                out.push(p);
            }
            None => misses += 1,
        }
    }
    out
}

/// Points one fine step away along each axis (lower first), then two, inside the region.
fn neighbours(params: &[&Param], x: &[f64], lo: &[f64], hi: &[f64]) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for steps in [1.0, 2.0] {
        for (d, p) in params.iter().enumerate() {
            for dir in [-1.0, 1.0] {
                let mut n = x.to_vec();
                n[d] = x[d] + dir * steps * fine_width(p);
                if n[d] >= lo[d] - 1e-9 && n[d] <= hi[d] + 1e-9 {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The negated upper confidence bound, evaluated at the point clamped into the region.
struct Acquisition<'a> {
    surface: &'a Surface,
    lo: &'a [f64],
    hi: &'a [f64],
    kappa: f64,
}

impl Acquisition<'_> {
    fn clamp(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(self.lo)
            .zip(self.hi)
            .map(|((v, l), h)| v.clamp(*l, *h))
            .collect()
    }
}

impl CostFunction for Acquisition<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, Error> {
        let c = self.clamp(x);
        let (mu, sd) = self.surface.predict(&c);
        // Leaving the region costs in proportion to how far, so the simplex comes back.
        let outside: f64 = x.iter().zip(&c).map(|(a, b)| (a - b).abs()).sum();
        Ok(-(mu + self.kappa * sd) + outside)
    }
}

/// Points of the region scanned for the best start of Nelder-Mead.
const SCAN_POINTS: usize = 64;

/// The region point maximising `mu + kappa·sd`, by Nelder-Mead from a simplex around the best of
/// the centre and a scan of the region (a Halton sequence: deterministic and evenly spread), so
/// that a second bump of the surface inside the region is not missed.
fn maximise(surface: &Surface, centre: &[f64], lo: &[f64], hi: &[f64], kappa: f64) -> Vec<f64> {
    let acq = Acquisition {
        surface,
        lo,
        hi,
        kappa,
    };
    let value = |x: &[f64]| {
        let (mu, sd) = surface.predict(x);
        mu + kappa * sd
    };
    let mut start = centre.to_vec();
    let mut best = value(&start);
    for i in 1..=SCAN_POINTS {
        let x: Vec<f64> = (0..centre.len())
            .map(|d| lo[d] + (hi[d] - lo[d]) * halton(i, PRIMES[d % PRIMES.len()]))
            .collect();
        let v = value(&x);
        if v > best {
            best = v;
            start = x;
        }
    }
    let centre = &start[..];
    let mut simplex = vec![centre.to_vec()];
    for d in 0..centre.len() {
        let mut v = centre.to_vec();
        let half = (hi[d] - lo[d]) / 2.0;
        v[d] = if centre[d] + half <= hi[d] {
            centre[d] + half
        } else {
            centre[d] - half
        };
        simplex.push(v);
    }
    let solved = NelderMead::new(simplex)
        .with_sd_tolerance(1e-7)
        .and_then(|solver| {
            Executor::new(acq, solver)
                .configure(|s| s.max_iters(MAX_ITERS))
                .run()
        });
    let acq = Acquisition {
        surface,
        lo,
        hi,
        kappa,
    };
    match solved {
        Ok(result) => match result.state().get_best_param() {
            Some(best) => acq.clamp(best),
            None => centre.to_vec(),
        },
        Err(_) => centre.to_vec(),
    }
}

/// Bases of the Halton sequence, one per axis.
const PRIMES: [u64; 8] = [2, 3, 5, 7, 11, 13, 17, 19];

/// The `i`-th element of the van der Corput sequence in `base`, in (0, 1).
fn halton(i: usize, base: u64) -> f64 {
    let (mut f, mut r, mut n) = (1.0, 0.0, i as u64);
    while n > 0 {
        f /= base as f64;
        r += f * (n % base) as f64;
        n /= base;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Domain, Effect, ParamValue, Scale};

    fn param(name: &str) -> Param {
        Param {
            name: name.into(),
            domain: Domain::Range {
                scale: Scale::Linear,
                min: 0.0,
                max: 1.0,
                integer: false,
                coarse_step: 0.25,
                fine_step: 0.01,
            },
            effect: Effect::Accuracy,
            start: ParamValue::Num(0.5),
            when: Vec::new(),
        }
    }

    #[test]
    fn proposes_near_the_optimum_of_a_known_quadratic_and_spreads_a_batch() {
        let (a, b) = (param("a"), param("b"));
        let params = [&a, &b];
        let f = |x: &[f64]| -((x[0] - 0.62).powi(2) + 2.0 * (x[1] - 0.41).powi(2));
        let mut xs = Vec::new();
        for i in 0..5 {
            for j in 0..5 {
                xs.push(vec![i as f64 / 4.0, j as f64 / 4.0]);
            }
        }
        let ys: Vec<f64> = xs.iter().map(|x| f(x)).collect();
        let base = Point::new();
        let input = RefineInput {
            params: &params,
            base: &base,
            centres: vec![vec![0.5, 0.5]],
            half_widths: vec![0.25, 0.25],
            surface: Surface::fit(&xs, &ys),
            count: 3,
            kappa: 0.0,
            taken: Vec::new(),
        };
        let got = propose(input, &|p| p);
        assert_eq!(got.len(), 3);
        let num = |p: &Point, k: &str| match p[k] {
            ParamValue::Num(v) => v,
            _ => f64::NAN,
        };
        assert!((num(&got[0], "a") - 0.62).abs() < 0.03, "{got:?}");
        assert!((num(&got[0], "b") - 0.41).abs() < 0.03, "{got:?}");
        assert_ne!(got[0], got[1]);
        assert_ne!(got[1], got[2]);
    }

    #[test]
    fn without_a_surface_the_centre_then_its_neighbours() {
        let a = param("a");
        let params = [&a];
        let base = Point::new();
        let mut centre = Point::new();
        centre.insert("a".into(), ParamValue::Num(0.5));
        let input = RefineInput {
            params: &params,
            base: &base,
            centres: vec![vec![0.5]],
            half_widths: vec![0.25],
            surface: None,
            count: 2,
            kappa: 1.0,
            taken: vec![],
        };
        let got = propose(input, &|p| p);
        assert_eq!(got[0], centre);
        assert_eq!(got[1]["a"], ParamValue::Num(0.49));
    }
}
