//! The response surface of the refine stage: a Gaussian-process regression in the unit space, its
//! length scales (one per axis) and noise chosen by marginal likelihood from a fixed ladder of
//! values, so that the fit is a pure function of the data.

/// Length scales tried for every axis at once, then axis by axis.
const LENGTHS: [f64; 6] = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6];
/// Noise variances (of the standardised results) tried.
const NOISES: [f64; 4] = [1e-6, 1e-3, 1e-2, 1e-1];
/// Factors an axis's length scale is tried at, relative to the shared one.
const AXIS_FACTORS: [f64; 4] = [0.25, 0.5, 2.0, 4.0];

/// A fitted Gaussian process (squared-exponential kernel, constant mean).
#[derive(Debug, Clone)]
pub struct Surface {
    xs: Vec<Vec<f64>>,
    /// Standardised results.
    zs: Vec<f64>,
    mean: f64,
    scale: f64,
    lengths: Vec<f64>,
    noise: f64,
    /// Cholesky factor of the kernel matrix (lower, row-major).
    chol: Vec<f64>,
    /// K^-1 z.
    alpha: Vec<f64>,
}

impl Surface {
    /// Fits the results `ys` (higher is better) at unit points `xs`; `None` below two points.
    pub fn fit(xs: &[Vec<f64>], ys: &[f64]) -> Option<Surface> {
        if xs.len() < 2 || xs.len() != ys.len() {
            return None;
        }
        let dim = xs[0].len();
        let n = ys.len() as f64;
        let mean = ys.iter().sum::<f64>() / n;
        let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n;
        let scale = if var > 1e-24 { var.sqrt() } else { 1.0 };
        let zs: Vec<f64> = ys.iter().map(|y| (y - mean) / scale).collect();
        let mut best: Option<(f64, Vec<f64>, f64)> = None;
        let consider = |lengths: Vec<f64>, noise: f64, best: &mut Option<(f64, Vec<f64>, f64)>| {
            if let Some(lml) = log_likelihood(xs, &zs, &lengths, noise) {
                if best.as_ref().is_none_or(|(b, _, _)| lml > *b + 1e-9) {
                    *best = Some((lml, lengths, noise));
                }
            }
        };
        for &l in &LENGTHS {
            for &noise in &NOISES {
                consider(vec![l; dim], noise, &mut best);
            }
        }
        // Axis by axis: an axis the results hardly depend on gets a long length scale.
        for _pass in 0..2 {
            for d in 0..dim {
                let Some((_, lengths, noise)) = best.clone() else {
                    break;
                };
                for f in AXIS_FACTORS {
                    let mut l = lengths.clone();
                    l[d] = (l[d] * f).clamp(0.02, 10.0);
                    consider(l, noise, &mut best);
                }
            }
        }
        let (_, lengths, noise) = best?;
        Surface::with(xs.to_vec(), zs, mean, scale, lengths, noise)
    }

    fn with(
        xs: Vec<Vec<f64>>,
        zs: Vec<f64>,
        mean: f64,
        scale: f64,
        lengths: Vec<f64>,
        noise: f64,
    ) -> Option<Surface> {
        let chol = cholesky(&kernel_matrix(&xs, &lengths, noise), xs.len())?;
        let alpha = solve(&chol, xs.len(), &zs);
        Some(Surface {
            xs,
            zs,
            mean,
            scale,
            lengths,
            noise,
            chol,
            alpha,
        })
    }

    /// The same surface with one more (believed) result: the proposals of a batch spread out
    /// because each lowers the uncertainty near itself for the next.
    pub fn believing(&self, x: Vec<f64>, y: f64) -> Surface {
        let mut xs = self.xs.clone();
        let mut zs = self.zs.clone();
        xs.push(x);
        zs.push((y - self.mean) / self.scale);
        Surface::with(
            xs,
            zs,
            self.mean,
            self.scale,
            self.lengths.clone(),
            self.noise,
        )
        .unwrap_or_else(|| self.clone())
    }

    /// Predicted mean and standard deviation at `x`, in the units of the results.
    pub fn predict(&self, x: &[f64]) -> (f64, f64) {
        let k: Vec<f64> = self.xs.iter().map(|xi| rbf(xi, x, &self.lengths)).collect();
        let mu: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, self.xs.len(), &k);
        let var = (1.0 - v.iter().map(|x| x * x).sum::<f64>()).max(0.0);
        (self.mean + self.scale * mu, self.scale * var.sqrt())
    }

    /// The fitted length scales (one per axis, unit space).
    #[cfg(test)]
    pub fn lengths(&self) -> &[f64] {
        &self.lengths
    }
}

fn rbf(a: &[f64], b: &[f64], lengths: &[f64]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .zip(lengths)
        .map(|((x, y), l)| ((x - y) / l).powi(2))
        .sum();
    (-0.5 * s).exp()
}

fn kernel_matrix(xs: &[Vec<f64>], lengths: &[f64], noise: f64) -> Vec<f64> {
    let n = xs.len();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = rbf(&xs[i], &xs[j], lengths) + if i == j { noise + 1e-9 } else { 0.0 };
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
    }
    k
}

fn log_likelihood(xs: &[Vec<f64>], zs: &[f64], lengths: &[f64], noise: f64) -> Option<f64> {
    let n = xs.len();
    let chol = cholesky(&kernel_matrix(xs, lengths, noise), n)?;
    let alpha = solve(&chol, n, zs);
    let fit: f64 = zs.iter().zip(&alpha).map(|(a, b)| a * b).sum();
    let logdet: f64 = (0..n).map(|i| chol[i * n + i].ln()).sum::<f64>() * 2.0;
    Some(-0.5 * fit - 0.5 * logdet)
}

/// Lower Cholesky factor of an n×n symmetric positive-definite matrix; `None` if it is not.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves L y = b.
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * n + i];
    }
    y
}

/// Solves L Lᵀ x = b.
fn solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let y = forward(l, n, b);
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * n + i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_a_smooth_function_and_knows_where_it_is_unsure() {
        let f = |x: f64, y: f64| -((x - 0.3).powi(2) + (y - 0.6).powi(2));
        let mut xs = Vec::new();
        for i in 0..5 {
            for j in 0..5 {
                xs.push(vec![i as f64 / 4.0, j as f64 / 4.0]);
            }
        }
        let ys: Vec<f64> = xs.iter().map(|p| f(p[0], p[1])).collect();
        let s = Surface::fit(&xs, &ys).expect("fits");
        let (mu, sd) = s.predict(&[0.3, 0.6]);
        assert!((mu - 0.0).abs() < 0.01, "{mu}");
        assert!(sd < 0.05, "{sd}");
        // Far outside the data the surface is unsure.
        let (_, far) = s.predict(&[3.0, 3.0]);
        assert!(far > sd * 5.0, "{far} vs {sd}");
    }

    #[test]
    fn an_irrelevant_axis_gets_a_long_length_scale() {
        let mut xs = Vec::new();
        for i in 0..6 {
            for j in 0..4 {
                xs.push(vec![i as f64 / 5.0, j as f64 / 3.0]);
            }
        }
        let ys: Vec<f64> = xs.iter().map(|p| (6.0 * p[0]).sin()).collect();
        let s = Surface::fit(&xs, &ys).expect("fits");
        assert!(s.lengths()[1] > 2.0 * s.lengths()[0], "{:?}", s.lengths());
    }
}
