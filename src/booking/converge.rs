//! Anti-entropy between the hold store and the database. Every booking and cancellation writes the
//! database first and mirrors it in the store right after; an instance that dies between the two
//! (or a mirror whose background retries ran out) leaves the store wrong with nothing left to
//! correct it: a sold seat shown `HELD` and later `AVAILABLE`, a cancelled seat `BOOKED` for ever,
//! or a hold kept for a payment whose booking is already settled blocking its seats until its
//! extended expiry. This pass compares the two for the shows with recent bookings and repairs the
//! store from the database (the truth).
//!
//! A difference is repaired only when the previous pass saw it too: a mirror in flight (database
//! committed, store a millisecond behind) is a difference for a moment and never for a whole
//! interval, so a repair never races a request that is about to do the same thing.
use std::collections::{HashMap, HashSet};

use chrono::Utc;
use entity::booking;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};

use super::{BookingStatus, Bookings};
use crate::catalogue::seatmap;
use crate::error::AppResult;
use crate::holds::ReleaseOutcome;

/// How far back a settled booking makes its show worth checking. Drift is caused by a booking
/// or cancellation that was not mirrored, so the show of a booking settled within the last
/// `LOOKBACK` is checked — by the surviving instances within two intervals, or by a restarted
/// one if every instance was down for less than this. (Older drift on a show with no booking
/// since is not seen; a Redis restart reloads the store from the database anyway.) A hold lives
/// at most its TTL plus the payment window, far less than this, so a hold whose booking settled
/// before `LOOKBACK` is not live any more.
const LOOKBACK: chrono::Duration = chrono::Duration::minutes(15);
/// The shortest look back of a periodic pass. Once an instance has completed two passes, it
/// looks back only to a little before the older of its last two completed passes (never less
/// than this): every booking settled since then falls in two consecutive windows — so drift it
/// left is seen twice and repaired — while a pass reads minutes of bookings instead of a
/// quarter of an hour of them. In an on-sale confirming 1,500 bookings a second, the 15-minute
/// window is 1.35 million index entries read every interval by every instance to find the
/// shows; this one about 180,000. A pass that could not complete (store or database down)
/// leaves the window anchored where it was, so the next one reaches back over the outage.
const RECENT: chrono::Duration = chrono::Duration::minutes(2);
/// Added below the anchor: instances' clocks stamp `updated_at`, and one running behind makes a
/// booking look older than it is.
const SKEW: chrono::Duration = chrono::Duration::minutes(1);

/// What a periodic pass carries to the next: the drift it saw (repaired when seen again) and
/// when the last two completed passes started.
#[derive(Debug, Default)]
pub struct Watch {
    previous: HashSet<Drift>,
    completed: std::collections::VecDeque<chrono::DateTime<Utc>>,
}

impl Watch {
    /// How far back a pass starting `now` looks for shows with settled bookings: `LOOKBACK`
    /// until two passes have completed; then to `SKEW` before the older of the last two
    /// completed passes' starts, at least `RECENT` and at most `LOOKBACK` back.
    pub fn since(&self, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        match (self.completed.len(), self.completed.front()) {
            (2, Some(older)) => (*older - SKEW).clamp(now - LOOKBACK, now - RECENT),
            _ => now - LOOKBACK,
        }
    }

    fn completed(&mut self, started: chrono::DateTime<Utc>, found: HashSet<Drift>) {
        self.previous = found;
        self.completed.push_back(started);
        while self.completed.len() > 2 {
            self.completed.pop_front();
        }
    }
}
/// Shows checked in one pass (any order is fine: drift is rare and the next pass sees the rest).
const MAX_SHOWS: u64 = 200;
/// Settled states. Queries name them (with `updated_at`) so that they use the
/// `(status, updated_at)` index instead of scanning every booking.
const SETTLED: [BookingStatus; 3] = [
    BookingStatus::Confirmed,
    BookingStatus::Failed,
    BookingStatus::Cancelled,
];

/// Drift entries named in the repair's log line (the count covers the rest).
const LOGGED_DRIFT: usize = 10;

/// One way the store disagrees with the database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Drift {
    /// Booked in the database, not in the store.
    Unmirrored { show: i64, seat: i64 },
    /// Booked in the store, not in the database (a cancellation not mirrored).
    Unfreed { show: i64, seat: i64 },
    /// A live hold whose booking is already settled (confirmed, failed or cancelled).
    Orphan { show: i64, hold: String, user: i64 },
}

impl Bookings {
    /// Find the drift between store and database; repair what `previous` also found. Returns
    /// this pass's findings (for the next pass) and how many repairs were made.
    /// (This one looks back the whole `LOOKBACK`; the periodic pass uses `converge_pass`.)
    pub async fn converge(&self, previous: &HashSet<Drift>) -> AppResult<(HashSet<Drift>, usize)> {
        let found = self
            .find_drift(Utc::now() - LOOKBACK)
            .await?
            .unwrap_or_default();
        let repaired = self.repair(&found, previous).await;
        Ok((found, repaired))
    }

    /// One periodic pass: find the drift among the shows with bookings settled since
    /// `watch.since`, repair what the previous pass also found. Returns the repairs made.
    pub async fn converge_pass(&self, watch: &mut Watch) -> AppResult<usize> {
        let started = Utc::now();
        let found = match self.find_drift(watch.since(started)).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                // Not compared (the store is unavailable): nothing seen, and the window stays
                // anchored at the last completed passes.
                watch.previous.clear();
                return Ok(0);
            }
            // What the last pass saw stays to be confirmed by the next one.
            Err(e) => return Err(e),
        };
        let repaired = self.repair(&found, &watch.previous).await;
        watch.completed(started, found);
        Ok(repaired)
    }

    /// Repair the drift in `now` that `previous` found too; how many repairs were made.
    async fn repair(&self, now: &HashSet<Drift>, previous: &HashSet<Drift>) -> usize {
        let mut repaired = 0;
        // Seen on two passes in a row: to be repaired.
        let confirmed: Vec<&Drift> = now.iter().filter(|d| previous.contains(d)).collect();
        let mut to_book: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut to_free: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut orphans = Vec::new();
        for d in &confirmed {
            match d {
                Drift::Unmirrored { show, seat } => to_book.entry(*show).or_default().push(*seat),
                Drift::Unfreed { show, seat } => to_free.entry(*show).or_default().push(*seat),
                Drift::Orphan { show, hold, user } => orphans.push((*show, hold, *user)),
            }
        }
        let holds = &self.holds;
        // Booking first: it drops any hold on the seats, so a confirmed booking's own hold goes
        // in the same event instead of flashing its seats `AVAILABLE`.
        for (show, seats) in to_book {
            if holds.mirror_booked(show, None, &seats).await.is_ok() {
                repaired += seats.len();
            }
        }
        for (show, seats) in to_free {
            if holds.mirror_freed(show, &seats).await.is_ok() {
                repaired += seats.len();
            }
        }
        for (show, hold, user) in orphans {
            if let Ok(ReleaseOutcome::Released { .. }) = holds.give_back(show, hold, user).await {
                repaired += 1;
            }
        }
        if repaired > 0 {
            metrics::counter!("hold_store_repairs_total").increment(repaired as u64);
            // A whole list can be thousands of entries (a store that lost its data): the first
            // few say what kind of drift it was.
            let first: Vec<&&Drift> = confirmed.iter().take(LOGGED_DRIFT).collect();
            tracing::warn!(
                repaired,
                found = confirmed.len(),
                first = ?first,
                "repaired the hold store from the database"
            );
        }
        repaired
    }

    /// The drift of the shows with bookings settled after `since`; `None` when the store could
    /// not be read (nothing compared).
    async fn find_drift(&self, since: chrono::DateTime<Utc>) -> AppResult<Option<HashSet<Drift>>> {
        let mut drift = HashSet::new();
        let in_window = Condition::all()
            .add(booking::Column::Status.is_in(SETTLED))
            .add(booking::Column::UpdatedAt.gt(since));
        // A live hold whose booking settled is an orphan however long ago that was (a hold
        // lives at most its TTL plus the payment window, far less than `LOOKBACK`).
        let recently_settled = Condition::all()
            .add(booking::Column::Status.is_in(SETTLED))
            .add(booking::Column::UpdatedAt.gt(Utc::now() - LOOKBACK));
        let shows: Vec<i64> = booking::Entity::find()
            .select_only()
            .column(booking::Column::ShowId)
            .distinct()
            .filter(in_window)
            .limit(MAX_SHOWS)
            .into_tuple()
            .all(&self.db)
            .await?;
        if shows.is_empty() {
            return Ok(Some(drift));
        }
        // The store first, then the database: the store only ever follows the database, so a
        // change landing between the two reads shows as a difference that the next pass no
        // longer sees (and is therefore not repaired).
        let states = match self.holds.store_states(&shows).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "hold store unavailable; convergence skipped");
                return Ok(None);
            }
        };
        let db_booked = seatmap::booked_from_db(&self.db, &shows).await?;
        let mut holds: HashMap<String, (i64, i64)> = HashMap::new();
        for (show, state) in &states {
            let empty = HashSet::new();
            let truth = db_booked.get(show).unwrap_or(&empty);
            for seat in truth.difference(&state.booked) {
                drift.insert(Drift::Unmirrored {
                    show: *show,
                    seat: *seat,
                });
            }
            for seat in state.booked.difference(truth) {
                drift.insert(Drift::Unfreed {
                    show: *show,
                    seat: *seat,
                });
            }
            for h in state.held.values() {
                holds.insert(h.hold_id.clone(), (*show, h.user_id));
            }
        }
        let ids: Vec<String> = holds.keys().cloned().collect();
        // A hold is an orphan when it has a settled booking and none still paying (a hold
        // whose first checkout failed may be paying again under another key).
        let mut settled = HashSet::new();
        let mut paying = HashSet::new();
        for chunk in ids.chunks(500) {
            let rows: Vec<(Option<String>, BookingStatus)> = booking::Entity::find()
                .select_only()
                .column(booking::Column::HoldId)
                .column(booking::Column::Status)
                .filter(booking::Column::HoldId.is_in(chunk.to_vec()))
                .filter(
                    Condition::any()
                        .add(booking::Column::Status.eq(BookingStatus::Pending))
                        .add(recently_settled.clone()),
                )
                .into_tuple()
                .all(&self.db)
                .await?;
            for (hold, status) in rows {
                let Some(hold) = hold else { continue };
                if status == BookingStatus::Pending {
                    paying.insert(hold);
                } else {
                    settled.insert(hold);
                }
            }
        }
        for hold in settled {
            if !paying.contains(&hold) {
                if let Some((show, user)) = holds.get(&hold) {
                    drift.insert(Drift::Orphan {
                        show: *show,
                        hold,
                        user: *user,
                    });
                }
            }
        }
        Ok(Some(drift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone};

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0)
            .single()
            .expect("a time")
    }

    #[test]
    fn the_window_is_the_whole_lookback_until_two_passes_completed() {
        let mut w = Watch::default();
        assert_eq!(w.since(at(0)), at(0) - LOOKBACK);
        w.completed(at(0), HashSet::new());
        assert_eq!(w.since(at(10)), at(10) - LOOKBACK);
        w.completed(at(10), HashSet::new());
        // Two passes 10 s apart: a minute before the older one is less than RECENT back.
        assert_eq!(w.since(at(20)), at(20) - RECENT);
        // Passes that completed long ago (an outage since): back to before the older one…
        assert_eq!(w.since(at(600)), at(0) - SKEW);
        // …but never further than a restarted instance looks.
        assert_eq!(w.since(at(3600)), at(3600) - LOOKBACK);
    }

    /// Passes every 10 s for 40 minutes, none completing for 6 of them (the store or the
    /// database down): a booking settled at any second is inside the windows of the first two
    /// passes that completed after it — seen twice, so its drift is repaired — and the windows
    /// of the passes that run in step read RECENT, not LOOKBACK.
    #[test]
    fn every_settled_booking_falls_in_two_consecutive_completed_windows() {
        let mut w = Watch::default();
        let mut completed: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new(); // (start, since)
        for i in 0..240 {
            let start = at(i * 10);
            let since = w.since(start);
            let outage = (90..126).contains(&i);
            if !outage {
                completed.push((start, since));
                w.completed(start, HashSet::new());
            }
        }
        let steady = completed
            .iter()
            .filter(|(start, since)| *start - *since == RECENT)
            .count();
        assert!(steady > 150, "{steady} passes looked back RECENT only");
        for s in (0..(239 * 10)).map(at) {
            let Some(j) = completed.iter().position(|(start, _)| *start >= s) else {
                continue;
            };
            let Some(next) = completed.get(j + 1) else {
                continue;
            };
            assert!(
                s > completed[j].1 && s > next.1,
                "settled at {s}: windows from {} and {}",
                completed[j].1,
                next.1
            );
        }
    }
}
