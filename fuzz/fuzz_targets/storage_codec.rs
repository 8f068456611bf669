//! The storage codec: arbitrary bytes as a stored record (`Record::decode`),
//! a stored hint (`decode_hint`), a hint key (`hint_id`) and a data key
//! (`user_key`); whatever decodes must re-encode to the same thing, and
//! the key encodings must round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tinykv_node::fuzzing as f;
use tinykv_node::version::Record;

fuzz_target!(|data: &[u8]| {
    // A stored record: what decodes re-encodes and decodes the same.
    if let Ok(r) = Record::decode(data) {
        let again = Record::decode(&r.encode()).expect("a re-encoded record decodes");
        assert_eq!(again, r);
    }

    // A stored hint.
    if let Some((key, record, at)) = f::decode_hint(data) {
        let enc = f::encode_hint(&key, &record, at);
        assert_eq!(f::decode_hint(&enc), Some((key, record, at)));
    }

    // A hint key: any bytes give an id or an error, never a panic; a key
    // made for a target gives its id back.
    let _ = f::hint_id(data);
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let target = String::from_utf8_lossy(&data[..split]);
    let id = data
        .get(split..split + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(split as u64);
    let hk = f::hint_key(&target, id).expect("a short target has a hint key");
    assert_eq!(f::hint_id(&hk).expect("a hint key has an id"), id);

    // A data key: the user key inside is a suffix; a user key round-trips.
    let inner = f::user_key(data);
    assert!(data.ends_with(inner));
    assert_eq!(f::user_key(&f::data_key(data)), data);

    // A hint made of the input round-trips through the stored form.
    let record = Record::value(
        bytes::Bytes::copy_from_slice(&data[split..]),
        id,
        target.as_ref(),
    );
    let enc = f::encode_hint(&data[..split], &record, id);
    let (k, r, at) = f::decode_hint(&enc).expect("an encoded hint decodes");
    assert_eq!((&k[..], r, at), (&data[..split], record, id));
});
