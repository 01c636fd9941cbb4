//! One event to announce (a booking confirmed, cancelled or failed, a refund), written in the
//! same transaction as the change. `event_id` is what receivers deduplicate on; `fanned_out`
//! becomes true once a delivery row exists for every webhook subscribed at that moment.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub event_id: String,
    pub kind: String,
    pub show_id: i64,
    pub booking_id: Option<i64>,
    /// The event's `data`, as JSON text.
    pub payload: String,
    pub created_at: DateTimeUtc,
    pub fanned_out: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
