//! Turns the raw file into a [`SearchSpace`], checking every value and locating every problem.

use super::locate::{key_at_offset, line_of_key, line_of_offset};
use super::schema::{RawParam, RawSpace};
use super::*;
use jizhi_trainer::{OptimizerKind, Precision};

/// Environment variable that overrides `trainer.imagenet_dir`.
pub const IMAGENET_ENV: &str = "JIZHI_IMAGENET_DIR";

/// Collects the file and text so each check can report a located error.
pub(super) struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> SpaceError {
        SpaceError {
            file: self.file.to_path_buf(),
            line: line_of_key(self.text, key),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn ensure(
        &self,
        ok: bool,
        key: &str,
        message: impl Into<String>,
    ) -> Result<(), SpaceError> {
        if ok {
            Ok(())
        } else {
            Err(self.err(key, message))
        }
    }
}

/// Parses and validates the text of a search-space file.
pub fn parse(file: &Path, text: &str) -> Result<SearchSpace, SpaceError> {
    let raw: RawSpace = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        let key = offset.map(|o| key_at_offset(text, o)).unwrap_or_default();
        SpaceError {
            file: file.to_path_buf(),
            line: offset.map(|o| line_of_offset(text, o)),
            key,
            message: e.message().trim().to_string(),
        }
    })?;
    let c = Checker { file, text };

    let study = check_study(&c, &raw)?;
    let trainer = check_trainer(&c, &raw)?;

    let batches = raw.batch.sizes.clone();
    c.ensure(
        !batches.is_empty(),
        "batch.sizes",
        "must list at least one batch size",
    )?;
    c.ensure(
        batches.iter().all(|&b| b > 0),
        "batch.sizes",
        "batch sizes must be positive",
    )?;

    let mut params = Vec::new();
    for (name, p) in &raw.params {
        params.push(check_param(&c, name, p)?);
    }
    // Most influential first: refinement moves along the parameters in this order.
    params.sort_by_key(|p| KNOWN_PARAMS.iter().position(|(k, _)| *k == p.name));
    check_conditions(&c, &raw, &params)?;
    let fixed = check_defaults(&c, &raw, &params)?;
    let stages = check_stages(&c, &raw, trainer.epochs)?;
    let search = check_search(&c, &raw, &params, &stages)?;
    let cluster = super::ranks::check_cluster(&c, &raw, trainer.ranks)?;
    super::ranks::check_combinations(&c, &trainer, &params, cluster.as_ref())?;
    super::ranks::check_segment_splits(&c, &trainer, &params)?;
    let scheduler = super::scheduler::check(&c, raw.scheduler.as_ref())?;

    Ok(SearchSpace {
        file: file.to_path_buf(),
        text: text.to_string(),
        study,
        trainer,
        batches,
        params,
        fixed,
        stages,
        search,
        cluster,
        scheduler,
    })
}

fn check_study(c: &Checker, raw: &RawSpace) -> Result<Study, SpaceError> {
    let s = &raw.study;
    let plain = !s.name.is_empty()
        && s.name != "."
        && s.name != ".."
        && s.name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    c.ensure(
        plain,
        "study.name",
        format!(
            "`{}` is not a plain file name (use letters, digits, `-`, `_`, `.`)",
            s.name
        ),
    )?;
    let objective = match s.objective.as_str() {
        "max-val-top1" => Objective::MaxValTop1,
        "time-to-target" => Objective::TimeToTarget,
        other => {
            return Err(c.err(
                "study.objective",
                format!("unknown objective `{other}`, expected `max-val-top1` or `time-to-target`"),
            ))
        }
    };
    if let Some(t) = s.target_top1 {
        c.ensure(
            (0.0..=1.0).contains(&t),
            "study.target_top1",
            "must be a fraction in [0, 1]",
        )?;
    }
    c.ensure(
        objective != Objective::TimeToTarget || s.target_top1.is_some(),
        "study.objective",
        "`time-to-target` needs `study.target_top1`",
    )?;
    if let Some(b) = s.baseline_top1 {
        c.ensure(
            (0.0..=1.0).contains(&b),
            "study.baseline_top1",
            "must be a fraction in [0, 1]",
        )?;
    }
    c.ensure(
        s.baseline_batch != Some(0),
        "study.baseline_batch",
        "must be a positive batch size",
    )?;
    c.ensure(
        s.baseline_batch.is_none() || s.baseline_top1.is_some(),
        "study.baseline_batch",
        "names the batch of a baseline: set `study.baseline_top1` too",
    )?;
    Ok(Study {
        name: s.name.clone(),
        objective,
        target_top1: s.target_top1,
        baseline_top1: s.baseline_top1,
        baseline_batch: s.baseline_batch,
        seed: s.seed,
    })
}

fn check_trainer(c: &Checker, raw: &RawSpace) -> Result<TrainerSetup, SpaceError> {
    let t = &raw.trainer;
    let model = match t.model.as_str() {
        "alexnet-bn" => ModelName::AlexnetBn,
        "resnet50" => ModelName::Resnet50,
        other => {
            return Err(c.err(
                "trainer.model",
                format!("unknown model `{other}`, expected `alexnet-bn` or `resnet50`"),
            ))
        }
    };
    c.ensure(
        t.dataset == "imagenet",
        "trainer.dataset",
        format!("unknown data set `{}`, expected `imagenet`", t.dataset),
    )?;
    let precision = match t.precision.as_str() {
        "fp32" => Precision::Fp32,
        "fp16" => Precision::Fp16,
        "bf16" => Precision::Bf16,
        "fp16-naive" => Precision::Fp16Naive,
        other => {
            return Err(c.err(
                "trainer.precision",
                format!("unknown precision `{other}`, expected fp32, fp16, bf16 or fp16-naive"),
            ))
        }
    };
    let optimizer = match t.optimizer.as_str() {
        "sgd" => OptimizerKind::Sgd,
        "lars" => OptimizerKind::Lars,
        other => {
            return Err(c.err(
                "trainer.optimizer",
                format!("unknown optimizer `{other}`, expected `sgd` or `lars`"),
            ))
        }
    };
    c.ensure(t.epochs > 0, "trainer.epochs", "must be at least 1")?;
    c.ensure(t.ranks > 0, "trainer.ranks", "must be at least 1")?;
    c.ensure(t.lars_eta > 0.0, "trainer.lars_eta", "must be positive")?;
    c.ensure(
        (0.0..1.0).contains(&t.momentum),
        "trainer.momentum",
        "must be in [0, 1)",
    )?;
    c.ensure(
        t.weight_decay >= 0.0,
        "trainer.weight_decay",
        "must not be negative",
    )?;
    c.ensure(
        t.poly_power >= 0.0,
        "trainer.poly_power",
        "must not be negative",
    )?;
    let mut exclude = t.weight_decay_exclude.clone();
    exclude.sort();
    let decay_bias_and_bn = match exclude.as_slice() {
        [] => true,
        [a, b] if a == "bias" && b == "bn" => false,
        _ => {
            return Err(c.err(
                "trainer.weight_decay_exclude",
                "must be [\"bias\", \"bn\"] (the default) or [] (decay every parameter)",
            ))
        }
    };
    let from_env = std::env::var(IMAGENET_ENV).ok().filter(|v| !v.is_empty());
    let configured =
        from_env.or_else(|| (!t.imagenet_dir.is_empty()).then(|| t.imagenet_dir.clone()));
    Ok(TrainerSetup {
        model,
        imagenet_dir: configured.map(PathBuf::from),
        epochs: t.epochs,
        precision,
        optimizer,
        lars_eta: t.lars_eta,
        momentum: t.momentum,
        weight_decay: t.weight_decay,
        decay_bias_and_bn,
        ranks: t.ranks,
        local: super::ranks::check_local(c, t)?,
        poly_power: t.poly_power,
        bn5: t.bn5,
    })
}

/// Checks that `value` is allowed for the parameter `name`.
fn check_value(c: &Checker, key: &str, name: &str, value: &ParamValue) -> Result<(), SpaceError> {
    let ok = match (name, value) {
        ("loss_scale", ParamValue::Text(s)) => s == "dynamic",
        ("loss_scale", ParamValue::Num(v)) => *v > 0.0,
        ("peak_lr" | "lars_eta", ParamValue::Num(v)) => *v > 0.0,
        ("warmup_epochs" | "fusion_threshold_mib" | "weight_decay", ParamValue::Num(v)) => {
            *v >= 0.0
        }
        ("momentum", ParamValue::Num(v)) => (0.0..1.0).contains(v),
        ("segments", v) => segments_of(v).is_some(),
        ("group_size", ParamValue::Num(v)) => *v >= 1.0 && v.fract() == 0.0,
        ("algorithm", ParamValue::Text(s)) => AlgorithmName::parse(s).is_some(),
        _ => false,
    };
    let expected = match name {
        "loss_scale" => "a positive number or \"dynamic\"",
        "segments" => {
            "a whole number >= 1, \"auto\", or ascending split indices >= 1 such as \"at:3,9\""
        }
        "group_size" => "a whole number >= 1",
        "algorithm" => "\"ring\", \"hierarchical\" or \"hybrid\"",
        "peak_lr" | "lars_eta" => "a positive number",
        "momentum" => "a number in [0, 1)",
        _ => "a non-negative number",
    };
    c.ensure(
        ok,
        key,
        format!("`{value}` is not allowed for {name}: expected {expected}"),
    )
}

fn to_value(c: &Checker, key: &str, v: &toml::Value) -> Result<ParamValue, SpaceError> {
    match v {
        toml::Value::Integer(i) => Ok(ParamValue::Num(*i as f64)),
        toml::Value::Float(f) => Ok(ParamValue::Num(*f)),
        toml::Value::String(s) => Ok(ParamValue::Text(s.clone())),
        other => Err(c.err(
            key,
            format!(
                "values must be numbers or strings, found {}",
                other.type_str()
            ),
        )),
    }
}

fn check_param(c: &Checker, name: &str, p: &RawParam) -> Result<Param, SpaceError> {
    let base = format!("params.{name}");
    let known = KNOWN_PARAMS.iter().any(|(k, _)| *k == name);
    let names: Vec<&str> = KNOWN_PARAMS.iter().map(|(k, _)| *k).collect();
    c.ensure(
        known,
        &base,
        format!("unknown parameter, expected one of {}", names.join(", ")),
    )?;
    let key = |k: &str| format!("{base}.{k}");

    if let Some(values) = &p.values {
        for k in ["scale", "min", "max"] {
            let present = match k {
                "scale" => p.scale.is_some(),
                "min" => p.min.is_some(),
                _ => p.max.is_some(),
            };
            c.ensure(
                !present,
                &key(k),
                "give either `values` or a `min`/`max` range, not both",
            )?;
        }
        c.ensure(
            !values.is_empty(),
            &key("values"),
            "the list of values is empty",
        )?;
        let mut parsed = Vec::new();
        for v in values {
            let v = to_value(c, &key("values"), v)?;
            check_value(c, &key("values"), name, &v)?;
            c.ensure(
                !parsed.contains(&v),
                &key("values"),
                format!("`{v}` is listed twice"),
            )?;
            parsed.push(v);
        }
        for (k, step) in [("coarse_step", p.coarse_step), ("fine_step", p.fine_step)] {
            c.ensure(
                step >= 1.0 && step.fract() == 0.0,
                &key(k),
                "for a list of values the step is an index stride: a whole number >= 1",
            )?;
        }
        let domain = Domain::Values {
            values: parsed,
            coarse_step: p.coarse_step as usize,
            fine_step: p.fine_step as usize,
        };
        return finish_param(c, name, p, domain);
    }

    let min = p
        .min
        .ok_or_else(|| c.err(&base, "needs `min` and `max` (or `values`)"))?;
    let max = p
        .max
        .ok_or_else(|| c.err(&base, "needs `max` (or `values`)"))?;
    check_value(c, &key("min"), name, &ParamValue::Num(min))?;
    check_value(c, &key("max"), name, &ParamValue::Num(max))?;
    c.ensure(
        min <= max,
        &key("min"),
        format!("min {min} is greater than max {max}"),
    )?;
    let scale = match p.scale.as_deref().unwrap_or("linear") {
        "linear" => Scale::Linear,
        "log" => Scale::Log,
        other => {
            return Err(c.err(
                &key("scale"),
                format!("unknown scale `{other}`, expected `linear` or `log`"),
            ))
        }
    };
    if scale == Scale::Log {
        c.ensure(
            min > 0.0,
            &key("min"),
            "a log scale needs a positive lower bound",
        )?;
        for (k, step) in [("coarse_step", p.coarse_step), ("fine_step", p.fine_step)] {
            c.ensure(
                step > 1.0,
                &key(k),
                "on a log scale the step is a factor and must be > 1",
            )?;
        }
    } else {
        for (k, step) in [("coarse_step", p.coarse_step), ("fine_step", p.fine_step)] {
            c.ensure(step > 0.0, &key(k), "the step must be positive")?;
        }
    }
    c.ensure(
        p.integer || !matches!(name, "segments" | "group_size"),
        &base,
        format!("{name} is a whole number: set `integer = true` on its range"),
    )?;
    let domain = Domain::Range {
        scale,
        min,
        max,
        integer: p.integer,
        coarse_step: p.coarse_step,
        fine_step: p.fine_step,
    };
    finish_param(c, name, p, domain)
}

/// Whether `v` is one of the values a domain allows.
fn in_domain(domain: &Domain, v: &ParamValue) -> bool {
    match (domain, v) {
        (Domain::Values { values, .. }, v) => values.contains(v),
        (Domain::Range { min, max, .. }, ParamValue::Num(x)) => *min <= *x && *x <= *max,
        _ => false,
    }
}

/// The built-in value of a known parameter (what a trial uses when nothing says otherwise).
fn builtin_value(name: &str) -> Option<ParamValue> {
    Some(match name {
        "peak_lr" => ParamValue::Num(1.0),
        "warmup_epochs" => ParamValue::Num(0.5),
        "loss_scale" => ParamValue::Text("dynamic".into()),
        "fusion_threshold_mib" => ParamValue::Num(64.0),
        _ => return None,
    })
}

/// The middle of a domain: a parameter's start when neither the file nor the built-in value gives one.
fn middle(domain: &Domain) -> ParamValue {
    match domain {
        Domain::Values { values, .. } => values[0].clone(),
        Domain::Range {
            scale,
            min,
            max,
            integer,
            ..
        } => {
            let m = match scale {
                Scale::Linear => (min + max) / 2.0,
                Scale::Log => (min * max).sqrt(),
            };
            ParamValue::Num(if *integer {
                m.round().clamp(*min, *max)
            } else {
                m
            })
        }
    }
}

/// Adds the group, start value and condition of a parameter to its checked domain.
fn finish_param(
    c: &Checker,
    name: &str,
    p: &RawParam,
    domain: Domain,
) -> Result<Param, SpaceError> {
    let key = |k: &str| format!("params.{name}.{k}");
    let effect = match p.effect.as_deref() {
        None => Effect::of_param(name),
        Some("speed") => Effect::Speed,
        Some("numerics") => Effect::Numerics,
        Some("accuracy") => Effect::Accuracy,
        Some(other) => {
            return Err(c.err(
                &key("effect"),
                format!("unknown effect `{other}`, expected speed, numerics or accuracy"),
            ))
        }
    };
    let start = match &p.start {
        Some(v) => {
            let v = to_value(c, &key("start"), v)?;
            c.ensure(
                in_domain(&domain, &v),
                &key("start"),
                format!("`{v}` is outside the parameter's values"),
            )?;
            v
        }
        None => builtin_value(name)
            .filter(|v| in_domain(&domain, v))
            .unwrap_or_else(|| middle(&domain)),
    };
    let mut when = Vec::new();
    for (other, allowed) in &p.when {
        let k = format!("params.{name}.when");
        let list = match allowed {
            toml::Value::Array(a) => a
                .iter()
                .map(|v| to_value(c, &k, v))
                .collect::<Result<Vec<_>, _>>()?,
            v => vec![to_value(c, &k, v)?],
        };
        c.ensure(
            !list.is_empty(),
            &k,
            format!("the values of `{other}` are empty"),
        )?;
        when.push((other.clone(), list));
    }
    Ok(Param {
        name: name.to_string(),
        domain,
        effect,
        start,
        when,
    })
}

/// Every condition names another searched parameter and values it can take.
fn check_conditions(c: &Checker, raw: &RawSpace, params: &[Param]) -> Result<(), SpaceError> {
    for p in params {
        let key = format!("params.{}.when", p.name);
        for (other, values) in &p.when {
            let Some(target) = params.iter().find(|q| &q.name == other) else {
                return Err(c.err(&key, format!("`{other}` is not a searched parameter")));
            };
            c.ensure(
                target.name != p.name,
                &key,
                "a parameter cannot depend on itself",
            )?;
            c.ensure(
                target.when.is_empty(),
                &key,
                format!("`{other}` has a condition itself; conditions do not chain"),
            )?;
            for v in values {
                c.ensure(
                    in_domain(&target.domain, v),
                    &key,
                    format!("`{v}` is not a value of `{other}`"),
                )?;
            }
        }
    }
    let _ = raw;
    Ok(())
}

/// `[search]`: the groups, the ladder and the halving rule.
fn check_search(
    c: &Checker,
    raw: &RawSpace,
    params: &[Param],
    stages: &Stages,
) -> Result<SearchLayout, SpaceError> {
    let s = &raw.search;
    let groups = match &s.groups {
        None => None,
        Some(names) => {
            let mut groups = Vec::new();
            for n in names {
                let g = match n.as_str() {
                    "speed" => Effect::Speed,
                    "numerics" => Effect::Numerics,
                    "accuracy" => Effect::Accuracy,
                    other => {
                        return Err(c.err(
                            "search.groups",
                            format!(
                                "unknown group `{other}`, expected speed, numerics or accuracy"
                            ),
                        ))
                    }
                };
                c.ensure(
                    !groups.contains(&g),
                    "search.groups",
                    format!("`{n}` is listed twice"),
                )?;
                groups.push(g);
            }
            for p in params {
                c.ensure(
                    groups.contains(&p.effect),
                    "search.groups",
                    format!(
                        "parameter `{}` affects {} but that group is not listed",
                        p.name,
                        p.effect.as_str()
                    ),
                )?;
            }
            Some(groups)
        }
    };
    let lr_scaling = match s.lr_scaling.as_deref().unwrap_or("sqrt") {
        "sqrt" => LrScaling::Sqrt,
        "linear" => LrScaling::Linear,
        other => {
            return Err(c.err(
                "search.lr_scaling",
                format!("unknown rule `{other}`, expected `sqrt` or `linear`"),
            ))
        }
    };
    let keep_fraction = s.keep_fraction.unwrap_or(0.5);
    c.ensure(
        keep_fraction > 0.0 && keep_fraction <= 1.0,
        "search.keep_fraction",
        "must be in (0, 1]",
    )?;
    let _ = stages;
    Ok(SearchLayout {
        groups,
        ladder: s.ladder,
        lr_scaling,
        keep_fraction,
    })
}

/// The value of every known, unsearched parameter: `[trainer.defaults]`, else the built-in default.
fn check_defaults(
    c: &Checker,
    raw: &RawSpace,
    params: &[Param],
) -> Result<Vec<(String, ParamValue)>, SpaceError> {
    for (name, value) in &raw.trainer.defaults {
        let key = format!("trainer.defaults.{name}");
        c.ensure(
            KNOWN_PARAMS.iter().any(|(k, _)| k == name),
            &key,
            "unknown parameter",
        )?;
        c.ensure(
            !TRAINER_KEY_PARAMS.contains(&name.as_str()),
            &key,
            format!("set `trainer.{name}` instead (its value when not searched)"),
        )?;
        c.ensure(
            !params.iter().any(|p| &p.name == name),
            &key,
            "this parameter is searched in [params]; remove one of the two",
        )?;
        check_value(c, &key, name, &to_value(c, &key, value)?)?;
    }
    let t = &raw.trainer;
    let mut fixed = Vec::new();
    for (name, _) in KNOWN_PARAMS {
        // Unsearched, these are `[trainer]` keys, applied by the plan (see TRAINER_KEY_PARAMS).
        if params.iter().any(|p| p.name == *name) || TRAINER_KEY_PARAMS.contains(name) {
            continue;
        }
        let key = format!("trainer.defaults.{name}");
        let value = match raw.trainer.defaults.get(*name) {
            Some(v) => to_value(c, &key, v)?,
            None => match *name {
                "peak_lr" => ParamValue::Num(1.0),
                "warmup_epochs" => ParamValue::Num(0.5),
                "loss_scale" => ParamValue::Text("dynamic".into()),
                "fusion_threshold_mib" => ParamValue::Num(64.0),
                "lars_eta" => ParamValue::Num(t.lars_eta),
                "momentum" => ParamValue::Num(t.momentum),
                _ => ParamValue::Num(t.weight_decay),
            },
        };
        fixed.push((name.to_string(), value));
    }
    Ok(fixed)
}

fn check_stages(c: &Checker, raw: &RawSpace, full_epochs: u32) -> Result<Stages, SpaceError> {
    let (co, re) = (&raw.stages.coarse, &raw.stages.refine);
    c.ensure(co.points > 0, "stages.coarse.points", "must be at least 1")?;
    c.ensure(co.epochs > 0, "stages.coarse.epochs", "must be at least 1")?;
    c.ensure(re.epochs > 0, "stages.refine.epochs", "must be at least 1")?;
    c.ensure(re.top_k > 0, "stages.refine.top_k", "must be at least 1")?;
    for (key, f) in [
        ("stages.coarse.data_fraction", co.data_fraction),
        ("stages.refine.data_fraction", re.data_fraction),
    ] {
        c.ensure(f > 0.0 && f <= 1.0, key, "must be in (0, 1]")?;
    }
    let seeded_points = co.seeded_points.unwrap_or((co.points / 2).max(1));
    c.ensure(
        seeded_points > 0,
        "stages.coarse.seeded_points",
        "must be at least 1",
    )?;
    let rounds = re.rounds.unwrap_or(1);
    c.ensure(rounds > 0, "stages.refine.rounds", "must be at least 1")?;
    let shrink = re.shrink.unwrap_or(0.5);
    c.ensure(
        shrink > 0.0 && shrink <= 1.0,
        "stages.refine.shrink",
        "must be in (0, 1]",
    )?;
    let probe = raw.stages.probe.as_ref();
    let probe_points = probe.and_then(|p| p.points).unwrap_or(co.points);
    let probe_epochs = probe.and_then(|p| p.epochs).unwrap_or(1);
    let probe_fraction = probe.and_then(|p| p.data_fraction).unwrap_or(0.1);
    c.ensure(
        probe_points > 0,
        "stages.probe.points",
        "must be at least 1",
    )?;
    c.ensure(
        probe_epochs > 0,
        "stages.probe.epochs",
        "must be at least 1",
    )?;
    c.ensure(
        probe_fraction > 0.0 && probe_fraction <= 1.0,
        "stages.probe.data_fraction",
        "must be in (0, 1]",
    )?;
    let confirm = raw.stages.confirm.as_ref();
    let confirm_top = confirm.map_or(0, |k| k.top.unwrap_or(1));
    let confirm_seeds = confirm.and_then(|k| k.seeds).unwrap_or(3);
    let confirm_epochs = confirm.and_then(|k| k.epochs).unwrap_or(full_epochs);
    let confirm_fraction = confirm.and_then(|k| k.data_fraction).unwrap_or(1.0);
    if confirm.is_some() {
        c.ensure(confirm_top > 0, "stages.confirm.top", "must be at least 1")?;
        c.ensure(
            confirm_seeds > 0,
            "stages.confirm.seeds",
            "must be at least 1",
        )?;
        c.ensure(
            confirm_epochs > 0,
            "stages.confirm.epochs",
            "must be at least 1",
        )?;
        c.ensure(
            confirm_fraction > 0.0 && confirm_fraction <= 1.0,
            "stages.confirm.data_fraction",
            "must be in (0, 1]",
        )?;
    }
    Ok(Stages {
        seeded_points,
        refine_rounds: rounds,
        refine_shrink: shrink,
        probe_points,
        probe_epochs,
        probe_fraction,
        confirm_top,
        confirm_seeds,
        confirm_epochs,
        confirm_fraction,
        coarse_points: co.points,
        coarse_epochs: co.epochs,
        coarse_fraction: co.data_fraction,
        refine_top_k: re.top_k,
        refine_points: re.points,
        refine_epochs: re.epochs,
        refine_fraction: re.data_fraction,
    })
}
