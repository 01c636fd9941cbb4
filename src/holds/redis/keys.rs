//! Key names. A show's keys share the hash tag of its *bucket* (show id mod [`BUCKETS`]), so that
//! one script touches one cluster slot — and so does the bucket's expiry index (`sweep`), which
//! the hold script therefore updates in the same atomic step. Each bucket's tag is chosen so that
//! the buckets sit evenly across the 16384 slots: any contiguous split of the slots between
//! masters (what `redis-cli --cluster create` and resharding make) gets an even share of shows.
//! Bucket k sits in the slot range of k with its bits reversed, so that consecutive show ids
//! (a day's new shows) land far apart, on different masters, not all in one range.
use std::sync::OnceLock;

use crate::redis_conn::slot;

/// Buckets of shows (and expiry indexes). The sweeper reads one index per bucket each period.
pub const BUCKETS: usize = 256;
const _: () = assert!(BUCKETS == 256, "spread() reverses 8 bits");

/// A show's keys, in the order `common.lua` documents (`KEYS[1]`..`KEYS[10]`); `KEYS[11]` is
/// the bucket's sweep index.
pub const KEY_NAMES: [&str; 10] = [
    "seats", "holds", "holdrec", "uholds", "booked", "meta", "plan", "occ", "qwait", "qadm",
];

/// The hash tag of each bucket: the first of `b<k>`, `b<k>.1`, `b<k>.2`, … whose slot lies in
/// the bucket's 1/BUCKETS share of the slot space (share number `spread(k)`).
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let width = (16384 / BUCKETS) as u16;
        (0..BUCKETS)
            .map(|k| {
                (0..)
                    .map(|n| {
                        if n == 0 {
                            format!("b{k}")
                        } else {
                            format!("b{k}.{n}")
                        }
                    })
                    .find(|t| slot(t) / width == spread(k))
                    .unwrap_or_default()
            })
            .collect()
    })
}

/// The share of the slot space bucket `k` sits in: `k`'s 8 bits reversed.
fn spread(k: usize) -> u16 {
    (k as u8).reverse_bits() as u16
}

pub fn bucket(show_id: i64) -> usize {
    show_id.rem_euclid(BUCKETS as i64) as usize
}

fn tag(show_id: i64) -> &'static str {
    &tags()[bucket(show_id)]
}

/// `<prefix>:{<bucket tag>}:show:<id>:<name>`.
pub fn show_key(prefix: &str, show_id: i64, name: &str) -> String {
    format!("{prefix}:{{{}}}:show:{show_id}:{name}", tag(show_id))
}

/// The keys a per-show script is given (`KEYS[1]`..`KEYS[11]`).
pub fn script_keys(prefix: &str, show_id: i64) -> [String; 11] {
    let mut out: [String; 11] = Default::default();
    for (slot, name) in out.iter_mut().zip(KEY_NAMES) {
        *slot = show_key(prefix, show_id, name);
    }
    out[10] = sweep_key(prefix, bucket(show_id));
    out
}

/// A bucket's expiry index: hold id → expiry (ms).
pub fn sweep_key(prefix: &str, bucket: usize) -> String {
    format!("{prefix}:{{{}}}:sweep", tags()[bucket % BUCKETS])
}

/// The channel on which a show's seat events are published (same slot as its keys: a sharded
/// channel on a cluster).
pub fn channel(prefix: &str, show_id: i64) -> String {
    show_key(prefix, show_id, "events")
}

/// The show of a channel name; `None` for anything else.
pub fn show_of_channel(channel: &str) -> Option<i64> {
    let start = channel.find("}:show:")? + "}:show:".len();
    let rest = &channel[start..];
    let end = rest.find(':')?;
    (&rest[end..] == ":events").then_some(())?;
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_show_and_its_bucket_index_share_one_slot() {
        for show in [0, 1, 255, 256, 4242, i64::MAX, -3] {
            let keys = script_keys("bo", show);
            let s = slot(&keys[0]);
            assert!(keys.iter().all(|k| slot(k) == s), "{keys:?}");
            assert_eq!(slot(&channel("bo", show)), s);
        }
    }

    #[test]
    fn buckets_spread_evenly_over_the_slots() {
        let width = (16384 / BUCKETS) as u16;
        let mut shares = std::collections::HashSet::new();
        for (k, t) in tags().iter().enumerate() {
            assert_eq!(slot(t) / width, spread(k), "{t}");
            shares.insert(spread(k));
        }
        assert_eq!(shares.len(), BUCKETS, "one bucket per share");
        // Any 24 consecutive show ids spread over three contiguous thirds of the slots.
        let third = |show: i64| slot(&show_key("bo", show, "meta")) / 5462;
        let mut per = [0; 3];
        for show in 1000..1024 {
            per[third(show) as usize] += 1;
        }
        assert!(per.iter().all(|n| (7..=9).contains(n)), "{per:?}");
    }

    #[test]
    fn channel_names_give_their_show() {
        assert_eq!(show_of_channel(&channel("bo", 42)), Some(42));
        assert_eq!(show_of_channel(&channel("a:b", 7)), Some(7));
        assert_eq!(show_of_channel("bo:{b1}:show:x:events"), None);
        assert_eq!(show_of_channel("bo:{b1}:show:3:seats"), None);
        assert_eq!(show_of_channel("nothing"), None);
    }
}
