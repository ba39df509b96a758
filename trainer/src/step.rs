//! One optimiser step — forward, loss, backward, (fused) all-reduce, overflow check and
//! unscale, update — and the state it needs, shared by training runs and the benchmark.

use std::ops::Range;

use crate::checkpoint::{Checkpoint, RankState};
use crate::collective::in_process;
use crate::config::TrainConfig;
use crate::costmodel::Segmentation;
use crate::error::TrainError;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::precision::{all_finite, round, HalfFormat, Underflow};
use crate::ranks::auto::auto_segmentation;
use crate::ranks::exchange::Wire;
use crate::ranks::replica::Replica;
use crate::ranks::segments::{self, Segment, Segments};
use crate::ranks::{bn_stats::SharedStats, Ranks};
use crate::report::EpochReport;
use crate::scaler::LossScaler;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepOutcome {
    /// Mean training loss of the batch (unscaled).
    pub loss: f64,
    /// Whether the gradients were finite and the update was applied.
    pub applied: bool,
}

/// The ranks of a run, the optimiser and the loss scaler, advanced one step at a time.
pub(crate) struct StepState {
    /// The data-parallel replicas; rank 0's model is the one evaluated and saved.
    pub ranks: Ranks,
    /// The optimiser state.
    pub opt: Optimizer,
    /// The loss scaler.
    pub scaler: LossScaler,
    /// The half format of the compute (None in fp32).
    pub fmt: Option<HalfFormat>,
    /// Whether the weights themselves are half (fp16-naive).
    pub weights_in_half: bool,
    /// Where the gradients are split into segments and fused (resolved once per run).
    pub segmentation: Segmentation,
    /// Flat ranges and wire bytes of the gradients, to rebuild the segments on restore.
    grad_ranges: Vec<Range<usize>>,
    grad_bytes: Vec<u64>,
}

/// A freshly initialised model of `cfg` (equal on every rank: same seed).
fn build_model(cfg: &TrainConfig) -> Model {
    let mut model = Model::new(cfg.model, cfg.bn5, cfg.seed);
    let half_weights = cfg
        .precision
        .weights_in_half()
        .then_some(cfg.precision.half_format())
        .flatten();
    round(half_weights, &mut model.params.values);
    model
}

impl StepState {
    /// The initial state of a run configured by `cfg`.
    pub fn new(cfg: &TrainConfig) -> Result<StepState, TrainError> {
        let world = cfg.ranks.max(1);
        let lead = build_model(cfg);
        let ranges = lead.params.ranges_backward();
        let segmentation = resolve_segmentation(&lead, cfg)?;
        let grad_bytes = wire_bytes(&lead, cfg);
        let segments = segments::plan(
            &ranges,
            &grad_bytes,
            &segmentation.splits,
            segmentation.threshold,
        );
        let opt = Optimizer::new(cfg, lead.inventory(), &ranges);
        // the cores are shared by the ranks; one rank keeps them all (bit-identical to before)
        let threads = (cfg.threads / world).max(1);
        let mut models = vec![lead];
        models.extend((1..world).map(|_| build_model(cfg)));
        let syncs = cfg.sync_bn.then(|| SharedStats::group(world));
        let replicas = models
            .into_iter()
            .enumerate()
            .map(|(rank, mut m)| {
                if let Some(s) = &syncs {
                    m.set_bn_sync(s[rank].clone());
                }
                let mut r = Replica::new(m, cfg.seed, rank, threads);
                r.label_smoothing = cfg.label_smoothing as f32;
                r
            })
            .collect();
        let comms = in_process(world, cfg.algorithm)
            .map_err(|e| TrainError::InvalidConfig(e.to_string()))?;
        Ok(StepState {
            ranks: Ranks::new(replicas, comms, segments, Wire::of(cfg.precision))?,
            opt,
            scaler: LossScaler::new(cfg.loss_scale, cfg.precision),
            fmt: cfg.precision.half_format(),
            weights_in_half: cfg.precision.weights_in_half(),
            segmentation,
            grad_bytes,
            grad_ranges: ranges,
        })
    }

    /// Rank 0's model: the one evaluated and saved.
    pub fn model(&self) -> &Model {
        &self.ranks.lead().model
    }

    /// The state to save after `epochs_done` epochs and `step` steps (see [`crate::checkpoint`]).
    pub fn checkpoint(
        &self,
        cfg: &TrainConfig,
        epochs_done: u32,
        step: u64,
        reports: &[EpochReport],
        elapsed_secs: f64,
    ) -> Checkpoint {
        Checkpoint {
            format: crate::checkpoint::FORMAT,
            config: crate::checkpoint::identity(cfg),
            epochs_done,
            step,
            values: self.model().params.values.clone(),
            velocity: self.opt.velocity().to_vec(),
            ranks: self
                .ranks
                .replicas()
                .iter()
                .map(|r| RankState {
                    bn_running: r
                        .model
                        .bn_running_stats()
                        .into_iter()
                        .map(|(m, v)| (m.to_vec(), v.to_vec()))
                        .collect(),
                    dropout_rng: r.dropout_rng.clone(),
                })
                .collect(),
            scaler: self.scaler.clone(),
            segmentation: self.segmentation.clone(),
            reports: reports.to_vec(),
            elapsed_secs,
        }
    }

    /// Continues from a checkpoint of the same configuration.
    pub fn restore(&mut self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let mismatch =
            |what: &str| TrainError::Internal(format!("checkpoint {what} does not fit the model"));
        if ckpt.values.len() != self.model().params.values.len() {
            return Err(mismatch("weights"));
        }
        if ckpt.ranks.len() != self.ranks.world() {
            return Err(mismatch("ranks"));
        }
        if !self.opt.set_velocity(&ckpt.velocity) {
            return Err(mismatch("momentum"));
        }
        for (rep, saved) in self.ranks.replicas_mut().iter_mut().zip(&ckpt.ranks) {
            rep.model.params.values.copy_from_slice(&ckpt.values);
            let mut running = rep.model.bn_running_stats_mut();
            if running.len() != saved.bn_running.len() {
                return Err(mismatch("batch-norm statistics"));
            }
            for ((mean, var), (m, v)) in running.iter_mut().zip(&saved.bn_running) {
                if mean.len() != m.len() || var.len() != v.len() {
                    return Err(mismatch("batch-norm statistics"));
                }
                mean.copy_from_slice(m);
                var.copy_from_slice(v);
            }
            rep.dropout_rng = saved.dropout_rng.clone();
        }
        self.scaler = ckpt.scaler.clone();
        if ckpt.segmentation != self.segmentation {
            // an `auto` split is chosen from timings: the resumed run keeps the one it began with
            segments::check_splits(&ckpt.segmentation.splits, self.grad_bytes.len())
                .map_err(|_| mismatch("segments"))?;
            self.segmentation = ckpt.segmentation.clone();
            self.ranks.set_segments(segments::plan(
                &self.grad_ranges,
                &self.grad_bytes,
                &self.segmentation.splits,
                self.segmentation.threshold,
            ));
        }
        Ok(())
    }

    /// All-reduce calls one step makes under the fusion threshold.
    pub fn allreduce_calls(&self) -> u64 {
        self.ranks.allreduce_calls()
    }

    /// The format updates are rounded to (fp16-naive only).
    fn naive_fmt(&self) -> Option<HalfFormat> {
        if self.weights_in_half {
            self.fmt
        } else {
            None
        }
    }

    /// Trains on `n` images with learning rate `lr`, adding gradient underflow counts to
    /// `underflow`. A non-finite loss returns at once with nothing applied; overflowing
    /// gradients skip the update. The loss scaler is updated either way.
    pub fn step(
        &mut self,
        images: &[f32],
        labels: &[u8],
        n: usize,
        lr: f64,
        underflow: &mut Underflow,
    ) -> Result<StepOutcome, TrainError> {
        let (fmt, weights_in_half) = (self.fmt, self.weights_in_half);
        let scale = self.scaler.scale();
        // the loss gradient carries the loss scale (1 in fp32); the loss itself does not
        let loss = self
            .ranks
            .forward(images, labels, n, scale, fmt, weights_in_half);
        if !loss.is_finite() {
            return Ok(StepOutcome {
                loss,
                applied: false,
            });
        }
        underflow.add(self.ranks.backward_allreduce(fmt)?);
        let world = self.ranks.world();
        let lead = &mut self.ranks.lead_mut().model;
        let finite = fmt.is_none() || all_finite(&lead.params.grads);
        if finite {
            // one f32 division turns the sum over ranks into the mean and takes the loss scale
            // off (a division keeps non-power-of-two static scales exact to f32)
            let s = (scale * world as f64) as f32;
            if s != 1.0 {
                lead.params.grads.iter_mut().for_each(|g| *g /= s);
            }
            let naive = self.naive_fmt();
            self.opt
                .step(&mut self.ranks.lead_mut().model.params, lr, naive);
            self.ranks.broadcast_weights();
        } else {
            tracing::debug!(scale, "non-finite gradient: step skipped");
        }
        self.scaler.update(finite);
        Ok(StepOutcome {
            loss,
            applied: finite,
        })
    }
}

/// Gradient bytes per tensor on the wire (f32, or 16 bits in the half modes), backward order.
fn wire_bytes(model: &Model, cfg: &TrainConfig) -> Vec<u64> {
    model
        .inventory()
        .iter()
        .map(|p| p.numel as u64 * cfg.precision.grad_bytes())
        .collect()
}

/// Where `cfg` splits its gradients into segments and the fusion threshold inside them
/// (`auto` asks the cost model).
fn resolve_segmentation(model: &Model, cfg: &TrainConfig) -> Result<Segmentation, TrainError> {
    let bytes = wire_bytes(model, cfg);
    let splits = match &cfg.segments {
        Segments::Count(k) => segments::equal_byte_splits(&bytes, *k),
        Segments::At(at) => {
            segments::check_splits(at, bytes.len()).map_err(TrainError::InvalidConfig)?;
            at.clone()
        }
        Segments::Auto => return auto_segmentation(&bytes, cfg),
    };
    Ok(Segmentation {
        splits,
        threshold: cfg.fusion_threshold_bytes,
    })
}

/// The all-reduce segments of `seg` over `model`'s gradients (flat `ranges`, backward order).
fn plan_segments(
    model: &Model,
    ranges: &[Range<usize>],
    cfg: &TrainConfig,
    seg: &Segmentation,
) -> Vec<Segment> {
    segments::plan(ranges, &wire_bytes(model, cfg), &seg.splits, seg.threshold)
}

/// The split points and threshold `cfg`'s segments resolve to (what `auto` or a count means).
pub fn resolved_segments(cfg: &TrainConfig) -> Result<Segmentation, TrainError> {
    resolve_segmentation(&Model::new(cfg.model, cfg.bn5, cfg.seed), cfg)
}

/// `cfg` with its segments resolved to explicit split points and threshold, so that every run
/// of it (e.g. the rounds of a benchmark) uses the same split even when it was `auto`.
pub fn pinned_segments(cfg: &TrainConfig) -> Result<(TrainConfig, Segmentation), TrainError> {
    let seg = resolved_segments(cfg)?;
    let pinned = TrainConfig {
        segments: if seg.splits.is_empty() {
            Segments::Count(1)
        } else {
            Segments::At(seg.splits.clone())
        },
        fusion_threshold_bytes: seg.threshold,
        ..cfg.clone()
    };
    Ok((pinned, seg))
}

/// Number of all-reduce calls per step `seg` makes for `cfg` (without training).
pub fn allreduce_calls_per_step(cfg: &TrainConfig, seg: &Segmentation) -> u64 {
    let model = Model::new(cfg.model, cfg.bn5, cfg.seed);
    let ranges = model.params.ranges_backward();
    plan_segments(&model, &ranges, cfg, seg)
        .iter()
        .map(|s| s.buckets.len() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OptimizerKind;
    use crate::data::PIXELS;
    use crate::layers::gradcheck::{assert_close, rand_vec};

    /// A batch of random images and labels (no data set needed).
    fn batch(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let x = rand_vec(seed, n * PIXELS, 1.0);
        let labels = (0..n)
            .map(|i| ((i * 7 + seed as usize) % 10) as u8)
            .collect();
        (x, labels)
    }

    fn cfg(ranks: usize, sync_bn: bool) -> TrainConfig {
        TrainConfig {
            batch: 26,
            ranks,
            sync_bn,
            threads: 2,
            optimizer: OptimizerKind::Sgd,
            peak_lr: 0.05,
            ..TrainConfig::proxy_default("/nonexistent")
        }
    }

    /// A state whose ranks do not drop out (dropout masks are per-rank streams).
    fn state(cfg: &TrainConfig) -> StepState {
        let mut s = StepState::new(cfg).expect("state");
        s.ranks
            .replicas_mut()
            .iter_mut()
            .for_each(|r| r.model.set_dropout(0.0));
        s
    }

    fn run(s: &mut StepState, steps: usize) -> Vec<f64> {
        (0..steps)
            .map(|i| {
                let (x, y) = batch(26, 40 + i as u64);
                let out = s
                    .step(&x, &y, 26, 0.05, &mut Underflow::default())
                    .expect("step");
                assert!(out.applied);
                out.loss
            })
            .collect()
    }

    /// P ranks with synchronised BN train like one rank on the whole batch, also when the
    /// batch does not divide evenly (26 images over 4 ranks).
    #[test]
    fn synced_ranks_equal_one_rank_on_the_global_batch() {
        let mut one = state(&cfg(1, false));
        let want = run(&mut one, 3);
        for p in [2, 3, 4] {
            let mut many = state(&cfg(p, true));
            let got = run(&mut many, 3);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5 * w.abs(), "P={p}: loss {g} vs {w}");
            }
            assert_close(
                &many.model().params.values,
                &one.model().params.values,
                1e-5,
                &format!("P={p} weights"),
            );
            // every rank holds the same weights
            for r in many.ranks.replicas() {
                assert_eq!(r.model.params.values, many.model().params.values);
            }
        }
    }

    /// Per-rank BN: statistics differ between ranks, and runs are bit-identical.
    #[test]
    fn per_rank_bn_is_local_and_deterministic() {
        let c = cfg(3, false);
        let (mut a, mut b) = (state(&c), state(&c));
        assert_eq!(run(&mut a, 2), run(&mut b, 2));
        assert_eq!(a.model().params.values, b.model().params.values);
        let stats =
            |s: &StepState, r: usize| s.ranks.replicas()[r].model.bn_running_stats()[0].0.to_vec();
        assert_ne!(
            stats(&a, 0),
            stats(&a, 1),
            "ranks normalise over their own shares"
        );
        let mut one = state(&cfg(1, false));
        run(&mut one, 2);
        assert_ne!(
            one.model().params.values,
            a.model().params.values,
            "local BN is not the global batch's"
        );
    }

    /// How the gradients are cut into segments and buckets changes when they are summed,
    /// not what the sum is.
    #[test]
    fn segmentation_changes_calls_not_results() {
        let mut base = state(&cfg(2, false));
        run(&mut base, 2);
        for (segments, threshold) in [
            (Segments::Count(4), 0),
            (Segments::At(vec![2, 5, 9]), 4096),
            (Segments::Count(3), 1 << 20),
        ] {
            let c = TrainConfig {
                segments: segments.clone(),
                fusion_threshold_bytes: threshold,
                ..cfg(2, false)
            };
            let mut s = state(&c);
            assert!(s.ranks.segments().len() > 1, "{segments}");
            run(&mut s, 2);
            assert_close(
                &s.model().params.values,
                &base.model().params.values,
                1e-6,
                &format!("{segments}"),
            );
        }
        let unfused = StepState::new(&TrainConfig {
            fusion_threshold_bytes: 0,
            ..cfg(2, false)
        })
        .expect("state");
        assert_eq!(
            unfused.allreduce_calls(),
            unfused.model().inventory().len() as u64
        );
    }

    /// A run resumed from a checkpoint of P ranks continues bit-identically.
    #[test]
    fn checkpoint_of_ranks_resumes_bit_identically() {
        let c = cfg(2, false);
        let mut a = state(&c);
        run(&mut a, 1);
        let ckpt = a.checkpoint(&c, 0, 1, &[], 0.0);
        let mut b = state(&c);
        b.restore(&ckpt).expect("restore");
        assert_eq!(run(&mut a, 2), run(&mut b, 2));
        assert_eq!(a.model().params.values, b.model().params.values);
        let mut three = state(&cfg(3, false));
        assert!(
            three.restore(&ckpt).is_err(),
            "a checkpoint of 2 ranks does not fit 3"
        );
    }

    /// `auto` asks the cost model once; a resumed run keeps the checkpoint's split, and results
    /// continue bit-identically.
    #[test]
    fn auto_segments_resolve_once_and_survive_a_resume() {
        let c = TrainConfig {
            segments: Segments::Auto,
            ..cfg(2, false)
        };
        let mut a = state(&c);
        let tensors = a.model().inventory().len();
        assert!(segments::check_splits(&a.segmentation.splits, tensors).is_ok());
        assert_eq!(
            a.ranks.segments().last().map(|s| s.tensors.end),
            Some(tensors)
        );
        run(&mut a, 1);
        let mut ckpt = a.checkpoint(&c, 0, 1, &[], 0.0);
        // as if the timings had picked another split when the run began
        let mut b = state(&c);
        ckpt.segmentation = Segmentation {
            splits: vec![3, 7],
            threshold: 1024,
        };
        b.restore(&ckpt).expect("restore");
        assert_eq!(b.segmentation.splits, vec![3, 7]);
        assert_eq!(b.ranks.segments().len(), 3);
        ckpt.segmentation.splits = vec![tensors];
        assert!(
            state(&c).restore(&ckpt).is_err(),
            "split points past the end are refused"
        );
    }

    #[test]
    fn ranks_need_images_in_every_batch() {
        let c = TrainConfig {
            batch: 4,
            ranks: 8,
            ..cfg(1, false)
        };
        let e = c.validate().expect_err("8 ranks, batch 4");
        assert!(e.to_string().contains("at least 8 images"), "{e}");
        let h = TrainConfig {
            algorithm: crate::collective::Algorithm::Hierarchical { group: 3 },
            ranks: 4,
            ..cfg(1, false)
        };
        assert!(h
            .validate()
            .expect_err("group 3 of 4")
            .to_string()
            .contains("must divide"));
    }
}
