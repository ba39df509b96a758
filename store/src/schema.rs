//! The schema version header and the ordered migration steps that bring an older store up to date.
//!
//! Before a step runs, a marker naming it is made durable; the step and the version bump that ends
//! it are written so that running the step again from any point it was interrupted at converges to
//! the same result. Opening a store that still carries a marker therefore simply runs that step
//! again before anything else.

use crate::error::StoreError;
use crate::index::Index;
use crate::journal::{self, Entry, JOURNAL_FILE};
use crate::keys;
use crate::recover;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 2;

/// Key of the "migration in progress" marker in the meta tree.
const MIGRATING_KEY: &[u8] = b"migrating";

/// A migration in progress, as recorded before its step starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// Version the step starts from.
    pub from: u32,
    /// Version it ends at.
    pub to: u32,
    /// The step's name.
    pub step: String,
}

/// One migration step from one version to the next.
pub(crate) struct Step {
    /// Version it starts from.
    pub from: u32,
    /// Version it ends at.
    pub to: u32,
    /// Short name, recorded in the marker.
    pub name: &'static str,
    /// The work; must be safe to run again after an interruption at any point.
    pub run: fn(&Index, &Path) -> Result<(), StoreError>,
}

/// Every step, in order.
pub(crate) const STEPS: &[Step] = &[Step {
    from: 1,
    to: 2,
    name: "journal-from-index",
    run: journal_from_index,
}];

/// The schema version recorded in the index, if any.
pub(crate) fn read_version(index: &Index) -> Result<Option<u32>, StoreError> {
    let stored = index
        .meta
        .get(keys::SCHEMA_VERSION_KEY)
        .map_err(index.err("read schema version"))?;
    stored
        .map(|b| keys::decode_u32("schema version", &b))
        .transpose()
}

/// The marker of an interrupted migration, if any.
pub(crate) fn read_marker(index: &Index) -> Result<Option<Marker>, StoreError> {
    let stored = index
        .meta
        .get(MIGRATING_KEY)
        .map_err(index.err("read migration marker"))?;
    stored
        .map(|b| crate::codec::decode("migration marker", &b))
        .transpose()
}

/// Records the current version in a new index.
pub(crate) fn init(index: &Index) -> Result<(), StoreError> {
    index
        .meta
        .insert(keys::SCHEMA_VERSION_KEY, &SCHEMA_VERSION.to_be_bytes())
        .map_err(index.err("write schema version"))?;
    index.db.flush().map_err(index.err("flush"))?;
    Ok(())
}

/// Brings the store in `dir` to [`SCHEMA_VERSION`]; returns the names of the steps run.
pub(crate) fn migrate(index: &Index, dir: &Path) -> Result<Vec<&'static str>, StoreError> {
    let mut ran = Vec::new();
    if let Some(marker) = read_marker(index)? {
        let step = STEPS
            .iter()
            .find(|s| s.from == marker.from && s.to == marker.to && s.name == marker.step)
            .ok_or_else(|| StoreError::UnsupportedSchema {
                dir: dir.to_path_buf(),
                found: marker.to,
                supported: SCHEMA_VERSION,
            })?;
        tracing::warn!(
            step = step.name,
            "finishing an interrupted store migration in {}",
            dir.display()
        );
        (step.run)(index, dir)?;
        finish(index, step)?;
        ran.push(step.name);
    }
    loop {
        let version = read_version(index)?.ok_or_else(|| {
            StoreError::corrupt("schema version", "the index records no schema version")
        })?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::UnsupportedSchema {
                dir: dir.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(ran);
        }
        let step = STEPS.iter().find(|s| s.from == version).ok_or_else(|| {
            StoreError::corrupt(
                "schema version",
                format!("no migration step starts at version {version}"),
            )
        })?;
        tracing::info!(
            step = step.name,
            "migrating store {} from schema {} to {}",
            dir.display(),
            step.from,
            step.to
        );
        let marker = Marker {
            from: step.from,
            to: step.to,
            step: step.name.into(),
        };
        index
            .meta
            .insert(
                MIGRATING_KEY,
                crate::codec::encode("migration marker", &marker)?,
            )
            .map_err(index.err("write migration marker"))?;
        index.db.flush().map_err(index.err("flush"))?;
        (step.run)(index, dir)?;
        finish(index, step)?;
        ran.push(step.name);
    }
}

/// Ends a step: its version and the marker's removal in one atomic batch, made durable.
fn finish(index: &Index, step: &Step) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    batch.insert(keys::SCHEMA_VERSION_KEY, &step.to.to_be_bytes());
    batch.remove(MIGRATING_KEY);
    index
        .meta
        .apply_batch(batch)
        .map_err(index.err("write schema version"))?;
    index.db.flush().map_err(index.err("flush"))?;
    Ok(())
}

/// Version 1 -> 2: the journal becomes the source of truth. It is written from the version 1
/// trees (untouched until the journal is installed by an atomic rename), then the trees are
/// rebuilt from it, which also rekeys events by journal offset.
fn journal_from_index(index: &Index, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(JOURNAL_FILE);
    if !path.exists() {
        let mut entries = Vec::new();
        if let Some(study) = index.study()? {
            entries.push(Entry::Study(study));
        }
        entries.extend(index.trial_heads()?.into_iter().map(Entry::Trial));
        entries.extend(
            index
                .all_epochs()?
                .into_iter()
                .map(|(trial, metrics)| Entry::Epoch { trial, metrics }),
        );
        entries.extend(index.events()?.into_iter().map(Entry::Event));
        journal::write_whole(&path, entries)?;
    }
    recover::rebuild(index, &path)?;
    Ok(())
}
