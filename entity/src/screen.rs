//! An auditorium of a venue. Its seat layout (`seats`) is fixed once the screen is created.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "screens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub venue_id: i64,
    pub name: String,
    pub created_at: DateTimeUtc,
    /// The best point, in drawing units (`seats.row_index`, `seats.col_index`); `None`: the
    /// default, centre of the row about two thirds back.
    pub focal_row: Option<f64>,
    pub focal_col: Option<f64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
