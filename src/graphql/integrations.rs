//! For API consumers: API keys and webhooks (admin), sales reports (admin, or a key with
//! `READ_REPORTS`).
use async_graphql::{Context, Enum, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::types::viewer;
use crate::auth::keys::{scopes_of, Scope};
use crate::booking::report;
use crate::error::AppError;
use crate::ids::parse_id;
use crate::state::AppState;

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "crate::auth::keys::Scope")]
pub enum ApiScope {
    /// Read the catalogue and seat maps (public; the key gets budgets of its own).
    ReadCatalogue,
    /// Read sales reports (`salesReport`, `GET /reports/sales.csv`).
    ReadReports,
    /// Read the audit log (`auditLog`).
    ReadAudit,
}

/// An API key as listed (its secret is never shown again).
pub struct ApiKey(pub entity::api_key::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The secret's first characters, to tell keys apart.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn scopes(&self) -> Vec<ApiScope> {
        scopes_of(&self.0).into_iter().map(Into::into).collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Null while the key works.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// When the key was last used (updated at most once a minute).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
}

/// A new key and its secret: send it as `Authorization: Bearer <secret>`. Shown once.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub secret: String,
    pub api_key: ApiKey,
}

/// One seat category's sales (or the show's, as `TOTAL`).
#[derive(SimpleObject)]
pub struct CategorySales {
    pub category: String,
    pub total_seats: i64,
    pub sold: i64,
    pub held: i64,
    pub available: i64,
    pub gross_cents: i64,
    pub refunds_cents: i64,
    pub net_cents: i64,
}

impl From<&report::CategorySales> for CategorySales {
    fn from(c: &report::CategorySales) -> Self {
        CategorySales {
            category: c.category.clone(),
            total_seats: c.total,
            sold: c.sold,
            held: c.held,
            available: c.available,
            gross_cents: c.gross_cents,
            refunds_cents: c.refunds_cents,
            net_cents: c.net_cents,
        }
    }
}

/// A show's sales now, from the ledger (bookings, the price paid per seat, payments) and the
/// live holds. `gross` counts every seat of a booking whose charge succeeded, `refunds` every
/// seat of a booking whose refund succeeded; `net` = gross − refunds.
pub struct SalesReport(pub report::SalesReport);

#[Object]
impl SalesReport {
    async fn show_id(&self) -> ID {
        ID(self.0.show_id.to_string())
    }
    async fn categories(&self) -> Vec<CategorySales> {
        self.0.categories.iter().map(Into::into).collect()
    }
    async fn total(&self) -> CategorySales {
        (&self.0.total).into()
    }
    async fn bookings_confirmed(&self) -> i64 {
        self.0.bookings_confirmed
    }
    async fn bookings_cancelled(&self) -> i64 {
        self.0.bookings_cancelled
    }
    async fn bookings_failed(&self) -> i64 {
        self.0.bookings_failed
    }
    async fn bookings_pending(&self) -> i64 {
        self.0.bookings_pending
    }
    /// Succeeded charges of the show's bookings, from the payments table.
    async fn charged_cents(&self) -> i64 {
        self.0.charged_cents
    }
    /// Succeeded refunds of the show's bookings, from the payments table.
    async fn refunded_cents(&self) -> i64 {
        self.0.refunded_cents
    }
    /// True when the per-seat sums equal the payments (anything else is a ledger fault).
    async fn ledger_matches(&self) -> bool {
        self.0.ledger_matches()
    }
}

/// The sales report of a show for whoever may read it (admin, or a `READ_REPORTS` key).
pub async fn sales_report_for(
    state: &AppState,
    viewer: &crate::auth::Viewer,
    show_id: i64,
    period: report::Period,
) -> crate::error::AppResult<report::SalesReport> {
    viewer.require_scope(Scope::ReadReports)?;
    let show = state.catalogue.priced_show(show_id).await?;
    let states = state.holds.states(&[show_id]).await?;
    let live = states
        .get(&show_id)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no state for show {show_id}")))?;
    state
        .bookings
        .sales_report(show_id, &show.layout, live, period)
        .await
}

/// A webhook subscriber (its secret is never shown again).
pub struct Webhook(pub entity::webhook::Model);

#[Object]
impl Webhook {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// The event kinds it receives.
    async fn events(&self) -> Vec<String> {
        self.0.events.split(',').map(str::to_string).collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Set when an admin disabled it: nothing more is sent.
    async fn disabled_at(&self) -> Option<DateTime<Utc>> {
        self.0.disabled_at
    }
    /// Set when it failed too many times in a row: nothing is sent until a delivery is re-sent.
    async fn parked_at(&self) -> Option<DateTime<Utc>> {
        self.0.parked_at
    }
    async fn consecutive_failures(&self) -> i32 {
        self.0.consecutive_failures
    }
}

/// A new webhook and the secret its deliveries are signed with. Shown once.
#[derive(SimpleObject)]
pub struct CreatedWebhook {
    pub secret: String,
    pub webhook: Webhook,
}

/// One event for one webhook.
pub struct WebhookDelivery(
    pub entity::webhook_delivery::Model,
    pub Option<entity::outbox::Model>,
);

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The event's id (receivers deduplicate on it).
    async fn event_id(&self) -> Option<&str> {
        self.1.as_ref().map(|e| e.event_id.as_str())
    }
    async fn event_type(&self) -> Option<&str> {
        self.1.as_ref().map(|e| e.kind.as_str())
    }
    /// `PENDING`, `DELIVERED` or `FAILED` (gave up).
    async fn status(&self) -> &str {
        &self.0.status
    }
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn next_attempt_at(&self) -> DateTime<Utc> {
        self.0.next_attempt_at
    }
    /// The HTTP status of the last attempt (null: no answer).
    async fn last_status(&self) -> Option<i32> {
        self.0.last_status
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn delivered_at(&self) -> Option<DateTime<Utc>> {
        self.0.delivered_at
    }
}

/// One audited change: who, what, when, why.
pub struct AuditEntry(pub entity::audit_entry::Model);

#[Object]
impl AuditEntry {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// What happened: `booking.created` (the hold it consumed is in `detail`),
    /// `booking.confirmed`, `booking.failed`, `booking.cancelled`, `refund.succeeded`,
    /// `show.created`, `api_key.created`, `api_key.revoked`, `webhook.created`,
    /// `webhook.disabled`.
    async fn kind(&self) -> &str {
        &self.0.kind
    }
    /// `USER`, `ADMIN`, `API_KEY` or `SYSTEM` (the service: payments settled, the reconciler).
    async fn actor_kind(&self) -> &str {
        &self.0.actor_kind
    }
    /// The user's or the key's id (null for `SYSTEM`).
    async fn actor_id(&self) -> Option<ID> {
        self.0.actor_id.map(|i| ID(i.to_string()))
    }
    async fn show_id(&self) -> Option<ID> {
        self.0.show_id.map(|i| ID(i.to_string()))
    }
    async fn booking_id(&self) -> Option<ID> {
        self.0.booking_id.map(|i| ID(i.to_string()))
    }
    /// The user the change concerns (a booking's owner).
    async fn user_id(&self) -> Option<ID> {
        self.0.user_id.map(|i| ID(i.to_string()))
    }
    /// Why, and the details (JSON).
    async fn detail(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(serde_json::from_str(&self.0.detail).unwrap_or_default())
    }
}

#[derive(SimpleObject)]
pub struct AuditEntryEdge {
    pub cursor: String,
    pub node: AuditEntry,
}

#[derive(SimpleObject)]
pub struct AuditEntryConnection {
    pub edges: Vec<AuditEntryEdge>,
    pub page_info: super::types::PageInfo,
}

fn audit_cursor(id: i64) -> String {
    format!("audit:{id}")
}

fn parse_audit_cursor(raw: &str) -> crate::error::AppResult<i64> {
    raw.strip_prefix("audit:")
        .and_then(|s| s.parse().ok())
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| AppError::bad_input("after is not a cursor of auditLog"))
}

#[derive(Default)]
pub struct IntegrationsQuery;

#[Object]
impl IntegrationsQuery {
    /// Every API key, newest first (admin).
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
        viewer(ctx).require_admin()?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.keys.list().await?.into_iter().map(ApiKey).collect())
    }

    /// The audit log, newest first, as a Relay connection (admin, or an API key with
    /// `READ_AUDIT`). Cursors are stable: entries are never changed or removed.
    #[allow(clippy::too_many_arguments)]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
        show_id: Option<ID>,
        booking_id: Option<ID>,
        user_id: Option<ID>,
        kind: Option<String>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<AuditEntryConnection> {
        viewer(ctx).require_scope(Scope::ReadAudit)?;
        let first = first.unwrap_or(50);
        if !(0..=500).contains(&first) {
            return Err(AppError::bad_input("first must be from 0 to 500").into());
        }
        let before = after.as_deref().map(parse_audit_cursor).transpose()?;
        let filter = crate::audit::Filter {
            show_id: show_id.map(|i| parse_id(&i, "show")).transpose()?,
            booking_id: booking_id.map(|i| parse_id(&i, "booking")).transpose()?,
            user_id: user_id.map(|i| parse_id(&i, "user")).transpose()?,
            kind,
            since,
            until,
        };
        let state = ctx.data_unchecked::<AppState>();
        let (rows, more) = crate::audit::page(&state.db, &filter, first as u64, before).await?;
        let edges: Vec<AuditEntryEdge> = rows
            .into_iter()
            .map(|r| AuditEntryEdge {
                cursor: audit_cursor(r.id),
                node: AuditEntry(r),
            })
            .collect();
        Ok(AuditEntryConnection {
            page_info: super::types::PageInfo {
                has_next_page: more,
                has_previous_page: before.is_some(),
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }

    /// Every webhook, newest first (admin).
    async fn webhooks(&self, ctx: &Context<'_>) -> Result<Vec<Webhook>> {
        viewer(ctx).require_admin()?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state
            .webhooks
            .list()
            .await?
            .into_iter()
            .map(Webhook)
            .collect())
    }

    /// A webhook's deliveries, newest first (admin); `status` filters (`PENDING`, `DELIVERED`,
    /// `FAILED`).
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        status: Option<String>,
        #[graphql(default = 50)] first: i32,
    ) -> Result<Vec<WebhookDelivery>> {
        viewer(ctx).require_admin()?;
        let id = parse_id(&webhook_id, "webhook")?;
        if !(0..=500).contains(&first) {
            return Err(AppError::bad_input("first must be from 0 to 500").into());
        }
        let state = ctx.data_unchecked::<AppState>();
        Ok(state
            .webhooks
            .deliveries(id, status.as_deref(), first as u64)
            .await?
            .into_iter()
            .map(|(d, e)| WebhookDelivery(d, e))
            .collect())
    }

    /// A show's sales (admin, or an API key with `READ_REPORTS`); also as CSV at
    /// `GET /reports/sales.csv?showId=<id>[&since=…&until=…]`. With a period (`since` ≤ t <
    /// `until`, RFC 3339, either end open) the money and booking counts are the period's —
    /// charges and refunds that succeeded in it, bookings made in it; seat counts are now.
    async fn sales_report(
        &self,
        ctx: &Context<'_>,
        show_id: ID,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<SalesReport> {
        let id = parse_id(&show_id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        let period = report::Period { since, until };
        Ok(SalesReport(
            sales_report_for(state, viewer(ctx), id, period).await?,
        ))
    }
}

#[derive(Default)]
pub struct IntegrationsMutation;

#[Object]
impl IntegrationsMutation {
    /// A new API key with these scopes (admin). The secret is in the answer and never again.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        scopes: Vec<ApiScope>,
    ) -> Result<CreatedApiKey> {
        let admin = viewer(ctx).require_admin()?;
        let state = ctx.data_unchecked::<AppState>();
        let scopes: Vec<Scope> = scopes.into_iter().map(Into::into).collect();
        let (secret, key) = state.keys.create(&name, &scopes, admin).await?;
        Ok(CreatedApiKey {
            secret,
            api_key: ApiKey(key),
        })
    }

    /// Subscribe an endpoint to event kinds (admin): `booking.confirmed`, `booking.cancelled`,
    /// `booking.failed`, `refund.succeeded`. Deliveries are signed with the returned secret
    /// (header `Boxoffice-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        url: String,
        events: Vec<String>,
    ) -> Result<CreatedWebhook> {
        let admin = viewer(ctx).require_admin()?;
        let state = ctx.data_unchecked::<AppState>();
        let (secret, hook) = state.webhooks.create(&url, &events, admin).await?;
        Ok(CreatedWebhook {
            secret,
            webhook: Webhook(hook),
        })
    }

    /// Stop sending to a webhook (admin). False when it was disabled already.
    async fn disable_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let admin = viewer(ctx).require_admin()?;
        let id = parse_id(&id, "webhook")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.webhooks.disable(id, admin).await?)
    }

    /// Send a delivery again now, whatever its state, and un-park its webhook (admin).
    async fn resend_webhook_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        viewer(ctx).require_admin()?;
        let id = parse_id(&id, "webhook delivery")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.webhooks.resend(id).await?)
    }

    /// Revoke an API key (admin): it stops working at once, on every instance. False when it
    /// was already revoked.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let admin = viewer(ctx).require_admin()?;
        let id = parse_id(&id, "API key")?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(state.keys.revoke(id, admin).await?)
    }
}
