//! Best available (`holdBestAvailable`) on both stores: the in-process store runs the Rust
//! chooser, the Redis store `best.lua`; each case's expected seats are worked out by hand from
//! the ranking rules (distance to the best point, rows weighted 1.0 and columns 0.6), so both
//! stores are held to the same answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::support::{Backend, TestApp};
use serde_json::{json, Value};

const BEST: &str = "mutation($show: ID!, $count: Int!, $cats: [String!], $together: Boolean! = false, $wc: Int! = 0) {
  holdBestAvailable(showId: $show, count: $count, categories: $cats, requireTogether: $together, wheelchairSpaces: $wc) {
    id version nextToEachOther seats { label status heldByMe wheelchair companion restrictedView } } }";

/// A show on these rows; seat labels → ids.
async fn show_on(app: &TestApp, rows: Value, best: Value) -> (String, HashMap<String, String>) {
    let rows = rows.as_array().expect("rows").clone();
    let (show, _) = app.create_show_on(rows, Some(best)).await;
    let d = app
        .ok(
            None,
            "query($id: ID!) { show(id: $id) { seats { id label } } }",
            json!({ "id": show }),
        )
        .await;
    let labels = d["show"]["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                s["label"].as_str().expect("label").to_string(),
                s["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    (show, labels)
}

/// Ask for the best seats: the held labels (sorted) and `nextToEachOther`, or the error code.
async fn best(app: &TestApp, token: &str, vars: Value) -> Result<(Vec<String>, bool), String> {
    let body = app.gql(Some(token), BEST, vars).await;
    if let Some(e) = body["errors"].get(0) {
        return Err(e["extensions"]["code"]
            .as_str()
            .unwrap_or("NO CODE")
            .to_string());
    }
    let hold = &body["data"]["holdBestAvailable"];
    let seats = hold["seats"].as_array().expect("seats");
    assert!(
        seats
            .iter()
            .all(|s| s["status"] == "HELD" && s["heldByMe"] == true),
        "{body}"
    );
    let mut labels: Vec<String> = seats
        .iter()
        .map(|s| s["label"].as_str().expect("label").to_string())
        .collect();
    labels.sort();
    Ok((labels, hold["nextToEachOther"].as_bool().expect("flag")))
}

fn labels(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

async fn ranks_by_distance_and_avoids_orphans(b: Backend) {
    let app = TestApp::spawn(b).await;
    let users = app.users(4).await;
    let t = |i: usize| users[i].0.as_str();

    // Three rows of 8, best point at the centre of row B.
    let (show, _) = show_on(
        &app,
        json!([{ "label": "A", "seats": 8 }, { "label": "B", "seats": 8 }, { "label": "C", "seats": 8 }]),
        json!({ "row": 1, "column": 3.5 }),
    )
    .await;
    let got = best(&app, t(0), json!({ "show": show, "count": 2 })).await;
    assert_eq!(got, Ok((labels(&["B4", "B5"]), true)));
    // B4 and B5 are gone: B3–B5 and B4–B6 are not free, B1–B3 and B6–B8 are far to the side;
    // A3–A5 (one row off, near the centre) is the best three left.
    let got = best(&app, t(1), json!({ "show": show, "count": 3 })).await;
    assert_eq!(got, Ok((labels(&["A3", "A4", "A5"]), true)));

    // One row of five, best point on A3: A2–A3 would strand A1 and A3–A4 would strand A5, so
    // the best window that strands nobody is A1–A2.
    let (five, _) = show_on(
        &app,
        json!([{ "label": "A", "seats": 5 }]),
        json!({ "row": 0, "column": 2 }),
    )
    .await;
    let got = best(&app, t(2), json!({ "show": five, "count": 2 })).await;
    assert_eq!(got, Ok((labels(&["A1", "A2"]), true)));
    // A3–A5 are left: both pairs strand one seat, so the better one is taken anyway.
    let got = best(
        &app,
        t(3),
        json!({ "show": five, "count": 2, "together": true }),
    )
    .await;
    assert_eq!(got, Ok((labels(&["A3", "A4"]), true)));
}

async fn aisles_split_and_require_together(b: Backend) {
    let app = TestApp::spawn(b).await;
    let users = app.users(3).await;
    let t = |i: usize| users[i].0.as_str();
    // Two rows of six with an aisle after seat 3: no four side by side anywhere.
    let (show, _) = show_on(
        &app,
        json!([
            { "label": "A", "seats": 6, "aisleAfter": [3] },
            { "label": "B", "seats": 6, "aisleAfter": [3] }
        ]),
        json!({ "row": 0, "column": 3 }),
    )
    .await;
    let v0 = app.seat_map(None, &show).await.0;
    let refused = best(
        &app,
        t(0),
        json!({ "show": show, "count": 4, "together": true }),
    )
    .await;
    assert_eq!(refused, Err("SEATS_UNAVAILABLE".into()));
    assert_eq!(
        app.seat_map(None, &show).await.0,
        v0,
        "a refusal takes nothing"
    );
    // Split: the best three (A1–A3) and the best single seat of the adjacent row (B3).
    let got = best(&app, t(0), json!({ "show": show, "count": 4 })).await;
    assert_eq!(got, Ok((labels(&["A1", "A2", "A3", "B3"]), false)));
    // Pairs: A4–A5 (best) would strand A6, B4–B5 would strand B6, A5–A6 would strand A4 (the
    // aisle cuts it off); B1–B2 strands nobody (B3 is held), so it wins though it ranks lower.
    let got = best(&app, t(1), json!({ "show": show, "count": 2 })).await;
    assert_eq!(got, Ok((labels(&["B1", "B2"]), true)));
    // With B1–B2 gone every pair strands a seat: the best one, A4–A5, is taken anyway.
    let got = best(&app, t(2), json!({ "show": show, "count": 2 })).await;
    assert_eq!(got, Ok((labels(&["A4", "A5"]), true)));
}

async fn full_rows_categories_and_accessible_seats(b: Backend) {
    let app = TestApp::spawn(b).await;
    let users = app.users(6).await;
    let t = |i: usize| users[i].0.as_str();
    let (show, seat) = show_on(
        &app,
        json!([
            { "label": "A", "seats": 4, "category": "STANDARD" },
            { "label": "B", "seats": 4, "category": "PREMIUM" }
        ]),
        json!({ "row": 0, "column": 1.5 }),
    )
    .await;
    // Row A full: the best pair in B that strands nobody is B1–B2.
    app.hold(
        t(0),
        &show,
        &[&seat["A1"], &seat["A2"], &seat["A3"], &seat["A4"]],
    )
    .await;
    let got = best(&app, t(1), json!({ "show": show, "count": 2 })).await;
    assert_eq!(got, Ok((labels(&["B1", "B2"]), true)));
    // Categories: only PREMIUM (case-insensitive) is left anyway; STANDARD has nothing free.
    let got = best(
        &app,
        t(2),
        json!({ "show": show, "count": 2, "cats": ["premium"] }),
    )
    .await;
    assert_eq!(got, Ok((labels(&["B3", "B4"]), true)));
    let none = best(
        &app,
        t(3),
        json!({ "show": show, "count": 1, "cats": ["STANDARD"] }),
    )
    .await;
    assert_eq!(none, Err("SEATS_UNAVAILABLE".into()));
    for (vars, code) in [
        (json!({ "count": 1, "cats": ["BALCONY"] }), "BAD_USER_INPUT"),
        (json!({ "count": 1, "cats": [] }), "BAD_USER_INPUT"),
        (json!({ "count": 0 }), "BAD_USER_INPUT"),
        (json!({ "count": 11 }), "LIMIT_EXCEEDED"),
        (json!({ "count": 2, "wc": 3 }), "BAD_USER_INPUT"),
        (json!({ "count": -1 }), "BAD_USER_INPUT"),
    ] {
        let mut vars = vars;
        vars["show"] = json!(show);
        assert_eq!(
            best(&app, t(3), vars.clone()).await,
            Err(code.into()),
            "{vars}"
        );
    }

    // A wheelchair space (A1) with its companion seat (A2).
    let (access, _) = show_on(
        &app,
        json!([
            { "label": "A", "seats": 6, "wheelchair": [1], "companion": [2], "restrictedView": [6] },
            { "label": "B", "seats": 6 }
        ]),
        json!({ "row": 0, "column": 0.5 }),
    )
    .await;
    let d = app
        .ok(
            None,
            "query($id: ID!) { show(id: $id) { seats { label wheelchair companion restrictedView } } }",
            json!({ "id": access }),
        )
        .await;
    let flags: HashMap<String, (bool, bool, bool)> = d["show"]["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                s["label"].as_str().expect("label").to_string(),
                (
                    s["wheelchair"] == true,
                    s["companion"] == true,
                    s["restrictedView"] == true,
                ),
            )
        })
        .collect();
    assert_eq!(flags["A1"], (true, false, false));
    assert_eq!(flags["A2"], (false, true, false));
    assert_eq!(flags["A6"], (false, false, true));
    assert_eq!(flags["B1"], (false, false, false));
    // Without wheelchair spaces asked for, the space and its companion seat are left alone (A2–A3
    // would rank best after A1–A2): B1–B2 is next.
    let got = best(&app, t(3), json!({ "show": access, "count": 2 })).await;
    assert_eq!(got, Ok((labels(&["B1", "B2"]), true)));
    let got = best(&app, t(4), json!({ "show": access, "count": 2, "wc": 1 })).await;
    assert_eq!(got, Ok((labels(&["A1", "A2"]), true)));
    let none = best(&app, t(5), json!({ "show": access, "count": 1, "wc": 1 })).await;
    assert_eq!(
        none,
        Err("SEATS_UNAVAILABLE".into()),
        "the only wheelchair space is held"
    );
}

/// 200 buyers ask for 2–4 best seats each at once on a 400-seat show (more seats asked for than
/// exist): no seat is in two holds, every hold has its count, side-by-side claims are true, and
/// the map's counts and version account for every grant exactly.
async fn concurrent_buyers_never_share_a_seat(b: Backend) {
    let app = Arc::new(TestApp::spawn(b).await);
    let (show, _) = app.create_show(20, 20).await;
    let users = app.users(200).await;
    let v0 = app.seat_map(None, &show).await.0;
    let mut tasks = Vec::new();
    for (i, (token, _)) in users.into_iter().enumerate() {
        let (app, show) = (app.clone(), show.clone());
        tasks.push(tokio::spawn(async move {
            let count = 2 + i % 3;
            let body = app
                .gql(
                    Some(&token),
                    "mutation($show: ID!, $n: Int!) { holdBestAvailable(showId: $show, count: $n) { nextToEachOther seats { id row number } } }",
                    json!({ "show": show, "n": count }),
                )
                .await;
            (count, body)
        }));
    }
    let mut held: HashSet<String> = HashSet::new();
    let (mut grants, mut seats_held) = (0, 0);
    for t in tasks {
        let (count, body) = t.await.expect("task");
        if let Some(e) = body["errors"].get(0) {
            assert_eq!(e["extensions"]["code"], "SEATS_UNAVAILABLE", "{body}");
            continue;
        }
        let hold = &body["data"]["holdBestAvailable"];
        let seats = hold["seats"].as_array().expect("seats");
        assert_eq!(seats.len(), count, "{body}");
        for s in seats {
            let id = s["id"].as_str().expect("id").to_string();
            assert!(held.insert(id.clone()), "seat {id} in two holds");
        }
        if hold["nextToEachOther"] == true {
            let row = &seats[0]["row"];
            let mut numbers: Vec<i64> = seats
                .iter()
                .map(|s| {
                    assert_eq!(&s["row"], row, "{body}");
                    s["number"].as_i64().expect("number")
                })
                .collect();
            numbers.sort_unstable();
            assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{body}");
        }
        grants += 1;
        seats_held += count;
    }
    assert!(
        seats_held > 300,
        "most of the house is handed out: {seats_held}"
    );
    let (version, map) = app.seat_map(None, &show).await;
    assert_eq!(
        version,
        v0 + grants,
        "one version per grant, none per refusal"
    );
    let on_map: HashSet<String> = map
        .iter()
        .filter(|(_, st, _)| st == "HELD")
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(on_map, held, "the map shows exactly the granted seats");
    let counts = app
        .ok(
            None,
            "query($id: ID!) { show(id: $id) { heldSeats availableSeats } }",
            json!({ "id": show }),
        )
        .await;
    assert_eq!(counts["show"]["heldSeats"], json!(seats_held));
    assert_eq!(counts["show"]["availableSeats"], json!(400 - seats_held));
}

backends!(
    ranks_by_distance_and_avoids_orphans,
    aisles_split_and_require_together,
    full_rows_categories_and_accessible_seats,
    concurrent_buyers_never_share_a_seat,
);

/// The Redis script and the Rust chooser agree: random layouts (aisles, categories, wheelchair
/// spaces, companion and restricted seats, a random best point), random seats already held,
/// random asks; each case runs on a fresh show in both stores, which must grant the same seats
/// (or both refuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_script_and_rust_chooser_agree_on_random_layouts() {
    use boxoffice::catalogue::layout::{Layout, SeatInfo};
    use boxoffice::holds::best::BestAsk;
    use boxoffice::holds::memory::MemoryStore;
    use boxoffice::holds::{
        BestOutcome, BestRequest, HoldOutcome, HoldRequest, HoldStore, QueueConfig,
    };
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    if crate::support::served_skipped() {
        return;
    }
    let (redis, db) = crate::support::redis_store("bestagree").await;
    let memory = MemoryStore::new(db.clone());
    let mut rng = StdRng::seed_from_u64(20261201);
    let (mut granted, mut split, mut refused) = (0, 0, 0);
    for case in 0..300i64 {
        // A layout: 1–6 rows of 1–14 seats, rows centred, aisles anywhere.
        let rows = rng.random_range(1..=6);
        let cats = ["STANDARD", "PREMIUM", "VIP"];
        let mut seats = Vec::new();
        let mut id = case * 1000;
        for r in 0..rows {
            let n = rng.random_range(1..=14);
            let category = cats[rng.random_range(0..cats.len())];
            let mut col = rng.random_range(0..3);
            for number in 1..=n {
                id += 1;
                seats.push(SeatInfo {
                    id,
                    row: format!("R{r}"),
                    number,
                    category: category.to_string(),
                    row_index: r,
                    col_index: col,
                    wheelchair: rng.random_bool(0.08),
                    companion: rng.random_bool(0.08),
                    restricted_view: rng.random_bool(0.1),
                });
                col += if rng.random_bool(0.15) { 2 } else { 1 };
            }
        }
        let focal = rng.random_bool(0.7).then(|| {
            (
                rng.random_range(0.0..rows as f64),
                rng.random_range(0.0..16.0),
            )
        });
        let layout = Layout::from_seats(case, seats, focal);
        let show = 900_000 + case;
        // Seats already taken (held by someone else), the same in both stores.
        let taken: Vec<i64> = layout
            .seats
            .iter()
            .map(|s| s.id)
            .filter(|_| rng.random_bool(0.35))
            .collect();
        let ttl = Duration::from_secs(600);
        for store in [&redis as &dyn HoldStore, &memory] {
            // No waiting room (the server mirrors this from the database on first use).
            store
                .configure_queue(show, QueueConfig::OFF, true)
                .await
                .expect("queue settings");
            if taken.is_empty() {
                continue;
            }
            let hold_id = format!("{show}-{}", "0".repeat(32));
            let r = HoldRequest {
                show_id: show,
                hold_id: &hold_id,
                user_id: 1,
                seats: &taken,
                ttl,
                max_holds: 2,
            };
            let pre = store.hold(&r).await.expect("pre-hold");
            assert!(matches!(pre, HoldOutcome::Granted { .. }), "{pre:?}");
        }
        let n_cats = layout.plan.categories.len();
        // Three asks in a row on the same show (the script's skip hints carry over), some
        // grants released in between (which clears them).
        for round in 0..3 {
            let ask = BestAsk {
                count: rng.random_range(1..=layout.len().min(6)),
                categories: rng
                    .random_bool(0.3)
                    .then(|| (0..n_cats).map(|_| rng.random_bool(0.6)).collect()),
                together: rng.random_bool(0.3),
                wheelchair: if rng.random_bool(0.2) { 1 } else { 0 },
            };
            let hold_id = format!("{show}-{}", format!("{}", round + 1).repeat(32));
            let mut answers = Vec::new();
            for store in [&redis as &dyn HoldStore, &memory] {
                let r = BestRequest {
                    show_id: show,
                    hold_id: &hold_id,
                    user_id: 2 + round,
                    layout: &layout,
                    ask: &ask,
                    ttl,
                    max_holds: 2,
                };
                let mut out = store.hold_best(&r).await.expect("best");
                if let BestOutcome::Granted {
                    seat_ids,
                    version,
                    expires_ms,
                    ..
                } = &mut out
                {
                    seat_ids.sort_unstable();
                    // The stores' versions and clocks need not agree.
                    (*version, *expires_ms) = (0, 0);
                }
                answers.push(out);
            }
            assert_eq!(
                answers[0], answers[1],
                "case {case} round {round}: redis vs memory, ask {ask:?}, taken {taken:?}, layout {:?}",
                layout.seats
            );
            match &answers[0] {
                BestOutcome::Granted { together: true, .. } => granted += 1,
                BestOutcome::Granted { .. } => split += 1,
                _ => refused += 1,
            }
            if matches!(answers[0], BestOutcome::Granted { .. }) && rng.random_bool(0.4) {
                for store in [&redis as &dyn HoldStore, &memory] {
                    store
                        .release(show, &hold_id, 2 + round)
                        .await
                        .expect("release");
                }
            }
        }
    }
    // The cases cover every outcome.
    assert!(
        granted > 50 && split > 5 && refused > 5,
        "{granted} together, {split} split, {refused} refused"
    );
}
