//! Invariants the database enforces by itself, whatever the code above it does.

use crate::support::{Backend, TestApp};
use sea_orm::{DbErr, SqlErr};

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn one_seat_is_in_at_most_one_live_booking(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(1, 3).await;
    let (show, seat): (i64, i64) = (show.parse().unwrap(), seats[0].parse().unwrap());
    let (_, u1) = app.sign_up("one@example.com").await;
    let (_, u2) = app.sign_up("two@example.com").await;
    let b1 = app
        .insert_booking(
            u1.parse().unwrap(),
            show,
            "k1",
            entity::booking::BookingStatus::Confirmed,
        )
        .await
        .expect("booking");
    let b2 = app
        .insert_booking(
            u2.parse().unwrap(),
            show,
            "k2",
            entity::booking::BookingStatus::Confirmed,
        )
        .await
        .expect("booking");

    app.insert_booking_seat(b1.id, show, seat, true)
        .await
        .expect("first live booking of the seat");
    let second = app.insert_booking_seat(b2.id, show, seat, true).await;
    assert!(
        matches!(&second, Err(e) if is_unique_violation(e)),
        "second live booking of one seat must fail: {second:?}"
    );

    // A cancelled (inactive) row does not block the seat, and the seat can be booked again.
    let b3 = app
        .insert_booking(
            u2.parse().unwrap(),
            show,
            "k3",
            entity::booking::BookingStatus::Confirmed,
        )
        .await
        .expect("booking");
    app.insert_booking_seat(b3.id, show, seats[1].parse().unwrap(), false)
        .await
        .expect("inactive row");
    app.insert_booking_seat(b2.id, show, seats[1].parse().unwrap(), true)
        .await
        .expect("live row next to an inactive one");

    // The same user may not reuse an idempotency key.
    let dup = app
        .insert_booking(
            u1.parse().unwrap(),
            show,
            "k1",
            entity::booking::BookingStatus::Pending,
        )
        .await;
    assert!(matches!(&dup, Err(e) if is_unique_violation(e)), "{dup:?}");

    // A booking's seats cannot claim another (real) show: the composite foreign key refuses it.
    let (other_show, other_seats) = app.create_show(1, 2).await;
    let other_show: i64 = other_show.parse().unwrap();
    let cross = app
        .insert_booking_seat(b1.id, other_show, other_seats[0].parse().unwrap(), true)
        .await;
    match cross.as_ref().map_err(|e| e.sql_err()) {
        Err(Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(msg))) => {
            // PostgreSQL names the constraint; SQLite only says a foreign key failed.
            if b == Backend::Served {
                assert!(msg.contains("fk_booking_seats_booking_show"), "{msg}");
            }
        }
        other => panic!("a seat row must reference its booking's show: {other:?}"),
    }
}

backends!(one_seat_is_in_at_most_one_live_booking);
