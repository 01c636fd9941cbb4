//! The waiting room on both stores: places, the shuffle at the opening, arrival order after it,
//! admission on the schedule (across two instances on Redis), holds and checkouts refused
//! without a live admission and accepted with one, sessions that lapse or end with a checkout.
//! Sleeps here only wait for an opening or a session's end; no assertion is about speed.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::support::{Api, Backend, TestApp};

const SET: &str = "mutation($s: ID!, $at: DateTime!, $rate: Int!, $secs: Int, $max: Int) {
  setOnSale(showId: $s, opensAt: $at, admitPerMinute: $rate, sessionMinutes: 10, queueEnabled: true,
            sessionSeconds: $secs, maxShoppers: $max) {
    id onSale { queueEnabled admitPerMinute sessionSeconds maxShoppers waiting shopping admitted } } }";
const JOIN: &str = "mutation($s: ID!) { joinQueue(showId: $s) { showId state position ahead estimatedWaitSeconds admittedUntil } }";
const TICKET: &str = "query($s: ID!) { queueTicket(showId: $s) { state position ahead estimatedWaitSeconds admittedUntil } }";
const HOLD: &str = "mutation($s: ID!, $x: [ID!]!) { holdSeats(showId: $s, seatIds: $x) { id } }";
const CHECKOUT: &str =
    "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { status } }";

/// Open the show's sale through a waiting room, `opens_in` from now.
async fn on_sale(
    app: &TestApp,
    show: &str,
    opens_in: Duration,
    per_minute: i32,
    session_seconds: i32,
    max: Option<i32>,
) -> Value {
    let admin = app.admin_token().await;
    let at = Utc::now() + chrono::Duration::from_std(opens_in).expect("duration");
    app.ok(
        Some(&admin),
        SET,
        json!({ "s": show, "at": at.to_rfc3339(), "rate": per_minute, "secs": session_seconds, "max": max }),
    )
    .await["setOnSale"]
        .clone()
}

async fn ticket(app: &Api, token: &str, show: &str) -> Value {
    app.ok(Some(token), TICKET, json!({ "s": show })).await["queueTicket"].clone()
}

/// Wait until `f` holds of the user's ticket (at most 15 s).
async fn until(app: &Api, token: &str, show: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let t = ticket(app, token, show).await;
        if f(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the ticket never got there: {}",
        ticket(app, token, show).await
    );
}

async fn shuffle_at_the_opening_then_arrival_order(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(2, 5).await;
    let users = app.users(16).await;
    let t = |i: usize| users[i].0.as_str();
    // One admission a minute: at the opening exactly one (the first in line) is admitted.
    let set = on_sale(&app, &show, Duration::from_secs(2), 1, 600, None).await;
    assert_eq!(set["onSale"]["queueEnabled"], true, "{set}");
    assert_eq!(set["onSale"]["admitPerMinute"], 1, "{set}");

    // No place yet; holding needs one.
    assert_eq!(ticket(&app, t(0), &show).await, Value::Null);
    assert_eq!(
        app.err_code(Some(t(0)), HOLD, json!({ "s": show, "x": [seats[0]] }))
            .await,
        "NOT_ADMITTED"
    );
    // Twelve join before the opening: waiting, place not shown yet, the wait is the time left.
    for i in 0..12 {
        let j = app.ok(Some(t(i)), JOIN, json!({ "s": show })).await["joinQueue"].clone();
        assert_eq!(j["state"], "WAITING", "{j}");
        assert_eq!(j["position"], Value::Null, "{j}");
        assert!(j["estimatedWaitSeconds"].as_i64().unwrap_or(0) <= 3, "{j}");
    }
    // Joining again (another tab) keeps the place.
    let again = app.ok(Some(t(0)), JOIN, json!({ "s": show })).await["joinQueue"].clone();
    assert_eq!(again["state"], "WAITING");

    // The opening: one admitted (at the next admission step), eleven in a random order behind.
    let admin = app.admin_token().await;
    let room = "query($s: ID!) { show(id: $s) { onSale { admitted } } }";
    for _ in 0..100 {
        let r = app.ok(Some(&admin), room, json!({ "s": show })).await;
        if r["show"]["onSale"]["admitted"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut order: Vec<(i64, usize)> = Vec::new();
    let mut admitted = Vec::new();
    for i in 0..12 {
        let v = until(&app, t(i), &show, |v| {
            v["state"] == "ADMITTED" || v["position"].is_number()
        })
        .await;
        match v["state"].as_str() {
            Some("ADMITTED") => admitted.push(i),
            _ => {
                let p = v["position"].as_i64().expect("position");
                assert_eq!(v["ahead"].as_i64(), Some(p - 1), "{v}");
                // Each place waits its turn: a minute per admission ahead of it, and its own.
                assert_eq!(v["estimatedWaitSeconds"].as_i64(), Some(p * 60), "{v}");
                order.push((p, i));
            }
        }
    }
    assert_eq!(admitted.len(), 1, "one admission at the opening");
    order.sort();
    let positions: Vec<i64> = order.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=11).collect::<Vec<i64>>());
    let drawn: Vec<usize> = order.iter().map(|(_, i)| *i).collect();
    let mut joined: Vec<usize> = (0..12).filter(|i| !admitted.contains(i)).collect();
    assert_ne!(
        drawn, joined,
        "the order at the opening is drawn, not the joining order"
    );
    joined.sort();
    let mut sorted = drawn.clone();
    sorted.sort();
    assert_eq!(sorted, joined, "every early joiner has one place");

    // After the opening, arrival order behind everyone who was there before.
    for (k, i) in (12..16).enumerate() {
        let j = app.ok(Some(t(i)), JOIN, json!({ "s": show })).await["joinQueue"].clone();
        assert_eq!(j["position"], json!(12 + k), "{j}");
    }

    // The admitted user may hold and pay; a waiting one may not.
    let waiting = drawn[0];
    assert_eq!(
        app.err_code(
            Some(t(waiting)),
            HOLD,
            json!({ "s": show, "x": [seats[1]] })
        )
        .await,
        "NOT_ADMITTED"
    );
    let best = app
        .gql(
            Some(t(waiting)),
            "mutation($s: ID!) { holdBestAvailable(showId: $s, count: 1) { id } }",
            json!({ "s": show }),
        )
        .await;
    assert_eq!(
        best["errors"][0]["extensions"]["code"], "NOT_ADMITTED",
        "{best}"
    );
    let shopper = t(admitted[0]);
    let hold = app.hold(shopper, &show, &[&seats[2]]).await;
    let paid = app
        .ok(Some(shopper), CHECKOUT, json!({ "h": hold, "k": "q-1" }))
        .await;
    assert_eq!(paid["checkout"]["status"], "CONFIRMED", "{paid}");
    // A checkout ends the session: the slot goes to the next; shopping again means queueing.
    let after = ticket(&app, shopper, &show).await;
    assert_eq!(after["state"], "EXPIRED", "{after}");
    assert_eq!(
        app.err_code(Some(shopper), HOLD, json!({ "s": show, "x": [seats[3]] }))
            .await,
        "NOT_ADMITTED"
    );
    let back = app.ok(Some(shopper), JOIN, json!({ "s": show })).await["joinQueue"].clone();
    assert_eq!(back["state"], "WAITING");
    assert_eq!(back["position"], json!(16), "back of the line: {back}");
}

/// Admissions follow the schedule kept in the store, whoever runs it: 600 a minute (one every
/// 100 ms) from the opening; on Redis two instances run it side by side and admit no more
/// between them, and nobody twice.
async fn admission_follows_the_schedule(b: Backend) {
    let app = TestApp::spawn(b).await;
    let peer = match b {
        Backend::Served => Some(app.spawn_peer(&[]).await),
        Backend::Embedded => None,
    };
    let (show, _) = app.create_show(2, 5).await;
    let users = app.users(60).await;
    let opens = Utc::now() + chrono::Duration::seconds(1);
    let admin = app.admin_token().await;
    app.ok(
        Some(&admin),
        SET,
        json!({ "s": show, "at": opens.to_rfc3339(), "rate": 600, "secs": 600, "max": null }),
    )
    .await;
    for (i, (token, _)) in users.iter().enumerate() {
        // Half the users through the other instance.
        let api = match (&peer, i % 2) {
            (Some(p), 1) => p,
            _ => &app,
        };
        api.ok(Some(token), JOIN, json!({ "s": show })).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let q = "query($s: ID!) { show(id: $s) { onSale { admitted waiting shopping } } }";
    let before = Utc::now();
    let room = app.ok(Some(&admin), q, json!({ "s": show })).await["show"]["onSale"].clone();
    let after = Utc::now();
    let admitted = room["admitted"].as_i64().expect("admitted");
    // The schedule: one at the opening, then one per 100 ms.
    let due = |t: chrono::DateTime<Utc>| (t - opens).num_milliseconds() / 100 + 1;
    assert!(
        admitted <= due(after) && admitted >= due(before) - 4,
        "{admitted} admitted; the schedule says {}–{} (2 admission steps a second per instance may lag)",
        due(before),
        due(after)
    );
    assert_eq!(room["waiting"].as_i64(), Some(60 - admitted), "{room}");
    // Every admitted user once: the tickets agree with the counts.
    let mut states: HashMap<String, usize> = HashMap::new();
    for (token, _) in &users {
        let t = ticket(&app, token, &show).await;
        *states
            .entry(t["state"].as_str().unwrap_or("none").to_string())
            .or_default() += 1;
    }
    let now_admitted = states.get("ADMITTED").copied().unwrap_or(0) as i64;
    assert!(
        now_admitted >= admitted,
        "{states:?} vs {admitted} admitted before reading them"
    );
    assert_eq!(states.values().sum::<usize>(), 60, "{states:?}");
}

/// With a cap of one shopper, the next in line waits for the first session to end (it lapses
/// after 2 s), whatever the rate allows.
async fn a_lapsed_session_frees_a_slot(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(1, 5).await;
    let users = app.users(2).await;
    let (a, bb) = (users[0].0.as_str(), users[1].0.as_str());
    on_sale(&app, &show, Duration::from_secs(0), 600, 2, Some(1)).await;
    app.ok(Some(a), JOIN, json!({ "s": show })).await;
    until(&app, a, &show, |v| v["state"] == "ADMITTED").await;
    app.ok(Some(bb), JOIN, json!({ "s": show })).await;
    // A holds nothing and shops for 2 s; B waits (the cap, not the rate).
    let b_now = ticket(&app, bb, &show).await;
    assert_eq!(b_now["state"], "WAITING", "{b_now}");
    let until_a = until(&app, a, &show, |v| v["state"] == "EXPIRED").await;
    assert!(until_a["admittedUntil"].is_string(), "{until_a}");
    until(&app, bb, &show, |v| v["state"] == "ADMITTED").await;
    assert_eq!(
        app.err_code(Some(a), HOLD, json!({ "s": show, "x": [seats[0]] }))
            .await,
        "NOT_ADMITTED"
    );
    app.hold(bb, &show, &[&seats[0]]).await;
    // A show without a waiting room is as before: no place, holds for everyone.
    let (plain, plain_seats) = app.create_show(1, 2).await;
    assert_eq!(ticket(&app, a, &plain).await, Value::Null);
    assert_eq!(
        app.err_code(Some(a), JOIN, json!({ "s": plain })).await,
        "BAD_USER_INPUT"
    );
    app.hold(a, &plain, &[&plain_seats[0]]).await;
}

/// Two server processes admit from one line; one is SIGKILLed while admissions are under way.
/// Admissions go on (the survivor's ticker runs the same schedule); nobody loses a place and
/// nobody is admitted twice: every user ends up exactly once in the line or in a session, and
/// the sessions are as many as the admissions counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_mid_admission_loses_no_place_and_admits_no_one_twice() {
    use crate::support::{process_env, ServerProcess};
    if crate::support::served_skipped() {
        return;
    }
    let (_db, env) = process_env(
        Backend::Served,
        &[
            ("RATE_LIMIT_USER_PER_MINUTE", "0"),
            ("RATE_LIMIT_IP_PER_MINUTE", "0"),
        ],
    )
    .await;
    let mut a = ServerProcess::start(&env).await;
    let b = ServerProcess::start(&env).await;
    let (show, _) = a.api.create_show(2, 5).await;
    let admin = a.api.admin_token().await;
    let mut tokens = Vec::new();
    for i in 0..60 {
        let (token, _) = b
            .api
            .sign_up(&format!(
                "{}@queue.test",
                crate::support::unique(&format!("q{i}"))
            ))
            .await;
        tokens.push(token);
    }
    // Ten a second from one second from now: the line takes six seconds to empty.
    let opens = Utc::now() + chrono::Duration::seconds(1);
    a.api
        .ok(
            Some(&admin),
            SET,
            json!({ "s": show, "at": opens.to_rfc3339(), "rate": 600, "secs": 600, "max": null }),
        )
        .await;
    for (i, t) in tokens.iter().enumerate() {
        let api = if i % 2 == 0 { &a.api } else { &b.api };
        api.ok(Some(t), JOIN, json!({ "s": show })).await;
    }
    // Mid-admission: about a second in, A dies without a word.
    tokio::time::sleep_until(
        tokio::time::Instant::now()
            + (opens - Utc::now()).to_std().unwrap_or_default()
            + Duration::from_millis(1200),
    )
    .await;
    a.kill();
    let room = "query($s: ID!) { show(id: $s) { onSale { admitted waiting shopping } } }";
    let mut last = Value::Null;
    for _ in 0..150 {
        last = b.api.ok(Some(&admin), room, json!({ "s": show })).await["show"]["onSale"].clone();
        if last["waiting"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["waiting"], 0, "the survivor admits the rest: {last}");
    assert_eq!(last["admitted"], 60, "each admitted once: {last}");
    assert_eq!(last["shopping"], 60, "{last}");
    // The store itself: every user once, in the line or in a session, never both.
    let prefix = env
        .iter()
        .find(|(k, _)| k == "REDIS_KEY_PREFIX")
        .map(|(_, v)| v.clone())
        .expect("prefix");
    let mut r = crate::support::redis_conn();
    let show_id: i64 = show.parse().expect("show id");
    let key = |k: &str| boxoffice::holds::redis::keys::show_key(&prefix, show_id, k);
    let (waiting, sessions): (Vec<String>, Vec<String>) = redis::pipe()
        .zrange(key("qwait"), 0, -1)
        .zrange(key("qadm"), 0, -1)
        .query_async(&mut r)
        .await
        .expect("read the line");
    assert!(waiting.is_empty(), "{waiting:?}");
    let unique: std::collections::HashSet<&String> = sessions.iter().collect();
    assert_eq!((sessions.len(), unique.len()), (60, 60));
    for t in &tokens {
        assert_eq!(ticket(&b.api, t, &show).await["state"], "ADMITTED");
    }
}

backends!(
    shuffle_at_the_opening_then_arrival_order,
    admission_follows_the_schedule,
    a_lapsed_session_frees_a_slot,
);
