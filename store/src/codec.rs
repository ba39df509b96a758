//! JSON encoding of stored values, mapping decode failures to `Corrupt`.

use crate::error::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes a value for storage.
pub(crate) fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        what: what.to_string(),
        source,
    })
}

/// Decodes a stored value; undecodable bytes give `Corrupt`.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(what, e.to_string()))
}
