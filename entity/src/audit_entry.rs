//! One audited state change: who (`actor_kind` USER / ADMIN / API_KEY / SYSTEM, `actor_id`),
//! what (`kind`, and the show, booking and user it concerns), when (`at`) and why (`detail`,
//! JSON text).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub kind: String,
    pub show_id: Option<i64>,
    pub booking_id: Option<i64>,
    pub user_id: Option<i64>,
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
