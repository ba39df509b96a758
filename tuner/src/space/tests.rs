//! The data-parallel, cluster and scheduler keys: what they parse to, and the located errors of
//! bad values and combinations.

use super::*;
use jizhi_trainer::costmodel::{Gpu, Network};
use jizhi_trainer::ranks::segments::Segments;

/// The minimal AlexNet-BN space with `trainer` added to `[trainer]` and `tail` at the end.
fn text(trainer: &str, tail: &str) -> String {
    test_space_text("alexnet-bn", trainer, tail)
}

fn ok(trainer: &str, tail: &str) -> SearchSpace {
    test_space("alexnet-bn", trainer, tail)
}

/// The error of a bad file, checked to name `key` at the line holding `on_line`.
fn refused(trainer: &str, tail: &str, key: &str, on_line: &str) -> SpaceError {
    let t = text(trainer, tail);
    let e = match parse(Path::new("s.toml"), &t) {
        Ok(_) => panic!("accepted a bad file:\n{t}"),
        Err(e) => e,
    };
    assert_eq!(e.key, key, "{e}");
    let line = t
        .lines()
        .position(|l| l.trim_start().starts_with(on_line))
        .map(|i| i + 1);
    assert_eq!(e.line, line, "{e}");
    e
}

#[test]
fn old_spaces_keep_one_ring_rank_no_cluster_and_no_scheduler_keys() {
    let s = ok("", "");
    assert_eq!(s.trainer.local, LocalRanks::default());
    assert_eq!(s.cluster, None);
    assert_eq!(s.scheduler, SchedulerKeys::default());
    // The trainer-key speed parameters are not in a trial's fixed values.
    for name in TRAINER_KEY_PARAMS {
        assert!(s.fixed.iter().all(|(n, _)| n != name), "{name} is fixed");
    }
}

#[test]
fn local_ranks_cluster_and_scheduler_keys_parse() {
    let s = ok(
        "local_ranks = 4\nsync_bn = true\nalgorithm = \"hybrid\"\ngroup_size = 2\nhybrid_threshold_mib = 0.5\nsegments = [3, 9]",
        "[cluster]\ngpu = \"h200\"\nnetwork = \"ib-ndr\"\n\n[scheduler]\nconcurrency = 3\ntrial_timeout = \"1h30m\"\nstall_timeout = 90\nmax_retries = 0\nlauncher = \"srun -N1 -n1\"\n",
    );
    let local = &s.trainer.local;
    assert_eq!(local.ranks, 4);
    assert!(local.sync_bn);
    assert_eq!(local.algorithm, AlgorithmName::Hybrid);
    assert_eq!(local.group_size, Some(2));
    assert_eq!(local.hybrid_threshold_bytes, 512 * 1024);
    assert_eq!(local.segments, Segments::At(vec![3, 9]));
    assert_eq!(
        s.cluster,
        Some(ModelledCluster {
            gpus: 1024,
            gpu: Gpu::H200,
            network: Network::IbNdr
        })
    );
    assert_eq!(
        s.scheduler,
        SchedulerKeys {
            concurrency: Some(3),
            trial_timeout_secs: Some(5400.0),
            stall_timeout_secs: Some(90.0),
            max_retries: Some(0),
            launcher: Some(vec!["srun".into(), "-N1".into(), "-n1".into()]),
        }
    );
    assert_eq!(
        ok("segments = \"auto\"", "").trainer.local.segments,
        Segments::Auto
    );
    assert_eq!(
        ok("segments = 4", "").trainer.local.segments,
        Segments::Count(4)
    );
}

#[test]
fn searched_speed_parameters_are_in_the_speed_group() {
    let s = ok(
        "local_ranks = 2",
        "[params.segments]\nvalues = [1, 4, \"auto\", \"at:3,9\"]\ncoarse_step = 1\nfine_step = 1\n\n\
         [params.algorithm]\nvalues = [\"ring\", \"hierarchical\"]\ncoarse_step = 1\nfine_step = 1\n\n\
         [params.group_size]\nvalues = [1, 2]\ncoarse_step = 1\nfine_step = 1\n\n\
         [params.fusion_threshold_mib]\nscale = \"log\"\nmin = 1.0\nmax = 64.0\ncoarse_step = 4.0\nfine_step = 2.0\n",
    );
    for name in [
        "segments",
        "algorithm",
        "group_size",
        "fusion_threshold_mib",
    ] {
        let p = s.params.iter().find(|p| p.name == name).expect("searched");
        assert_eq!(p.effect, Effect::Speed, "{name}");
    }
    assert_eq!(
        segments_of(&ParamValue::Text("at:3,9".into())),
        Some(Segments::At(vec![3, 9]))
    );
    assert_eq!(segments_of(&ParamValue::Num(2.5)), None);
    assert_eq!(segments_of(&ParamValue::Text("at:9,3".into())), None);
}

#[test]
fn bad_local_rank_keys_are_located() {
    refused("local_ranks = 0", "", "trainer.local_ranks", "local_ranks");
    refused("algorithm = \"tree\"", "", "trainer.algorithm", "algorithm");
    refused("segments = 0", "", "trainer.segments", "segments");
    refused("segments = [9, 3]", "", "trainer.segments", "segments");
    refused("segments = \"many\"", "", "trainer.segments", "segments");
    refused(
        "hybrid_threshold_mib = -1.0",
        "",
        "trainer.hybrid_threshold_mib",
        "hybrid_threshold_mib",
    );
    let e = refused(
        "algorithm = \"hierarchical\"",
        "",
        "trainer.algorithm",
        "algorithm",
    );
    assert!(e.message.contains("group_size"), "{e}");
}

#[test]
fn split_indices_must_fall_inside_the_trained_models_tensors() {
    // The 28×28 AlexNet-BN proxy has 28 gradient tensors: weight and bias of 5 convolutions and
    // 3 linear layers, γ and β of 6 BNs.
    assert_eq!(
        ok("segments = [3, 27]", "").trainer.local.segments,
        Segments::At(vec![3, 27])
    );
    let e = refused("segments = [3, 28]", "", "trainer.segments", "segments");
    assert!(e.message.contains("28 gradient tensors"), "{e}");
    let e = refused(
        "",
        "[params.segments]\nvalues = [1, \"at:3,90\"]\ncoarse_step = 1\nfine_step = 1\n",
        "params.segments",
        "[params.segments]",
    );
    assert!(e.message.contains("alexnet-bn-proxy"), "{e}");
}

#[test]
fn group_sizes_must_divide_the_local_ranks_and_the_cluster() {
    let e = refused(
        "local_ranks = 4\nalgorithm = \"hierarchical\"\ngroup_size = 3",
        "",
        "trainer.group_size",
        "group_size",
    );
    assert!(e.message.contains("does not divide the 4 ranks"), "{e}");
    let e = refused(
        "local_ranks = 2",
        "[params.algorithm]\nvalues = [\"ring\", \"hybrid\"]\ncoarse_step = 1\nfine_step = 1\n\n\
         [params.group_size]\nvalues = [1, 2, 4]\ncoarse_step = 1\nfine_step = 1\n",
        "params.group_size",
        "[params.group_size]",
    );
    assert!(e.message.contains("group size 4"), "{e}");
    // 1024 GPUs split into groups of 3 does not work even if 3 local ranks do.
    let e = refused(
        "local_ranks = 3\nalgorithm = \"hierarchical\"\ngroup_size = 3",
        "[cluster]\ngpu = \"p40\"\nnetwork = \"100gbe\"\n",
        "trainer.group_size",
        "group_size",
    );
    assert!(e.message.contains("modelled cluster"), "{e}");
    // Searching a group size no algorithm uses is refused.
    refused(
        "local_ranks = 2",
        "[params.group_size]\nvalues = [1, 2]\ncoarse_step = 1\nfine_step = 1\n",
        "params.group_size",
        "[params.group_size]",
    );
}

#[test]
fn bad_speed_parameter_values_are_located() {
    refused(
        "",
        "[params.segments]\nvalues = [1, 2.5]\ncoarse_step = 1\nfine_step = 1\n",
        "params.segments.values",
        "values",
    );
    refused(
        "",
        "[params.segments]\nscale = \"log\"\nmin = 1.0\nmax = 8.0\ncoarse_step = 2.0\nfine_step = 2.0\n",
        "params.segments",
        "[params.segments]",
    );
    refused(
        "",
        "[params.algorithm]\nvalues = [\"ring\", \"star\"]\ncoarse_step = 1\nfine_step = 1\n",
        "params.algorithm.values",
        "values",
    );
    refused(
        "",
        "[trainer.defaults]\nsegments = 2\n",
        "trainer.defaults.segments",
        "segments",
    );
}

#[test]
fn bad_cluster_and_scheduler_keys_are_located() {
    refused(
        "",
        "[cluster]\ngpu = \"v100\"\nnetwork = \"100gbe\"\n",
        "cluster.gpu",
        "gpu",
    );
    refused(
        "",
        "[cluster]\ngpu = \"p40\"\nnetwork = \"carrier-pigeon\"\n",
        "cluster.network",
        "network",
    );
    refused(
        "",
        "[scheduler]\nconcurrency = 0\n",
        "scheduler.concurrency",
        "concurrency",
    );
    refused(
        "",
        "[scheduler]\ntrial_timeout = \"soon\"\n",
        "scheduler.trial_timeout",
        "trial_timeout",
    );
    refused(
        "",
        "[scheduler]\nstall_timeout = -3\n",
        "scheduler.stall_timeout",
        "stall_timeout",
    );
    refused(
        "",
        "[scheduler]\nlauncher = \"  \"\n",
        "scheduler.launcher",
        "launcher",
    );
    refused(
        "",
        "[scheduler]\nmax_retries = -1\n",
        "scheduler.max_retries",
        "max_retries",
    );
    refused(
        "",
        "[scheduler]\nconcurency = 2\n",
        "scheduler.concurency",
        "concurency",
    );
}
