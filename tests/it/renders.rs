//! A live event is rendered once per distinct selection (and per viewer when the selection has a
//! per-viewer field) and shared by the subscribers of that selection (`SharedUpdate`): each one
//! still gets exactly its own answer — its aliases, fragments, directives, variables and
//! `heldByMe`.
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{process_env, Backend, ServerProcess, TestApp, WsClient, SEAT_UPDATES};

const WAIT: Duration = Duration::from_secs(5);

const PLAIN: &str =
    "subscription($show: ID!) { seatUpdates(showId: $show) { version seats { id status } } }";
const FRAGMENTS: &str =
    "subscription($show: ID!) { seatUpdates(showId: $show) { v: version ...S } }
fragment S on SeatUpdate { seats { id st: status ... on Seat { me: heldByMe } } }";
const DIRECTIVE: &str = "subscription($show: ID!, $full: Boolean = false) {
  seatUpdates(showId: $show) { version seats @include(if: $full) { id } } }";

fn payload(msg: Option<Value>) -> Value {
    let m = msg.expect("an event");
    assert_eq!(m["type"], "next", "{m}");
    assert!(m["payload"]["errors"].is_null(), "{m}");
    m["payload"]["data"]["seatUpdates"].clone()
}

async fn each_subscriber_gets_its_own_answer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(1, 4).await;
    let users = app.users(2).await;
    let (alice, bob) = (users[0].0.as_str(), users[1].0.as_str());
    let vars = json!({ "show": show });
    // (who, document, variables) — two anonymous subscribers of each shared selection.
    let plan: Vec<(Option<&str>, &str, Value)> = vec![
        (Some(alice), SEAT_UPDATES, vars.clone()),
        (Some(bob), SEAT_UPDATES, vars.clone()),
        (None, SEAT_UPDATES, vars.clone()),
        (None, SEAT_UPDATES, vars.clone()),
        (Some(alice), PLAIN, vars.clone()),
        (None, PLAIN, vars.clone()),
        (Some(alice), FRAGMENTS, vars.clone()),
        (None, FRAGMENTS, vars.clone()),
        (None, DIRECTIVE, vars.clone()),
        (None, DIRECTIVE, json!({ "show": show, "full": true })),
    ];
    let mut sockets = Vec::new();
    for (who, doc, v) in &plan {
        let mut ws = WsClient::connect(&app.base, *who).await.expect("connect");
        ws.subscribe("1", doc, v.clone()).await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (v0, _) = app.seat_map(None, &show).await;
    app.hold(alice, &show, &[&seats[1]]).await;
    let mut got = Vec::new();
    for ws in &mut sockets {
        got.push(payload(ws.next(WAIT).await));
    }
    let v1 = v0 + 1;
    let seat = seats[1].as_str();
    let counts = |mine: bool| {
        json!({ "showId": show, "version": v1, "availableSeats": 3, "heldSeats": 1, "bookedSeats": 0,
                "seats": [{ "id": seat, "status": "HELD", "heldByMe": mine }] })
    };
    assert_eq!(got[0], counts(true), "alice's own hold");
    assert_eq!(got[1], counts(false), "bob sees someone's hold");
    assert_eq!(got[2], counts(false));
    assert_eq!(got[3], counts(false));
    let plain = json!({ "version": v1, "seats": [{ "id": seat, "status": "HELD" }] });
    assert_eq!(
        got[4], plain,
        "no per-viewer field: alice shares the anonymous answer"
    );
    assert_eq!(got[5], plain);
    let fragments =
        |me: bool| json!({ "v": v1, "seats": [{ "id": seat, "st": "HELD", "me": me }] });
    assert_eq!(
        got[6],
        fragments(true),
        "a per-viewer field inside an inline fragment"
    );
    assert_eq!(got[7], fragments(false));
    assert_eq!(
        got[8],
        json!({ "version": v1 }),
        "@include(if: false) by default"
    );
    assert_eq!(got[9], json!({ "version": v1, "seats": [{ "id": seat }] }));
}

backends!(each_subscriber_gets_its_own_answer);

fn counter(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Counted in `/metrics` (a process of its own: the recorder is process-wide): six anonymous
/// subscribers of one selection and one signed-in subscriber of a per-viewer selection — each
/// event is rendered about twice, not seven times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_rendered_once_per_selection() {
    let (_db, env) = process_env(Backend::Embedded, &[]).await;
    let server = ServerProcess::start(&env).await;
    let api = &server.api;
    let (show, seats) = api.create_show(1, 6).await;
    let (alice, _) = api.sign_up("renders@example.com").await;
    let (bob, _) = api.sign_up("renders-b@example.com").await;
    let mut sockets = Vec::new();
    for i in 0..7 {
        let who = (i == 6).then_some(alice.as_str());
        let doc = if i == 6 { SEAT_UPDATES } else { PLAIN };
        let mut ws = WsClient::connect(&api.base, who).await.expect("connect");
        ws.subscribe("1", doc, json!({ "show": show })).await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = 3;
    for (i, seat) in seats.iter().take(events).enumerate() {
        // At most two live holds per user and show.
        api.hold(if i < 2 { &alice } else { &bob }, &show, &[seat])
            .await;
        for ws in &mut sockets {
            payload(ws.next(WAIT).await);
        }
    }
    let body = api.metrics().await;
    let (made, shared) = (
        counter(&body, "live_renders_total"),
        counter(&body, "live_renders_shared_total"),
    );
    assert_eq!(made + shared, (7 * events) as f64, "{body}");
    // Two selection keys per event; two worker threads may both render a key they both missed.
    assert!(made <= (4 * events) as f64, "made {made}, shared {shared}");
    assert!(
        shared >= (3 * events) as f64,
        "made {made}, shared {shared}"
    );
}
