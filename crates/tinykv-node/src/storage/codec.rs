//! On-disk key and value encodings of the disk engine (fjall), also the
//! layout of the memory engine, so both agree on hint sizes and ordering.
//!
//! - data keys: `token (8 bytes BE) ++ key`, so a token range is one
//!   contiguous, ordered range of the keyspace;
//! - hint keys: `target length (2 bytes BE) ++ target ++ id (8 bytes BE)`,
//!   so one target's hints are contiguous and oldest first;
//! - hint values: [`encode_hint`].

use std::fmt::Display;

use bytes::Bytes;

use super::StorageError;
use crate::ring::key_token;
use crate::version::Record;

/// The data key of `key`: its ring token, big-endian, then the key.
pub(crate) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&key_token(key).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The user key inside a data key (everything after the token).
pub(crate) fn user_key(data_key: &[u8]) -> &[u8] {
    data_key.get(8..).unwrap_or_default()
}

/// The common prefix of every hint key of `target`.
pub(crate) fn hint_prefix(target: &str) -> Result<Vec<u8>, StorageError> {
    let len = u16::try_from(target.len())
        .map_err(|_| StorageError::Engine(format!("hint target id too long: {target:?}")))?;
    let mut k = Vec::with_capacity(2 + target.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(target.as_bytes());
    Ok(k)
}

/// The key of hint `id` for `target`.
pub(crate) fn hint_key(target: &str, id: u64) -> Result<Vec<u8>, StorageError> {
    let mut k = hint_prefix(target)?;
    k.extend_from_slice(&id.to_be_bytes());
    Ok(k)
}

/// The hint id at the end of a hint key.
pub(crate) fn hint_id(hint_key: &[u8]) -> Result<u64, StorageError> {
    hint_key
        .get(hint_key.len().saturating_sub(8)..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt(hint_key, "short hint key"))
}

/// Stored form of a hint: `stored_at_us (8 BE) ++ key length (4 BE) ++ key
/// ++ Record::encode()`. Its length is what [`super::HintStats::bytes`]
/// counts, in every engine, so the stats agree across engines.
pub(crate) fn encode_hint(key: &[u8], record: &Record, stored_at_us: u64) -> Vec<u8> {
    let rec = record.encode();
    let mut v = Vec::with_capacity(12 + key.len() + rec.len());
    v.extend_from_slice(&stored_at_us.to_be_bytes());
    v.extend_from_slice(&(key.len() as u32).to_be_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(&rec);
    v
}

/// Parses [`encode_hint`]'s output; `None` when the bytes are malformed.
pub(crate) fn decode_hint(v: &[u8]) -> Option<(Bytes, Record, u64)> {
    let stored_at = u64::from_be_bytes(v.get(0..8)?.try_into().ok()?);
    let klen = u32::from_be_bytes(v.get(8..12)?.try_into().ok()?) as usize;
    let key = v.get(12..12usize.checked_add(klen)?)?;
    let record = Record::decode(v.get(12 + klen..)?).ok()?;
    Some((Bytes::copy_from_slice(key), record, stored_at))
}

/// A [`StorageError::Corrupt`] for `key`.
pub(crate) fn corrupt(key: &[u8], reason: impl Display) -> StorageError {
    StorageError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

/// Decodes a stored record of `key`, or says which key is corrupt.
pub(crate) fn decode_record(key: &[u8], bytes: &[u8]) -> Result<Record, StorageError> {
    Record::decode(bytes).map_err(|e| corrupt(key, e))
}
