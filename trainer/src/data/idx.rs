//! Reader for the gzip-compressed IDX files of (Fashion-)MNIST.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::TrainError;

/// Magic number of an unsigned-byte IDX file with 3 dimensions (images).
const MAGIC_IMAGES: u32 = 0x0000_0803;
/// Magic number of an unsigned-byte IDX file with 1 dimension (labels).
const MAGIC_LABELS: u32 = 0x0000_0801;

/// Reads and gunzips a whole file, mapping a missing file to the install hint.
fn read_gz(path: &Path) -> Result<Vec<u8>, TrainError> {
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TrainError::DatasetMissing {
                path: path.to_path_buf(),
            }
        } else {
            TrainError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    let mut bytes = Vec::new();
    GzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    Ok(bytes)
}

/// Big-endian u32 at `at`, or a format error naming the file.
fn be_u32(bytes: &[u8], at: usize, path: &Path) -> Result<u32, TrainError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| TrainError::BadDataset {
            path: path.to_path_buf(),
            reason: format!("file too short for its header ({} bytes)", bytes.len()),
        })
}

/// Parses an IDX image file already in memory; returns pixels (row-major, one image after another).
pub fn parse_images(
    bytes: &[u8],
    path: &Path,
    expect_count: usize,
    rows: usize,
    cols: usize,
) -> Result<Vec<u8>, TrainError> {
    let bad = |reason: String| TrainError::BadDataset {
        path: path.to_path_buf(),
        reason,
    };
    let magic = be_u32(bytes, 0, path)?;
    if magic != MAGIC_IMAGES {
        return Err(bad(format!(
            "magic number {magic:#010x}, expected {MAGIC_IMAGES:#010x} (images)"
        )));
    }
    let n = be_u32(bytes, 4, path)? as usize;
    let r = be_u32(bytes, 8, path)? as usize;
    let c = be_u32(bytes, 12, path)? as usize;
    if n != expect_count || r != rows || c != cols {
        return Err(bad(format!(
            "holds {n} images of {r}x{c}, expected {expect_count} of {rows}x{cols}"
        )));
    }
    let body = &bytes[16..];
    if body.len() != n * r * c {
        return Err(bad(format!(
            "pixel data is {} bytes, expected {}",
            body.len(),
            n * r * c
        )));
    }
    Ok(body.to_vec())
}

/// Parses an IDX label file already in memory; checks every label is below `classes`.
pub fn parse_labels(
    bytes: &[u8],
    path: &Path,
    expect_count: usize,
    classes: u8,
) -> Result<Vec<u8>, TrainError> {
    let bad = |reason: String| TrainError::BadDataset {
        path: path.to_path_buf(),
        reason,
    };
    let magic = be_u32(bytes, 0, path)?;
    if magic != MAGIC_LABELS {
        return Err(bad(format!(
            "magic number {magic:#010x}, expected {MAGIC_LABELS:#010x} (labels)"
        )));
    }
    let n = be_u32(bytes, 4, path)? as usize;
    if n != expect_count {
        return Err(bad(format!("holds {n} labels, expected {expect_count}")));
    }
    let body = &bytes[8..];
    if body.len() != n {
        return Err(bad(format!(
            "label data is {} bytes, expected {n}",
            body.len()
        )));
    }
    if let Some(pos) = body.iter().position(|&l| l >= classes) {
        return Err(bad(format!(
            "label {} at index {pos} is not below {classes}",
            body[pos]
        )));
    }
    Ok(body.to_vec())
}

/// Reads a gzip IDX image file from disk.
pub fn read_images(
    path: &Path,
    expect_count: usize,
    rows: usize,
    cols: usize,
) -> Result<Vec<u8>, TrainError> {
    parse_images(&read_gz(path)?, path, expect_count, rows, cols)
}

/// Reads a gzip IDX label file from disk.
pub fn read_labels(path: &Path, expect_count: usize, classes: u8) -> Result<Vec<u8>, TrainError> {
    parse_labels(&read_gz(path)?, path, expect_count, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_magic_and_sizes() {
        let p = Path::new("x.gz");
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
        img.extend([1u8; 8]);
        assert_eq!(
            parse_images(&img, p, 2, 2, 2).map(|v| v.len()).ok(),
            Some(8)
        );
        assert!(parse_images(&img, p, 3, 2, 2).is_err());
        assert!(parse_images(&img[..20], p, 2, 2, 2).is_err());
        img[3] = 1;
        assert!(parse_images(&img, p, 2, 2, 2).is_err());
        let lab = vec![0, 0, 8, 1, 0, 0, 0, 2, 3, 9];
        assert_eq!(parse_labels(&lab, p, 2, 10).ok(), Some(vec![3, 9]));
        assert!(parse_labels(&lab, p, 2, 5).is_err());
        assert!(parse_labels(&lab[..3], p, 2, 10).is_err());
    }
}
