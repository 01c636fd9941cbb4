//! A server killed with SIGKILL in the middle of a slow payment: after a restart the reconciler
//! settles the booking from the gateway's record and no seat stays held.

use std::time::Duration;

use crate::support::{process_env, Backend, ServerProcess};
use serde_json::json;

async fn killed_mid_payment_is_settled_after_restart(b: Backend) {
    let (_db, env) = process_env(
        b,
        &[
            ("PAYMENT_LATENCY_MS", "3000"),
            ("PAYMENT_TIMEOUT_MS", "4000"),
            ("RECONCILE_INTERVAL_SECONDS", "1"),
            ("HOLD_TTL_SECONDS", "60"),
        ],
    )
    .await;
    let mut first = ServerProcess::start(&env).await;
    let (show, seats) = first.api.create_show(1, 4).await;
    let (token, _) = first.api.sign_up("crash@example.com").await;
    let hold = first
        .api
        .ok(
            Some(&token),
            "mutation($s: ID!, $seats: [ID!]!) { holdSeats(showId: $s, seatIds: $seats) { id } }",
            json!({ "s": show, "seats": [seats[0], seats[1]] }),
        )
        .await["holdSeats"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Start paying; the gateway takes 3 s. Kill the server while it waits.
    let api = crate::support::Api::new(first.api.base.clone());
    let (t, h) = (token.clone(), hold.clone());
    let paying = tokio::spawn(async move {
        api.client
            .post(format!("{}/graphql", api.base))
            .bearer_auth(t)
            .json(&json!({ "query": "mutation($h: ID!) { checkout(holdId: $h, idempotencyKey: \"crash\") { id } }", "variables": { "h": h } }))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    first.kill();
    assert!(
        paying.await.unwrap().is_err(),
        "the request died with the server"
    );

    let second = ServerProcess::start(&env).await;
    let q = "{ myBookings { id status failureReason } }";
    let mut last = serde_json::Value::Null;
    for _ in 0..60 {
        last = second.api.ok(Some(&token), q, json!({})).await;
        if last["myBookings"][0]["status"] != "PENDING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let booking = &last["myBookings"][0];
    assert_eq!(booking["status"], "FAILED", "{last}");
    assert!(
        booking["failureReason"]
            .as_str()
            .unwrap()
            .contains("not charged"),
        "{last}"
    );
    // The same key afterwards returns the settled booking, and never charges.
    let again = second
        .api
        .ok(
            Some(&token),
            "mutation($h: ID!) { checkout(holdId: $h, idempotencyKey: \"crash\") { id status } }",
            json!({ "h": hold }),
        )
        .await;
    assert_eq!(again["checkout"]["id"], booking["id"]);
    assert_eq!(again["checkout"]["status"], "FAILED");
    // Nothing stays held.
    let (_, map) = second.api.seat_map(None, &show).await;
    assert!(map.iter().all(|s| s.1 == "AVAILABLE"), "{map:?}");
}

backends!(killed_mid_payment_is_settled_after_restart);
