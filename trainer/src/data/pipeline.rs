//! Background input pipeline: a producer thread shuffles, gathers and normalises the next
//! batches into contiguous buffers while the compute threads work on the current one.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{augment, normalisation_table, Dataset, PIXELS};
use crate::error::TrainError;

/// RNG stream used to pick the training subset (independent of init and dropout streams).
const SUBSET_STREAM: u64 = 1;
/// RNG stream used for the per-epoch reshuffle.
const SHUFFLE_STREAM: u64 = 2;
/// RNG stream of the augmentation choices (seeded per epoch, so a resumed run draws the same).
const AUGMENT_STREAM: u64 = 4;
/// Batches prepared ahead of the compute (bounded so memory stays small at large batch).
const CAPACITY: usize = 3;

/// One training batch, normalised, in NHWC (= N x 784 for one channel).
#[derive(Debug)]
pub struct Batch {
    /// 0-based epoch this batch belongs to.
    pub epoch: u32,
    /// Number of images in this batch.
    pub len: usize,
    /// `len * 784` normalised pixels.
    pub images: Vec<f32>,
    /// `len` labels.
    pub labels: Vec<u8>,
}

/// The seeded-shuffled first `len` indices of the training set.
pub fn subset_indices(seed: u64, len: usize) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SUBSET_STREAM);
    let mut all: Vec<u32> = (0..super::TRAIN_IMAGES as u32).collect();
    all.shuffle(&mut rng);
    all.truncate(len.min(super::TRAIN_IMAGES));
    all
}

/// Handle on the producer thread; yields batches in a deterministic order.
pub struct Pipeline {
    rx: Option<Receiver<Batch>>,
    recycle: Sender<(Vec<f32>, Vec<u8>)>,
    handle: Option<JoinHandle<()>>,
    waited: Duration,
}

impl Pipeline {
    /// Starts producing epochs `first_epoch..epochs` (0-based) of `batch`-sized batches over
    /// `subset`, reshuffled every epoch (and augmented if `augment`); what an epoch delivers does
    /// not depend on `first_epoch`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        data: Arc<Dataset>,
        subset: Vec<u32>,
        batch: usize,
        epochs: u32,
        first_epoch: u32,
        augment: bool,
        seed: u64,
    ) -> Result<Pipeline, TrainError> {
        let (tx, rx) = mpsc::sync_channel::<Batch>(CAPACITY);
        let (recycle, recycled) = mpsc::channel::<(Vec<f32>, Vec<u8>)>();
        let handle = std::thread::Builder::new()
            .name("jizhi-input".into())
            .spawn(move || {
                produce(
                    &data,
                    subset,
                    batch.max(1),
                    first_epoch..epochs,
                    augment,
                    seed,
                    &tx,
                    &recycled,
                )
            })
            .map_err(|e| TrainError::Internal(format!("cannot spawn the input thread: {e}")))?;
        Ok(Pipeline {
            rx: Some(rx),
            recycle,
            handle: Some(handle),
            waited: Duration::ZERO,
        })
    }

    /// The next batch, or `None` once every epoch has been delivered.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let t0 = Instant::now();
        let b = self.rx.as_ref()?.recv().ok();
        self.waited += t0.elapsed();
        b
    }

    /// Hands a consumed batch's buffers back to the producer to avoid re-allocating them.
    pub fn recycle(&self, b: Batch) {
        // The producer may already be done; then the buffers are simply dropped.
        let _ = self.recycle.send((b.images, b.labels));
    }

    /// Total time spent blocked in `next_batch` so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail, so it stops early.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Producer loop: runs on the input thread.
#[allow(clippy::too_many_arguments)]
fn produce(
    data: &Dataset,
    mut order: Vec<u32>,
    batch: usize,
    epochs: std::ops::Range<u32>,
    augment: bool,
    seed: u64,
    tx: &SyncSender<Batch>,
    recycled: &Receiver<(Vec<f32>, Vec<u8>)>,
) {
    let table = normalisation_table();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SHUFFLE_STREAM);
    for epoch in 0..epochs.end {
        // every epoch's shuffle is drawn, delivered or not, so epoch k's order is always the same
        order.shuffle(&mut rng);
        if epoch < epochs.start {
            continue;
        }
        let mut aug_rng = ChaCha8Rng::seed_from_u64(
            seed ^ (u64::from(epoch) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        aug_rng.set_stream(AUGMENT_STREAM);
        for idx in order.chunks(batch) {
            let (mut images, mut labels) = recycled.try_recv().unwrap_or_default();
            images.resize(idx.len() * PIXELS, 0.0);
            labels.resize(idx.len(), 0);
            for ((&i, dst), lab) in idx
                .iter()
                .zip(images.chunks_exact_mut(PIXELS))
                .zip(labels.iter_mut())
            {
                let i = i as usize;
                let src = &data.train_images[i * PIXELS..(i + 1) * PIXELS];
                if augment {
                    augment::apply(src, dst, &table, augment::Choice::draw(&mut aug_rng));
                } else {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = table[s as usize];
                    }
                }
                *lab = data.train_labels[i];
            }
            if tx
                .send(Batch {
                    epoch,
                    len: idx.len(),
                    images,
                    labels,
                })
                .is_err()
            {
                return; // consumer stopped (divergence or error)
            }
        }
    }
}
