//! The `Seat` object and its status, and GraphQL's `Int` for counts: what every seat list
//! (a show's map, a hold, a booking, a live event) renders.
use async_graphql::{Object, ID};

use crate::catalogue::seatmap::SeatView;

// A seat's status as the schema names it (the domain's `seatmap::SeatStatus`); no doc comment,
// so the schema stays as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(remote = "crate::catalogue::seatmap::SeatStatus")]
pub enum SeatStatus {
    Available,
    Held,
    Booked,
}

/// A count, version or amount (never negative) as a GraphQL `Int`, saturating at 2³¹ − 1.
pub fn to_int(v: i64) -> i32 {
    v.clamp(0, i32::MAX as i64) as i32
}

pub struct Seat(pub SeatView);

#[Object]
impl Seat {
    async fn id(&self) -> ID {
        ID(self.0.info.id.to_string())
    }
    /// Row label, e.g. "F".
    async fn row(&self) -> &str {
        &self.0.info.row
    }
    async fn number(&self) -> i32 {
        self.0.info.number
    }
    /// Row and number, e.g. "F12".
    async fn label(&self) -> String {
        self.0.info.label()
    }
    async fn category(&self) -> &str {
        &self.0.info.category
    }
    async fn price_cents(&self) -> i32 {
        to_int(self.0.price_cents)
    }
    async fn status(&self) -> SeatStatus {
        self.0.status.into()
    }
    /// True when the seat is held by the signed-in user.
    async fn held_by_me(&self) -> bool {
        self.0.held_by_me
    }
    /// A wheelchair space (no fixed seat).
    async fn wheelchair(&self) -> bool {
        self.0.info.wheelchair
    }
    /// A companion seat beside a wheelchair space.
    async fn companion(&self) -> bool {
        self.0.info.companion
    }
    /// The view of the screen is partly blocked from this seat.
    async fn restricted_view(&self) -> bool {
        self.0.info.restricted_view
    }
    /// Drawing position: row from the front (0-based).
    async fn row_index(&self) -> i32 {
        self.0.info.row_index
    }
    /// Drawing position: column from the left (0-based; rows are centred).
    async fn column(&self) -> i32 {
        self.0.info.col_index
    }
}
