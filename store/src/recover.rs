//! Bringing the index in step with the journal when a store opens: replay what a killed run
//! journaled after its last checkpoint, or rebuild the index from the whole journal.

use crate::error::StoreError;
use crate::index::{Checkpoint, Index};
use crate::journal::{self, Journal, Scan};
use std::path::Path;

/// Describes the first damaged range of a scan, for an error message.
fn damage_text(scan: &Scan) -> Option<String> {
    let d = scan.damage.first()?;
    let more = match scan.damage.len() {
        1 => String::new(),
        n => format!(" (and {} more damaged ranges)", n - 1),
    };
    Some(format!(
        "the journal is unreadable at bytes {}..{} ({}){more}",
        d.offset,
        d.offset + d.len,
        d.reason
    ))
}

/// Cuts a torn tail (an unacknowledged half-written frame of a killed run) off the journal.
fn cut_torn_tail(journal: &mut Journal, scan: &Scan) -> Result<(), StoreError> {
    if let Some(at) = scan.torn_tail {
        tracing::warn!(
            bytes = journal.len() - at,
            "dropping the half-written last journal record of an interrupted run (it was never acknowledged)"
        );
        journal.truncate(at)?;
    }
    Ok(())
}

/// Replays the journal after `checkpoint` into the index.
pub(crate) fn catch_up(
    index: &Index,
    journal: &mut Journal,
    checkpoint: Checkpoint,
) -> Result<(), StoreError> {
    let len = journal.len();
    let applied = index.read_applied_end()?.unwrap_or(0);
    if checkpoint.offset > len || applied > len {
        return Err(StoreError::corrupt(
            "journal",
            format!(
                "it is {len} bytes long but the index already holds records up to byte {}: it was cut short or replaced",
                checkpoint.offset.max(applied)
            ),
        ));
    }
    let bytes = journal.read_from(checkpoint.offset)?;
    let scan = journal::scan(&bytes, checkpoint.offset);
    if let Some(text) = damage_text(&scan) {
        return Err(StoreError::corrupt("journal", text));
    }
    if applied > scan.good_end {
        return Err(StoreError::corrupt(
            "journal",
            format!("its readable records end at byte {} but the index holds records up to byte {applied}", scan.good_end),
        ));
    }
    cut_torn_tail(journal, &scan)?;
    for (end, entry) in &scan.entries {
        index.apply(entry, *end)?;
    }
    if !scan.entries.is_empty() || scan.torn_tail.is_some() {
        index.checkpoint(Checkpoint {
            offset: journal.len(),
        })?;
    }
    Ok(())
}

/// Rebuilds every data tree of the index from the whole journal at `path`.
pub(crate) fn rebuild(index: &Index, path: &Path) -> Result<Checkpoint, StoreError> {
    let mut journal = Journal::open(path)?;
    let bytes = journal.read_from(0)?;
    let scan = journal::scan(&bytes, 0);
    if let Some(text) = damage_text(&scan) {
        return Err(StoreError::corrupt("journal", text));
    }
    cut_torn_tail(&mut journal, &scan)?;
    index.clear_data()?;
    for (end, entry) in &scan.entries {
        index.apply(entry, *end)?;
    }
    let checkpoint = Checkpoint {
        offset: journal.len(),
    };
    index.checkpoint(checkpoint)?;
    Ok(checkpoint)
}
