//! On-sale settings per show (the waiting room): `show_sales`, one row per show that has them.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ShowSales::Table)
                .if_not_exists()
                .col(big_integer(ShowSales::ShowId).primary_key())
                .col(timestamp_with_time_zone(ShowSales::OpensAt))
                .col(
                    integer(ShowSales::AdmitPerMinute)
                        .check(Expr::col(ShowSales::AdmitPerMinute).gt(0)),
                )
                .col(
                    integer(ShowSales::SessionSeconds)
                        .check(Expr::col(ShowSales::SessionSeconds).gt(0)),
                )
                .col(boolean(ShowSales::QueueEnabled))
                .col(integer_null(ShowSales::MaxShoppers))
                .col(timestamp_with_time_zone(ShowSales::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ShowSales::Table, ShowSales::ShowId)
                        .to(Shows::Table, Shows::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ShowSales::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ShowSales {
    Table,
    ShowId,
    OpensAt,
    AdmitPerMinute,
    SessionSeconds,
    QueueEnabled,
    MaxShoppers,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Shows {
    Table,
    Id,
}
