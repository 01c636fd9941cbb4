//! Checkout support:
//! - `mock_gateway_ledger`: what the mock payment provider remembers (every charge and refund by
//!   idempotency key), so that the reconciler can ask it after a crash and an audit can reconcile
//!   money with bookings. A real provider keeps this on its side.
//! - `ux_bookings_live_hold`: one hold turns into at most one live (pending or confirmed) booking,
//!   so two checkouts of one hold with different keys cannot both charge.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Ledger::Table)
                .if_not_exists()
                .col(string(Ledger::IdempotencyKey).primary_key())
                .col(
                    string(Ledger::Kind).check(Expr::col(Ledger::Kind).is_in(["CHARGE", "REFUND"])),
                )
                .col(big_integer(Ledger::AmountCents).check(Expr::col(Ledger::AmountCents).gte(0)))
                .col(
                    string(Ledger::Status)
                        .check(Expr::col(Ledger::Status).is_in(["SUCCEEDED", "DECLINED"])),
                )
                .col(string(Ledger::ProviderRef))
                .col(string_null(Ledger::ChargeRef))
                .col(string_null(Ledger::Reason))
                .col(timestamp_with_time_zone(Ledger::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_bookings_live_hold")
                .table(Bookings::Table)
                .col(Bookings::HoldId)
                .unique()
                .and_where(Expr::col(Bookings::Status).is_in(["PENDING", "CONFIRMED"]))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ux_bookings_live_hold")
                .table(Bookings::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(Ledger::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Ledger {
    #[sea_orm(iden = "mock_gateway_ledger")]
    Table,
    IdempotencyKey,
    Kind,
    AmountCents,
    Status,
    ProviderRef,
    ChargeRef,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    HoldId,
    Status,
}
