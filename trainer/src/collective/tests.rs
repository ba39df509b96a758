//! Every algorithm of the in-process communicator against a serial reference sum.

use super::{in_process, Algorithm, Collective, CollectiveError, Payload, ReduceOptions};
use half::{bf16, f16};
use std::sync::mpsc;
use std::time::Duration;

const WORLDS: [usize; 6] = [1, 2, 3, 4, 8, 16];
const LENGTHS: [usize; 9] = [0, 1, 2, 7, 15, 17, 255, 1001, 4099];

/// Runs `body` on every rank of a new communicator, one thread each; panics if the ranks do
/// not all finish within a minute (a hang is a failure, not a stuck test run).
fn on_ranks<R: Send + 'static>(
    world: usize,
    algorithm: Algorithm,
    body: impl Fn(&mut dyn Collective) -> R + Send + Sync + Clone + 'static,
) -> Vec<R> {
    let ranks = in_process(world, algorithm).expect("valid communicator");
    let (tx, rx) = mpsc::channel();
    for mut rank in ranks {
        let (tx, body) = (tx.clone(), body.clone());
        std::thread::spawn(move || {
            let r = rank.rank();
            let out = body(rank.as_mut());
            let _ = tx.send((r, out));
        });
    }
    drop(tx);
    let mut out: Vec<Option<R>> = (0..world).map(|_| None).collect();
    for _ in 0..world {
        let (r, v) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every rank finishes (no hang, no panic)");
        out[r] = Some(v);
    }
    out.into_iter()
        .map(|v| v.expect("one result per rank"))
        .collect()
}

fn algorithms(world: usize) -> Vec<Algorithm> {
    let mut out = vec![Algorithm::Ring];
    for group in (1..=world).filter(|g| world % g == 0) {
        out.push(Algorithm::Hierarchical { group });
        // Small messages of the sweep go hierarchical, large ones the ring.
        out.push(Algorithm::Hybrid {
            group,
            threshold: 64,
        });
    }
    out
}

/// Small integers that every payload type holds exactly, as do their sums over 16 ranks.
fn integer(rank: usize, i: usize) -> f32 {
    ((rank * 7 + i * 13) % 17) as f32 - 8.0
}

/// Values in [-1, 1) that are not integers, from a fixed hash of (rank, i).
fn fraction(rank: usize, i: usize) -> f32 {
    let h = (rank as u64 * 0x9E37_79B9 + i as u64 * 0x85EB_CA6B).wrapping_mul(0xC2B2_AE35);
    ((h >> 8) % 20001) as f32 / 10000.0 - 1.0
}

/// One rank's results: for every length, the f32, f16 and bf16 sums as f64 plus their bits.
type Sums = Vec<[(Vec<f64>, Vec<u32>); 3]>;

fn reduce_all(c: &mut dyn Collective, value: fn(usize, usize) -> f32) -> Sums {
    let r = c.rank();
    LENGTHS
        .iter()
        .map(|&n| {
            let mut a: Vec<f32> = (0..n).map(|i| value(r, i)).collect();
            let mut h: Vec<f16> = (0..n).map(|i| f16::from_f32(value(r, i))).collect();
            let mut b: Vec<bf16> = (0..n).map(|i| bf16::from_f32(value(r, i))).collect();
            c.all_reduce(Payload::F32(&mut a)).expect("f32 all-reduce");
            c.all_reduce(Payload::F16(&mut h)).expect("f16 all-reduce");
            c.all_reduce(Payload::Bf16(&mut b))
                .expect("bf16 all-reduce");
            [
                (
                    a.iter().map(|&v| v as f64).collect(),
                    a.iter().map(|v| v.to_bits()).collect(),
                ),
                (
                    h.iter().map(|v| v.to_f64()).collect(),
                    h.iter().map(|v| v.to_bits() as u32).collect(),
                ),
                (
                    b.iter().map(|v| v.to_f64()).collect(),
                    b.iter().map(|v| v.to_bits() as u32).collect(),
                ),
            ]
        })
        .collect()
}

/// The serial reference: inputs rounded to the payload type, summed in f64.
fn reference(
    world: usize,
    n: usize,
    value: fn(usize, usize) -> f32,
    ty: usize,
) -> (Vec<f64>, Vec<f64>) {
    let round = |v: f32| match ty {
        0 => v as f64,
        1 => f16::from_f32(v).to_f64(),
        _ => bf16::from_f32(v).to_f64(),
    };
    let sum = (0..n)
        .map(|i| (0..world).map(|r| round(value(r, i))).sum())
        .collect();
    let abs = (0..n)
        .map(|i| (0..world).map(|r| round(value(r, i)).abs()).sum())
        .collect();
    (sum, abs)
}

fn check(world: usize, algorithm: Algorithm, value: fn(usize, usize) -> f32, exact: bool) {
    let results = on_ranks(world, algorithm, move |c| reduce_all(c, value));
    for (li, &n) in LENGTHS.iter().enumerate() {
        for ty in 0..3 {
            let (want, abs) = reference(world, n, value, ty);
            let eps = [f32::EPSILON as f64, 2f64.powi(-10), 2f64.powi(-7)][ty];
            let (got, bits) = &results[0][li][ty];
            for i in 0..n {
                let tol = if exact {
                    0.0
                } else {
                    world as f64 * eps * abs[i]
                };
                assert!(
                    (got[i] - want[i]).abs() <= tol,
                    "{algorithm:?} P={world} n={n} type {ty} element {i}: got {} want {} (tolerance {tol})",
                    got[i],
                    want[i]
                );
            }
            for (r, rank) in results.iter().enumerate() {
                assert_eq!(
                    &rank[li][ty].1, bits,
                    "{algorithm:?} P={world} n={n} type {ty}: rank {r} differs from rank 0"
                );
            }
        }
    }
}

#[test]
fn every_algorithm_sums_integers_exactly_on_every_rank() {
    for world in WORLDS {
        for algorithm in algorithms(world) {
            check(world, algorithm, integer, true);
        }
    }
}

#[test]
fn every_algorithm_sums_fractions_within_rounding_on_every_rank() {
    for world in WORLDS {
        for algorithm in algorithms(world) {
            check(world, algorithm, fraction, false);
        }
    }
}

#[test]
fn results_are_bit_identical_run_to_run() {
    for algorithm in [
        Algorithm::Ring,
        Algorithm::Hierarchical { group: 4 },
        Algorithm::Hybrid {
            group: 2,
            threshold: 4096,
        },
    ] {
        let bits = |s: &Sums| -> Vec<Vec<u32>> {
            s.iter()
                .flat_map(|l| l.iter().map(|(_, b)| b.clone()))
                .collect()
        };
        let first: Vec<_> = on_ranks(8, algorithm, |c| reduce_all(c, fraction))
            .iter()
            .map(bits)
            .collect();
        let second: Vec<_> = on_ranks(8, algorithm, |c| reduce_all(c, fraction))
            .iter()
            .map(bits)
            .collect();
        assert_eq!(first, second, "{algorithm:?}");
    }
}

#[test]
fn group_sizes_that_do_not_divide_the_world_are_refused() {
    for algorithm in [
        Algorithm::Hierarchical { group: 3 },
        Algorithm::Hybrid {
            group: 3,
            threshold: 1,
        },
    ] {
        match in_process(8, algorithm) {
            Err(CollectiveError::Invalid(why)) => {
                assert!(
                    why.contains("group size 3") && why.contains("world size 8"),
                    "{why}"
                )
            }
            other => panic!("expected Invalid, got {:?}", other.map(|v| v.len())),
        }
    }
    assert!(matches!(
        in_process(4, Algorithm::Hierarchical { group: 0 }),
        Err(CollectiveError::Invalid(_))
    ));
    assert!(matches!(
        in_process(0, Algorithm::Ring),
        Err(CollectiveError::Invalid(_))
    ));
}

#[test]
fn ranks_that_disagree_on_length_or_type_get_mismatch_and_can_go_on() {
    let out = on_ranks(3, Algorithm::Ring, |c| {
        let mut v = vec![1.0f32; 4 + c.rank()];
        let first = c.all_reduce(Payload::F32(&mut v));
        let mut h = vec![f16::ONE; 4];
        let mut f = vec![1.0f32; 4];
        let second = if c.rank() == 1 {
            c.all_reduce(Payload::F16(&mut h))
        } else {
            c.all_reduce(Payload::F32(&mut f))
        };
        let mut w = vec![2.0f32; 5];
        c.all_reduce(Payload::F32(&mut w))
            .expect("the communicator still works");
        (first, second, v, w)
    });
    for (first, second, v, w) in out {
        assert!(
            matches!(&first, Err(CollectiveError::Mismatch(m)) if m.contains("rank 2: 6 f32")),
            "{first:?}"
        );
        assert!(
            matches!(&second, Err(CollectiveError::Mismatch(m)) if m.contains("rank 1: 4 f16")),
            "{second:?}"
        );
        assert!(
            v.iter().all(|&x| x == 1.0),
            "a refused call leaves the data alone"
        );
        assert_eq!(w, vec![6.0; 5]);
    }
}

#[test]
fn a_dropped_rank_makes_the_others_fail_instead_of_hanging() {
    for algorithm in [Algorithm::Ring, Algorithm::Hierarchical { group: 2 }] {
        let out = on_ranks(4, algorithm, |c| {
            if c.rank() == 3 {
                // Leave after the others are already waiting for us.
                std::thread::sleep(Duration::from_millis(50));
                return None;
            }
            let mut v = vec![1.0f32; 1000];
            Some(c.all_reduce(Payload::F32(&mut v)))
        });
        for r in out.into_iter().flatten() {
            assert!(
                matches!(&r, Err(CollectiveError::PeerFailed(m)) if m.contains("rank 3")),
                "{r:?}"
            );
        }
    }
}

#[test]
fn a_panicking_rank_makes_the_others_fail_instead_of_hanging() {
    let ranks = in_process(4, Algorithm::Ring).expect("valid");
    let handles: Vec<_> = ranks
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut v = vec![1.0f32; 333];
                c.all_reduce(Payload::F32(&mut v))
                    .expect("first call succeeds");
                assert_eq!(v, vec![4.0; 333]);
                if c.rank() == 2 {
                    panic!("rank 2 fails between two all-reduces");
                }
                (0..3).map(|_| c.all_reduce(Payload::F32(&mut v))).last()
            })
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handles.into_iter().map(|h| h.join()).collect::<Vec<_>>());
    });
    let joined = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no rank hangs");
    for (r, j) in joined.into_iter().enumerate() {
        match j {
            Err(_) => assert_eq!(r, 2, "only rank 2 panics"),
            Ok(Some(res)) => {
                assert!(
                    matches!(&res, Err(CollectiveError::PeerFailed(m)) if m.contains("rank 2 panicked")),
                    "{res:?}"
                )
            }
            Ok(None) => unreachable!("three calls were made"),
        }
    }
}

#[test]
fn fp16_sums_overflow_to_infinity_unless_prescaled() {
    for algorithm in [
        Algorithm::Ring,
        Algorithm::Hierarchical { group: 2 },
        Algorithm::Hybrid {
            group: 4,
            threshold: 1 << 20,
        },
    ] {
        let out = on_ranks(4, algorithm, |c| {
            let sign = |i: usize| if i % 2 == 0 { 1.0 } else { -1.0 };
            let mut plain: Vec<f16> = (0..9).map(|i| f16::from_f32(30000.0 * sign(i))).collect();
            let mut mean = plain.clone();
            let mut brain: Vec<bf16> = (0..9).map(|i| bf16::from_f32(30000.0 * sign(i))).collect();
            c.all_reduce(Payload::F16(&mut plain)).expect("sum");
            c.all_reduce_with(Payload::F16(&mut mean), ReduceOptions { prescale: true })
                .expect("mean");
            c.all_reduce(Payload::Bf16(&mut brain)).expect("bf16 sum");
            (plain, mean, brain)
        });
        for (plain, mean, brain) in out {
            for i in 0..9 {
                let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                assert_eq!(
                    plain[i],
                    f16::from_f32(s * f32::INFINITY),
                    "{algorithm:?}: 4 × 30000 overflows fp16"
                );
                assert_eq!(
                    mean[i],
                    f16::from_f32(s * 30000.0),
                    "{algorithm:?}: divided by P first, the mean fits"
                );
                assert_eq!(
                    brain[i],
                    bf16::from_f32(s * 120_000.0),
                    "{algorithm:?}: bf16 has the range"
                );
            }
        }
    }
}

#[test]
fn prescale_gives_the_mean_and_is_a_no_op_on_one_rank() {
    let out = on_ranks(3, Algorithm::Ring, |c| {
        let mut v = vec![3.0f32 * (c.rank() + 1) as f32; 10];
        c.all_reduce_with(Payload::F32(&mut v), ReduceOptions { prescale: true })
            .expect("mean");
        v
    });
    assert!(out.iter().all(|v| v == &vec![6.0; 10]));
    let one = on_ranks(1, Algorithm::Ring, |c| {
        let mut v = vec![5.0f32; 3];
        c.all_reduce_with(Payload::F32(&mut v), ReduceOptions { prescale: true })
            .expect("mean");
        v
    });
    assert_eq!(one[0], vec![5.0; 3]);
}
