//! Dependency faults caused for real: the Redis server the test started is killed and restarted.
mod common;

use std::time::{Duration, Instant};

use common::{Backend, PrivateRedis, TestApp};
use serde_json::json;

const HOLD: &str =
    "mutation($show: ID!, $seats: [ID!]!) { holdSeats(showId: $show, seatIds: $seats) { id } }";

/// Redis down: holds answer SERVICE_UNAVAILABLE within a bounded time, the catalogue still
/// answers, /readyz says 503; when Redis is back (empty) everything recovers by itself and the
/// booked seat is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_service_unavailable_then_recovers() {
    if common::served_skipped() {
        eprintln!("skipped: BOXOFFICE_TEST_EMBEDDED_ONLY is set");
        return;
    }
    let mut redis = PrivateRedis::start().await;
    let app = TestApp::spawn_with(
        Backend::Served,
        &[
            "--redis-url",
            &redis.url(),
            "--dependency-timeout-ms",
            "1000",
        ],
    )
    .await;
    let (show, seats) = app.create_show(1, 4).await;
    let users = app.users(2).await;
    let t = &users[0].0;
    let h = app
        .ok(Some(t), HOLD, json!({ "show": show, "seats": [seats[0]] }))
        .await;
    let paid = app
        .ok(
            Some(t),
            "mutation($h: ID!) { checkout(holdId: $h, idempotencyKey: \"f\") { status } }",
            json!({ "h": h["holdSeats"]["id"] }),
        )
        .await;
    assert_eq!(paid["checkout"]["status"], "CONFIRMED");

    redis.kill();
    let started = Instant::now();
    assert_eq!(
        app.err_code(Some(t), HOLD, json!({ "show": show, "seats": [seats[1]] }))
            .await,
        "SERVICE_UNAVAILABLE"
    );
    println!("hold with Redis down answered in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "bounded time");
    let list = app
        .ok(
            None,
            "{ shows { edges { node { id movie { title } } } } }",
            json!({}),
        )
        .await;
    assert!(
        !list["shows"]["edges"].as_array().unwrap().is_empty(),
        "the catalogue still answers"
    );
    let mine = app
        .ok(Some(t), "{ myBookings { status } }", json!({}))
        .await;
    assert_eq!(
        mine["myBookings"][0]["status"], "CONFIRMED",
        "bookings still answer"
    );
    assert_eq!(app.get_status("/readyz").await, 503);

    redis.restart().await;
    let mut recovered = false;
    for _ in 0..50 {
        let body = app
            .gql(
                Some(&users[1].0),
                HOLD,
                json!({ "show": show, "seats": [seats[1]] }),
            )
            .await;
        if body.get("errors").is_none() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "holds work again once Redis is back");
    assert_eq!(
        app.err_code(
            Some(&users[1].0),
            HOLD,
            json!({ "show": show, "seats": [seats[0]] })
        )
        .await,
        "SEATS_UNAVAILABLE",
        "the booking survived"
    );
    assert_eq!(app.get_status("/readyz").await, 200);
}
