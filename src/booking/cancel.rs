//! `cancelBooking`: refund, then free the seats (database, then store, then publish).
use chrono::Utc;
use entity::{booking, booking_seat, payment, show};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

use super::settle::insert_refund;
use super::{Bookings, CANCELLED, CONFIRMED, FAILED, PENDING};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};

impl Bookings {
    pub async fn cancel(&self, viewer: &Viewer, booking_id: i64) -> AppResult<booking::Model> {
        let user = viewer.require_user()?;
        let b = booking::Entity::find_by_id(booking_id)
            .one(&self.db)
            .await?
            .ok_or(AppError::NotFound("booking"))?;
        if b.user_id != user && !viewer.is_admin() {
            return Err(AppError::Forbidden(
                "this booking belongs to someone else".into(),
            ));
        }
        match b.status.as_str() {
            CANCELLED => return Ok(b),
            PENDING => {
                return Err(AppError::bad_input(
                    "the payment of this booking is still in progress; try again in a moment",
                ))
            }
            FAILED => {
                return Err(AppError::bad_input(
                    "this booking failed; there is nothing to cancel",
                ))
            }
            CONFIRMED => {}
            other => {
                return Err(AppError::internal(anyhow::anyhow!(
                    "booking {booking_id} has status {other}"
                )))
            }
        }
        let show = show::Entity::find_by_id(b.show_id)
            .one(&self.db)
            .await?
            .ok_or(AppError::NotFound("show"))?;
        if show.starts_at <= Utc::now() && !viewer.is_admin() {
            return Err(AppError::bad_input(
                "the show has started; the booking can no longer be cancelled",
            ));
        }

        // Refund first (idempotent on its key): if the gateway is down nothing changes.
        let charge = payment::Entity::find()
            .filter(payment::Column::BookingId.eq(b.id))
            .filter(payment::Column::Kind.eq("CHARGE"))
            .filter(payment::Column::Status.eq("SUCCEEDED"))
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                AppError::internal(anyhow::anyhow!(
                    "confirmed booking {booking_id} has no captured charge"
                ))
            })?;
        let charge_ref = charge.provider_ref.unwrap_or_default();
        let refund_ref = self.refund(&b, &charge_ref).await?;

        let txn = self.db.begin().await?;
        insert_refund(&txn, &b, &refund_ref).await?;
        let moved = booking::Entity::update_many()
            .col_expr(booking::Column::Status, Expr::value(CANCELLED))
            .col_expr(booking::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(booking::Column::Id.eq(b.id))
            .filter(booking::Column::Status.eq(CONFIRMED))
            .exec(&txn)
            .await?;
        booking_seat::Entity::update_many()
            .col_expr(booking_seat::Column::Active, Expr::value(false))
            .filter(booking_seat::Column::BookingId.eq(b.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;

        if moved.rows_affected > 0 {
            metrics::counter!("bookings_total", "outcome" => "cancelled").increment(1);
            let seats = self.seat_ids(b.id).await?;
            if let Err(e) = self.holds.store().unbook(b.show_id, &seats).await {
                // The database has freed them; the store catches up when it reloads from it.
                tracing::warn!(booking = b.id, error = %e, "cancelled seats not mirrored in the hold store");
            }
        }
        self.reload(b.id).await
    }
}
