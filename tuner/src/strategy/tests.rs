//! Tests of the whole planner: stages on synthetic problems with known optima, groups, the
//! ladder, confirm, conditions and determinism.

use super::synthetic::{self, Budget, Problem};
use super::*;
use crate::space::parse;
use jizhi_store::{EpochMetrics, TrialStatus};
use std::path::Path;

fn num(p: &Point, k: &str) -> f64 {
    match p.get(k) {
        Some(ParamValue::Num(v)) => *v,
        _ => f64::NAN,
    }
}

#[test]
fn coarse_to_fine_finds_the_branin_optimum_that_the_coarse_grid_misses() {
    let p = Problem::Branin;
    let budget = Budget::of(p);
    let space = synthetic::space(p, budget, vec![1], false);
    let trials = synthetic::run(p, &space, 0, &mut |_| {});
    assert_eq!(trials.len(), budget.trials() as usize);
    let coarse = synthetic::regret(p, &trials, budget.coarse as usize, 1, p.optimum());
    let all = synthetic::regret(p, &trials, trials.len(), 1, p.optimum());
    assert!(all < 0.5, "regret {all} (coarse alone {coarse})");
    assert!(
        all < coarse / 4.0,
        "refine improved only from {coarse} to {all}"
    );
}

#[test]
fn refine_gets_close_to_the_noisy_landscape_ridge() {
    let p = Problem::ProxyLandscape;
    let budget = Budget::of(p);
    let space = synthetic::space(p, budget, vec![32768], false);
    let mut regrets: Vec<f64> = (0..5)
        .map(|seed| {
            let t = synthetic::run(p, &space, seed, &mut |_| {});
            synthetic::regret(p, &t, t.len(), 32768, p.optimum())
        })
        .collect();
    regrets.sort_by(f64::total_cmp);
    // Within 2.5 points of accuracy of the best, in the median seed.
    assert!(regrets[2] < 0.025, "{regrets:?}");
}

#[test]
fn proposals_ignore_the_order_trials_complete_in() {
    let p = Problem::Hartmann6;
    let space = synthetic::space(
        p,
        Budget {
            coarse: 10,
            rounds: 2,
            per_round: 4,
        },
        vec![1],
        false,
    );
    let serial = synthetic::run(p, &space, 3, &mut |_| {});
    let reversed = synthetic::run(p, &space, 3, &mut |v| v.reverse());
    let mut k = 0usize;
    let shuffled = synthetic::run(p, &space, 3, &mut |v| {
        k += 1;
        let n = v.len().max(1);
        v.rotate_left(k % n);
    });
    assert_eq!(serial, reversed);
    assert_eq!(serial, shuffled);
    // A different seed is a different (noisy) study: the landscape's proposals change.
    let q = Problem::ProxyLandscape;
    let lspace = synthetic::space(q, Budget::of(q), vec![32768], false);
    assert_ne!(
        synthetic::run(q, &lspace, 1, &mut |_| {}),
        synthetic::run(q, &lspace, 2, &mut |_| {})
    );
}

#[test]
fn a_resumed_plan_proposes_what_the_uninterrupted_one_did() {
    let p = Problem::ProxyLandscape;
    let space = synthetic::space(p, Budget::of(p), vec![32768], false);
    let full = synthetic::run(p, &space, 9, &mut |_| {});
    // Rebuild the records up to the end of the coarse stage and plan refine again from them.
    let coarse = Budget::of(p).coarse as usize;
    let records: Vec<TrialRecord> = full[..coarse]
        .iter()
        .map(|e| {
            let mut r = super::objective::tests::record(e.id, e.observed, 1.0, 0);
            r.batch = e.batch;
            r.params = e
                .point
                .keys()
                .map(|k| (k.clone(), serde_json::json!(num(&e.point, k))))
                .collect();
            r
        })
        .collect();
    let again = plan_step(&space, 9, 1, &records);
    let planned: Vec<Point> = again.proposals.iter().map(|p| p.point.clone()).collect();
    let ran: Vec<Point> = full[coarse..coarse + planned.len()]
        .iter()
        .map(|e| e.point.clone())
        .collect();
    assert_eq!(planned, ran);
}

const GROUPED: &str = r#"
[study]
name = "g"
seed = 5
[trainer]
model = "alexnet-bn"
epochs = 2
precision = "fp16"
optimizer = "lars"
[batch]
sizes = [32768, 65536]
[search]
groups = ["speed", "numerics", "accuracy"]
ladder = true
lr_scaling = "sqrt"
keep_fraction = 0.5
[params.peak_lr]
scale = "log"
min = 1.0
max = 16.0
coarse_step = 2.0
fine_step = 1.19
[params.warmup_epochs]
min = 0.0
max = 1.0
coarse_step = 0.5
fine_step = 0.125
[params.loss_scale]
values = ["dynamic", 1, 1024]
coarse_step = 1
fine_step = 1
[params.fusion_threshold_mib]
scale = "log"
min = 1.0
max = 64.0
coarse_step = 4.0
fine_step = 2.0
[stages.probe]
points = 4
epochs = 1
data_fraction = 0.1
[stages.coarse]
points = 6
seeded_points = 3
epochs = 1
data_fraction = 0.5
[stages.refine]
top_k = 2
points = 3
rounds = 2
epochs = 2
[stages.confirm]
top = 1
seeds = 2
"#;

fn grouped() -> SearchSpace {
    match parse(Path::new("g.toml"), GROUPED) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// A finished record of a proposal with given top-1, images/s and skipped steps.
fn finished(
    id: u64,
    stage: Stage,
    p: &Proposal,
    top1: f64,
    speed: f64,
    skipped: u64,
) -> TrialRecord {
    TrialRecord {
        id,
        stage: stage.as_str().into_owned(),
        batch: p.batch,
        proxy_batch: p.batch,
        params: p
            .point
            .iter()
            .map(|(k, v)| {
                let j = match v {
                    ParamValue::Num(n) => serde_json::json!(n),
                    ParamValue::Text(s) => serde_json::json!(s),
                };
                (k.clone(), j)
            })
            .collect(),
        status: TrialStatus::Finished,
        attempts: 1,
        error: None,
        final_val_top1: Some(top1),
        wall_secs: Some(1.0),
        modelled_step_secs: None,
        epochs: vec![EpochMetrics {
            epoch: 1,
            step: 100,
            train_loss: 1.0,
            val_top1: top1,
            images_per_sec: speed,
            loss_scale: 1024.0,
            skipped_steps: skipped,
            wall_secs: 1.0,
            underflow_fraction: 0.0,
        }],
    }
}

/// A simulated trainer: speed peaks at a 16 MiB threshold, loss scale 1 underflows (skips), and
/// accuracy peaks at lr ≈ 4·sqrt(batch/32K), warmup 0.5.
fn simulate(p: &Proposal) -> (f64, f64, u64) {
    let fusion = num(&p.point, "fusion_threshold_mib");
    let speed = 1000.0 - 50.0 * (fusion.log2() - 4.0).abs();
    let skipped = match p.point.get("loss_scale") {
        Some(ParamValue::Num(f)) if *f < 2.0 => 30,
        Some(ParamValue::Text(_)) => 2,
        _ => 0,
    };
    let best_lr = 4.0 * (p.batch as f64 / 32768.0).sqrt();
    let lr = num(&p.point, "peak_lr");
    let w = num(&p.point, "warmup_epochs");
    let top1 = 0.9 - 0.1 * (lr.log2() - best_lr.log2()).powi(2) - 0.05 * (w - 0.5).powi(2);
    (top1, speed, skipped)
}

fn run_grouped(space: &SearchSpace) -> Vec<TrialRecord> {
    let mut records: Vec<TrialRecord> = Vec::new();
    for (index, step) in steps(space).iter().enumerate() {
        let plan = plan_step(space, 5, index, &records);
        let first = records.len() as u64 + 1;
        for (i, p) in plan.proposals.iter().enumerate() {
            let (top1, speed, skipped) = simulate(p);
            records.push(finished(
                first + i as u64,
                step.stage,
                p,
                top1,
                speed,
                skipped,
            ));
        }
    }
    records
}

#[test]
fn groups_are_decided_in_order_and_fixed_for_the_next() {
    let space = grouped();
    let kinds: Vec<String> = steps(&space)
        .iter()
        .map(|s| format!("{}@{}", s.stage.as_str(), s.batches[0]))
        .collect();
    assert_eq!(
        kinds,
        [
            "speed@32768",
            "numerics@32768",
            "coarse@32768",
            "refine@32768",
            "refine-2@32768",
            "confirm@32768",
            "coarse@65536",
            "refine@65536",
            "refine-2@65536",
            "confirm@65536"
        ]
    );
    let records = run_grouped(&space);
    // The speed probe varies only the fusion threshold, at the start values of everything else.
    let speed: Vec<&TrialRecord> = records.iter().filter(|t| t.stage == "speed").collect();
    assert_eq!(speed.len(), 4);
    assert!(speed
        .iter()
        .all(|t| t.params["peak_lr"] == serde_json::json!(1.0)
            && t.params["loss_scale"] == "dynamic"));
    // Every later trial carries the fastest threshold (16 MiB) and the loss scale without skips.
    for t in records
        .iter()
        .filter(|t| t.stage != "speed" && t.stage != "numerics")
    {
        assert_eq!(
            t.params["fusion_threshold_mib"],
            serde_json::json!(16.0),
            "trial {}",
            t.id
        );
        assert_eq!(
            t.params["loss_scale"],
            serde_json::json!(1024.0),
            "trial {}",
            t.id
        );
    }
}

#[test]
fn the_ladder_seeds_the_next_rung_by_the_scaling_rule_with_fewer_points() {
    let space = grouped();
    let records = run_grouped(&space);
    let best_low = Judge::of(&space, Effect::Accuracy)
        .best_first(
            records
                .iter()
                .filter(|t| t.batch == 32768 && t.stage != "confirm"),
        )
        .first()
        .map(|(t, _)| point_of(t))
        .expect("a best trial at 32K");
    let seeded: Vec<&TrialRecord> = records
        .iter()
        .filter(|t| t.batch == 65536 && t.stage == "coarse")
        .collect();
    assert_eq!(seeded.len(), 3, "seeded_points");
    let first = point_of(seeded[0]);
    let want = num(&best_low, "peak_lr") * 2f64.sqrt();
    assert!(
        (num(&first, "peak_lr") / want - 1.0).abs() < 0.1,
        "{} vs {want}",
        num(&first, "peak_lr")
    );
    // And the 64K search ends near its own optimum (lr 5.66).
    let best_high = Judge::of(&space, Effect::Accuracy)
        .best_first(records.iter().filter(|t| t.batch == 65536))
        .first()
        .map(|(t, _)| point_of(t))
        .expect("a best trial at 64K");
    assert!(
        (num(&best_high, "peak_lr").log2() - 5.657f64.log2()).abs() < 0.3,
        "{best_high:?}"
    );
}

#[test]
fn confirm_reruns_the_best_with_extra_seeds_and_halving_drops_the_worst() {
    let space = grouped();
    let records = run_grouped(&space);
    let confirm: Vec<&TrialRecord> = records
        .iter()
        .filter(|t| t.stage == "confirm" && t.batch == 32768)
        .collect();
    assert_eq!(confirm.len(), 2);
    assert_eq!(confirm[0].params["seed"], serde_json::json!(6.0));
    assert_eq!(confirm[1].params["seed"], serde_json::json!(7.0));
    let mut a = confirm[0].params.clone();
    let mut b = confirm[1].params.clone();
    a.remove("seed");
    b.remove("seed");
    assert_eq!(a, b, "one configuration, two seeds");
    // Refine round 1 halves the coarse stage: 6 trials, the best 3 go on.
    let index = steps(&space)
        .iter()
        .position(|s| s.stage == Stage::Refine(1))
        .expect("refine");
    let plan = plan_step(
        &space,
        5,
        index,
        &records
            .iter()
            .filter(|t| t.stage != "refine")
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(plan.pruned.len(), 3, "{:?}", plan.pruned);
    assert!(plan
        .pruned
        .iter()
        .all(|p| p.reason.contains("successive halving after stage coarse")));
}

#[test]
fn a_conditional_parameter_stays_at_its_start_unless_its_condition_holds() {
    let text = GROUPED.replace(
        "[params.warmup_epochs]\n",
        "[params.warmup_epochs]\nwhen = { loss_scale = [\"dynamic\"] }\nstart = 0.0\n",
    );
    let text = text.replace(
        "groups = [\"speed\", \"numerics\", \"accuracy\"]\nladder = true",
        "ladder = false",
    );
    let space = match parse(Path::new("c.toml"), &text) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let plan = plan_step(&space, 5, 0, &[]);
    assert!(!plan.proposals.is_empty());
    for p in &plan.proposals {
        if p.point["loss_scale"] != ParamValue::Text("dynamic".into()) {
            assert_eq!(
                p.point["warmup_epochs"],
                ParamValue::Num(0.0),
                "{:?}",
                p.point
            );
        }
    }
}

#[test]
fn a_refine_round_that_finds_nothing_better_keeps_the_best_so_far() {
    let p = Problem::ProxyLandscape;
    let budget = Budget {
        coarse: 6,
        rounds: 2,
        per_round: 2,
    };
    let mut space = synthetic::space(p, budget, vec![32768], false);
    space.stages.confirm_top = 1;
    let mut records: Vec<TrialRecord> = Vec::new();
    let mut best: Option<(f64, Point)> = None;
    for (index, step) in steps(&space).iter().enumerate() {
        let plan = plan_step(&space, 5, index, &records);
        let first = records.len() as u64 + 1;
        for (i, prop) in plan.proposals.iter().enumerate() {
            // The coarse trials score by the landscape; every refine proposal falls short.
            let top1 = match step.stage {
                Stage::Coarse => p.truth(&p.coords(&prop.point), prop.batch),
                _ => 0.05,
            };
            if step.stage == Stage::Coarse && best.as_ref().is_none_or(|(b, _)| top1 > *b) {
                best = Some((top1, prop.point.clone()));
            }
            records.push(finished(
                first + i as u64,
                step.stage,
                prop,
                top1,
                1000.0,
                0,
            ));
        }
    }
    let (_, best) = best.expect("coarse trials");
    let confirmed: Vec<&TrialRecord> = records.iter().filter(|t| t.stage == "confirm").collect();
    assert!(!confirmed.is_empty());
    for t in confirmed {
        for (name, ..) in p.bounds() {
            assert_eq!(
                t.params[name],
                serde_json::json!(num(&best, name)),
                "confirm left the best coarse point for a worse refine proposal"
            );
        }
    }
}
