//! The audit log: `audit_log`, one row per state change of a booking, payment, refund, show,
//! API key or webhook (and per hold consumed by a checkout), written in the same transaction as
//! the change.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .if_not_exists()
                .col(big_pk_auto(AuditLog::Id))
                .col(timestamp_with_time_zone(AuditLog::At))
                .col(string_len(AuditLog::ActorKind, 16))
                .col(big_integer_null(AuditLog::ActorId))
                .col(string_len(AuditLog::Kind, 40))
                .col(big_integer_null(AuditLog::ShowId))
                .col(big_integer_null(AuditLog::BookingId))
                .col(big_integer_null(AuditLog::UserId))
                .col(text(AuditLog::Detail))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("idx_audit_show", AuditLog::ShowId),
            ("idx_audit_booking", AuditLog::BookingId),
            ("idx_audit_user", AuditLog::UserId),
            ("idx_audit_kind", AuditLog::Kind),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(AuditLog::Table)
                    .col(col)
                    .col(AuditLog::Id)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditLog::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorKind,
    ActorId,
    Kind,
    ShowId,
    BookingId,
    UserId,
    Detail,
}
