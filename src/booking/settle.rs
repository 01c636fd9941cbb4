//! Settling a PENDING booking from the gateway's answer. Used by checkout and by the reconciler;
//! every transition is conditional on the booking still being PENDING, so concurrent settlers
//! (several instances, a late request) agree and each side effect happens once.
use chrono::Utc;
use entity::{booking, booking_seat, payment};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use super::checkout::{charge_key, refund_key};
use super::record::{audit, event_data};
use super::{BookingStatus, Bookings, PaymentKind, PaymentStatus};
use crate::audit::Actor;
use crate::error::{AppError, AppResult};
use crate::payment::Outcome;

/// What `confirm` did.
enum Confirmed {
    /// This call moved the booking to CONFIRMED, at this time.
    Now(chrono::DateTime<Utc>),
    /// Someone else settled it first (another instance, the reconciler).
    Already,
    /// The unique index refused a seat: another live booking has it.
    SeatsTaken,
}

const SOLD_MEANWHILE: &str =
    "your seats were sold to someone else while you were paying; the charge was refunded";

impl Bookings {
    /// Settle `b` from the gateway's `outcome`. `seats` are the booking's seats when the caller
    /// knows them (checkout), saving a read; the reconciler passes `None`.
    pub(super) async fn settle(
        &self,
        b: booking::Model,
        outcome: Outcome,
        seats: Option<Vec<i64>>,
    ) -> AppResult<booking::Model> {
        match outcome {
            Outcome::Declined { reason } => {
                self.fail(
                    &b,
                    &format!("payment declined: {reason}"),
                    PaymentStatus::Declined,
                )
                .await?;
                self.release_hold(&b).await;
            }
            Outcome::Succeeded { provider_ref } => match self.confirm(&b, &provider_ref).await? {
                Confirmed::Now(at) => {
                    self.mirror_booked(&b, seats).await;
                    metrics::counter!("bookings_total", "outcome" => "confirmed").increment(1);
                    // This call moved it: its state is known without reading it back.
                    return Ok(booking::Model {
                        status: BookingStatus::Confirmed,
                        updated_at: at,
                        ..b
                    });
                }
                Confirmed::Already => {}
                Confirmed::SeatsTaken => {
                    // The database refused the seats: someone else holds a live booking on one.
                    self.refund_and_fail(&b, &provider_ref).await?;
                    self.release_hold(&b).await;
                    metrics::counter!("bookings_total", "outcome" => "lost_seats_refunded")
                        .increment(1);
                }
            },
        }
        self.reload(b.id).await
    }

    pub(super) async fn reload(&self, id: i64) -> AppResult<booking::Model> {
        booking::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("booking {id} vanished")))
    }

    /// PENDING → CONFIRMED with its seats live, unless it was settled already or the unique
    /// index refused a seat.
    async fn confirm(&self, b: &booking::Model, provider_ref: &str) -> AppResult<Confirmed> {
        // Microseconds, as stored: the model returned without a read-back equals the row.
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let c = super::one_statement::Confirmation {
            booking: b.id,
            show: b.show_id,
            user: b.user_id,
            provider_ref: provider_ref.to_string(),
            at: now,
            payload: event_data(b, "CONFIRMED"),
            detail: serde_json::json!({ "charge": provider_ref, "totalCents": b.total_cents }),
        };
        let moved = match &self.writes {
            Some(w) => w.confirm(c).await,
            None => self.confirm_in_transaction(b, &c).await,
        };
        match moved {
            Ok(true) => Ok(Confirmed::Now(now)),
            // Settled by someone else already.
            Ok(false) => Ok(Confirmed::Already),
            Err(e) if crate::db::unique_violation(&e).is_some() => {
                tracing::warn!(
                    booking = b.id,
                    "seats already booked by someone else; refunding"
                );
                Ok(Confirmed::SeatsTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The confirmation as a transaction of several statements (SQLite): whether this call moved
    /// the booking; a unique violation is returned as the error it is, with nothing written.
    async fn confirm_in_transaction(
        &self,
        b: &booking::Model,
        c: &super::one_statement::Confirmation,
    ) -> Result<bool, sea_orm::DbErr> {
        let txn = self.db.begin().await?;
        let moved = booking::Entity::update_many()
            .col_expr(
                booking::Column::Status,
                Expr::value(BookingStatus::Confirmed),
            )
            .col_expr(booking::Column::UpdatedAt, Expr::value(c.at))
            .filter(booking::Column::Id.eq(b.id))
            .filter(booking::Column::Status.eq(BookingStatus::Pending))
            .exec(&txn)
            .await?;
        if moved.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        let live = booking_seat::Entity::update_many()
            .col_expr(booking_seat::Column::Active, Expr::value(true))
            .filter(booking_seat::Column::BookingId.eq(b.id))
            .exec(&txn)
            .await;
        if let Err(e) = live {
            txn.rollback().await?;
            return Err(e);
        }
        mark_payment(
            &txn,
            b.id,
            PaymentKind::Charge,
            PaymentStatus::Succeeded,
            Some(c.provider_ref.as_str()),
            None,
        )
        .await?;
        let (data, detail) = (c.payload.clone(), c.detail.clone());
        crate::webhooks::record(&txn, "booking.confirmed", b.show_id, Some(b.id), data).await?;
        audit(&txn, Actor::System, "booking.confirmed", b, detail).await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn refund_and_fail(&self, b: &booking::Model, charge_ref: &str) -> AppResult<()> {
        let refund_ref = self.refund(b, charge_ref).await?;
        let now = Utc::now();
        let txn = self.db.begin().await?;
        mark_payment(
            &txn,
            b.id,
            PaymentKind::Charge,
            PaymentStatus::Succeeded,
            Some(charge_ref),
            None,
        )
        .await?;
        insert_refund(&txn, b, &refund_ref).await?;
        let moved = booking::Entity::update_many()
            .col_expr(booking::Column::Status, Expr::value(BookingStatus::Failed))
            .col_expr(booking::Column::FailureReason, Expr::value(SOLD_MEANWHILE))
            .col_expr(booking::Column::UpdatedAt, Expr::value(now))
            .filter(booking::Column::Id.eq(b.id))
            .filter(booking::Column::Status.eq(BookingStatus::Pending))
            .exec(&txn)
            .await?;
        if moved.rows_affected > 0 {
            let data = event_data(b, "FAILED");
            crate::webhooks::record(&txn, "booking.failed", b.show_id, Some(b.id), data.clone())
                .await?;
            crate::webhooks::record(&txn, "refund.succeeded", b.show_id, Some(b.id), data).await?;
            let why = serde_json::json!({ "reason": SOLD_MEANWHILE, "charge": charge_ref, "refund": refund_ref });
            audit(&txn, Actor::System, "booking.failed", b, why.clone()).await?;
            audit(&txn, Actor::System, "refund.succeeded", b, why).await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Refund a booking's charge (idempotent on `refund-<booking>`); the provider's reference.
    pub(super) async fn refund(&self, b: &booking::Model, charge_ref: &str) -> AppResult<String> {
        let refunded = tokio::time::timeout(
            self.payment_timeout,
            self.gateway
                .refund(&refund_key(b.id), charge_ref, b.total_cents),
        )
        .await
        .map_err(|_| AppError::Unavailable("the payment gateway"))?
        .map_err(|_| AppError::Unavailable("the payment gateway"))?;
        match refunded {
            Outcome::Succeeded { provider_ref } => Ok(provider_ref),
            Outcome::Declined { reason } => Err(AppError::internal(anyhow::anyhow!(
                "refund of booking {} refused: {reason}",
                b.id
            ))),
        }
    }

    /// PENDING → FAILED with a reason; the charge attempt gets `payment_status`.
    pub(super) async fn fail(
        &self,
        b: &booking::Model,
        reason: &str,
        payment_status: PaymentStatus,
    ) -> AppResult<()> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let moved = booking::Entity::update_many()
            .col_expr(booking::Column::Status, Expr::value(BookingStatus::Failed))
            .col_expr(booking::Column::FailureReason, Expr::value(reason))
            .col_expr(booking::Column::UpdatedAt, Expr::value(now))
            .filter(booking::Column::Id.eq(b.id))
            .filter(booking::Column::Status.eq(BookingStatus::Pending))
            .exec(&txn)
            .await?;
        if moved.rows_affected > 0 {
            mark_payment(
                &txn,
                b.id,
                PaymentKind::Charge,
                payment_status,
                None,
                Some(reason),
            )
            .await?;
            let mut data = event_data(b, "FAILED");
            data["failureReason"] = reason.into();
            crate::webhooks::record(&txn, "booking.failed", b.show_id, Some(b.id), data).await?;
            let why =
                serde_json::json!({ "reason": reason, "charge": format!("{payment_status:?}") });
            audit(&txn, Actor::System, "booking.failed", b, why).await?;
            metrics::counter!("bookings_total", "outcome" => "failed").increment(1);
        }
        txn.commit().await?;
        Ok(())
    }

    /// Give the booking's hold back (its seats become available at once). A hold that already
    /// ended is fine.
    pub(super) async fn release_hold(&self, b: &booking::Model) {
        if let Some(h) = &b.hold_id {
            if let Err(e) = self.holds.give_back(b.show_id, h, b.user_id).await {
                tracing::warn!(booking = b.id, error = %e, "could not release the hold; it will expire");
            }
        }
    }

    /// Mirror a confirmed booking in the hold store. The database is already right; if the store
    /// is down the mirror is retried in the background (and rebuilt from the database if Redis
    /// lost its data).
    pub(super) async fn mirror_booked(&self, b: &booking::Model, known: Option<Vec<i64>>) {
        let seats = match known {
            Some(s) => s,
            None => match self.seat_ids(b.id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(booking = b.id, error = %e, "cannot read booked seats to mirror them");
                    return;
                }
            },
        };
        let holds = self.holds.clone();
        let (show, hold) = (b.show_id, b.hold_id.clone());
        if holds
            .mirror_booked(show, hold.as_deref(), &seats)
            .await
            .is_ok()
        {
            return;
        }
        let id = b.id;
        tokio::spawn(async move {
            for attempt in 1..=20u32 {
                tokio::time::sleep(std::time::Duration::from_millis(250 * attempt as u64)).await;
                match holds.mirror_booked(show, hold.as_deref(), &seats).await {
                    Ok(_) => return,
                    Err(e) if attempt == 20 => {
                        tracing::error!(booking = id, error = %e, "booked seats not mirrored in the hold store")
                    }
                    Err(_) => {}
                }
            }
        });
    }

    pub(super) async fn seat_ids(&self, booking_id: i64) -> AppResult<Vec<i64>> {
        Ok(booking_seat::Entity::find()
            .filter(booking_seat::Column::BookingId.eq(booking_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| r.seat_id)
            .collect())
    }
}

pub(super) async fn mark_payment<C: ConnectionTrait>(
    c: &C,
    booking_id: i64,
    kind: PaymentKind,
    status: PaymentStatus,
    provider_ref: Option<&str>,
    reason: Option<&str>,
) -> Result<(), sea_orm::DbErr> {
    let key = match kind {
        PaymentKind::Charge => charge_key(booking_id),
        PaymentKind::Refund => refund_key(booking_id),
    };
    let mut q = payment::Entity::update_many()
        .col_expr(payment::Column::Status, Expr::value(status))
        .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(r) = provider_ref {
        q = q.col_expr(payment::Column::ProviderRef, Expr::value(r));
    }
    if let Some(r) = reason {
        q = q.col_expr(payment::Column::FailureReason, Expr::value(r));
    }
    q.filter(payment::Column::IdempotencyKey.eq(key))
        .exec(c)
        .await?;
    Ok(())
}

/// The `REFUND` payment row of booking `b` (key `refund-<booking>`), stamped now.
pub(super) fn refund_row(
    b: &booking::Model,
    provider_ref: Option<String>,
    status: PaymentStatus,
) -> payment::ActiveModel {
    let now = Utc::now();
    payment::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        booking_id: Set(b.id),
        kind: Set(PaymentKind::Refund),
        amount_cents: Set(b.total_cents),
        idempotency_key: Set(refund_key(b.id)),
        provider_ref: Set(provider_ref),
        status: Set(status),
        failure_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Record a refund attempt that succeeded (idempotent on its key): a new row, or the refund
/// intent written before the gateway was asked (`cancel`) marked `SUCCEEDED` — one statement.
pub(super) async fn insert_refund<C: ConnectionTrait>(
    c: &C,
    b: &booking::Model,
    refund_ref: &str,
) -> AppResult<()> {
    let row = refund_row(b, Some(refund_ref.to_string()), PaymentStatus::Succeeded);
    // ON CONFLICT rather than catching the violation: on PostgreSQL a failed statement would
    // abort the surrounding transaction.
    payment::Entity::insert(row)
        .on_conflict(
            OnConflict::column(payment::Column::IdempotencyKey)
                .update_columns([
                    payment::Column::Status,
                    payment::Column::ProviderRef,
                    payment::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}
