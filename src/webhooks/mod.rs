//! Webhooks through a transactional outbox.
//!
//! - **Outbox** (`record`): every booking confirmed, cancelled or failed and every refund that
//!   succeeded writes one `outbox` row *in the same transaction* as the change — the event exists
//!   exactly when the change does (a rolled-back change leaves no event; a committed one cannot
//!   lose it).
//! - **Fan-out** (`Dispatcher::fan_out`): each new event gets one `webhook_deliveries` row per
//!   webhook subscribed to its kind, and the event is marked done in the same transaction. On
//!   PostgreSQL an instance claims its batch (`FOR UPDATE SKIP LOCKED`), so instances fan out
//!   different events instead of each repeating the same batch; the pair is unique anyway, so
//!   an event fanned out twice (SQLite, or two processes racing there) still adds one row.
//! - **Delivery** (`Dispatcher::deliver`): due deliveries are claimed with a conditional update
//!   (a lease of 2 × `WEBHOOK_TIMEOUT_MS` + 1 s: `next_attempt_at` moved forward only if
//!   unchanged), so two instances never send the
//!   same attempt; then POSTed, signed. A 2xx ends it; anything else is retried with exponential
//!   backoff (`WEBHOOK_RETRY_BASE_MS` doubling, at most an hour apart) for `MAX_ATTEMPTS` attempts
//!   (about three days), then `FAILED`. A webhook failing `PARK_AFTER` times in a row is parked:
//!   nothing is sent to it until an admin re-sends a delivery. An instance killed mid-send loses
//!   nothing: the lease lapses and another instance sends again — so a receiver may see an event
//!   twice and must deduplicate on its `id` (at-least-once, like Stripe's).
//! - **Signature**: header `Boxoffice-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//!   "<t>.<body>" with the webhook's secret>`; body `{"id","type","createdAt","data"}`.
pub mod dispatch;

use chrono::Utc;
use entity::{outbox, webhook, webhook_delivery};
use hmac::{Hmac, Mac};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sha2::Sha256;

use crate::error::{AppError, AppResult};

/// The kinds of event a webhook may subscribe to.
pub const KINDS: [&str; 4] = [
    "booking.confirmed",
    "booking.cancelled",
    "booking.failed",
    "refund.succeeded",
];

/// Write one event in the caller's transaction (`conn`).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    kind: &'static str,
    show_id: i64,
    booking_id: Option<i64>,
    data: serde_json::Value,
) -> Result<(), DbErr> {
    debug_assert!(KINDS.contains(&kind));
    outbox::ActiveModel {
        event_id: Set(new_event_id()),
        kind: Set(kind.to_string()),
        show_id: Set(show_id),
        booking_id: Set(booking_id),
        payload: Set(data.to_string()),
        created_at: Set(Utc::now()),
        fanned_out: Set(false),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// A new event's id: `evt_` and 32 random hex digits.
pub fn new_event_id() -> String {
    format!("evt_{}", crate::ids::random_hex::<16>())
}

/// `t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>")>`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", crate::ids::hex(&mac.finalize().into_bytes()))
}

/// Admin operations on webhooks and their deliveries.
#[derive(Clone)]
pub struct Webhooks {
    db: DatabaseConnection,
    allow_http: bool,
}

impl Webhooks {
    /// `allow_http`: accept `http://` endpoints anywhere (else only on loopback, for tests and
    /// local receivers).
    pub fn new(db: DatabaseConnection, allow_http: bool) -> Self {
        Webhooks { db, allow_http }
    }

    fn check_url(&self, raw: &str) -> AppResult<String> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| AppError::bad_input(format!("the webhook URL is not a URL: {e}")))?;
        let loopback = matches!(
            url.host(),
            Some(url::Host::Ipv4(a)) if a.is_loopback()
        ) || matches!(url.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
            || url.host_str() == Some("localhost");
        match url.scheme() {
            "https" => {}
            "http" if loopback || self.allow_http => {}
            _ => {
                return Err(AppError::bad_input(
                    "a webhook URL must be https:// (http:// only on loopback)",
                ))
            }
        }
        if raw.len() > 2000 || url.username() != "" || url.password().is_some() {
            return Err(AppError::bad_input(
                "a webhook URL is at most 2000 characters, without credentials",
            ));
        }
        Ok(url.to_string())
    }

    /// A new webhook; its signing secret is returned here and never again.
    pub async fn create(
        &self,
        url: &str,
        events: &[String],
        admin_id: i64,
    ) -> AppResult<(String, webhook::Model)> {
        let url = self.check_url(url)?;
        let mut kinds: Vec<&str> = Vec::new();
        for e in events {
            let Some(k) = KINDS.iter().find(|k| **k == e.trim()) else {
                return Err(AppError::bad_input(format!(
                    "unknown event kind {e:?}; the kinds are {}",
                    KINDS.join(", ")
                )));
            };
            if !kinds.contains(k) {
                kinds.push(k);
            }
        }
        if kinds.is_empty() {
            return Err(AppError::bad_input(
                "a webhook needs at least one event kind",
            ));
        }
        let secret = format!("whsec_{}", crate::ids::random_hex::<24>());
        let txn = self.db.begin().await?;
        let row = webhook::ActiveModel {
            url: Set(url),
            events: Set(kinds.join(",")),
            secret: Set(secret.clone()),
            created_by: Set(admin_id),
            created_at: Set(Utc::now()),
            disabled_at: Set(None),
            parked_at: Set(None),
            consecutive_failures: Set(0),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let what = serde_json::json!({ "webhookId": row.id, "url": row.url, "events": row.events });
        let by = crate::audit::Actor::Admin(admin_id);
        crate::audit::record(&txn, by, "webhook.created", Default::default(), what).await?;
        txn.commit().await?;
        tracing::info!(webhook = row.id, admin = admin_id, "webhook created");
        Ok((secret, row))
    }

    pub async fn list(&self) -> AppResult<Vec<webhook::Model>> {
        Ok(webhook::Entity::find()
            .order_by_desc(webhook::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Stop sending to a webhook (its pending deliveries stay, unsent).
    pub async fn disable(&self, id: i64, admin_id: i64) -> AppResult<bool> {
        let txn = self.db.begin().await?;
        let res = webhook::Entity::update_many()
            .col_expr(
                webhook::Column::DisabledAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(webhook::Column::Id.eq(id))
            .filter(webhook::Column::DisabledAt.is_null())
            .exec(&txn)
            .await?;
        if res.rows_affected > 0 {
            let by = crate::audit::Actor::Admin(admin_id);
            let what = serde_json::json!({ "webhookId": id });
            crate::audit::record(&txn, by, "webhook.disabled", Default::default(), what).await?;
        }
        txn.commit().await?;
        Ok(res.rows_affected > 0)
    }

    /// A webhook's deliveries, newest first, with their events; optionally only one status.
    pub async fn deliveries(
        &self,
        webhook_id: i64,
        status: Option<&str>,
        first: u64,
    ) -> AppResult<Vec<(webhook_delivery::Model, Option<outbox::Model>)>> {
        let mut q = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::WebhookId.eq(webhook_id));
        if let Some(s) = status {
            q = q.filter(webhook_delivery::Column::Status.eq(s));
        }
        let rows = q
            .order_by_desc(webhook_delivery::Column::Id)
            .limit(first)
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|d| d.outbox_id).collect();
        let events: std::collections::HashMap<i64, outbox::Model> = outbox::Entity::find()
            .filter(outbox::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        Ok(rows
            .into_iter()
            .map(|d| {
                let e = events.get(&d.outbox_id).cloned();
                (d, e)
            })
            .collect())
    }

    /// Send a delivery again now (whatever its state), and un-park its webhook.
    pub async fn resend(&self, delivery_id: i64) -> AppResult<bool> {
        let Some(d) = webhook_delivery::Entity::find_by_id(delivery_id)
            .one(&self.db)
            .await?
        else {
            return Err(AppError::NotFound("webhook delivery"));
        };
        webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::Status,
                sea_orm::sea_query::Expr::value(dispatch::PENDING),
            )
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(webhook_delivery::Column::Id.eq(delivery_id))
            .exec(&self.db)
            .await?;
        webhook::Entity::update_many()
            .col_expr(
                webhook::Column::ParkedAt,
                sea_orm::sea_query::Expr::value(Option::<chrono::DateTime<Utc>>::None),
            )
            .col_expr(
                webhook::Column::ConsecutiveFailures,
                sea_orm::sea_query::Expr::value(0),
            )
            .filter(webhook::Column::Id.eq(d.webhook_id))
            .exec(&self.db)
            .await?;
        Ok(true)
    }
}
