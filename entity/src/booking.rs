//! A booking: the user's purchase of some seats of one show.
//! `status`: `PENDING` (payment under way) → `CONFIRMED` | `FAILED`; `CONFIRMED` → `CANCELLED`.
//! `(user_id, idempotency_key)` is unique: the same key from the same user is the same booking.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bookings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub show_id: i64,
    pub hold_id: Option<String>,
    pub status: String,
    pub total_cents: i64,
    pub idempotency_key: String,
    pub failure_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
