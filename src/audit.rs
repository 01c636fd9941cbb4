//! The audit log: who changed what, when and why — written in the same database transaction as
//! the change it records (a rolled-back change leaves no entry; a committed one always has one).
//!
//! Recorded: a booking created (which is also the hold it consumed: `booking.created` names the
//! hold and its seats), confirmed (with its charge), failed, cancelled; a refund that succeeded;
//! a show created; an API key created or revoked; a webhook created or disabled. Not recorded:
//! holds taken, released or expired without a checkout — they live in Redis, and a database write
//! on every `holdSeats` is exactly what the hold store exists to avoid; the live seat feed and
//! the store's own metrics cover them.
use chrono::Utc;
use entity::audit_entry;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::error::AppResult;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(i64),
    Admin(i64),
    ApiKey(i64),
    /// The service itself: settling a payment, the reconciler.
    System,
}

impl Actor {
    fn parts(self) -> (&'static str, Option<i64>) {
        match self {
            Actor::User(id) => ("USER", Some(id)),
            Actor::Admin(id) => ("ADMIN", Some(id)),
            Actor::ApiKey(id) => ("API_KEY", Some(id)),
            Actor::System => ("SYSTEM", None),
        }
    }
}

/// What one entry is about.
#[derive(Debug, Clone, Default)]
pub struct About {
    pub show_id: Option<i64>,
    pub booking_id: Option<i64>,
    pub user_id: Option<i64>,
}

/// Record one change in the caller's transaction (`conn`).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    actor: Actor,
    kind: &str,
    about: About,
    detail: serde_json::Value,
) -> Result<(), DbErr> {
    let (actor_kind, actor_id) = actor.parts();
    audit_entry::ActiveModel {
        at: Set(Utc::now()),
        actor_kind: Set(actor_kind.into()),
        actor_id: Set(actor_id),
        kind: Set(kind.into()),
        show_id: Set(about.show_id),
        booking_id: Set(about.booking_id),
        user_id: Set(about.user_id),
        detail: Set(detail.to_string()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Filters of a page of the log.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub show_id: Option<i64>,
    pub booking_id: Option<i64>,
    pub user_id: Option<i64>,
    pub kind: Option<String>,
    pub since: Option<chrono::DateTime<Utc>>,
    pub until: Option<chrono::DateTime<Utc>>,
}

/// A page of the log, newest first: entries before `before` (an id, the cursor), and whether
/// more follow.
pub async fn page(
    db: &DatabaseConnection,
    filter: &Filter,
    first: u64,
    before: Option<i64>,
) -> AppResult<(Vec<audit_entry::Model>, bool)> {
    let mut q = audit_entry::Entity::find();
    if let Some(v) = filter.show_id {
        q = q.filter(audit_entry::Column::ShowId.eq(v));
    }
    if let Some(v) = filter.booking_id {
        q = q.filter(audit_entry::Column::BookingId.eq(v));
    }
    if let Some(v) = filter.user_id {
        q = q.filter(audit_entry::Column::UserId.eq(v));
    }
    if let Some(v) = &filter.kind {
        q = q.filter(audit_entry::Column::Kind.eq(v.clone()));
    }
    if let Some(v) = filter.since {
        q = q.filter(audit_entry::Column::At.gte(v));
    }
    if let Some(v) = filter.until {
        q = q.filter(audit_entry::Column::At.lt(v));
    }
    if let Some(id) = before {
        q = q.filter(audit_entry::Column::Id.lt(id));
    }
    let mut rows = q
        .order_by_desc(audit_entry::Column::Id)
        .limit(first + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}
