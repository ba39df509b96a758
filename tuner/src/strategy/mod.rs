//! Which trials to run: the steps of a study (probes of the speed and numerics groups, coarse,
//! refine rounds, confirm; per batch size, or rung by rung up the batch-size ladder) and the
//! proposals of each step.
//!
//! A step's proposals are a pure function of the search space, the seed and the trials of the
//! steps before it, consumed in trial-id order (never in completion order), so a resumed or more
//! parallel search proposes exactly the trials an uninterrupted serial one would.

pub mod confirm;
mod coords;
mod design;
pub mod halving;
pub mod ladder;
pub mod objective;
mod refine;
mod surrogate;
pub mod synthetic;

pub use coords::coarse_values;
pub use halving::Pruned;
pub use objective::Judge;

use crate::plan::{Point, Stage};
use crate::space::{Effect, Param, ParamValue, SearchSpace};
use coords::{coarse_width, from_unit_fine, to_unit};
use jizhi_store::TrialRecord;
use surrogate::Surface;

/// One step of a study: a stage run for some batch sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The stage.
    pub stage: Stage,
    /// The batch sizes it runs (all of them, or one rung of the ladder).
    pub batches: Vec<u64>,
    /// Index of the ladder rung (0 without a ladder).
    pub rung: usize,
    /// The group it decides; `None` for a joint search of every parameter.
    pub group: Option<Effect>,
}

/// A planned trial before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Nominal batch.
    pub batch: u64,
    /// Every parameter's value.
    pub point: Point,
    /// Added to the study seed.
    pub seed_offset: u64,
}

/// What a step runs, and which earlier trials it drops.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    /// Its proposals, in id order.
    pub proposals: Vec<Proposal>,
    /// Trials of the previous stage that do not go on (successive halving).
    pub pruned: Vec<Pruned>,
}

/// The steps of a study, in order.
pub fn steps(space: &SearchSpace) -> Vec<Step> {
    let rungs: Vec<Vec<u64>> = if space.search.ladder {
        space.batches.iter().map(|&b| vec![b]).collect()
    } else {
        vec![space.batches.clone()]
    };
    let groups: Vec<Option<Effect>> = match &space.search.groups {
        Some(g) => g.iter().map(|&e| Some(e)).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for (rung, batches) in rungs.into_iter().enumerate() {
        let mut push = |stage, group| {
            out.push(Step {
                stage,
                batches: batches.clone(),
                rung,
                group,
            })
        };
        for &group in &groups {
            match group {
                // Speed and numerics are decided once, at the first rung; later rungs inherit them.
                Some(e @ (Effect::Speed | Effect::Numerics)) => {
                    if rung == 0 && !group_params(space, group).is_empty() {
                        push(Stage::Probe(e), group);
                    }
                }
                _ => {
                    push(Stage::Coarse, group);
                    if space.stages.refine_points > 0 {
                        for r in 1..=space.stages.refine_rounds {
                            push(Stage::Refine(r), group);
                        }
                    }
                }
            }
        }
        if space.stages.confirm_top > 0 {
            push(Stage::Confirm, accuracy_group(space));
        }
    }
    out
}

/// Trials each step plans at most (refine and confirm may plan fewer), for progress and `plan`.
pub fn outline(space: &SearchSpace) -> Vec<(Step, usize)> {
    steps(space)
        .into_iter()
        .map(|step| {
            let grid = |points: u32| {
                let size: usize = group_params(space, step.group)
                    .iter()
                    .map(|p| coarse_values(p).len())
                    .product();
                size.min(points as usize)
            };
            let per_batch = match step.stage {
                Stage::Probe(_) => grid(space.stages.probe_points),
                Stage::Coarse if step.rung > 0 => grid(space.stages.seeded_points),
                Stage::Coarse => grid(space.stages.coarse_points),
                Stage::Refine(_) => space.stages.refine_points as usize,
                Stage::Confirm => (space.stages.confirm_top * space.stages.confirm_seeds) as usize,
            };
            let n = per_batch * step.batches.len();
            (step, n)
        })
        .collect()
}

/// The group the coarse, refine and confirm stages decide (`None`: every parameter at once).
fn accuracy_group(space: &SearchSpace) -> Option<Effect> {
    space.search.groups.as_ref().map(|_| Effect::Accuracy)
}

/// The searched parameters of a group, in the space's order.
fn group_params(space: &SearchSpace, group: Option<Effect>) -> Vec<&Param> {
    space
        .params
        .iter()
        .filter(|p| group.is_none_or(|g| p.effect == g))
        .collect()
}

/// The point a trial record ran.
pub fn point_of(record: &TrialRecord) -> Point {
    record
        .params
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::String(s) => ParamValue::Text(s.clone()),
                other => ParamValue::Num(other.as_f64().unwrap_or(f64::NAN)),
            };
            (k.clone(), value)
        })
        .collect()
}

/// A point with every conditional parameter whose condition fails put back to its start value.
fn apply_conditions(space: &SearchSpace, mut point: Point) -> Point {
    for p in &space.params {
        let holds = p
            .when
            .iter()
            .all(|(other, allowed)| point.get(other).is_some_and(|v| allowed.contains(v)));
        if !holds {
            point.insert(p.name.clone(), p.start.clone());
        }
    }
    point
}

/// Everything the planner reads: the space, the seed, the earlier trials in id order.
struct Planner<'a> {
    space: &'a SearchSpace,
    seed: u64,
    steps: Vec<Step>,
    prior: Vec<&'a TrialRecord>,
}

/// The proposals of step `index` of `steps(space)`, from the trials of the steps before it.
pub fn plan_step(space: &SearchSpace, seed: u64, index: usize, prior: &[TrialRecord]) -> StagePlan {
    let mut sorted: Vec<&TrialRecord> = prior.iter().collect();
    sorted.sort_by_key(|t| t.id);
    let planner = Planner {
        space,
        seed,
        steps: steps(space),
        prior: sorted,
    };
    let Some(step) = planner.steps.get(index).cloned() else {
        return StagePlan {
            proposals: Vec::new(),
            pruned: Vec::new(),
        };
    };
    let mut plan = StagePlan {
        proposals: Vec::new(),
        pruned: Vec::new(),
    };
    for &batch in &step.batches {
        let (points, pruned) = planner.plan_batch(&step, index, batch);
        plan.pruned.extend(pruned);
        for point in points {
            let seed_offset = match point.get("seed") {
                Some(ParamValue::Num(s)) => (*s as u64).wrapping_sub(seed),
                _ => 0,
            };
            plan.proposals.push(Proposal {
                batch,
                point,
                seed_offset,
            });
        }
    }
    plan.pruned.sort_by_key(|p| p.id);
    plan
}

impl Planner<'_> {
    /// Trials of `batch` whose stage is `stage`.
    fn records(&self, stage: Stage, batch: u64) -> Vec<&TrialRecord> {
        let label = stage.as_str();
        self.prior
            .iter()
            .copied()
            .filter(|t| t.batch == batch && t.stage == label)
            .collect()
    }

    /// Trials of `batch` from the steps of `group` (up to step `before`, at rung `rung`).
    fn group_records(
        &self,
        group: Option<Effect>,
        rung: usize,
        batch: u64,
        before: usize,
    ) -> Vec<&TrialRecord> {
        let mut out = Vec::new();
        for s in self.steps[..before]
            .iter()
            .filter(|s| s.group == group && s.rung == rung && s.stage != Stage::Confirm)
        {
            out.extend(self.records(s.stage, batch));
        }
        out.sort_by_key(|t| t.id);
        out.dedup_by_key(|t| t.id);
        out
    }

    /// The best point a group found at `batch` (or, up the ladder, at the rungs below).
    fn decided(
        &self,
        group: Option<Effect>,
        rung: usize,
        batch: u64,
        before: usize,
    ) -> Option<Point> {
        let judge = Judge::of(self.space, group.unwrap_or(Effect::Accuracy));
        let mine = self.group_records(group, rung, batch, before);
        if let Some((best, _)) = judge.best_first(mine.iter().copied()).first() {
            return Some(point_of(best));
        }
        if rung > 0 {
            // Speed and numerics were decided at the first rung: look down the ladder.
            let below = self.space.batches[rung - 1];
            return self.decided(group, rung - 1, below, before);
        }
        None
    }

    /// The values every point of a step starts from: fixed values, the decisions of the groups
    /// before it (at this batch, else down the ladder), start values for the rest.
    fn base(&self, step: &Step, index: usize, batch: u64) -> Point {
        let mut point: Point = self.space.fixed.iter().cloned().collect();
        for p in &self.space.params {
            point.insert(p.name.clone(), p.start.clone());
        }
        let groups: Vec<Option<Effect>> = match &self.space.search.groups {
            Some(g) => g.iter().map(|&e| Some(e)).collect(),
            None => vec![None],
        };
        for group in groups {
            if group == step.group && step.stage != Stage::Confirm {
                continue;
            }
            let ran_before = self.steps[..index].iter().any(|s| s.group == group);
            if !ran_before {
                continue;
            }
            if let Some(best) = self.decided(group, step.rung, batch, index) {
                for p in group_params(self.space, group) {
                    if let Some(v) = best.get(&p.name) {
                        point.insert(p.name.clone(), v.clone());
                    }
                }
            }
        }
        apply_conditions(self.space, point)
    }

    /// Points of a grid design over `params`, one candidate list per parameter.
    fn design(
        &self,
        base: &Point,
        params: &[&Param],
        values: &[Vec<ParamValue>],
        k: usize,
        start: Option<&[usize]>,
    ) -> Vec<Point> {
        let sizes: Vec<usize> = values.iter().map(Vec::len).collect();
        let mut out: Vec<Point> = Vec::new();
        for idx in design::maximin(&sizes, k, start, self.seed) {
            let mut p = base.clone();
            for ((param, vals), i) in params.iter().zip(values).zip(idx) {
                p.insert(param.name.clone(), vals[i].clone());
            }
            let p = apply_conditions(self.space, p);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    fn plan_batch(&self, step: &Step, index: usize, batch: u64) -> (Vec<Point>, Vec<Pruned>) {
        let base = self.base(step, index, batch);
        let params = group_params(self.space, step.group);
        match step.stage {
            Stage::Probe(_) => {
                let values: Vec<Vec<ParamValue>> =
                    params.iter().map(|p| coarse_values(p)).collect();
                (
                    self.design(
                        &base,
                        &params,
                        &values,
                        self.space.stages.probe_points as usize,
                        None,
                    ),
                    Vec::new(),
                )
            }
            Stage::Coarse => (self.coarse(step, index, batch, &base, &params), Vec::new()),
            Stage::Refine(round) => self.refine(step, index, batch, round, &base, &params),
            Stage::Confirm => self.confirm(step, index, batch),
        }
    }

    fn coarse(
        &self,
        step: &Step,
        index: usize,
        batch: u64,
        base: &Point,
        params: &[&Param],
    ) -> Vec<Point> {
        if step.rung > 0 {
            let below = self.space.batches[step.rung - 1];
            let judge = Judge::of(self.space, Effect::Accuracy);
            let records = self.group_records(step.group, step.rung - 1, below, index);
            if let Some((best, _)) = judge.best_first(records.iter().copied()).first() {
                let seeded = ladder::seed_point(self.space, &point_of(best), below, batch);
                return self.seeded_coarse(base, params, &seeded);
            }
        }
        let values: Vec<Vec<ParamValue>> = params.iter().map(|p| coarse_values(p)).collect();
        self.design(
            base,
            params,
            &values,
            self.space.stages.coarse_points as usize,
            None,
        )
    }

    /// A rung seeded from the one below: a small design within one coarse step of the scaled best,
    /// the scaled best itself first.
    fn seeded_coarse(&self, base: &Point, params: &[&Param], seeded: &Point) -> Vec<Point> {
        let mut values = Vec::new();
        let mut centre = Vec::new();
        for p in params {
            let c = seeded.get(&p.name).map_or(0.5, |v| to_unit(p, v));
            let w = coarse_width(p);
            let mut list: Vec<ParamValue> = Vec::new();
            for f in [-1.0, -0.5, 0.0, 0.5, 1.0] {
                let v = from_unit_fine(p, c + f * w);
                if !list.contains(&v) {
                    list.push(v);
                }
            }
            let at = list
                .iter()
                .position(|v| *v == from_unit_fine(p, c))
                .unwrap_or(0);
            centre.push(at);
            values.push(list);
        }
        let mut base = base.clone();
        for p in params {
            if let Some(v) = seeded.get(&p.name) {
                base.insert(p.name.clone(), v.clone());
            }
        }
        self.design(
            &base,
            params,
            &values,
            self.space.stages.seeded_points as usize,
            Some(&centre),
        )
    }

    fn refine(
        &self,
        step: &Step,
        index: usize,
        batch: u64,
        round: u32,
        base: &Point,
        params: &[&Param],
    ) -> (Vec<Point>, Vec<Pruned>) {
        let previous = if round == 1 {
            Stage::Coarse
        } else {
            Stage::Refine(round - 1)
        };
        let judge = Judge::of(self.space, step.group.unwrap_or(Effect::Accuracy));
        let top_k = self.space.stages.refine_top_k as usize;
        let (survivors, pruned) = self.going_on(
            previous,
            batch,
            &judge,
            self.space.search.keep_fraction,
            top_k,
        );
        let unit = |t: &TrialRecord| -> Vec<f64> {
            let p = point_of(t);
            params
                .iter()
                .map(|q| p.get(&q.name).map_or(0.5, |v| to_unit(q, v)))
                .collect()
        };
        let centres: Vec<Vec<f64>> = survivors.iter().take(top_k).map(|t| unit(t)).collect();
        let shrink = self.space.stages.refine_shrink.powi(round as i32 - 1);
        let half_widths: Vec<f64> = params
            .iter()
            .map(|p| (coarse_width(p) * shrink).min(0.5))
            .collect();
        let group = self.group_records(step.group, step.rung, batch, index);
        let surface = self.surface(&group, &judge, &unit);
        let taken: Vec<Point> = group
            .iter()
            .filter(|t| t.stage.starts_with("refine"))
            .map(|t| point_of(t))
            .collect();
        // The centres carry every value of the region's best trial; the axes move.
        let mut region_base = base.clone();
        if let Some(best) = survivors.first() {
            for p in params {
                if let Some(v) = point_of(best).get(&p.name) {
                    region_base.insert(p.name.clone(), v.clone());
                }
            }
        }
        let input = refine::RefineInput {
            params,
            base: &region_base,
            centres,
            half_widths,
            surface,
            count: self.space.stages.refine_points as usize,
            // Exploration fades round by round. Chosen on the synthetic suite (20 seeds): κ = 1/r
            // gave median regret Branin 0.017, Hartmann-6 0.61, LR × warmup 0.0059; 2/r gave
            // 0.35, 0.47, 0.0037 but made the ladder's seeded rung slower to catch up.
            kappa: 1.0 / round as f64,
            taken,
        };
        (
            refine::propose(input, &|p| apply_conditions(self.space, p)),
            pruned,
        )
    }

    /// The surface of a group's results: fitted to the coarse results, the higher-fidelity ones
    /// shifted by their mean offset from it (one surface, two fidelities).
    fn surface(
        &self,
        group: &[&TrialRecord],
        judge: &Judge,
        unit: &dyn Fn(&TrialRecord) -> Vec<f64>,
    ) -> Option<Surface> {
        let scored: Vec<(Vec<f64>, f64, bool)> = group
            .iter()
            .filter_map(|t| {
                judge
                    .score(t)
                    .map(|(s, _)| (unit(t), s, t.stage == Stage::Coarse.as_str()))
            })
            .filter(|(_, s, _)| s.is_finite())
            .collect();
        if scored.first().is_none_or(|(x, _, _)| x.is_empty()) {
            return None;
        }
        let (low, high): (Vec<_>, Vec<_>) = scored.iter().partition(|(_, _, coarse)| *coarse);
        let low_x: Vec<Vec<f64>> = low.iter().map(|(x, _, _)| x.clone()).collect();
        let low_y: Vec<f64> = low.iter().map(|(_, y, _)| *y).collect();
        let offset = match Surface::fit(&low_x, &low_y) {
            Some(s) if !high.is_empty() => {
                high.iter().map(|(x, y, _)| y - s.predict(x).0).sum::<f64>() / high.len() as f64
            }
            _ => 0.0,
        };
        let xs: Vec<Vec<f64>> = scored.iter().map(|(x, _, _)| x.clone()).collect();
        let ys: Vec<f64> = scored
            .iter()
            .map(|(_, y, coarse)| if *coarse { *y } else { y - offset })
            .collect();
        Surface::fit(&xs, &warp(&ys))
    }

    /// The trials that go on from `stage` at `batch`, best first, and the stage's trials dropped.
    ///
    /// A refine round competes with the regions it refined: when the stage before it ran at the
    /// same fidelity, the best `refine.top_k` that went on from there are ranked with the
    /// stage's own trials, so a round whose proposals all fall short keeps the old best instead
    /// of moving the next regions (or the confirmed configurations) to worse points.
    fn going_on(
        &self,
        stage: Stage,
        batch: u64,
        judge: &Judge,
        keep_fraction: f64,
        min_keep: usize,
    ) -> (Vec<&TrialRecord>, Vec<Pruned>) {
        let own = self.records(stage, batch);
        let mut pool = own.clone();
        let before = match stage {
            Stage::Refine(1) => Some(Stage::Coarse),
            Stage::Refine(r) => Some(Stage::Refine(r - 1)),
            _ => None,
        };
        if let Some(before) = before.filter(|b| {
            crate::plan::fidelity(self.space, *b) == crate::plan::fidelity(self.space, stage)
        }) {
            let top_k = self.space.stages.refine_top_k as usize;
            let (carried, _) =
                self.going_on(before, batch, judge, self.space.search.keep_fraction, top_k);
            pool.extend(carried.into_iter().take(top_k));
        }
        let (survivors, mut pruned) =
            halving::halve(&pool, judge, keep_fraction, min_keep, &stage.as_str());
        pruned.retain(|p| own.iter().any(|t| t.id == p.id));
        (survivors, pruned)
    }

    fn confirm(&self, step: &Step, index: usize, batch: u64) -> (Vec<Point>, Vec<Pruned>) {
        let judge = Judge::of(self.space, Effect::Accuracy);
        // The highest-fidelity stage with results ranks the candidates.
        let mut best_stage = None;
        for s in self.steps[..index]
            .iter()
            .rev()
            .filter(|s| s.rung == step.rung && s.group == step.group)
        {
            if !self.records(s.stage, batch).is_empty() {
                best_stage = Some(s.stage);
                break;
            }
        }
        let Some(stage) = best_stage else {
            return (Vec::new(), Vec::new());
        };
        let top = self.space.stages.confirm_top as usize;
        let (chosen, mut pruned) = self.going_on(stage, batch, &judge, 0.0, top);
        for p in &mut pruned {
            p.reason = format!("{}; not among the best {top} confirmed", p.reason);
        }
        let mut out = Vec::new();
        for t in chosen.iter().take(top) {
            let mut p = point_of(t);
            p.remove("seed");
            for s in 1..=self.space.stages.confirm_seeds as u64 {
                let mut q = p.clone();
                q.insert(
                    "seed".into(),
                    ParamValue::Num(self.seed.wrapping_add(s) as f64),
                );
                out.push(q);
            }
        }
        (out, pruned)
    }
}

/// Results warped so the surface resolves the region near the best rather than the spread of the
/// bad ones: scaled to [0, 1] (1 best), then `-ln(1 + 10·(1 - y))`, which keeps the order.
fn warp(ys: &[f64]) -> Vec<f64> {
    let max = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = ys.iter().copied().fold(f64::INFINITY, f64::min);
    if max - min <= 1e-300 {
        return ys.to_vec();
    }
    ys.iter()
        .map(|y| -(1.0 + 10.0 * (max - y) / (max - min)).ln())
        .collect()
}

#[cfg(test)]
mod tests;
