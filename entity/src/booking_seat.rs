//! The seats of a booking. `active` is true exactly while the booking is `CONFIRMED`; a partial
//! unique index over `(show_id, seat_id) WHERE active` makes the database itself refuse a seat in
//! two live bookings — the final fence behind every cache and hold.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "booking_seats")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub booking_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seat_id: i64,
    pub show_id: i64,
    pub price_cents: i64,
    pub active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
