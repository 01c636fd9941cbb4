//! Parsers for what clients send us as opaque strings: numeric ids and pagination cursors.
//! Anything malformed is `BAD_USER_INPUT`, never a panic. And the one hex encoding of what we
//! make opaque: random ids and secrets, digests.
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};

/// Lower-case hex of `bytes` (by table: every request hashes its document, and `write!` per
/// byte cost more than the hash).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        push_hex(&mut out, *b);
    }
    out
}

/// Append `byte` to `out` as two lower-case hex digits.
fn push_hex(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
}

/// `N` random bytes in hex (hold and event ids, secrets).
pub fn random_hex<const N: usize>() -> String {
    let mut out = String::with_capacity(N * 2);
    push_random_hex::<N>(&mut out);
    out
}

/// Append `N` random bytes in hex to `out`.
pub fn push_random_hex<const N: usize>(out: &mut String) {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    for b in bytes {
        push_hex(out, b);
    }
}

/// A random (version 4) UUID, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`, from the thread's
/// cryptographic generator: every HTTP request gets one as its `x-request-id`, and
/// `Uuid::new_v4` asked the kernel for its 16 bytes each time (a `getrandom` system call per
/// request, found by `perf`, 2026-12-04).
pub fn random_uuid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_hex(&mut out, *byte);
    }
    out
}

/// The hex SHA-256 of `text` (API keys, persisted queries).
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// A database id from a GraphQL `ID`: a positive decimal integer.
pub fn parse_id(raw: &str, what: &str) -> AppResult<i64> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::bad_input(format!(
            "{what} id {raw:?} is malformed"
        )));
    }
    match t.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(AppError::bad_input(format!(
            "{what} id {raw:?} is malformed"
        ))),
    }
}

/// The position of a show in the `shows` list: its start time and id (the tie-breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShowCursor {
    pub starts_at: DateTime<Utc>,
    pub id: i64,
}

impl ShowCursor {
    pub fn encode(&self) -> String {
        let raw = format!("s:{}:{}", self.starts_at.timestamp_millis(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(cursor: &str) -> AppResult<Self> {
        let bad =
            || AppError::bad_input("the cursor is malformed; use a cursor returned by `shows`");
        if cursor.len() > 128 {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split(':');
        let (tag, millis, id) = (parts.next(), parts.next(), parts.next());
        if tag != Some("s") || parts.next().is_some() {
            return Err(bad());
        }
        let millis: i64 = millis.and_then(|m| m.parse().ok()).ok_or_else(bad)?;
        let id: i64 = id
            .and_then(|m| m.parse().ok())
            .filter(|v| *v > 0)
            .ok_or_else(bad)?;
        let starts_at = DateTime::from_timestamp_millis(millis).ok_or_else(bad)?;
        Ok(ShowCursor { starts_at, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn request_ids_are_version_4_uuids_and_differ() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        for id in [a, b] {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{id}"
            );
            assert!(
                id.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()),
                "{id}"
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(
                matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "{id}"
            );
        }
    }

    #[test]
    fn ids_accept_only_positive_decimals() {
        assert_eq!(parse_id("42", "show").ok(), Some(42));
        for bad in [
            "",
            "0",
            "-1",
            "1e3",
            "abc",
            "99999999999999999999",
            " ",
            "0x10",
            "１",
        ] {
            assert!(parse_id(bad, "show").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = ShowCursor {
            starts_at: DateTime::from_timestamp_millis(1_800_000_000_123).unwrap(),
            id: 7,
        };
        assert_eq!(ShowCursor::decode(&c.encode()).ok(), Some(c));
        for bad in ["", "!!!", "czox", "czoxOjI6Mw", "eDoxOjI"] {
            assert!(ShowCursor::decode(bad).is_err(), "{bad:?} accepted");
        }
    }
}
