//! A webhook subscriber: where to POST which kinds of event, and the secret that signs them.
//! A parked webhook (too many failures in a row) gets nothing until an admin re-sends.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub url: String,
    /// Comma-separated event kinds.
    pub events: String,
    pub secret: String,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub disabled_at: Option<DateTimeUtc>,
    pub parked_at: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
