//! Fashion-MNIST: loading the IDX files and feeding batches to the trainer.

pub mod augment;
pub mod idx;
pub mod pipeline;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::TrainError;

/// Where `apt-get install dataset-fashion-mnist` puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Number of training images.
pub const TRAIN_IMAGES: usize = 60_000;
/// Number of test images.
pub const TEST_IMAGES: usize = 10_000;
/// Image side in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;
/// Mean of the training pixels scaled to [0,1].
pub const MEAN: f32 = 0.2860;
/// Standard deviation of the training pixels scaled to [0,1].
pub const STD: f32 = 0.3530;

/// File names inside the dataset folder.
const TRAIN_IMAGES_FILE: &str = "train-images-idx3-ubyte.gz";
const TRAIN_LABELS_FILE: &str = "train-labels-idx1-ubyte.gz";
const TEST_IMAGES_FILE: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS_FILE: &str = "t10k-labels-idx1-ubyte.gz";
/// The four files the data folder must hold.
pub const FILES: [&str; 4] = [
    TRAIN_IMAGES_FILE,
    TRAIN_LABELS_FILE,
    TEST_IMAGES_FILE,
    TEST_LABELS_FILE,
];

/// The raw dataset, pixels kept as bytes (normalised when a batch is gathered).
#[derive(Debug)]
pub struct Dataset {
    /// 60,000 x 784 training pixels.
    pub train_images: Vec<u8>,
    /// 60,000 training labels.
    pub train_labels: Vec<u8>,
    /// 10,000 x 784 test pixels.
    pub test_images: Vec<u8>,
    /// 10,000 test labels.
    pub test_labels: Vec<u8>,
}

/// Byte -> normalised value lookup table: (v/255 - MEAN) / STD.
pub fn normalisation_table() -> [f32; 256] {
    let mut t = [0.0f32; 256];
    for (v, out) in t.iter_mut().enumerate() {
        *out = (v as f32 / 255.0 - MEAN) / STD;
    }
    t
}

impl Dataset {
    /// Reads the four IDX files from `dir`, checking magic numbers and sizes.
    pub fn load(dir: &Path) -> Result<Dataset, TrainError> {
        if !dir.is_dir() {
            return Err(TrainError::DatasetMissing {
                path: dir.to_path_buf(),
            });
        }
        let t0 = std::time::Instant::now();
        let ds = Dataset {
            train_images: idx::read_images(&dir.join(TRAIN_IMAGES_FILE), TRAIN_IMAGES, SIDE, SIDE)?,
            train_labels: idx::read_labels(
                &dir.join(TRAIN_LABELS_FILE),
                TRAIN_IMAGES,
                CLASSES as u8,
            )?,
            test_images: idx::read_images(&dir.join(TEST_IMAGES_FILE), TEST_IMAGES, SIDE, SIDE)?,
            test_labels: idx::read_labels(&dir.join(TEST_LABELS_FILE), TEST_IMAGES, CLASSES as u8)?,
        };
        tracing::debug!(dir = %dir.display(), secs = t0.elapsed().as_secs_f64(), "loaded Fashion-MNIST");
        Ok(ds)
    }

    /// Like `load`, but keeps the last dataset in memory so that a tuner running many
    /// trials in one process decompresses the files only once.
    pub fn load_cached(dir: &Path) -> Result<Arc<Dataset>, TrainError> {
        static CACHE: Mutex<Option<(PathBuf, Arc<Dataset>)>> = Mutex::new(None);
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        // A poisoned cache only means another loader panicked; its content is still usable or empty.
        let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, ds)) = guard.as_ref() {
            if *k == key {
                return Ok(Arc::clone(ds));
            }
        }
        let ds = Arc::new(Dataset::load(dir)?);
        *guard = Some((key, Arc::clone(&ds)));
        Ok(ds)
    }

    /// All test images normalised to f32 (10,000 x 784).
    pub fn test_normalised(&self) -> Vec<f32> {
        let t = normalisation_table();
        self.test_images.iter().map(|&b| t[b as usize]).collect()
    }
}
