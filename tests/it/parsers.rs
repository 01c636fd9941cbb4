//! Property checks of every parser of client-controlled strings — ids, hold ids, cursors, tokens —
//! over hundreds of thousands of random and
//! mutated inputs (seeded, so a failure reproduces): none panics, malformed input is refused, and
//! what we encode decodes to itself. (A coverage-guided `cargo fuzz` target would need nightly;
//! this runs on the stable toolchain in every CI run.)
use std::time::Duration;

use boxoffice::auth::token::Tokens;
use boxoffice::auth::Role;
use boxoffice::holds::{new_hold_id, parse_hold_id};
use boxoffice::ids::{parse_id, ShowCursor};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 200_000;

/// Random strings biased towards what parsers split on: digits, hex, separators, base64 and JWT
/// alphabets, whitespace, multi-byte characters.
fn random_string(rng: &mut StdRng) -> String {
    const ALPHABET: &[&str] = &[
        "0", "1", "9", "a", "f", "A", "F", "-", "_", ".", ":", "s", "=", "+", "/", " ", "\t", "\n",
        "é", "😀", "\u{0}", "eyJ", "%", "\\", "\"",
    ];
    let len = rng.random_range(0..48);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

/// A valid string with one random edit (insert, delete, replace a character).
fn mutate(rng: &mut StdRng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let pos = rng.random_range(0..=chars.len());
    let c = char::from_u32(rng.random_range(0x20..0x7f)).unwrap_or('x');
    match rng.random_range(0..3) {
        0 => chars.insert(pos, c),
        1 if pos < chars.len() => {
            chars.remove(pos);
        }
        _ if pos < chars.len() => chars[pos] = c,
        _ => chars.push(c),
    }
    chars.into_iter().collect()
}

#[test]
fn ids_never_panic_and_accept_exactly_positive_decimals() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..ROUNDS {
        let s = random_string(&mut rng);
        if let Ok(v) = parse_id(&s, "show") {
            assert!(v > 0, "{s:?}");
            assert_eq!(s.trim().parse::<i64>().ok(), Some(v), "{s:?}");
        }
        let n: i64 = rng.random_range(1..i64::MAX);
        assert_eq!(parse_id(&n.to_string(), "show").ok(), Some(n));
        let m = mutate(&mut rng, &n.to_string());
        if let Ok(v) = parse_id(&m, "show") {
            assert_eq!(m.trim().parse::<i64>().ok(), Some(v), "{m:?}");
        }
    }
}

#[test]
fn hold_ids_round_trip_and_mutations_do_not_pass_as_others() {
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..ROUNDS / 4 {
        let show: i64 = rng.random_range(1..1_000_000_000);
        let id = new_hold_id(show);
        assert_eq!(parse_hold_id(&id), Some(show));
        let m = mutate(&mut rng, &id);
        if let Some(s) = parse_hold_id(&m) {
            // A one-character edit can only keep a well-formed id (other random bits, or another
            // show) — never something the parser misreads.
            let (prefix, random) = m.split_once('-').expect("dash");
            assert!(prefix.bytes().all(|b| b.is_ascii_digit()), "{m:?}");
            assert_eq!(prefix.parse::<i64>().ok(), Some(s), "{m:?}");
            assert_eq!(random.len(), 32, "{m:?}");
        }
        let _ = parse_hold_id(&random_string(&mut rng));
    }
}

#[test]
fn cursors_round_trip_and_garbage_is_refused() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..ROUNDS / 4 {
        let millis = rng.random_range(0..4_102_444_800_000i64); // up to year 2100
        let starts_at: DateTime<Utc> = DateTime::from_timestamp_millis(millis).expect("time");
        let c = ShowCursor {
            starts_at,
            id: rng.random_range(1..i64::MAX),
        };
        let encoded = c.encode();
        assert_eq!(ShowCursor::decode(&encoded).ok(), Some(c));
        let m = mutate(&mut rng, &encoded);
        if let Ok(d) = ShowCursor::decode(&m) {
            assert!(d.id > 0);
        }
        // Garbage either is refused or is a cursor that re-encodes to itself.
        let g = random_string(&mut rng);
        if let Ok(d) = ShowCursor::decode(&g) {
            assert_eq!(ShowCursor::decode(&d.encode()).ok(), Some(d), "{g:?}");
        }
    }
}

#[test]
fn tokens_verify_only_unaltered_and_never_panic() {
    let mut rng = StdRng::seed_from_u64(4);
    let tokens = Tokens::new(
        b"property-test-secret-0123456789",
        None,
        Duration::from_secs(3600),
    );
    let other = Tokens::new(
        b"another-secret-entirely-987654",
        None,
        Duration::from_secs(3600),
    );
    for i in 0..ROUNDS / 20 {
        let user = rng.random_range(1..1_000_000i64);
        let role = if i % 2 == 0 {
            Role::Customer
        } else {
            Role::Admin
        };
        let t = tokens.issue(user, role).expect("issue");
        assert_eq!(tokens.verify(&t), Some((user, role)));
        assert_eq!(other.verify(&t), None, "another key never verifies");
        let m = mutate(&mut rng, &t);
        if m != t {
            if let Some((u, r)) = tokens.verify(&m) {
                // Base64 has slack in its last character: an edit there may decode to the same
                // bytes. It must then be the very same claims.
                assert_eq!((u, r), (user, role), "{m:?}");
            }
        }
        assert_eq!(tokens.verify(&random_string(&mut rng)), None);
    }
}
