//! Bookings: reading them now; checkout, cancellation and the reconciler build on this.
use std::collections::HashMap;

use entity::{booking, booking_seat};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::auth::Viewer;
use crate::error::{AppError, AppResult};

pub const MAX_LISTED: u64 = 200;

#[derive(Clone)]
pub struct Bookings {
    db: DatabaseConnection,
}

impl Bookings {
    pub fn new(db: DatabaseConnection) -> Self {
        Bookings { db }
    }

    /// The viewer's bookings, newest first (bounded).
    pub async fn mine(&self, viewer: &Viewer) -> AppResult<Vec<booking::Model>> {
        let user = viewer.require_user()?;
        Ok(booking::Entity::find()
            .filter(booking::Column::UserId.eq(user))
            .order_by_desc(booking::Column::CreatedAt)
            .order_by_desc(booking::Column::Id)
            .limit(MAX_LISTED)
            .all(&self.db)
            .await?)
    }

    /// One booking, if the viewer may see it: its owner, or an admin. Someone else's booking is
    /// `FORBIDDEN`; an unknown one is `None`.
    pub async fn get(&self, viewer: &Viewer, id: i64) -> AppResult<Option<booking::Model>> {
        let user = viewer.require_user()?;
        match booking::Entity::find_by_id(id).one(&self.db).await? {
            Some(b) if b.user_id == user || viewer.is_admin() => Ok(Some(b)),
            Some(_) => Err(AppError::Forbidden(
                "this booking belongs to someone else".into(),
            )),
            None => Ok(None),
        }
    }

    /// Seats (and the price paid for each) of these bookings, in one query.
    pub async fn seats_of(&self, booking_ids: &[i64]) -> AppResult<HashMap<i64, Vec<(i64, i64)>>> {
        let rows = booking_seat::Entity::find()
            .filter(booking_seat::Column::BookingId.is_in(booking_ids.to_vec()))
            .order_by_asc(booking_seat::Column::SeatId)
            .all(&self.db)
            .await?;
        let mut out: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for r in rows {
            out.entry(r.booking_id)
                .or_default()
                .push((r.seat_id, r.price_cents));
        }
        Ok(out)
    }
}
