//! `cancelBooking`: record the refund intent, refund, then cancel and free the seats (database,
//! then store, then publish). The reconciler finishes a cancellation a crash interrupted.
use chrono::Utc;
use entity::{booking, booking_seat, payment, show};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, ExprTrait, QueryFilter, TransactionTrait,
};

use super::settle::{insert_refund, refund_row};
use super::{BookingStatus, Bookings, PaymentKind, PaymentStatus};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};

impl Bookings {
    /// Cancel a confirmed booking: refund, then free its seats. Runs to its end even if the
    /// caller stops waiting (see `detached`); cancelling again returns the cancelled booking.
    pub async fn cancel(&self, viewer: &Viewer, booking_id: i64) -> AppResult<booking::Model> {
        viewer.require_user()?;
        let turn = self.admission.admit().await?;
        let (this, viewer) = (self.clone(), viewer.clone());
        super::detached(async move {
            let _turn = turn;
            this.cancel_now(&viewer, booking_id).await
        })
        .await
    }

    async fn cancel_now(&self, viewer: &Viewer, booking_id: i64) -> AppResult<booking::Model> {
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
        match b.status {
            BookingStatus::Cancelled => return Ok(b),
            BookingStatus::Pending => {
                return Err(AppError::bad_input(
                    "the payment of this booking is still in progress; try again in a moment",
                ))
            }
            BookingStatus::Failed => {
                return Err(AppError::bad_input(
                    "this booking failed; there is nothing to cancel",
                ))
            }
            BookingStatus::Confirmed => {}
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

        // Refund first (idempotent on its key): if the gateway is down nothing changes. The
        // intent is durable before the gateway is called, so that a crash between the refund and
        // the database is found and finished by the reconciler (`finish_refunds`).
        let charge = payment::Entity::find()
            .filter(payment::Column::BookingId.eq(b.id))
            .filter(payment::Column::Kind.eq(PaymentKind::Charge))
            .filter(payment::Column::Status.eq(PaymentStatus::Succeeded))
            .one(&self.db)
            .await?
            .ok_or_else(|| {
                AppError::internal(anyhow::anyhow!(
                    "confirmed booking {booking_id} has no captured charge"
                ))
            })?;
        let charge_ref = charge.provider_ref.unwrap_or_default();
        record_refund_intent(&self.db, &b).await?;
        let refund_ref = self.refund(&b, &charge_ref).await?;
        self.finish_cancel(&b, &refund_ref).await?;
        self.reload(b.id).await
    }

    /// The refund went through: record it, cancel the booking, free its seats (database, then
    /// store). Idempotent: a second run changes nothing.
    pub(super) async fn finish_cancel(
        &self,
        b: &booking::Model,
        refund_ref: &str,
    ) -> AppResult<()> {
        let txn = self.db.begin().await?;
        insert_refund(&txn, b, refund_ref).await?;
        let moved = booking::Entity::update_many()
            .col_expr(
                booking::Column::Status,
                Expr::value(BookingStatus::Cancelled),
            )
            .col_expr(booking::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(booking::Column::Id.eq(b.id))
            .filter(booking::Column::Status.eq(BookingStatus::Confirmed))
            .exec(&txn)
            .await?;
        booking_seat::Entity::update_many()
            .col_expr(booking_seat::Column::Active, Expr::value(false))
            .filter(booking_seat::Column::BookingId.eq(b.id))
            .exec(&txn)
            .await?;
        if moved.rows_affected > 0 {
            let data = super::record::event_data(b, "CANCELLED");
            crate::webhooks::record(
                &txn,
                "booking.cancelled",
                b.show_id,
                Some(b.id),
                data.clone(),
            )
            .await?;
            crate::webhooks::record(&txn, "refund.succeeded", b.show_id, Some(b.id), data).await?;
            let why = serde_json::json!({ "refund": refund_ref, "totalCents": b.total_cents });
            let by = crate::audit::Actor::System;
            super::record::audit(&txn, by, "booking.cancelled", b, why.clone()).await?;
            super::record::audit(&txn, by, "refund.succeeded", b, why).await?;
        }
        txn.commit().await?;

        if moved.rows_affected > 0 {
            metrics::counter!("bookings_total", "outcome" => "cancelled").increment(1);
            let seats = self.seat_ids(b.id).await?;
            if let Err(e) = self.holds.mirror_freed(b.show_id, &seats).await {
                // The database has freed them; the store catches up when it reloads from it (data
                // lost) or, if it already reloaded, from the reconciler's convergence pass.
                tracing::warn!(booking = b.id, error = %e, "cancelled seats not mirrored in the hold store");
            }
        }
        Ok(())
    }
}

/// A `PENDING` refund attempt, written before the gateway is asked. A retried cancel after an
/// interrupted one re-arms the attempt (back to `PENDING`, fresh timestamp) unless it succeeded.
async fn record_refund_intent(db: &DatabaseConnection, b: &booking::Model) -> AppResult<()> {
    let row = refund_row(b, None, PaymentStatus::Pending);
    payment::Entity::insert(row)
        .on_conflict(
            OnConflict::column(payment::Column::IdempotencyKey)
                .update_columns([payment::Column::Status, payment::Column::UpdatedAt])
                .action_and_where(
                    Expr::col((payment::Entity, payment::Column::Status))
                        .ne(PaymentStatus::Succeeded),
                )
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}
