//! The dispatcher: fans new outbox events out to their webhooks and delivers what is due. Runs
//! on every instance; rows are claimed so that instances share the work without sending one
//! attempt twice (see `super` for the guarantees).
use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use entity::{outbox, webhook, webhook_delivery};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use tokio_util::sync::CancellationToken;

pub const PENDING: &str = "PENDING";
pub const DELIVERED: &str = "DELIVERED";
pub const FAILED: &str = "FAILED";

/// Attempts before a delivery is given up (with the backoff capped at an hour: about 3 days).
pub const MAX_ATTEMPTS: i32 = 80;
/// Failures in a row after which a webhook is parked.
pub const PARK_AFTER: i32 = 100;
/// Rows handled per step; a tick repeats a full step up to `ROUNDS` times (an on-sale confirms
/// hundreds of bookings a second).
const BATCH: u64 = 1000;
const ROUNDS: usize = 10;

#[derive(Clone)]
pub struct Dispatcher {
    db: DatabaseConnection,
    client: reqwest::Client,
    retry_base: Duration,
    /// How long a claimed attempt is ours: past it (the instance died mid-send) another may
    /// send it — 2 × the send timeout + 1 s.
    lease: Duration,
}

/// The wait before attempt `n + 1` after `n` failed ones: base × 2^(n−1), at most an hour.
pub fn backoff(base: Duration, failed: i32) -> Duration {
    let exp = failed.clamp(1, 30) as u32 - 1;
    base.saturating_mul(2u32.saturating_pow(exp))
        .min(Duration::from_secs(3600))
}

impl Dispatcher {
    pub fn new(
        db: DatabaseConnection,
        retry_base: Duration,
        send_timeout: Duration,
    ) -> anyhow::Result<Dispatcher> {
        // rustls on ring for HTTPS endpoints; already installed is fine (tests build many apps).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(send_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("boxoffice-webhooks/1")
            .build()?;
        Ok(Dispatcher {
            db,
            client,
            retry_base,
            lease: send_timeout * 2 + Duration::from_secs(1),
        })
    }

    /// Give each new event a delivery row per subscribed webhook (created before the event),
    /// and mark it fanned out, in one transaction per batch. Returns the events this call marked.
    ///
    /// On PostgreSQL the batch is claimed: its rows are read `FOR UPDATE SKIP LOCKED` in the
    /// transaction that marks them, so an instance passes over the events another one is fanning
    /// out and takes the next ones, instead of reading, inserting and marking the same batch
    /// again after waiting for the other's locks (three instances in an on-sale marked each
    /// event 1.45 times, `pg_stat_user_tables`, 2026-12-04). SQLite has one writer and no row
    /// locks: the batch is read before the transaction, which then begins with its writes, and
    /// the mark counts only the events still unmarked.
    pub async fn fan_out(&self) -> Result<u64, DbErr> {
        let unfanned = outbox::Entity::find()
            .filter(outbox::Column::FannedOut.eq(false))
            .order_by_asc(outbox::Column::Id)
            .limit(BATCH);
        let live_hooks = webhook::Entity::find().filter(webhook::Column::DisabledAt.is_null());
        // PostgreSQL reads in the transaction, on its own connection; SQLite before it, so that
        // the transaction's first statement is a write.
        let (claim, events) = if self.db.get_database_backend() == DbBackend::Postgres {
            let txn = self.db.begin().await?;
            let events = unfanned
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .all(&txn)
                .await?;
            (Some(txn), events)
        } else {
            (None, unfanned.all(&self.db).await?)
        };
        if events.is_empty() {
            return Ok(0);
        }
        let (txn, hooks) = match claim {
            Some(txn) => {
                let hooks = live_hooks.all(&txn).await?;
                (txn, hooks)
            }
            None => {
                let hooks = live_hooks.all(&self.db).await?;
                (self.db.begin().await?, hooks)
            }
        };
        // One transaction for the whole batch: its delivery rows (none when nobody subscribes)
        // and the events marked done.
        let rows: Vec<webhook_delivery::ActiveModel> = events
            .iter()
            .flat_map(|e| {
                hooks
                    .iter()
                    .filter(|h| {
                        h.created_at <= e.created_at && h.events.split(',').any(|k| k == e.kind)
                    })
                    .map(|h| webhook_delivery::ActiveModel {
                        outbox_id: Set(e.id),
                        webhook_id: Set(h.id),
                        status: Set(PENDING.into()),
                        attempts: Set(0),
                        next_attempt_at: Set(Utc::now()),
                        last_status: Set(None),
                        last_error: Set(None),
                        delivered_at: Set(None),
                        ..Default::default()
                    })
            })
            .collect();
        // SQLite takes at most 32,766 bound values per statement: 500 rows of 8 stay well below.
        for chunk in rows.chunks(500) {
            webhook_delivery::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        webhook_delivery::Column::OutboxId,
                        webhook_delivery::Column::WebhookId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        // The batch's id range beside its list: with the list alone (up to `BATCH` values) the
        // planner priced a scan of the whole table below that many index lookups, and the table
        // keeps every event ever written — 32 ms a batch at 45,000 rows (auto_explain,
        // 2026-12-04). The range bounds it to the batch's own stretch of the primary key.
        // (`events` is in id order and not empty.)
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let marked = outbox::Entity::update_many()
            .col_expr(outbox::Column::FannedOut, Expr::value(true))
            .filter(outbox::Column::Id.between(first, last))
            .filter(outbox::Column::Id.is_in(ids))
            .filter(outbox::Column::FannedOut.eq(false))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(marked.rows_affected)
    }

    /// Send every due delivery of a live (not parked, not disabled) webhook. Returns attempts.
    pub async fn deliver(&self) -> Result<u64, DbErr> {
        let now = Utc::now();
        let due = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq(PENDING))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let hook_ids: Vec<i64> = due.iter().map(|d| d.webhook_id).collect();
        let hooks: HashMap<i64, webhook::Model> = webhook::Entity::find()
            .filter(webhook::Column::Id.is_in(hook_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|h| (h.id, h))
            .collect();
        let event_ids: Vec<i64> = due.iter().map(|d| d.outbox_id).collect();
        let events: HashMap<i64, outbox::Model> = outbox::Entity::find()
            .filter(outbox::Column::Id.is_in(event_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let mut sends = Vec::new();
        for d in due {
            let (Some(h), Some(e)) = (hooks.get(&d.webhook_id), events.get(&d.outbox_id)) else {
                continue;
            };
            if h.parked_at.is_some() || h.disabled_at.is_some() {
                continue;
            }
            // Claim: move the attempt time forward by the lease, only if nobody else did.
            let lease = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
            let claimed = webhook_delivery::Entity::update_many()
                .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(lease))
                .filter(webhook_delivery::Column::Id.eq(d.id))
                .filter(webhook_delivery::Column::Status.eq(PENDING))
                .filter(webhook_delivery::Column::NextAttemptAt.eq(d.next_attempt_at))
                .exec(&self.db)
                .await?;
            if claimed.rows_affected == 1 {
                sends.push(self.send(d, h.clone(), e.clone()));
            }
        }
        let n = sends.len() as u64;
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        Ok(n)
    }

    async fn send(
        &self,
        d: webhook_delivery::Model,
        h: webhook::Model,
        e: outbox::Model,
    ) -> Result<(), DbErr> {
        let data: serde_json::Value =
            serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({
            "id": e.event_id,
            "type": e.kind,
            "createdAt": e.created_at.to_rfc3339(),
            "data": data,
        })
        .to_string();
        let t = Utc::now().timestamp();
        let sent = self
            .client
            .post(&h.url)
            .header("content-type", "application/json")
            .header(
                "boxoffice-signature",
                super::signature(&h.secret, t, body.as_bytes()),
            )
            .header("boxoffice-event-id", &e.event_id)
            .body(body)
            .send()
            .await;
        let (ok, status, error) = match sent {
            Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16() as i32), None),
            Ok(r) => (
                false,
                Some(r.status().as_u16() as i32),
                Some(format!("HTTP {}", r.status().as_u16())),
            ),
            Err(err) => (
                false,
                None,
                Some(err.to_string().chars().take(400).collect()),
            ),
        };
        let attempts = d.attempts + 1;
        let now = Utc::now();
        let mut update = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(webhook_delivery::Column::LastStatus, Expr::value(status))
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(error.clone()),
            );
        if ok {
            metrics::counter!("webhook_deliveries_total", "outcome" => "delivered").increment(1);
            update = update
                .col_expr(webhook_delivery::Column::Status, Expr::value(DELIVERED))
                .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(now));
        } else if attempts >= MAX_ATTEMPTS {
            metrics::counter!("webhook_deliveries_total", "outcome" => "gave_up").increment(1);
            update = update.col_expr(webhook_delivery::Column::Status, Expr::value(FAILED));
        } else {
            metrics::counter!("webhook_deliveries_total", "outcome" => "retry").increment(1);
            let wait = backoff(self.retry_base, attempts);
            let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
            update = update.col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(next));
        }
        update
            .filter(webhook_delivery::Column::Id.eq(d.id))
            .exec(&self.db)
            .await?;
        // The webhook's run of failures: reset by a success, parked past `PARK_AFTER`.
        let hook = webhook::Entity::update_many().filter(webhook::Column::Id.eq(h.id));
        if ok {
            hook.col_expr(webhook::Column::ConsecutiveFailures, Expr::value(0))
                .exec(&self.db)
                .await?;
        } else {
            tracing::info!(webhook = h.id, event = %e.event_id, attempts, error = ?error, "webhook delivery failed; will retry");
            hook.col_expr(
                webhook::Column::ConsecutiveFailures,
                Expr::col(webhook::Column::ConsecutiveFailures).add(1),
            )
            .exec(&self.db)
            .await?;
            webhook::Entity::update_many()
                .col_expr(webhook::Column::ParkedAt, Expr::value(now))
                .filter(webhook::Column::Id.eq(h.id))
                .filter(webhook::Column::ParkedAt.is_null())
                .filter(webhook::Column::ConsecutiveFailures.gte(PARK_AFTER))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Repeat a step while it handles full batches (at most `ROUNDS` times).
    async fn drain<F, Fut>(&self, step: F) -> Result<u64, DbErr>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<u64, DbErr>>,
    {
        let mut total = 0;
        for _ in 0..ROUNDS {
            let n = step().await?;
            total += n;
            if n < BATCH {
                break;
            }
        }
        Ok(total)
    }

    /// Fan out and deliver every `period` until shutdown.
    pub fn spawn(
        self,
        period: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        crate::holds::sweeper::periodic(
            "webhook dispatcher",
            "webhook_dispatch_failures_total",
            period,
            shutdown,
            move || {
                let d = self.clone();
                async move {
                    let fanned = d.drain(|| d.fan_out()).await;
                    let sent = d.drain(|| d.deliver()).await;
                    match (fanned, sent) {
                        (Ok(a), Ok(b)) => Ok(a + b),
                        (Err(e), _) | (_, Err(e)) => Err(crate::holds::StoreError::Unavailable(
                            format!("webhook dispatch: {e}"),
                        )),
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let b = Duration::from_secs(1);
        assert_eq!(backoff(b, 1), Duration::from_secs(1));
        assert_eq!(backoff(b, 2), Duration::from_secs(2));
        assert_eq!(backoff(b, 5), Duration::from_secs(16));
        assert_eq!(backoff(b, 13), Duration::from_secs(3600));
        assert_eq!(backoff(b, 1000), Duration::from_secs(3600));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_dot_body() {
        // RFC 4231 test case 2's key and data, with the time prefix written out.
        let s = super::super::signature("key", 1, b"x");
        assert!(s.starts_with("t=1,v1="));
        assert_eq!(s.len(), "t=1,v1=".len() + 64);
        assert_ne!(s, super::super::signature("key", 2, b"x"));
        assert_ne!(s, super::super::signature("other", 1, b"x"));
    }
}
