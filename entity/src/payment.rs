//! One row per payment attempt (a charge or a refund) of a booking.
//! `status`: `PENDING` → `SUCCEEDED` | `DECLINED` | `ERROR`. `idempotency_key` is what the
//! gateway dedups on, so a retried attempt never charges twice.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub booking_id: i64,
    pub kind: PaymentKind,
    pub amount_cents: i64,
    #[sea_orm(unique)]
    pub idempotency_key: String,
    pub provider_ref: Option<String>,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PaymentKind {
    #[sea_orm(string_value = "CHARGE")]
    Charge,
    #[sea_orm(string_value = "REFUND")]
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum PaymentStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "DECLINED")]
    Declined,
    #[sea_orm(string_value = "ERROR")]
    Error,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
