//! WebSockets cannot exhaust the server: one connection holds a bounded number of live
//! subscriptions (the excess is refused with `LIMIT_EXCEEDED`, and completing one frees a slot),
//! and one address holds a bounded number of connections (the excess is refused with HTTP 429).
use std::time::Duration;

use serde_json::json;

use crate::support::{Backend, TestApp, WsClient, SEAT_UPDATES};

async fn subscriptions_per_connection_are_capped(b: Backend) {
    let app = TestApp::spawn_with(b, &["--ws-subscriptions-per-connection", "5"]).await;
    let (show, _) = app.create_show(1, 4).await;
    let mut ws = WsClient::connect(&app.base, None).await.expect("connect");
    for i in 1..=8 {
        ws.subscribe(&i.to_string(), SEAT_UPDATES, json!({ "show": show }))
            .await;
    }
    // Three refusals, one per subscribe past the cap, each for its own id.
    let mut refused = Vec::new();
    while let Some(m) = ws.next(Duration::from_secs(2)).await {
        assert_eq!(m["type"], "error", "{m}");
        assert_eq!(
            m["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
            "{m}"
        );
        refused.push(m["id"].as_str().expect("id").to_string());
    }
    assert_eq!(refused, ["6", "7", "8"]);
    // Completing one frees its slot: the next subscribe is live (it hears the next change).
    ws.complete("1").await;
    ws.subscribe("9", SEAT_UPDATES, json!({ "show": show }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let users = app.users(1).await;
    let (_, seats) = app.seat_map(None, &show).await;
    app.hold(&users[0].0, &show, &[&seats[0].0]).await;
    let mut heard = std::collections::BTreeSet::new();
    while let Some(m) = ws.next(Duration::from_secs(2)).await {
        match m["type"].as_str() {
            // The server confirms the client's own `complete`.
            Some("complete") => assert_eq!(m["id"], "1", "{m}"),
            _ => {
                assert_eq!(m["type"], "next", "{m}");
                heard.insert(m["id"].as_str().expect("id").to_string());
            }
        }
    }
    assert_eq!(
        heard,
        ["2", "3", "4", "5", "9"].map(String::from).into(),
        "the four left and the new one hear the change"
    );
}

async fn connections_per_address_are_capped(b: Backend) {
    let app = TestApp::spawn_with(b, &["--ws-connections-per-address", "3"]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(WsClient::connect(&app.base, None).await.expect("connect"));
    }
    let refused = WsClient::connect(&app.base, None)
        .await
        .err()
        .expect("the fourth is refused");
    assert!(refused.contains("429"), "{refused}");
    // A closed connection frees its slot.
    drop(open.pop());
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = WsClient::connect(&app.base, None).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a slot frees when a connection closes");
}

backends!(
    subscriptions_per_connection_are_capped,
    connections_per_address_are_capped
);
