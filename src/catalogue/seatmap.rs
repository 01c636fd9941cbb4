//! The one place where a show's seat map is computed: layout (immutable) + live state (version,
//! held seats, booked seats). Queries, counts, subscriptions and the web page all go through here,
//! so `total = available + held + booked` holds everywhere by construction.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use entity::booking_seat;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::layout::{Layout, Prices, SeatInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatStatus {
    Available,
    Held,
    Booked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub hold_id: String,
    pub user_id: i64,
}

/// A consistent snapshot of one show's live state: everything here was read at one `version`.
#[derive(Debug, Clone, Default)]
pub struct ShowState {
    pub version: i64,
    pub held: HashMap<i64, Holder>,
    pub booked: HashSet<i64>,
    /// True when the hold store could not be read and this state came from the database alone:
    /// booked seats are exact, holds are unknown (held seats look available); `version` means
    /// nothing (GraphQL shows -1).
    pub holds_unknown: bool,
    /// Names this exact state in the store (Redis: `tag:ver`, unique across restarts and
    /// failovers): a reader holding a state with this stamp may keep using it, and the store
    /// answers "unchanged" instead of sending it again. `None`: never reused.
    pub stamp: Option<String>,
    /// What is derived from this state, computed once and shared by every reader of it.
    pub derived: Derived,
}

/// Forms of one state computed on first use: counts and the compact status string (without the
/// per-viewer `M`, which `status_string` lays over it).
#[derive(Debug, Clone, Default)]
pub struct Derived {
    counts: OnceLock<Counts>,
    statuses: OnceLock<Arc<str>>,
}

impl ShowState {
    pub fn status(&self, seat_id: i64) -> SeatStatus {
        if self.booked.contains(&seat_id) {
            SeatStatus::Booked
        } else if self.held.contains_key(&seat_id) {
            SeatStatus::Held
        } else {
            SeatStatus::Available
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: i32,
    pub available: i32,
    pub held: i32,
    pub booked: i32,
}

/// The state's counts on its show's layout (a show has one layout, so they are computed once
/// per state).
pub fn counts(layout: &Layout, state: &ShowState) -> Counts {
    *state
        .derived
        .counts
        .get_or_init(|| count_seats(layout, state))
}

fn count_seats(layout: &Layout, state: &ShowState) -> Counts {
    let (mut held, mut booked) = (0, 0);
    for s in &layout.seats {
        match state.status(s.id) {
            SeatStatus::Booked => booked += 1,
            SeatStatus::Held => held += 1,
            SeatStatus::Available => {}
        }
    }
    let total = layout.len() as i32;
    Counts {
        total,
        available: total - held - booked,
        held,
        booked,
    }
}

/// One seat as a client sees it at one moment.
#[derive(Debug, Clone)]
pub struct SeatView {
    pub info: SeatInfo,
    pub price_cents: i64,
    pub status: SeatStatus,
    pub held_by_me: bool,
}

pub fn seat_view(
    info: &SeatInfo,
    prices: &Prices,
    state: &ShowState,
    viewer: Option<i64>,
) -> SeatView {
    let status = state.status(info.id);
    let held_by_me = status == SeatStatus::Held
        && matches!((state.held.get(&info.id), viewer), (Some(h), Some(me)) if h.user_id == me);
    SeatView {
        info: info.clone(),
        price_cents: super::layout::price_of(prices, &info.category),
        status,
        held_by_me,
    }
}

/// The compact live map: one character per seat of the layout, in drawing order — `A`
/// available, `H` held by someone else, `M` held by `viewer`, `B` booked. The viewer-free
/// string is computed once per state; a viewer's own holds are laid over it.
pub fn status_string(layout: &Layout, state: &ShowState, viewer: Option<i64>) -> String {
    let shared = state.derived.statuses.get_or_init(|| {
        layout
            .seats
            .iter()
            .map(|info| match state.status(info.id) {
                SeatStatus::Available => 'A',
                SeatStatus::Booked => 'B',
                SeatStatus::Held => 'H',
            })
            .collect::<String>()
            .into()
    });
    let mut out = shared.to_string().into_bytes();
    if let Some(me) = viewer {
        for (seat, holder) in &state.held {
            match layout.position(*seat) {
                Some(p) if holder.user_id == me && out.get(p) == Some(&b'H') => out[p] = b'M',
                _ => {}
            }
        }
    }
    // Only ASCII letters were written.
    String::from_utf8(out).unwrap_or_default()
}

/// One seat named by a live event (its new status and holder), as `viewer` sees it; `None` for
/// a seat that is not in the layout.
pub fn changed_seat(
    layout: &Layout,
    prices: &Prices,
    seat_id: i64,
    status: SeatStatus,
    holder: Option<i64>,
    viewer: Option<i64>,
) -> Option<SeatView> {
    let info = layout.seat(seat_id)?;
    Some(SeatView {
        info: info.clone(),
        price_cents: super::layout::price_of(prices, &info.category),
        status,
        held_by_me: status == SeatStatus::Held && holder.is_some() && holder == viewer,
    })
}

pub fn seat_views(
    layout: &Layout,
    prices: &Prices,
    state: &ShowState,
    viewer: Option<i64>,
) -> Vec<SeatView> {
    layout
        .seats
        .iter()
        .map(|s| seat_view(s, prices, state, viewer))
        .collect()
}

/// Booked seats of these shows, from the database (the truth), in one query.
pub async fn booked_from_db(
    db: &DatabaseConnection,
    show_ids: &[i64],
) -> Result<HashMap<i64, HashSet<i64>>, DbErr> {
    let rows: Vec<(i64, i64)> = booking_seat::Entity::find()
        .select_only()
        .column(booking_seat::Column::ShowId)
        .column(booking_seat::Column::SeatId)
        .filter(booking_seat::Column::ShowId.is_in(show_ids.to_vec()))
        .filter(booking_seat::Column::Active.eq(true))
        .into_tuple()
        .all(db)
        .await?;
    let mut out: HashMap<i64, HashSet<i64>> =
        show_ids.iter().map(|id| (*id, HashSet::new())).collect();
    for (show, seat) in rows {
        out.entry(show).or_default().insert(seat);
    }
    Ok(out)
}

pub type SharedState = Arc<ShowState>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::layout::Layout;

    /// Three seats: A1 and A2 standard, B1 premium.
    fn layout() -> Layout {
        let seat = |id, row: &str, number, category: &str| SeatInfo {
            id,
            row: row.into(),
            number,
            category: category.into(),
            row_index: 0,
            col_index: number - 1,
            wheelchair: false,
            companion: false,
            restricted_view: false,
        };
        Layout::for_tests(
            1,
            vec![
                seat(10, "A", 1, "STANDARD"),
                seat(11, "A", 2, "STANDARD"),
                seat(12, "B", 1, "PREMIUM"),
            ],
        )
    }

    fn prices() -> Prices {
        Prices::from([("STANDARD".to_string(), 900), ("PREMIUM".to_string(), 1500)])
    }

    fn state() -> ShowState {
        ShowState {
            version: 7,
            held: HashMap::from([(
                11,
                Holder {
                    hold_id: "1-aa".into(),
                    user_id: 5,
                },
            )]),
            booked: HashSet::from([12]),
            ..ShowState::default()
        }
    }

    #[test]
    fn counts_are_derived_from_each_seat_status() {
        let c = counts(&layout(), &state());
        assert_eq!((c.total, c.available, c.held, c.booked), (3, 1, 1, 1));
        // A booked seat that is also (stale) held counts once, as booked.
        let mut s = state();
        s.held.insert(
            12,
            Holder {
                hold_id: "1-bb".into(),
                user_id: 6,
            },
        );
        let c = counts(&layout(), &s);
        assert_eq!((c.available, c.held, c.booked), (1, 1, 1));
    }

    #[test]
    fn seat_views_price_by_category_and_know_their_holder() {
        let views = seat_views(&layout(), &prices(), &state(), Some(5));
        let got: Vec<(i64, i64, SeatStatus, bool)> = views
            .iter()
            .map(|v| (v.info.id, v.price_cents, v.status, v.held_by_me))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 900, SeatStatus::Available, false),
                (11, 900, SeatStatus::Held, true),
                (12, 1500, SeatStatus::Booked, false),
            ]
        );
        // Anyone else (or nobody signed in) does not hold it.
        assert!(!seat_views(&layout(), &prices(), &state(), Some(6))[1].held_by_me);
        assert!(!seat_views(&layout(), &prices(), &state(), None)[1].held_by_me);
        // A category without a price costs 0 rather than failing the map.
        assert_eq!(
            seat_views(&layout(), &Prices::new(), &state(), None)[0].price_cents,
            0
        );
    }

    #[test]
    fn changed_seats_are_viewed_like_the_map() {
        let (l, p) = (layout(), prices());
        let v = changed_seat(&l, &p, 11, SeatStatus::Held, Some(5), Some(5)).expect("seat");
        assert_eq!((v.price_cents, v.held_by_me), (900, true));
        let v = changed_seat(&l, &p, 11, SeatStatus::Held, Some(5), None).expect("seat");
        assert!(!v.held_by_me);
        assert!(changed_seat(&l, &p, 99, SeatStatus::Held, None, None).is_none());
    }
}
