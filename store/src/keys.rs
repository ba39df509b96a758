//! Big-endian key encodings, so that sled's byte order is numeric order.

use crate::error::StoreError;

/// Key of the schema version in the meta tree.
pub(crate) const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
/// Key of the study record in the study tree.
pub(crate) const STUDY_KEY: &[u8] = b"study";

/// Key of a trial in the trials tree: the id, big-endian.
pub(crate) fn trial_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Prefix shared by all epoch keys of one trial.
pub(crate) fn epoch_prefix(trial_id: u64) -> [u8; 8] {
    trial_id.to_be_bytes()
}

/// Key of one epoch of a trial: trial id BE ++ epoch BE.
pub(crate) fn epoch_key(trial_id: u64, epoch: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&trial_id.to_be_bytes());
    key[8..].copy_from_slice(&epoch.to_be_bytes());
    key
}

/// Key of an event: its sequence number, big-endian.
pub(crate) fn event_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Decodes an 8-byte big-endian u64 key.
pub(crate) fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::corrupt(
            what,
            format!("expected an 8-byte key, found {} bytes", bytes.len()),
        )
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// Decodes a 4-byte big-endian u32.
pub(crate) fn decode_u32(what: &str, bytes: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = bytes.try_into().map_err(|_| {
        StoreError::corrupt(what, format!("expected 4 bytes, found {}", bytes.len()))
    })?;
    Ok(u32::from_be_bytes(arr))
}

/// Decodes an epoch key into (trial id, epoch).
pub(crate) fn decode_epoch_key(bytes: &[u8]) -> Result<(u64, u32), StoreError> {
    if bytes.len() != 12 {
        return Err(StoreError::corrupt(
            "epoch key",
            format!("expected 12 bytes, found {}", bytes.len()),
        ));
    }
    let trial = decode_u64("epoch key", &bytes[..8])?;
    let epoch = decode_u32("epoch key", &bytes[8..])?;
    Ok((trial, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        assert!(trial_key(2) < trial_key(10));
        assert!(trial_key(255) < trial_key(256));
        assert!(epoch_key(1, 300) < epoch_key(2, 0));
        assert!(epoch_key(1, 9) < epoch_key(1, 10));
        assert!(epoch_key(7, 3).starts_with(&epoch_prefix(7)));
        assert!(event_key(u64::from(u32::MAX)) < event_key(u64::from(u32::MAX) + 1));
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(decode_epoch_key(&epoch_key(42, 17)).ok(), Some((42, 17)));
        assert_eq!(decode_u64("k", &trial_key(u64::MAX)).ok(), Some(u64::MAX));
        assert!(decode_u64("k", &[1, 2, 3]).is_err());
        assert!(decode_epoch_key(&[0; 11]).is_err());
    }
}
