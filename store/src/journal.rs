//! The append-only journal, the store's source of truth: every state change as one framed,
//! checksummed record, fsync'd before the write returns.
//!
//! A frame is `MAGIC (4) | payload length (u32 BE) | CRC-32 of length and payload (u32 BE) |
//! payload`. The payload of an epoch record, by far the most frequent, is binary (a tag byte, the
//! trial id and the index's fixed 61-byte epoch layout: a third of its JSON size, floats bit for
//! bit); every other [`Entry`] is JSON. The magic lets a scan find the next frame after a damaged
//! one, and the length inside the checksum means a flipped length bit is caught too.
//!
//! A tuner killed in the middle of an append leaves a *torn tail*: the file ends inside a frame
//! (or, after a power cut, in zeros). That write was never acknowledged, so opening the store cuts
//! it off. Anything else that does not check out is *damage* and is reported, never skipped silently.

use crate::error::StoreError;
use crate::records::{EpochMetrics, Event, StudyRecord, TrialRecord};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the journal file inside a store directory.
pub(crate) const JOURNAL_FILE: &str = "journal";
/// First bytes of every frame.
const MAGIC: [u8; 4] = *b"JZJ1";
/// Bytes before the payload: magic, length, checksum.
const HEADER_LEN: usize = 12;
/// Largest payload a frame may declare (a trial record with a long stderr tail is a few KiB).
const MAX_PAYLOAD: usize = 64 << 20;

/// One state change, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The study record was written.
    Study(StudyRecord),
    /// A trial record (without epochs) was written.
    Trial(TrialRecord),
    /// An epoch of a trial was recorded.
    Epoch {
        /// The trial.
        trial: u64,
        /// Its metrics.
        metrics: EpochMetrics,
    },
    /// All epochs of a trial were dropped (before it is run again).
    ClearEpochs {
        /// The trial.
        trial: u64,
    },
    /// An event was logged.
    Event(Event),
    /// The trial command line a trial id was planned with.
    Command {
        /// The trial.
        trial: u64,
        /// Arguments of `jizhi-tune` that run it.
        args: Vec<String>,
    },
    /// A trial of the study this one was forked from, with its epochs and command line.
    Inherited {
        /// The parent's trial, epochs included.
        trial: TrialRecord,
        /// Its command line (empty when the parent did not record one).
        args: Vec<String>,
    },
}

/// A byte range of the journal that holds no readable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Offset of the first unreadable byte.
    pub offset: u64,
    /// Length of the unreadable range.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

/// The result of reading a journal from some offset to its end.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Every readable entry with the offset just past its frame.
    pub entries: Vec<(u64, Entry)>,
    /// Offset just past the last readable frame (where the next append goes after a torn tail is cut).
    pub good_end: u64,
    /// Unreadable ranges that are not a torn tail.
    pub damage: Vec<Damage>,
    /// Start of a torn tail (an unacknowledged, half-written last frame), if any.
    pub torn_tail: Option<u64>,
}

/// First payload byte of a binary epoch record (a JSON payload starts with `{`).
const EPOCH_TAG: u8 = 0xE1;

/// The payload of an entry.
fn payload(entry: &Entry) -> Result<Vec<u8>, StoreError> {
    if let Entry::Epoch { trial, metrics } = entry {
        let mut out = Vec::with_capacity(9 + crate::index::EPOCH_LEN);
        out.push(EPOCH_TAG);
        out.extend_from_slice(&trial.to_be_bytes());
        out.extend_from_slice(&crate::index::encode_epoch(metrics));
        return Ok(out);
    }
    serde_json::to_vec(entry).map_err(|source| StoreError::Encode {
        what: "journal entry".into(),
        source,
    })
}

/// Decodes a payload into an entry.
fn entry_of(payload: &[u8]) -> Result<Entry, String> {
    if payload.first() == Some(&EPOCH_TAG) {
        // The binary value checks its own version and length.
        let epoch = payload.get(9..).and_then(crate::index::decode_epoch_binary);
        let mut id = [0u8; 8];
        return match epoch {
            Some(metrics) => {
                id.copy_from_slice(&payload[1..9]);
                Ok(Entry::Epoch {
                    trial: u64::from_be_bytes(id),
                    metrics,
                })
            }
            None => Err("a malformed epoch record".into()),
        };
    }
    serde_json::from_slice::<Entry>(payload).map_err(|e| e.to_string())
}

/// Encodes one entry as a frame.
pub(crate) fn frame(entry: &Entry) -> Result<Vec<u8>, StoreError> {
    let payload = payload(entry)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| (l as usize) <= MAX_PAYLOAD)
        .ok_or_else(|| StoreError::corrupt("journal entry", "record too large"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&checksum(&len.to_be_bytes(), &payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// CRC-32 of a frame's length field and payload.
fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// How the bytes at some offset read as a frame.
enum FrameAt {
    /// A good frame of this total length holding this entry.
    Good(usize, Entry),
    /// A frame with a good checksum whose payload is not an entry this build knows.
    Unreadable(usize, String),
    /// The bytes end inside what could be the start of a frame.
    Incomplete,
    /// Not a frame.
    Bad(String),
}

fn frame_at(bytes: &[u8]) -> FrameAt {
    if bytes.len() < HEADER_LEN {
        let n = bytes.len().min(MAGIC.len());
        return if bytes[..n] == MAGIC[..n] {
            FrameAt::Incomplete
        } else {
            FrameAt::Bad("no frame marker".into())
        };
    }
    if bytes[..4] != MAGIC {
        return FrameAt::Bad("no frame marker".into());
    }
    let len_bytes = &bytes[4..8];
    let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    if len > MAX_PAYLOAD {
        return FrameAt::Bad(format!("implausible record length {len}"));
    }
    if bytes.len() < HEADER_LEN + len {
        return FrameAt::Incomplete;
    }
    let crc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let payload = &bytes[HEADER_LEN..HEADER_LEN + len];
    if checksum(len_bytes, payload) != crc {
        return FrameAt::Bad("checksum mismatch".into());
    }
    match entry_of(payload) {
        Ok(entry) => FrameAt::Good(HEADER_LEN + len, entry),
        Err(e) => FrameAt::Unreadable(HEADER_LEN + len, e),
    }
}

/// Reads `bytes` (the journal from offset `base` on) into entries, damage and a torn tail.
pub(crate) fn scan(bytes: &[u8], base: u64) -> Scan {
    let mut out = Scan {
        good_end: base,
        ..Scan::default()
    };
    let mut p = 0usize;
    while p < bytes.len() {
        match frame_at(&bytes[p..]) {
            FrameAt::Good(len, entry) => {
                p += len;
                out.entries.push((base + p as u64, entry));
                out.good_end = base + p as u64;
            }
            FrameAt::Unreadable(len, why) => {
                out.damage.push(Damage {
                    offset: base + p as u64,
                    len: len as u64,
                    reason: format!("a record this build cannot read: {why}"),
                });
                p += len;
                out.good_end = base + p as u64;
            }
            other => {
                let next = next_frame(bytes, p + 1);
                let rest = &bytes[p..next.unwrap_or(bytes.len())];
                let torn = next.is_none()
                    && (matches!(other, FrameAt::Incomplete) || rest.iter().all(|&b| b == 0));
                if torn {
                    out.torn_tail = Some(base + p as u64);
                    break;
                }
                let reason = match other {
                    FrameAt::Bad(why) => why,
                    _ => "a record cut short".into(),
                };
                out.damage.push(Damage {
                    offset: base + p as u64,
                    len: rest.len() as u64,
                    reason,
                });
                match next {
                    Some(q) => p = q,
                    None => {
                        p = bytes.len();
                        // The damage runs to the end: appending after it would hide it.
                        out.good_end = base + p as u64;
                    }
                }
            }
        }
    }
    out
}

/// The first study record in the journal at `path`, reading only the frame headers up to it (a
/// cheap look at a big journal); None when there is none or a damaged frame stops the walk first.
pub(crate) fn first_study(path: &Path) -> Result<Option<StudyRecord>, StoreError> {
    const STUDY_PREFIX: &[u8] = b"{\"study\":";
    let file = File::open(path).map_err(io("read journal", path))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut header = [0u8; HEADER_LEN + STUDY_PREFIX.len()];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io("read journal", path)(e)),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if header[..4] != MAGIC || len > MAX_PAYLOAD || len < STUDY_PREFIX.len() {
            return Ok(None);
        }
        let rest = len - STUDY_PREFIX.len();
        if header[HEADER_LEN..] == *STUDY_PREFIX {
            let mut frame = header.to_vec();
            frame.resize(HEADER_LEN + len, 0);
            if reader.read_exact(&mut frame[header.len()..]).is_err() {
                return Ok(None);
            }
            return Ok(match frame_at(&frame) {
                FrameAt::Good(_, Entry::Study(study)) => Some(study),
                _ => None,
            });
        }
        reader
            .seek_relative(rest as i64)
            .map_err(io("read journal", path))?;
    }
}

/// The offset of the next readable frame at or after `from`, if any.
fn next_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + MAGIC.len() <= bytes.len() {
        let at = bytes[i..].windows(MAGIC.len()).position(|w| w == MAGIC)? + i;
        if matches!(
            frame_at(&bytes[at..]),
            FrameAt::Good(..) | FrameAt::Unreadable(..)
        ) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// The journal file, open for appending.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// Current length: the offset of the next append.
    len: u64,
}

impl Journal {
    /// Opens (creating if missing) the journal at `path`, appending from its end.
    pub(crate) fn open(path: &Path) -> Result<Journal, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io("open journal", path))?;
        let len = file
            .metadata()
            .map_err(io("read journal size", path))?
            .len();
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Length of the journal in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads the journal from `from` to its end.
    pub(crate) fn read_from(&mut self, from: u64) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::with_capacity(self.len.saturating_sub(from) as usize);
        self.file
            .seek(SeekFrom::Start(from))
            .map_err(io("read journal", &self.path))?;
        self.file
            .read_to_end(&mut bytes)
            .map_err(io("read journal", &self.path))?;
        Ok(bytes)
    }

    /// Cuts the journal back to `len` bytes (a torn tail) and makes that durable.
    pub(crate) fn truncate(&mut self, len: u64) -> Result<(), StoreError> {
        self.file
            .set_len(len)
            .map_err(io("cut the torn tail of the journal", &self.path))?;
        self.file
            .sync_all()
            .map_err(io("sync journal", &self.path))?;
        self.len = len;
        Ok(())
    }

    /// Appends already-framed bytes and fsyncs them; returns the new length.
    pub(crate) fn append(&mut self, frames: &[u8]) -> Result<u64, StoreError> {
        self.file
            .write_all(frames)
            .map_err(io("append to journal", &self.path))?;
        self.file
            .sync_data()
            .map_err(io("sync journal", &self.path))?;
        self.len += frames.len() as u64;
        Ok(self.len)
    }
}

/// Writes a complete journal of `entries` to `path` atomically (temporary file, fsync, rename).
pub(crate) fn write_whole(
    path: &Path,
    entries: impl IntoIterator<Item = Entry>,
) -> Result<u64, StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io("create journal", &tmp))?;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut len = 0u64;
    for entry in entries {
        buf.extend_from_slice(&frame(&entry)?);
        if buf.len() >= 1 << 20 {
            file.write_all(&buf).map_err(io("write journal", &tmp))?;
            len += buf.len() as u64;
            buf.clear();
        }
    }
    file.write_all(&buf).map_err(io("write journal", &tmp))?;
    len += buf.len() as u64;
    file.sync_all().map_err(io("sync journal", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("install journal", path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(len)
}

/// Makes a rename or file creation in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

/// Reads a whole journal file.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(io("read journal", path))
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> Entry {
        Entry::Event(Event {
            unix_ms: i,
            trial_id: Some(i),
            kind: "k".into(),
            detail: format!("d{i}"),
        })
    }

    fn journal(n: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        for i in 0..n {
            bytes.extend(frame(&event(i)).expect("frame"));
        }
        bytes
    }

    #[test]
    fn frames_round_trip() {
        let bytes = journal(5);
        let s = scan(&bytes, 0);
        assert_eq!(s.entries.len(), 5);
        assert_eq!(s.entries[4].1, event(4));
        assert_eq!(s.good_end, bytes.len() as u64);
        assert!(s.damage.is_empty() && s.torn_tail.is_none());
    }

    #[test]
    fn floats_survive_the_journal_bit_for_bit() {
        // Epoch records are binary; trial records are JSON, which must parse floats exactly
        // (serde_json's float_roundtrip), or a value replayed from the journal could differ from
        // the one recorded in its last bit.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x >> 2); // finite, spread over many exponents
            let w = (x % 1_000_000) as f64 / 997.0;
            let metrics = EpochMetrics {
                epoch: i,
                step: 1,
                train_loss: v,
                val_top1: w,
                images_per_sec: f64::NAN,
                loss_scale: f64::NEG_INFINITY,
                skipped_steps: 0,
                wall_secs: 0.1 * f64::from(i),
                underflow_fraction: 0.0,
            };
            let trial = TrialRecord {
                id: u64::from(i),
                stage: "coarse".into(),
                batch: 1,
                proxy_batch: 1,
                params: Default::default(),
                status: crate::records::TrialStatus::Finished,
                attempts: 1,
                error: None,
                final_val_top1: Some(v),
                wall_secs: Some(w),
                modelled_step_secs: None,
                epochs: Vec::new(),
            };
            bytes.extend(
                frame(&Entry::Epoch {
                    trial: 1,
                    metrics: metrics.clone(),
                })
                .expect("frame"),
            );
            bytes.extend(frame(&Entry::Trial(trial)).expect("frame"));
            want.push((v, w));
        }
        let s = scan(&bytes, 0);
        assert_eq!(s.entries.len(), 2 * want.len());
        for (pair, (v, w)) in s.entries.chunks(2).zip(&want) {
            let (Entry::Epoch { metrics: m, .. }, Entry::Trial(t)) = (&pair[0].1, &pair[1].1)
            else {
                panic!("{pair:?}");
            };
            for (got, want) in [
                (m.train_loss, *v),
                (m.val_top1, *w),
                (t.final_val_top1.unwrap_or(0.0), *v),
                (t.wall_secs.unwrap_or(0.0), *w),
            ] {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{want:e} came back as {got:e}"
                );
            }
            assert!(m.images_per_sec.is_nan() && m.loss_scale == f64::NEG_INFINITY);
        }
    }

    #[test]
    fn every_cut_is_a_torn_tail_of_the_last_frame() {
        let bytes = journal(3);
        let two = scan(&bytes, 0).entries[1].0 as usize;
        for cut in two + 1..bytes.len() {
            let s = scan(&bytes[..cut], 0);
            assert_eq!(s.entries.len(), 2, "cut at {cut}");
            assert_eq!(s.torn_tail, Some(two as u64), "cut at {cut}");
            assert!(s.damage.is_empty(), "cut at {cut}: {:?}", s.damage);
        }
        let mut zeros = bytes.clone();
        zeros.extend([0u8; 100]);
        assert_eq!(scan(&zeros, 0).torn_tail, Some(bytes.len() as u64));
    }

    #[test]
    fn a_flipped_bit_is_damage_and_later_frames_still_read() {
        let bytes = journal(4);
        let ends: Vec<u64> = scan(&bytes, 0).entries.iter().map(|e| e.0).collect();
        for bit in (ends[0] * 8)..(ends[1] * 8) {
            let mut b = bytes.clone();
            b[(bit / 8) as usize] ^= 1 << (bit % 8);
            let s = scan(&b, 0);
            assert_eq!(s.entries.len(), 3, "bit {bit}");
            assert_eq!(s.damage.len(), 1, "bit {bit}");
            assert_eq!(s.damage[0].offset, ends[0], "bit {bit}");
            assert!(s.torn_tail.is_none(), "bit {bit}");
        }
        // A flip in the last frame is damage too, not a torn tail: that record was acknowledged.
        let mut b = bytes.clone();
        let last = b.len() - 3;
        b[last] ^= 4;
        let s = scan(&b, 0);
        assert_eq!((s.entries.len(), s.damage.len(), s.torn_tail), (3, 1, None));
    }

    #[test]
    fn the_first_study_record_is_found_from_the_headers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let study = StudyRecord {
            name: "s".into(),
            space_text: "x = 1".into(),
            seed: 1,
            created_unix: 2,
        };
        let mut bytes = journal(3);
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(first_study(&path).expect("read"), None);
        bytes.extend(frame(&Entry::Study(study.clone())).expect("frame"));
        bytes.extend(journal(2));
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(first_study(&path).expect("read"), Some(study));
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            first_study(&path).expect("read"),
            None,
            "a damaged frame before it stops the walk"
        );
    }

    #[test]
    fn scanning_from_an_offset_reports_absolute_offsets() {
        let bytes = journal(3);
        let first = scan(&bytes, 0).entries[0].0;
        let s = scan(&bytes[first as usize..], first);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.good_end, bytes.len() as u64);
    }
}
