//! `checkout`: verify the hold, extend it for the payment, write a PENDING booking and its charge
//! attempt, charge, then settle. Each step is durable before the next, so a crash anywhere leaves
//! a state the reconciler can finish.
use chrono::Utc;
use entity::{booking, booking_seat, payment};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};

use super::{BookingStatus, Bookings, PaymentKind, PaymentStatus};
use crate::auth::Viewer;
use crate::error::{AppError, AppResult};

/// Extra time a hold gets for the payment beyond the gateway timeout.
const PAYMENT_MARGIN_SECS: u64 = 30;

pub fn charge_key(booking_id: i64) -> String {
    format!("charge-{booking_id}")
}
pub fn refund_key(booking_id: i64) -> String {
    format!("refund-{booking_id}")
}

fn validate_key(key: &str) -> AppResult<String> {
    let k = key.trim();
    if k.is_empty() || k.len() > 128 || k.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AppError::bad_input(
            "idempotencyKey must be 1–128 printable characters without spaces",
        ));
    }
    Ok(k.to_string())
}

impl Bookings {
    pub(super) async fn find_by_key(
        &self,
        user: i64,
        key: &str,
    ) -> AppResult<Option<booking::Model>> {
        Ok(booking::Entity::find()
            .filter(booking::Column::UserId.eq(user))
            .filter(booking::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?)
    }

    /// Pay for a live hold of the viewer's. Runs to its end even if the caller stops waiting
    /// (see `detached`): the same key then finds the same booking.
    pub async fn checkout(
        &self,
        viewer: &Viewer,
        hold_id: &str,
        key: &str,
    ) -> AppResult<booking::Model> {
        viewer.require_user()?;
        let turn = self.admission.admit().await?;
        let (this, viewer, hold_id, key) = (
            self.clone(),
            viewer.clone(),
            hold_id.to_string(),
            key.to_string(),
        );
        super::detached(async move {
            let _turn = turn;
            this.checkout_now(&viewer, &hold_id, &key).await
        })
        .await
    }

    async fn checkout_now(
        &self,
        viewer: &Viewer,
        hold_id: &str,
        key: &str,
    ) -> AppResult<booking::Model> {
        let user = viewer.require_user()?;
        let key = validate_key(key)?;
        // The same key from the same user is the same booking, whatever its state. A replay is
        // rare, so it is looked for only where it shows: the hold is gone (settled) — here — or
        // the insert below meets the key's unique index (still paying).
        let window = self.payment_timeout + std::time::Duration::from_secs(PAYMENT_MARGIN_SECS);
        let (show_id, hold) = match self.holds.keep_for_payment(viewer, hold_id, window).await {
            Ok(kept) => kept,
            Err(e) => {
                return match self.find_by_key(user, &key).await {
                    Ok(Some(existing)) => Ok(existing),
                    _ => Err(e),
                }
            }
        };

        // Price each seat as of now.
        let show = self.catalogue.priced_show(show_id).await?;
        let mut priced = Vec::with_capacity(hold.seat_ids.len());
        for s in &hold.seat_ids {
            let price = show.price_of(*s).ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("held seat {s} not in layout"))
            })?;
            priced.push((*s, price));
        }
        let total: i64 = priced.iter().map(|(_, p)| p).sum();

        // Durable intent: the PENDING booking, its (inactive) seats and its charge attempt, with
        // the audit entry of the hold this booking consumes (holds themselves live in Redis).
        let seats: Vec<i64> = priced.iter().map(|(s, _)| *s).collect();
        let what = serde_json::json!({ "holdId": hold_id, "seatIds": seats, "totalCents": total });
        // Microseconds, as stored: the model built here equals the row.
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        let pending = super::one_statement::Intent {
            user,
            show: show_id,
            hold_id: hold_id.to_string(),
            key: key.clone(),
            total,
            seats: priced,
            at: now,
            detail: what,
        };
        let written = match &self.writes {
            Some(w) => w
                .intent(pending.clone())
                .await
                .map(|id| pending.booking(id)),
            None => self.intent_in_transaction(&pending).await,
        };
        let created = match written {
            Ok(b) => b,
            Err(e) if crate::db::unique_violation(&e).is_some() => {
                // A concurrent call with the same key won the insert: return its booking. Otherwise
                // this hold is already being checked out under another key.
                return match self.find_by_key(user, &key).await? {
                    Some(b) => {
                        // The hold was still live, yet the booking is settled: the instance that
                        // settled it died before mirroring it in the store. Finish that here.
                        match b.status {
                            BookingStatus::Confirmed => self.mirror_booked(&b, None).await,
                            BookingStatus::Pending => {}
                            _ => self.release_hold(&b).await,
                        }
                        Ok(b)
                    }
                    None => Err(AppError::HoldExpired),
                };
            }
            Err(e) => return Err(e.into()),
        };

        // Charge. On a timeout or an outage the booking stays PENDING: the client may retry with
        // the same key (it gets this booking), and the reconciler settles it from the gateway.
        let charged = tokio::time::timeout(
            self.payment_timeout,
            self.gateway.charge(&charge_key(created.id), total),
        )
        .await;
        match charged {
            Ok(Ok(outcome)) => self.settle(created, outcome, Some(hold.seat_ids)).await,
            Ok(Err(e)) => {
                tracing::warn!(booking = created.id, error = %e, "charge failed; the reconciler will settle it");
                Err(AppError::Unavailable("the payment gateway"))
            }
            Err(_) => {
                tracing::warn!(
                    booking = created.id,
                    "charge timed out; the reconciler will settle it"
                );
                Err(AppError::Unavailable("the payment gateway"))
            }
        }
    }

    /// The intent as a transaction of several statements (SQLite, in-process: round trips are free
    /// there). A unique violation is returned as the error it is, with nothing written.
    async fn intent_in_transaction(
        &self,
        i: &super::one_statement::Intent,
    ) -> Result<booking::Model, sea_orm::DbErr> {
        let txn = self.db.begin().await?;
        let created = match (booking::ActiveModel {
            user_id: Set(i.user),
            show_id: Set(i.show),
            hold_id: Set(Some(i.hold_id.clone())),
            status: Set(BookingStatus::Pending),
            total_cents: Set(i.total),
            idempotency_key: Set(i.key.clone()),
            failure_reason: Set(None),
            created_at: Set(i.at),
            updated_at: Set(i.at),
            ..Default::default()
        })
        .insert(&txn)
        .await
        {
            Ok(b) => b,
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        let seat_rows: Vec<booking_seat::ActiveModel> = i
            .seats
            .iter()
            .map(|(seat, price)| booking_seat::ActiveModel {
                booking_id: Set(created.id),
                seat_id: Set(*seat),
                show_id: Set(i.show),
                price_cents: Set(*price),
                active: Set(false),
            })
            .collect();
        booking_seat::Entity::insert_many(seat_rows)
            .exec_without_returning(&txn)
            .await?;
        payment::ActiveModel {
            booking_id: Set(created.id),
            kind: Set(PaymentKind::Charge),
            amount_cents: Set(i.total),
            idempotency_key: Set(charge_key(created.id)),
            provider_ref: Set(None),
            status: Set(PaymentStatus::Pending),
            failure_reason: Set(None),
            created_at: Set(i.at),
            updated_at: Set(i.at),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let by = crate::audit::Actor::User(i.user);
        let what = i.detail.clone();
        super::record::audit(&txn, by, "booking.created", &created, what).await?;
        txn.commit().await?;
        Ok(created)
    }
}
