//! The reconciler: settles checkouts that a crash (or a gateway outage) left PENDING for longer
//! than a request can take, finishes cancellations interrupted between refund and database, and
//! (periodically) repairs the hold store from the database (`converge`). Runs at start-up and
//! periodically on every instance; conditional transitions make concurrent runs safe.
use std::time::Duration;

use chrono::Utc;
use entity::{booking, payment};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;

use super::checkout::charge_key;
use super::Bookings;
use crate::error::AppResult;
use crate::payment::Outcome;

/// Age past which a PENDING booking is no longer being worked on by a request.
const MARGIN: Duration = Duration::from_secs(5);

impl Bookings {
    /// Settle every stale PENDING booking (up to a batch). Returns how many were settled.
    pub async fn reconcile_once(&self) -> AppResult<usize> {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.payment_timeout + MARGIN).unwrap_or_default();
        let stale = booking::Entity::find()
            .filter(booking::Column::Status.eq(super::BookingStatus::Pending))
            .filter(booking::Column::UpdatedAt.lt(cutoff))
            .order_by_asc(booking::Column::UpdatedAt)
            .limit(200)
            .all(&self.db)
            .await?;
        let mut settled = 0;
        for b in stale {
            let key = charge_key(b.id);
            // Ask the provider what happened. If it never saw the charge, claim the key as
            // abandoned so that a late charge with it cannot go through afterwards.
            let outcome = match self.gateway.status(&key).await {
                Ok(Some(record)) => record.outcome,
                Ok(None) => match self.gateway.abandon(&key).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(booking = b.id, error = %e, "gateway unavailable; will retry");
                        continue;
                    }
                },
                Err(e) => {
                    tracing::warn!(booking = b.id, error = %e, "gateway unavailable; will retry");
                    continue;
                }
            };
            let outcome = match outcome {
                Outcome::Declined { reason } if reason == crate::payment::ABANDONED => {
                    Outcome::Declined {
                        reason:
                            "the checkout was interrupted before the payment; you were not charged"
                                .into(),
                    }
                }
                o => o,
            };
            match self.settle(b.clone(), outcome, None).await {
                Ok(done) => {
                    tracing::info!(booking = b.id, status = %done.status, "reconciled an interrupted checkout");
                    settled += 1;
                }
                Err(e) => {
                    tracing::warn!(booking = b.id, error = %e, "could not settle; will retry")
                }
            }
        }
        settled += self.finish_refunds(cutoff).await?;
        if settled > 0 {
            metrics::counter!("bookings_reconciled_total").increment(settled as u64);
        }
        Ok(settled)
    }

    /// Cancellations a crash interrupted: a refund intent still `PENDING` after any request that
    /// wrote it has ended. The gateway's record decides: refunded → finish the cancellation;
    /// never seen → the refund did not happen and the booking stands (the attempt is `DECLINED` or `ERROR`).
    async fn finish_refunds(&self, cutoff: chrono::DateTime<Utc>) -> AppResult<usize> {
        let stale = payment::Entity::find()
            .filter(payment::Column::Kind.eq(super::PaymentKind::Refund))
            .filter(payment::Column::Status.eq(super::PaymentStatus::Pending))
            .filter(payment::Column::UpdatedAt.lt(cutoff))
            .order_by_asc(payment::Column::UpdatedAt)
            .limit(200)
            .all(&self.db)
            .await?;
        let mut finished = 0;
        for p in stale {
            let Some(b) = booking::Entity::find_by_id(p.booking_id)
                .one(&self.db)
                .await?
            else {
                continue;
            };
            let (status, reason) = match self.gateway.status(&p.idempotency_key).await {
                Ok(Some(record)) => match record.outcome {
                    Outcome::Succeeded { provider_ref } => {
                        self.finish_cancel(&b, &provider_ref).await?;
                        tracing::info!(booking = b.id, "finished an interrupted cancellation");
                        finished += 1;
                        continue;
                    }
                    Outcome::Declined { reason } => (
                        super::PaymentStatus::Declined,
                        format!("refund declined: {reason}"),
                    ),
                },
                Ok(None) => (
                    super::PaymentStatus::Error,
                    "the cancellation was interrupted before the refund; the booking stands".into(),
                ),
                Err(e) => {
                    tracing::warn!(booking = b.id, error = %e, "gateway unavailable; will retry");
                    continue;
                }
            };
            // Only if still pending: a retried cancel may have finished it meanwhile.
            payment::Entity::update_many()
                .col_expr(payment::Column::Status, Expr::value(status))
                .col_expr(payment::Column::FailureReason, Expr::value(reason))
                .col_expr(payment::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(payment::Column::Id.eq(p.id))
                .filter(payment::Column::Status.eq(super::PaymentStatus::Pending))
                .exec(&self.db)
                .await?;
            finished += 1;
        }
        Ok(finished)
    }
}

pub fn spawn(
    bookings: Bookings,
    period: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = super::converge::Watch::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = bookings.reconcile_once().await {
                tracing::warn!(error = %e, "reconciler pass failed; retrying");
            }
            if let Err(e) = bookings.converge_pass(&mut watch).await {
                tracing::warn!(error = %e, "hold store convergence failed; retrying");
            }
        }
    })
}
