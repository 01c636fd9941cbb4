//! Seat attributes for best-available holds and the accessible seat map:
//! - `seats.wheelchair`: a wheelchair space; `seats.companion`: a companion seat beside one;
//!   `seats.restricted_view`: a seat with a partly blocked view (ranked after every clear one).
//! - `screens.focal_row` / `screens.focal_col`: the screen's best point, in drawing units (row and
//!   column indexes); NULL means the default (centre of the row about two thirds back).
//!
//! One column per statement: SQLite's ALTER TABLE adds one at a time.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [Seats::Wheelchair, Seats::Companion, Seats::RestrictedView] {
            m.alter_table(
                Table::alter()
                    .table(Seats::Table)
                    .add_column(boolean(col).default(false))
                    .to_owned(),
            )
            .await?;
        }
        for col in [Screens::FocalRow, Screens::FocalCol] {
            m.alter_table(
                Table::alter()
                    .table(Screens::Table)
                    .add_column(double_null(col))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [Seats::Wheelchair, Seats::Companion, Seats::RestrictedView] {
            m.alter_table(
                Table::alter()
                    .table(Seats::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        for col in [Screens::FocalRow, Screens::FocalCol] {
            m.alter_table(
                Table::alter()
                    .table(Screens::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Seats {
    Table,
    Wheelchair,
    Companion,
    RestrictedView,
}

#[derive(DeriveIden, Clone, Copy)]
enum Screens {
    Table,
    FocalRow,
    FocalCol,
}
