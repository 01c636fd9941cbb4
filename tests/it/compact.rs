//! The compact seat map (`seatLayout` + `seatStatuses`) against the full one (`seats`), on both
//! stores, after random holds, releases, checkouts and expiries, as three different viewers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::support::{Backend, TestApp};

const BOTH: &str = "query($s: ID!) { show(id: $s) {
  version seats { id status heldByMe }
  seatLayout { label rowIndex seats { id number column category priceCents } }
  seatStatuses { version holdsKnown statuses }
  plain: seats { id label mine: heldByMe status priceCents __typename wheelchair rowIndex column }
  engine: seats { ...Full } } }
fragment Full on Seat { id label mine: heldByMe status priceCents __typename wheelchair rowIndex column }";

/// A read of the map alone (no per-viewer field): eligible for a shared answer.
const SHARED: &str = "query($s: ID!) { show(id: $s) { version availableSeats seats { id status } seatStatuses { statuses } } }";

/// Each seat's status in the full form, as the compact form spells it.
fn full_form(show: &Value) -> (i64, String) {
    let letters = show["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| match (s["status"].as_str(), s["heldByMe"].as_bool()) {
            (Some("AVAILABLE"), _) => 'A',
            (Some("BOOKED"), _) => 'B',
            (Some("HELD"), Some(true)) => 'M',
            _ => 'H',
        })
        .collect();
    (show["version"].as_i64().expect("version"), letters)
}

async fn compact_and_full_maps_agree(b: Backend) {
    let app = TestApp::spawn_with(b, &["--hold-ttl-seconds", "1"]).await;
    let (show, seats) = app.create_show(3, 6).await;
    let users = app.users(2).await;
    let mut rng = StdRng::seed_from_u64(23);
    let mut holds: Vec<(usize, String)> = Vec::new();
    let (mut compared, mut moved_on) = (0u32, 0u32);
    for step in 0..40 {
        let who = rng.random_range(0..2);
        let token = users[who].0.as_str();
        match rng.random_range(0..10) {
            0..=5 => {
                let seat = &seats[rng.random_range(0..seats.len())];
                let body = app
                    .gql(
                        Some(token),
                        "mutation($s: ID!, $x: [ID!]!) { holdSeats(showId: $s, seatIds: $x) { id } }",
                        json!({ "s": show, "x": [seat] }),
                    )
                    .await;
                if let Some(id) = body["data"]["holdSeats"]["id"].as_str() {
                    holds.push((who, id.to_string()));
                }
            }
            6 | 7 if !holds.is_empty() => {
                let (who, id) = holds.remove(rng.random_range(0..holds.len()));
                app.gql(
                    Some(&users[who].0),
                    "mutation($h: ID!) { releaseHold(holdId: $h) }",
                    json!({ "h": id }),
                )
                .await;
            }
            8 if !holds.is_empty() => {
                let (who, id) = holds.remove(rng.random_range(0..holds.len()));
                app.gql(
                    Some(&users[who].0),
                    "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { status } }",
                    json!({ "h": id, "k": format!("c-{step}") }),
                )
                .await;
            }
            _ => {
                // Let the holds expire (the TTL is 1 s).
                tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
                holds.clear();
            }
        }
        for viewer in [Some(users[0].0.as_str()), Some(users[1].0.as_str()), None] {
            let d = app.ok(viewer, BOTH, json!({ "s": show })).await;
            let s = &d["show"];
            let layout_ids: Vec<&str> = s["seatLayout"]
                .as_array()
                .expect("rows")
                .iter()
                .flat_map(|r| r["seats"].as_array().expect("seats").iter())
                .map(|x| x["id"].as_str().expect("id"))
                .collect();
            let full_ids: Vec<&str> = s["seats"]
                .as_array()
                .expect("seats")
                .iter()
                .map(|x| x["id"].as_str().expect("id"))
                .collect();
            assert_eq!(layout_ids, full_ids, "one order for both forms");
            // The shared rendering of a plain selection (and the viewer's overlay on it) is
            // what the engine resolves field by field.
            assert_eq!(s["plain"], s["engine"], "step {step}, viewer {viewer:?}");
            let (version, letters) = full_form(s);
            assert_eq!(s["seatStatuses"]["version"].as_i64(), Some(version), "{s}");
            assert_eq!(s["seatStatuses"]["holdsKnown"], true);
            assert_eq!(
                s["seatStatuses"]["statuses"].as_str(),
                Some(letters.as_str()),
                "step {step}, viewer {viewer:?}"
            );
            // A map-only read is answered once per map state and shared (`http::responses`):
            // each viewer still gets exactly what the engine gives them (their own `M`s).
            // A hold of 1 s can lapse between the two reads (a slow machine, a cluster): the
            // map then moved on to a new version, and only reads of one version are compared.
            for _ in 0..2 {
                let d = app.ok(viewer, SHARED, json!({ "s": show })).await;
                let m = &d["show"];
                if m["version"] != s["version"] {
                    assert!(
                        m["version"].as_i64() > s["version"].as_i64(),
                        "a later read never shows an earlier version: {m} after {s}"
                    );
                    moved_on += 1;
                    continue;
                }
                compared += 1;
                assert_eq!(m["seatStatuses"]["statuses"], s["seatStatuses"]["statuses"]);
                let statuses: Vec<&Value> = s["seats"]
                    .as_array()
                    .expect("seats")
                    .iter()
                    .map(|x| &x["status"])
                    .collect();
                let shared: Vec<&Value> = m["seats"]
                    .as_array()
                    .expect("seats")
                    .iter()
                    .map(|x| &x["status"])
                    .collect();
                assert_eq!(statuses, shared, "step {step}, viewer {viewer:?}");
            }
        }
    }
    // Holds lapse now and then between two reads, not between most of them.
    assert!(
        compared > 2 * moved_on,
        "{compared} reads compared, {moved_on} moved on"
    );
    // A 3,000-seat map's live statuses: 3,000 characters.
    let (big, _) = app.create_show(15, 200).await;
    let d = app
        .ok(
            None,
            "query($s: ID!) { show(id: $s) { seatStatuses { statuses } } }",
            json!({ "s": big }),
        )
        .await;
    assert_eq!(
        d["show"]["seatStatuses"]["statuses"].as_str().map(str::len),
        Some(3000)
    );
}

backends!(compact_and_full_maps_agree);

/// One snapshot per map state: readers of an unchanged map share the state (and what is derived
/// from it); the next change replaces it.
async fn a_snapshot_is_shared_within_a_version_and_replaced_on_the_next(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(2, 5).await;
    let show_id: i64 = show.parse().expect("show id");
    let holds = &app.app.state.holds;
    let first = holds.states(&[show_id]).await.expect("state")[&show_id].clone();
    let again = holds.states(&[show_id]).await.expect("state")[&show_id].clone();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "an unchanged map is read once"
    );
    let users = app.users(1).await;
    app.ok(
        Some(&users[0].0),
        "mutation($s: ID!, $x: [ID!]!) { holdSeats(showId: $s, seatIds: $x) { id } }",
        json!({ "s": show, "x": [seats[0]] }),
    )
    .await;
    let next = holds.states(&[show_id]).await.expect("state")[&show_id].clone();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &next),
        "a change replaces it"
    );
    assert_eq!(next.version, first.version + 1);
    assert_eq!(next.held.len(), 1);
    let same = holds.states(&[show_id]).await.expect("state")[&show_id].clone();
    assert!(std::sync::Arc::ptr_eq(&next, &same));
}

backends!(a_snapshot_is_shared_within_a_version_and_replaced_on_the_next);

/// A page of the show list counts from two numbers per show (not the map): the same counts as
/// the show's own map, after holds and bookings.
async fn list_counts_match_the_map(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(3, 5).await;
    let users = app.users(2).await;
    app.hold(&users[0].0, &show, &[&seats[0], &seats[1]]).await;
    app.book_each(&users[1].0, &show, &seats[5..8]).await;
    let list = app
        .ok(
            None,
            "{ shows(first: 100) { edges { node { id totalSeats availableSeats heldSeats bookedSeats } } } }",
            json!({}),
        )
        .await;
    let node = list["shows"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["id"] == show)
        .expect("the show is listed")
        .clone();
    let map = app
        .ok(
            None,
            "query($s: ID!) { show(id: $s) { totalSeats availableSeats heldSeats bookedSeats seatStatuses { statuses } } }",
            json!({ "s": show }),
        )
        .await;
    let m = &map["show"];
    for f in ["totalSeats", "availableSeats", "heldSeats", "bookedSeats"] {
        assert_eq!(node[f], m[f], "{f}: list {node} map {m}");
    }
    let letters = m["seatStatuses"]["statuses"].as_str().expect("statuses");
    assert_eq!(node["heldSeats"], letters.matches('H').count());
    assert_eq!(node["bookedSeats"], letters.matches('B').count());
    assert_eq!(
        (node["heldSeats"].as_i64(), node["bookedSeats"].as_i64()),
        (Some(2), Some(3))
    );
}

backends!(list_counts_match_the_map);

/// The list's counts never count a hold that is already due, even one the sweeper has not seen:
/// a page's counts are read with plain commands, and a show with a due hold goes through the
/// script that expires (and announces) it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_counts_leave_out_a_due_hold_the_sweeper_has_not_seen() {
    if crate::support::served_skipped() {
        return;
    }
    let app = TestApp::spawn(Backend::Served).await;
    let prefix = app.redis_prefix.clone().expect("prefix");
    let (show, seats) = app.create_show(1, 4).await;
    let show_id: i64 = show.parse().expect("id");
    let users = app.users(1).await;
    app.hold(&users[0].0, &show, &[&seats[0]]).await;
    const LIST: &str = "{ shows(first: 100) { edges { node { id heldSeats availableSeats } } } }";
    let listed = |list: &Value| {
        list["shows"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"].clone())
            .find(|n| n["id"] == show)
            .expect("the show is listed")
    };
    assert_eq!(listed(&app.ok(None, LIST, json!({})).await)["heldSeats"], 1);
    // A hold written as the hold script writes one, but due 10 s ago and in no sweep index.
    let mut r = crate::support::redis_conn();
    let key = |k: &str| boxoffice::holds::redis::keys::show_key(&prefix, show_id, k);
    let (sec, _): (String, String) = redis::cmd("TIME").query_async(&mut r).await.expect("TIME");
    let due = sec.parse::<i64>().expect("time") * 1000 - 10_000;
    let (hold, seat) = (format!("{show_id}-{}", "cd".repeat(16)), &seats[1]);
    let user = users[0].1;
    let _: () = redis::pipe()
        .atomic()
        .hset(key("seats"), seat, &hold)
        .zadd(key("holds"), &hold, due)
        .hset(
            key("holdrec"),
            &hold,
            format!("{user}|{due}|{}|{seat}", due - 600_000),
        )
        .hincr(key("uholds"), user, 1)
        .query_async(&mut r)
        .await
        .expect("inject");
    let node = listed(&app.ok(None, LIST, json!({})).await);
    assert_eq!(node["heldSeats"], 1, "only the live hold: {node}");
    assert_eq!(node["availableSeats"], 3, "{node}");
    // And the due hold is gone from the store (expired by the counts script, announced).
    let left: Option<String> = redis::cmd("HGET")
        .arg(key("seats"))
        .arg(seat)
        .query_async(&mut r)
        .await
        .expect("HGET");
    assert_eq!(left, None);
}
