//! What a booking's changes leave behind in the same transaction: an audit entry and, for the
//! changes webhooks announce, an outbox event's data.
use entity::booking;
use sea_orm::ConnectionTrait;

/// Record a change of booking `b` in the audit log (in the caller's transaction).
pub(super) async fn audit<C: ConnectionTrait>(
    c: &C,
    actor: crate::audit::Actor,
    kind: &str,
    b: &booking::Model,
    detail: serde_json::Value,
) -> Result<(), sea_orm::DbErr> {
    let about = crate::audit::About {
        show_id: Some(b.show_id),
        booking_id: Some(b.id),
        user_id: Some(b.user_id),
    };
    crate::audit::record(c, actor, kind, about, detail).await
}

/// What a webhook event says of a booking.
pub(super) fn event_data(b: &booking::Model, status: &str) -> serde_json::Value {
    serde_json::json!({
        "bookingId": b.id.to_string(),
        "showId": b.show_id.to_string(),
        "userId": b.user_id.to_string(),
        "status": status,
        "totalCents": b.total_cents,
    })
}
