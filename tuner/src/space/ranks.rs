//! The data-parallel keys: each trial's in-process ranks (`[trainer]` `local_ranks`, `sync_bn`,
//! `algorithm`, `group_size`, `hybrid_threshold_mib`, `segments`), the modelled cluster
//! (`[cluster]`), and the combinations of the two with the searched speed parameters.

use super::schema::{RawSpace, RawTrainer};
use super::validate::Checker;
use super::*;
use jizhi_trainer::costmodel::{Gpu, Network};
use jizhi_trainer::ranks::segments::Segments;

/// The most ranks a trial may run (the trainer's limit).
const MAX_LOCAL_RANKS: i64 = 4096;

/// `[trainer]`'s local-rank keys, each checked on its own.
pub(super) fn check_local(c: &Checker, t: &RawTrainer) -> Result<LocalRanks, SpaceError> {
    c.ensure(
        (1..=MAX_LOCAL_RANKS).contains(&t.local_ranks),
        "trainer.local_ranks",
        format!("must be in 1..={MAX_LOCAL_RANKS}"),
    )?;
    let algorithm = match t.algorithm.as_deref() {
        None => AlgorithmName::Ring,
        Some(name) => AlgorithmName::parse(name).ok_or_else(|| {
            c.err(
                "trainer.algorithm",
                format!("unknown algorithm `{name}`, expected ring, hierarchical or hybrid"),
            )
        })?,
    };
    if let Some(k) = t.group_size {
        c.ensure(k >= 1, "trainer.group_size", "must be at least 1")?;
    }
    let hybrid_threshold_bytes = match t.hybrid_threshold_mib {
        None => DEFAULT_HYBRID_THRESHOLD_BYTES,
        Some(mib) => {
            c.ensure(
                mib.is_finite() && mib >= 0.0,
                "trainer.hybrid_threshold_mib",
                "must be a number of MiB >= 0",
            )?;
            (mib * 1024.0 * 1024.0).round() as u64
        }
    };
    let segments = match &t.segments {
        None => Segments::Count(1),
        Some(v) => trainer_segments(c, v)?,
    };
    Ok(LocalRanks {
        ranks: t.local_ranks as usize,
        sync_bn: t.sync_bn,
        algorithm,
        group_size: t.group_size.map(|k| k as usize),
        hybrid_threshold_bytes,
        segments,
    })
}

/// `trainer.segments`: a count, a list of split indices, or `"auto"`.
fn trainer_segments(c: &Checker, v: &toml::Value) -> Result<Segments, SpaceError> {
    const KEY: &str = "trainer.segments";
    const EXPECTED: &str = "expected a whole number >= 1 (segments of equal bytes), a list of \
                            ascending split indices >= 1 such as [3, 9], or \"auto\"";
    let segments = match v {
        toml::Value::Integer(n) if *n >= 1 => Segments::Count(*n as usize),
        toml::Value::String(s) if s == "auto" => Segments::Auto,
        toml::Value::Array(items) => {
            let mut at = Vec::new();
            for item in items {
                match item.as_integer() {
                    Some(i) if i >= 1 => at.push(i as usize),
                    _ => {
                        return Err(c.err(KEY, format!("`{item}` is not a split index: {EXPECTED}")))
                    }
                }
            }
            c.ensure(
                !at.is_empty(),
                KEY,
                "the list of split indices is empty (1 means no split)",
            )?;
            c.ensure(
                at.windows(2).all(|w| w[0] < w[1]),
                KEY,
                "split indices must be ascending",
            )?;
            Segments::At(at)
        }
        other => return Err(c.err(KEY, format!("`{other}` is not allowed: {EXPECTED}"))),
    };
    Ok(segments)
}

/// `[cluster]`: the GPU and network of the `ranks` GPUs every trial is modelled on.
pub(super) fn check_cluster(
    c: &Checker,
    raw: &RawSpace,
    ranks: u32,
) -> Result<Option<ModelledCluster>, SpaceError> {
    let Some(cl) = &raw.cluster else {
        return Ok(None);
    };
    let gpu = Gpu::from_name(&cl.gpu).ok_or_else(|| {
        c.err(
            "cluster.gpu",
            format!("unknown GPU `{}`, expected p40 or h200", cl.gpu),
        )
    })?;
    let network = Network::from_name(&cl.network).ok_or_else(|| {
        let names: Vec<&str> = Network::ALL.iter().map(|n| n.name()).collect();
        c.err(
            "cluster.network",
            format!(
                "unknown network `{}`, expected {}",
                cl.network,
                names.join(", ")
            ),
        )
    })?;
    Ok(Some(ModelledCluster {
        gpus: ranks as usize,
        gpu,
        network,
    }))
}

/// Every value a searched parameter can take: its list, or each whole number of its range.
fn possible_values(p: &Param) -> Vec<ParamValue> {
    match &p.domain {
        Domain::Values { values, .. } => values.clone(),
        Domain::Range { min, max, .. } => {
            let (lo, hi) = (min.ceil() as i64, max.floor() as i64);
            (lo..=hi).map(|v| ParamValue::Num(v as f64)).collect()
        }
    }
}

/// Every list of split indices (fixed in `trainer.segments` or among the searched `segments`
/// values) cuts inside the gradient tensors of the model the trials train, so no trial fails
/// on it after the study has started.
pub(super) fn check_segment_splits(
    c: &Checker,
    trainer: &TrainerSetup,
    params: &[Param],
) -> Result<(), SpaceError> {
    let mut lists: Vec<(&str, Vec<usize>)> = Vec::new();
    if let Segments::At(at) = &trainer.local.segments {
        lists.push(("trainer.segments", at.clone()));
    }
    if let Some(p) = params.iter().find(|p| p.name == "segments") {
        for v in possible_values(p) {
            if let Some(Segments::At(at)) = super::segments_of(&v) {
                lists.push(("params.segments", at));
            }
        }
    }
    if lists.is_empty() {
        return Ok(());
    }
    let kind = trainer.model.proxy();
    let tensors = jizhi_trainer::model::Model::new(kind, trainer.bn5, 0)
        .inventory()
        .len();
    for (key, at) in lists {
        if let Err(why) = jizhi_trainer::ranks::segments::check_splits(&at, tensors) {
            return Err(c.err(
                key,
                format!("{why} ({} has {tensors} gradient tensors)", kind.name()),
            ));
        }
    }
    Ok(())
}

/// The algorithm and group size of every trial fit the local ranks and the modelled cluster:
/// a grouped algorithm has a group size, and every group size it may meet divides both.
pub(super) fn check_combinations(
    c: &Checker,
    trainer: &TrainerSetup,
    params: &[Param],
    cluster: Option<&ModelledCluster>,
) -> Result<(), SpaceError> {
    let searched = |name: &str| params.iter().find(|p| p.name == name);
    let (algorithms, algorithm_key) = match searched("algorithm") {
        Some(p) => (
            possible_values(p)
                .iter()
                .filter_map(|v| match v {
                    ParamValue::Text(s) => AlgorithmName::parse(s),
                    ParamValue::Num(_) => None,
                })
                .collect::<Vec<_>>(),
            "params.algorithm",
        ),
        None => (vec![trainer.local.algorithm], "trainer.algorithm"),
    };
    let grouped = algorithms.iter().find(|a| a.grouped());
    let group_param = searched("group_size");
    let Some(grouped) = grouped else {
        c.ensure(
            group_param.is_none(),
            "params.group_size",
            format!(
                "no searched or fixed algorithm works in groups (`{algorithm_key}` allows only ring): \
                 searching the group size would change nothing"
            ),
        )?;
        return Ok(());
    };
    let (sizes, size_key): (Vec<usize>, &str) = match (group_param, trainer.local.group_size) {
        (Some(p), _) => (
            possible_values(p)
                .iter()
                .filter_map(|v| match v {
                    ParamValue::Num(k) => Some(*k as usize),
                    ParamValue::Text(_) => None,
                })
                .collect(),
            "params.group_size",
        ),
        (None, Some(k)) => (vec![k], "trainer.group_size"),
        (None, None) => {
            return Err(c.err(
                algorithm_key,
                format!(
                    "algorithm `{}` works in groups of ranks: set `trainer.group_size` or search `params.group_size`",
                    grouped.as_str()
                ),
            ))
        }
    };
    let local = trainer.local.ranks;
    for k in sizes {
        c.ensure(
            k >= 1 && local.is_multiple_of(k),
            size_key,
            format!("group size {k} does not divide the {local} ranks of a trial (`trainer.local_ranks`)"),
        )?;
        if let Some(cl) = cluster {
            c.ensure(
                cl.gpus.is_multiple_of(k),
                size_key,
                format!(
                    "group size {k} does not divide the {} GPUs of the modelled cluster (`trainer.ranks`)",
                    cl.gpus
                ),
            )?;
        }
    }
    Ok(())
}
