//! The confirm stage's verdict: each confirmed configuration's mean ± standard deviation over its
//! seeds.

use super::point_of;
use crate::plan::{Point, Stage};
use jizhi_store::TrialRecord;

/// One confirmed configuration at one batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    /// Nominal batch.
    pub batch: u64,
    /// The configuration (without its seed).
    pub point: Point,
    /// Final val top-1 of every seed that finished.
    pub top1: Vec<f64>,
}

impl Confirmed {
    /// Mean final val top-1.
    pub fn mean(&self) -> f64 {
        self.top1.iter().sum::<f64>() / self.top1.len().max(1) as f64
    }

    /// Sample standard deviation (0 for one seed).
    pub fn std(&self) -> f64 {
        let n = self.top1.len();
        if n < 2 {
            return 0.0;
        }
        let m = self.mean();
        (self.top1.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

/// The confirmed configurations, best mean first per batch, batches in the order given.
///
/// A configuration's earlier runs at the confirm stage's fidelity (a refine round that already ran
/// at full fidelity) count as seeds too: `pooled` names those stages, so the verdict averages
/// every full-fidelity result a configuration has rather than its confirm seeds alone.
pub fn confirmed(trials: &[TrialRecord], batches: &[u64], pooled: &[String]) -> Vec<Confirmed> {
    let label = Stage::Confirm.as_str();
    let mut sorted: Vec<&TrialRecord> = trials.iter().collect();
    sorted.sort_by_key(|t| t.id);
    let mut out: Vec<Confirmed> = Vec::new();
    for t in sorted.iter().filter(|t| t.stage == label) {
        let point = without_seed(t);
        let Some(top1) = t.final_val_top1 else {
            continue;
        };
        match out
            .iter_mut()
            .find(|c| c.batch == t.batch && c.point == point)
        {
            Some(c) => c.top1.push(top1),
            None => out.push(Confirmed {
                batch: t.batch,
                point,
                top1: vec![top1],
            }),
        }
    }
    for t in sorted.iter().filter(|t| pooled.contains(&t.stage)) {
        let point = without_seed(t);
        if let (Some(c), Some(top1)) = (
            out.iter_mut()
                .find(|c| c.batch == t.batch && c.point == point),
            t.final_val_top1,
        ) {
            c.top1.push(top1);
        }
    }
    out.sort_by(|a, b| {
        let ai = batches.iter().position(|&x| x == a.batch);
        let bi = batches.iter().position(|&x| x == b.batch);
        ai.cmp(&bi).then(b.mean().total_cmp(&a.mean()))
    });
    out
}

fn without_seed(t: &TrialRecord) -> Point {
    let mut point = point_of(t);
    point.remove("seed");
    point
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::objective::tests::record;

    #[test]
    fn seeds_of_one_configuration_are_pooled() {
        let mut trials = Vec::new();
        for (id, seed, top1) in [(1, 1, 0.8), (2, 2, 0.9), (3, 3, 0.7)] {
            let mut r = record(id, top1, 1.0, 0);
            r.stage = "confirm".into();
            r.params.insert("peak_lr".into(), serde_json::json!(2.0));
            r.params.insert("seed".into(), serde_json::json!(seed));
            trials.push(r);
        }
        let c = confirmed(&trials, &[1], &[]);
        assert_eq!(c.len(), 1);
        assert!((c[0].mean() - 0.8).abs() < 1e-12);
        assert!((c[0].std() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn earlier_runs_at_full_fidelity_count_as_seeds() {
        let mut trials = Vec::new();
        // trial 1: a refine run at full fidelity; 2: the same configuration confirmed;
        // 3: another configuration refined but not confirmed; 4: a coarse run of the first.
        for (id, stage, lr, top1) in [
            (1, "refine-2", 2.0, 0.9),
            (2, "confirm", 2.0, 0.7),
            (3, "refine-2", 1.0, 0.99),
            (4, "coarse", 2.0, 0.1),
        ] {
            let mut r = record(id, top1, 1.0, 0);
            r.stage = stage.into();
            r.params.insert("peak_lr".into(), serde_json::json!(lr));
            if stage == "confirm" {
                r.params.insert("seed".into(), serde_json::json!(7));
            }
            trials.push(r);
        }
        let c = confirmed(&trials, &[1], &["refine-2".to_string()]);
        assert_eq!(c.len(), 1, "only confirmed configurations are reported");
        assert_eq!(c[0].top1, vec![0.7, 0.9]);
        assert!((c[0].mean() - 0.8).abs() < 1e-12);
        let alone = confirmed(&trials, &[1], &[]);
        assert_eq!(alone[0].top1, vec![0.7]);
    }
}
