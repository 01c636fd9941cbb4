//! SeaORM entities, one module per table. Hand-kept in the generated style; the schema itself
//! is owned by the `migration` crate, and these structs must mirror it column for column.
pub mod api_key;
pub mod app_setting;
pub mod audit_entry;
pub mod booking;
pub mod booking_seat;
pub mod mock_gateway_ledger;
pub mod movie;
pub mod outbox;
pub mod payment;
pub mod screen;
pub mod seat;
pub mod show;
pub mod show_price;
pub mod show_sale;
pub mod user;
pub mod venue;
pub mod webhook;
pub mod webhook_delivery;

pub mod prelude {
    pub use super::api_key::Entity as ApiKey;
    pub use super::app_setting::Entity as AppSetting;
    pub use super::booking::Entity as Booking;
    pub use super::booking_seat::Entity as BookingSeat;
    pub use super::movie::Entity as Movie;
    pub use super::payment::Entity as Payment;
    pub use super::screen::Entity as Screen;
    pub use super::seat::Entity as Seat;
    pub use super::show::Entity as Show;
    pub use super::show_price::Entity as ShowPrice;
    pub use super::show_sale::Entity as ShowSale;
    pub use super::user::Entity as User;
    pub use super::venue::Entity as Venue;
}
