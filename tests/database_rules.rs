//! Invariants the database enforces by itself, whatever the code above it does.
mod common;

use chrono::Utc;
use common::{Backend, TestApp};
use entity::{booking, booking_seat};
use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, DbErr, EntityTrait, Set, SqlErr};

async fn new_booking(app: &TestApp, user: i64, show: i64, key: &str) -> booking::Model {
    booking::ActiveModel {
        id: NotSet,
        user_id: Set(user),
        show_id: Set(show),
        hold_id: Set(None),
        status: Set("CONFIRMED".into()),
        total_cents: Set(1000),
        idempotency_key: Set(key.into()),
        failure_reason: Set(None),
        created_at: Set(Utc::now()),
        updated_at: Set(Utc::now()),
    }
    .insert(&app.state().db)
    .await
    .expect("booking")
}

async fn seat_row(
    app: &TestApp,
    booking: i64,
    show: i64,
    seat: i64,
    active: bool,
) -> Result<(), DbErr> {
    booking_seat::Entity::insert(booking_seat::ActiveModel {
        booking_id: Set(booking),
        seat_id: Set(seat),
        show_id: Set(show),
        price_cents: Set(1000),
        active: Set(active),
    })
    .exec_without_returning(&app.state().db)
    .await
    .map(|_| ())
}

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn one_seat_is_in_at_most_one_live_booking(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(1, 3).await;
    let (show, seat): (i64, i64) = (show.parse().unwrap(), seats[0].parse().unwrap());
    let (_, u1) = app.sign_up("one@example.com").await;
    let (_, u2) = app.sign_up("two@example.com").await;
    let b1 = new_booking(&app, u1.parse().unwrap(), show, "k1").await;
    let b2 = new_booking(&app, u2.parse().unwrap(), show, "k2").await;

    seat_row(&app, b1.id, show, seat, true)
        .await
        .expect("first live booking of the seat");
    let second = seat_row(&app, b2.id, show, seat, true).await;
    assert!(
        matches!(&second, Err(e) if is_unique_violation(e)),
        "second live booking of one seat must fail: {second:?}"
    );

    // A cancelled (inactive) row does not block the seat, and the seat can be booked again.
    let b3 = new_booking(&app, u2.parse().unwrap(), show, "k3").await;
    seat_row(&app, b3.id, show, seats[1].parse().unwrap(), false)
        .await
        .expect("inactive row");
    seat_row(&app, b2.id, show, seats[1].parse().unwrap(), true)
        .await
        .expect("live row next to an inactive one");

    // The same user may not reuse an idempotency key.
    let dup = booking::ActiveModel {
        id: NotSet,
        user_id: Set(u1.parse().unwrap()),
        show_id: Set(show),
        hold_id: Set(None),
        status: Set("PENDING".into()),
        total_cents: Set(0),
        idempotency_key: Set("k1".into()),
        failure_reason: Set(None),
        created_at: Set(Utc::now()),
        updated_at: Set(Utc::now()),
    }
    .insert(&app.state().db)
    .await;
    assert!(matches!(&dup, Err(e) if is_unique_violation(e)), "{dup:?}");

    // A booking's seats cannot claim another show (composite foreign key).
    let (other_show, other_seats) = app.create_show(1, 2).await;
    let _ = other_show;
    let cross = seat_row(
        &app,
        b1.id,
        show + 1000,
        other_seats[0].parse().unwrap(),
        true,
    )
    .await;
    assert!(
        cross.is_err(),
        "a seat row must reference its booking's show"
    );
    let _ = booking::Entity::find().all(&app.state().db).await.unwrap();
}

backends!(one_seat_is_in_at_most_one_live_booking);
