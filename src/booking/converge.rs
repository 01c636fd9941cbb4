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
    pub async fn converge(&self, previous: &HashSet<Drift>) -> AppResult<(HashSet<Drift>, usize)> {
        let now = self.find_drift().await?;
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
        Ok((now, repaired))
    }

    async fn find_drift(&self) -> AppResult<HashSet<Drift>> {
        let mut drift = HashSet::new();
        let since = Utc::now() - LOOKBACK;
        let recently_settled = Condition::all()
            .add(booking::Column::Status.is_in(SETTLED))
            .add(booking::Column::UpdatedAt.gt(since));
        let shows: Vec<i64> = booking::Entity::find()
            .select_only()
            .column(booking::Column::ShowId)
            .distinct()
            .filter(recently_settled.clone())
            .limit(MAX_SHOWS)
            .into_tuple()
            .all(&self.db)
            .await?;
        if shows.is_empty() {
            return Ok(drift);
        }
        // The store first, then the database: the store only ever follows the database, so a
        // change landing between the two reads shows as a difference that the next pass no
        // longer sees (and is therefore not repaired).
        let states = match self.holds.store_states(&shows).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "hold store unavailable; convergence skipped");
                return Ok(drift);
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
        Ok(drift)
    }
}
