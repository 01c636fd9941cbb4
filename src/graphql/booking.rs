//! The `Booking` type.
use async_graphql::{Context, Enum, Object, Result, ID};
use chrono::{DateTime, Utc};
use entity::booking;

use super::loaders::{loaders, must, shared, show_parts, SeatsOfBooking, ShowId, ShowParts};
use super::types::{to_int, viewer, Seat, Show};
use crate::catalogue::seatmap::{self, SeatView};

// The schema's name for the stored `entity::booking::BookingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entity::booking::BookingStatus")]
pub enum BookingStatus {
    Pending,
    Confirmed,
    Failed,
    Cancelled,
}

pub struct Booking(pub booking::Model);

#[Object]
impl Booking {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn show(&self, ctx: &Context<'_>) -> Result<Show> {
        Ok(Show::new(
            must(&loaders(ctx), ShowId(self.0.show_id), "show").await?,
        ))
    }
    /// The booked seats with the price paid for each and their status now.
    async fn seats(&self, ctx: &Context<'_>) -> Result<Vec<Seat>> {
        let l = loaders(ctx);
        let ShowParts { layout, state, .. } = show_parts(&l, self.0.show_id).await?;
        let seats = l
            .load_one(SeatsOfBooking(self.0.id))
            .await
            .map_err(shared)?
            .unwrap_or_default();
        let me = viewer(ctx).user_id();
        Ok(seats
            .iter()
            .filter_map(|(seat_id, paid)| {
                let info = layout.seat(*seat_id)?;
                let mut view: SeatView = seatmap::seat_view(info, &Default::default(), &state, me);
                view.price_cents = *paid;
                Some(Seat(view))
            })
            .collect())
    }
    async fn status(&self) -> BookingStatus {
        self.0.status.into()
    }
    async fn total_cents(&self) -> i32 {
        to_int(self.0.total_cents)
    }
    /// Why the booking failed (declined payment, seats lost), when it did.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(Default)]
pub struct BookingMutation;

#[async_graphql::Object]
impl BookingMutation {
    /// Pay for a live hold of yours. The same `idempotencyKey` returns the same booking and never
    /// charges twice. Declined: `FAILED` with `failureReason`, seats free again.
    async fn checkout(
        &self,
        ctx: &Context<'_>,
        hold_id: ID,
        idempotency_key: String,
    ) -> Result<Booking> {
        let state = ctx.data_unchecked::<crate::state::AppState>();
        let booking = state
            .bookings
            .checkout(viewer(ctx), hold_id.as_str(), &idempotency_key)
            .await?;
        Ok(Booking(booking))
    }

    /// Cancel a confirmed booking (yours; admins: any): refunded, seats freed. Cancelling again
    /// returns the cancelled booking.
    async fn cancel_booking(&self, ctx: &Context<'_>, booking_id: ID) -> Result<Booking> {
        let v = viewer(ctx);
        v.require_user()?;
        let id = crate::ids::parse_id(&booking_id, "booking")?;
        let state = ctx.data_unchecked::<crate::state::AppState>();
        Ok(Booking(state.bookings.cancel(v, id).await?))
    }
}
