//! Webhooks through a transactional outbox: `outbox` (one row per event, written in the same
//! transaction as the change it reports), `webhooks` (subscribers) and `webhook_deliveries`
//! (one row per event and subscriber, unique, so fanning an event out twice adds nothing).
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .if_not_exists()
                .col(big_pk_auto(Outbox::Id))
                .col(string_len_uniq(Outbox::EventId, 40))
                .col(string_len(Outbox::Kind, 40))
                .col(big_integer(Outbox::ShowId))
                .col(big_integer_null(Outbox::BookingId))
                .col(text(Outbox::Payload))
                .col(timestamp_with_time_zone(Outbox::CreatedAt))
                .col(boolean(Outbox::FannedOut).default(false))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_outbox_fanned_out")
                .table(Outbox::Table)
                .col(Outbox::FannedOut)
                .col(Outbox::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Webhooks::Table)
                .if_not_exists()
                .col(big_pk_auto(Webhooks::Id))
                .col(string_len(Webhooks::Url, 2000))
                .col(string_len(Webhooks::Events, 400))
                .col(string_len(Webhooks::Secret, 80))
                .col(big_integer(Webhooks::CreatedBy))
                .col(timestamp_with_time_zone(Webhooks::CreatedAt))
                .col(timestamp_with_time_zone_null(Webhooks::DisabledAt))
                .col(timestamp_with_time_zone_null(Webhooks::ParkedAt))
                .col(integer(Webhooks::ConsecutiveFailures).default(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .if_not_exists()
                .col(big_pk_auto(WebhookDeliveries::Id))
                .col(big_integer(WebhookDeliveries::OutboxId))
                .col(big_integer(WebhookDeliveries::WebhookId))
                .col(string_len(WebhookDeliveries::Status, 16))
                .col(integer(WebhookDeliveries::Attempts).default(0))
                .col(timestamp_with_time_zone(WebhookDeliveries::NextAttemptAt))
                .col(integer_null(WebhookDeliveries::LastStatus))
                .col(string_len_null(WebhookDeliveries::LastError, 500))
                .col(timestamp_with_time_zone_null(
                    WebhookDeliveries::DeliveredAt,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookDeliveries::Table, WebhookDeliveries::OutboxId)
                        .to(Outbox::Table, Outbox::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookDeliveries::Table, WebhookDeliveries::WebhookId)
                        .to(Webhooks::Table, Webhooks::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_delivery_event_webhook")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::OutboxId)
                .col(WebhookDeliveries::WebhookId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_delivery_due")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::Status)
                .col(WebhookDeliveries::NextAttemptAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    EventId,
    Kind,
    ShowId,
    BookingId,
    Payload,
    CreatedAt,
    FannedOut,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Url,
    Events,
    Secret,
    CreatedBy,
    CreatedAt,
    DisabledAt,
    ParkedAt,
    ConsecutiveFailures,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    OutboxId,
    WebhookId,
    Status,
    Attempts,
    NextAttemptAt,
    LastStatus,
    LastError,
    DeliveredAt,
}
