//! The initial schema: accounts, catalogue (venues, screens, seats, movies, shows, prices),
//! bookings with their seats, payments, and the service's own settings.
//!
//! Constraints carry the invariants so that no code path can break them:
//! - `users.email` unique (stored lower-cased);
//! - a seat is unique per screen by `(row_label, number)` and by position;
//! - `show_prices` has one price per category of a show;
//! - `bookings (user_id, idempotency_key)` unique: a retried checkout is the same booking;
//! - `booking_seats (show_id, seat_id) WHERE active` unique: one seat of one show is in at most
//!   one live booking, enforced by the database whatever the caches say;
//! - `booking_seats (booking_id, show_id)` references `bookings (id, show_id)`, so a booking's
//!   seats cannot claim another show;
//! - `payments.idempotency_key` unique: one row per attempt, never a double charge record.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AppSettings::Table)
                .if_not_exists()
                .col(string(AppSettings::Key).primary_key())
                .col(text(AppSettings::Value))
                .col(timestamp_with_time_zone(AppSettings::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Users::Table)
                .if_not_exists()
                .col(big_pk_auto(Users::Id))
                .col(string_uniq(Users::Email))
                .col(string(Users::PasswordHash))
                .col(string_null(Users::Name))
                .col(string(Users::Role).check(Expr::col(Users::Role).is_in(["customer", "admin"])))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Venues::Table)
                .if_not_exists()
                .col(big_pk_auto(Venues::Id))
                .col(string(Venues::Name))
                .col(string(Venues::City))
                .col(timestamp_with_time_zone(Venues::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_venues_name_city")
                .table(Venues::Table)
                .col(Venues::Name)
                .col(Venues::City)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Screens::Table)
                .if_not_exists()
                .col(big_pk_auto(Screens::Id))
                .col(big_integer(Screens::VenueId))
                .col(string(Screens::Name))
                .col(timestamp_with_time_zone(Screens::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_screens_venue")
                        .from(Screens::Table, Screens::VenueId)
                        .to(Venues::Table, Venues::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_screens_venue_name")
                .table(Screens::Table)
                .col(Screens::VenueId)
                .col(Screens::Name)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Seats::Table)
                .if_not_exists()
                .col(big_pk_auto(Seats::Id))
                .col(big_integer(Seats::ScreenId))
                .col(string(Seats::RowLabel))
                .col(integer(Seats::Number).check(Expr::col(Seats::Number).gt(0)))
                .col(string(Seats::Category))
                .col(integer(Seats::RowIndex).check(Expr::col(Seats::RowIndex).gte(0)))
                .col(integer(Seats::ColIndex).check(Expr::col(Seats::ColIndex).gte(0)))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_seats_screen")
                        .from(Seats::Table, Seats::ScreenId)
                        .to(Screens::Table, Screens::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_seats_screen_row_number")
                .table(Seats::Table)
                .col(Seats::ScreenId)
                .col(Seats::RowLabel)
                .col(Seats::Number)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_seats_screen_position")
                .table(Seats::Table)
                .col(Seats::ScreenId)
                .col(Seats::RowIndex)
                .col(Seats::ColIndex)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Movies::Table)
                .if_not_exists()
                .col(big_pk_auto(Movies::Id))
                .col(string(Movies::Title))
                .col(
                    integer(Movies::DurationMinutes)
                        .check(Expr::col(Movies::DurationMinutes).gt(0)),
                )
                .col(timestamp_with_time_zone(Movies::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Shows::Table)
                .if_not_exists()
                .col(big_pk_auto(Shows::Id))
                .col(big_integer(Shows::MovieId))
                .col(big_integer(Shows::ScreenId))
                .col(timestamp_with_time_zone(Shows::StartsAt))
                .col(timestamp_with_time_zone(Shows::EndsAt))
                .col(timestamp_with_time_zone(Shows::CreatedAt))
                .check(Expr::col(Shows::EndsAt).gt(Expr::col(Shows::StartsAt)))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_shows_movie")
                        .from(Shows::Table, Shows::MovieId)
                        .to(Movies::Table, Movies::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_shows_screen")
                        .from(Shows::Table, Shows::ScreenId)
                        .to(Screens::Table, Screens::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        // Keyset pagination of `shows` walks (starts_at, id).
        m.create_index(
            Index::create()
                .name("ix_shows_starts_at_id")
                .table(Shows::Table)
                .col(Shows::StartsAt)
                .col(Shows::Id)
                .to_owned(),
        )
        .await?;
        // Overlap checks look at one screen's shows around a time.
        m.create_index(
            Index::create()
                .name("ix_shows_screen_starts_at")
                .table(Shows::Table)
                .col(Shows::ScreenId)
                .col(Shows::StartsAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_shows_movie")
                .table(Shows::Table)
                .col(Shows::MovieId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ShowPrices::Table)
                .if_not_exists()
                .col(big_integer(ShowPrices::ShowId))
                .col(string(ShowPrices::Category))
                .col(
                    big_integer(ShowPrices::PriceCents)
                        .check(Expr::col(ShowPrices::PriceCents).gte(0)),
                )
                .primary_key(
                    Index::create()
                        .col(ShowPrices::ShowId)
                        .col(ShowPrices::Category),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_show_prices_show")
                        .from(ShowPrices::Table, ShowPrices::ShowId)
                        .to(Shows::Table, Shows::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Bookings::Table)
                .if_not_exists()
                .col(big_pk_auto(Bookings::Id))
                .col(big_integer(Bookings::UserId))
                .col(big_integer(Bookings::ShowId))
                .col(string_null(Bookings::HoldId))
                .col(
                    string(Bookings::Status).check(Expr::col(Bookings::Status).is_in([
                        "PENDING",
                        "CONFIRMED",
                        "FAILED",
                        "CANCELLED",
                    ])),
                )
                .col(
                    big_integer(Bookings::TotalCents).check(Expr::col(Bookings::TotalCents).gte(0)),
                )
                .col(string(Bookings::IdempotencyKey))
                .col(text_null(Bookings::FailureReason))
                .col(timestamp_with_time_zone(Bookings::CreatedAt))
                .col(timestamp_with_time_zone(Bookings::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_bookings_user")
                        .from(Bookings::Table, Bookings::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_bookings_show")
                        .from(Bookings::Table, Bookings::ShowId)
                        .to(Shows::Table, Shows::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_bookings_user_idempotency_key")
                .table(Bookings::Table)
                .col(Bookings::UserId)
                .col(Bookings::IdempotencyKey)
                .unique()
                .to_owned(),
        )
        .await?;
        // Target of booking_seats' composite foreign key.
        m.create_index(
            Index::create()
                .name("ux_bookings_id_show")
                .table(Bookings::Table)
                .col(Bookings::Id)
                .col(Bookings::ShowId)
                .unique()
                .to_owned(),
        )
        .await?;
        // `myBookings`: one user's bookings, newest first.
        m.create_index(
            Index::create()
                .name("ix_bookings_user_created")
                .table(Bookings::Table)
                .col(Bookings::UserId)
                .col(Bookings::CreatedAt)
                .to_owned(),
        )
        .await?;
        // The reconciler looks for old PENDING bookings.
        m.create_index(
            Index::create()
                .name("ix_bookings_status_updated")
                .table(Bookings::Table)
                .col(Bookings::Status)
                .col(Bookings::UpdatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_bookings_show")
                .table(Bookings::Table)
                .col(Bookings::ShowId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(BookingSeats::Table)
                .if_not_exists()
                .col(big_integer(BookingSeats::BookingId))
                .col(big_integer(BookingSeats::SeatId))
                .col(big_integer(BookingSeats::ShowId))
                .col(
                    big_integer(BookingSeats::PriceCents)
                        .check(Expr::col(BookingSeats::PriceCents).gte(0)),
                )
                .col(boolean(BookingSeats::Active).default(false))
                .primary_key(
                    Index::create()
                        .col(BookingSeats::BookingId)
                        .col(BookingSeats::SeatId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_booking_seats_booking_show")
                        .from(
                            BookingSeats::Table,
                            (BookingSeats::BookingId, BookingSeats::ShowId),
                        )
                        .to(Bookings::Table, (Bookings::Id, Bookings::ShowId))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_booking_seats_seat")
                        .from(BookingSeats::Table, BookingSeats::SeatId)
                        .to(Seats::Table, Seats::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        // THE fence: one seat of one show in at most one live booking. Also serves
        // "booked seats of a show" lookups.
        m.create_index(
            Index::create()
                .name("ux_booking_seats_live")
                .table(BookingSeats::Table)
                .col(BookingSeats::ShowId)
                .col(BookingSeats::SeatId)
                .unique()
                .and_where(Expr::col(BookingSeats::Active).eq(true))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Payments::Table)
                .if_not_exists()
                .col(big_pk_auto(Payments::Id))
                .col(big_integer(Payments::BookingId))
                .col(
                    string(Payments::Kind)
                        .check(Expr::col(Payments::Kind).is_in(["CHARGE", "REFUND"])),
                )
                .col(
                    big_integer(Payments::AmountCents)
                        .check(Expr::col(Payments::AmountCents).gte(0)),
                )
                .col(string_uniq(Payments::IdempotencyKey))
                .col(string_null(Payments::ProviderRef))
                .col(
                    string(Payments::Status).check(Expr::col(Payments::Status).is_in([
                        "PENDING",
                        "SUCCEEDED",
                        "DECLINED",
                        "ERROR",
                    ])),
                )
                .col(text_null(Payments::FailureReason))
                .col(timestamp_with_time_zone(Payments::CreatedAt))
                .col(timestamp_with_time_zone(Payments::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_payments_booking")
                        .from(Payments::Table, Payments::BookingId)
                        .to(Bookings::Table, Bookings::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_payments_booking")
                .table(Payments::Table)
                .col(Payments::BookingId)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Payments::Table.into_iden(),
            BookingSeats::Table.into_iden(),
            Bookings::Table.into_iden(),
            ShowPrices::Table.into_iden(),
            Shows::Table.into_iden(),
            Movies::Table.into_iden(),
            Seats::Table.into_iden(),
            Screens::Table.into_iden(),
            Venues::Table.into_iden(),
            Users::Table.into_iden(),
            AppSettings::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AppSettings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Name,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Venues {
    Table,
    Id,
    Name,
    City,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Screens {
    Table,
    Id,
    VenueId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Seats {
    Table,
    Id,
    ScreenId,
    RowLabel,
    Number,
    Category,
    RowIndex,
    ColIndex,
}

#[derive(DeriveIden)]
enum Movies {
    Table,
    Id,
    Title,
    DurationMinutes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Shows {
    Table,
    Id,
    MovieId,
    ScreenId,
    StartsAt,
    EndsAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ShowPrices {
    Table,
    ShowId,
    Category,
    PriceCents,
}

#[derive(DeriveIden)]
enum Bookings {
    Table,
    Id,
    UserId,
    ShowId,
    HoldId,
    Status,
    TotalCents,
    IdempotencyKey,
    FailureReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BookingSeats {
    Table,
    BookingId,
    SeatId,
    ShowId,
    PriceCents,
    Active,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    BookingId,
    Kind,
    AmountCents,
    IdempotencyKey,
    ProviderRef,
    Status,
    FailureReason,
    CreatedAt,
    UpdatedAt,
}
