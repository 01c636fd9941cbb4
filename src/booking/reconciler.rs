//! The reconciler: settles checkouts that a crash (or a gateway outage) left PENDING for longer
//! than a request can take. Runs at start-up and periodically on every instance; conditional
//! transitions make concurrent runs safe.
use std::time::Duration;

use chrono::Utc;
use entity::booking;
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
            .filter(booking::Column::Status.eq(super::PENDING))
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
            match self.settle(b.clone(), outcome).await {
                Ok(done) => {
                    tracing::info!(booking = b.id, status = %done.status, "reconciled an interrupted checkout");
                    settled += 1;
                }
                Err(e) => {
                    tracing::warn!(booking = b.id, error = %e, "could not settle; will retry")
                }
            }
        }
        if settled > 0 {
            metrics::counter!("bookings_reconciled_total").increment(settled as u64);
        }
        Ok(settled)
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
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = bookings.reconcile_once().await {
                tracing::warn!(error = %e, "reconciler pass failed; retrying");
            }
        }
    })
}
