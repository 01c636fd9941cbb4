//! Catalogue queries and admin mutations through the real router.

use std::collections::HashSet;

use crate::support::{Backend, TestApp};
use serde_json::json;

const SHOWS: &str = "query($first: Int, $after: String) { shows(first: $first, after: $after) {
    edges { cursor node { id startsAt movie { title } screen { name venue { name city } }
            totalSeats availableSeats heldSeats bookedSeats version } }
    pageInfo { hasNextPage endCursor } } }";

async fn demo_catalogue_is_served_with_counts(b: Backend) {
    let app = TestApp::spawn_with(b, &["--demo-data", "true"]).await;
    let d = app.ok(None, SHOWS, json!({ "first": 50 })).await;
    let edges = d["shows"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 50);
    assert_eq!(d["shows"]["pageInfo"]["hasNextPage"], true);
    let mut last = String::new();
    for e in edges {
        let n = &e["node"];
        let total = n["totalSeats"].as_i64().unwrap();
        assert!(total > 0);
        assert_eq!(
            total,
            n["availableSeats"].as_i64().unwrap()
                + n["heldSeats"].as_i64().unwrap()
                + n["bookedSeats"].as_i64().unwrap()
        );
        let starts = n["startsAt"].as_str().unwrap().to_string();
        assert!(starts >= last, "soonest first");
        last = starts;
    }
    let venues: HashSet<_> = edges
        .iter()
        .map(|e| e["node"]["screen"]["venue"]["name"].as_str().unwrap())
        .collect();
    assert!(!venues.is_empty());
}

async fn listing_shows_costs_a_bounded_number_of_statements(b: Backend) {
    let app = TestApp::spawn_with(b, &["--demo-data", "true"]).await;
    // Warm the process-wide layout cache so the figure is the steady state.
    app.ok(None, SHOWS, json!({ "first": 50 })).await;
    let before = app.state().db_stats.statements();
    app.ok(None, SHOWS, json!({ "first": 50 })).await;
    let used = app.state().db_stats.statements() - before;
    println!("shows(first: 50) with movie, screen, venue and counts: {used} SQL statements");
    // shows + movies + screens + venues + booked seats: one statement each, whatever `first` is.
    assert!(used <= 8, "shows(first: 50) took {used} statements");
}

async fn pages_walk_every_show_once(b: Backend) {
    let app = TestApp::spawn_with(b, &["--demo-data", "true"]).await;
    let all = app.ok(None, SHOWS, json!({ "first": 100 })).await["shows"]["edges"]
        .as_array()
        .unwrap()
        .len();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = app
            .ok(None, SHOWS, json!({ "first": 7, "after": after }))
            .await;
        for e in d["shows"]["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_string());
        }
        if d["shows"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = d["shows"]["pageInfo"]["endCursor"]
            .as_str()
            .map(String::from);
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no show twice");
    assert_eq!(seen.len(), all.min(100));
    assert_eq!(
        app.err_code(None, SHOWS, json!({ "first": 5, "after": "garbage!" }))
            .await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.err_code(None, SHOWS, json!({ "first": 101 })).await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.err_code(None, SHOWS, json!({ "first": -1 })).await,
        "BAD_USER_INPUT"
    );
}

async fn admin_creates_a_show_with_its_seat_map(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(3, 4).await;
    assert_eq!(seats.len(), 12);
    let d = app
        .ok(None, "query($id: ID!) { show(id: $id) { id totalSeats availableSeats version prices { category priceCents }
                   seats { id row number label category priceCents status heldByMe } } }", json!({ "id": show }))
        .await;
    let s = &d["show"];
    assert_eq!(s["totalSeats"], 12);
    assert_eq!(s["availableSeats"], 12);
    let seat0 = &s["seats"][0];
    assert_eq!(seat0["label"], "A1");
    assert_eq!(seat0["status"], "AVAILABLE");
    assert_eq!(seat0["priceCents"], 1000);
    assert_eq!(s["seats"][11]["label"], "C4");
    assert_eq!(s["seats"][11]["category"], "PREMIUM");
    assert_eq!(s["seats"][11]["priceCents"], 1500);
    assert_eq!(
        app.ok(None, "{ show(id: \"999999\") { id } }", json!({}))
            .await["show"],
        serde_json::Value::Null
    );
    assert_eq!(
        app.err_code(None, "{ show(id: \"abc\") { id } }", json!({}))
            .await,
        "BAD_USER_INPUT"
    );
}

const CREATE_SHOW: &str = "mutation($m: ID!, $s: ID!, $t: DateTime!, $p: [CategoryPriceInput!]!) { createShow(movieId: $m, screenId: $s, startsAt: $t, prices: $p) { id } }";

/// A show created for the test, as the arguments of another one on its screen: an admin's token,
/// its movie, its screen, its start, and a price for each of the screen's categories.
struct OnItsScreen {
    admin: String,
    movie: String,
    screen: String,
    starts: String,
    both: serde_json::Value,
}

async fn a_show_and_its_screen(app: &TestApp) -> OnItsScreen {
    let (show, _) = app.create_show(2, 3).await;
    let admin = app.admin_token().await;
    let existing = app
        .ok(
            None,
            "query($id: ID!) { show(id: $id) { startsAt movie { id } screen { id } } }",
            json!({ "id": show }),
        )
        .await;
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    OnItsScreen {
        admin,
        movie: text(&existing["show"]["movie"]["id"]),
        screen: text(&existing["show"]["screen"]["id"]),
        starts: text(&existing["show"]["startsAt"]),
        both: json!([{ "category": "STANDARD", "priceCents": 900 }, { "category": "PREMIUM", "priceCents": 1200 }]),
    }
}

async fn bad_catalogue_input_is_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let OnItsScreen {
        admin,
        movie,
        screen,
        starts,
        both,
    } = a_show_and_its_screen(&app).await;
    let later = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let cases = [
        (
            "overlap",
            json!({ "m": movie, "s": screen, "t": starts, "p": both }),
            "BAD_USER_INPUT",
        ),
        (
            "past",
            json!({ "m": movie, "s": screen, "t": "2020-01-01T10:00:00Z", "p": both }),
            "BAD_USER_INPUT",
        ),
        (
            "missing price",
            json!({ "m": movie, "s": screen, "t": later, "p": [{ "category": "STANDARD", "priceCents": 900 }] }),
            "BAD_USER_INPUT",
        ),
        (
            "unknown category",
            json!({ "m": movie, "s": screen, "t": later, "p": [{ "category": "STANDARD", "priceCents": 900 }, { "category": "PREMIUM", "priceCents": 1 }, { "category": "GOLD", "priceCents": 1 }] }),
            "BAD_USER_INPUT",
        ),
        (
            "negative price",
            json!({ "m": movie, "s": screen, "t": later, "p": [{ "category": "STANDARD", "priceCents": -5 }, { "category": "PREMIUM", "priceCents": 1 }] }),
            "BAD_USER_INPUT",
        ),
        (
            "unknown movie",
            json!({ "m": "424242", "s": screen, "t": later, "p": both }),
            "NOT_FOUND",
        ),
        (
            "unknown screen",
            json!({ "m": movie, "s": "424242", "t": later, "p": both }),
            "NOT_FOUND",
        ),
        (
            "malformed id",
            json!({ "m": "x1", "s": screen, "t": later, "p": both }),
            "BAD_USER_INPUT",
        ),
    ];
    for (what, vars, code) in cases {
        assert_eq!(
            app.err_code(Some(&admin), CREATE_SHOW, vars).await,
            code,
            "{what}"
        );
    }
    // The slot after the overlap window is fine.
    let ok = app
        .ok(
            Some(&admin),
            CREATE_SHOW,
            json!({ "m": movie, "s": screen, "t": later, "p": both }),
        )
        .await;
    assert!(ok["createShow"]["id"].is_string());

    let screen_q = "mutation($v: ID!, $rows: [SeatRowInput!]!) { createScreen(venueId: $v, name: \"X\", rows: $rows) { id } }";
    let venue = app
        .ok(
            Some(&admin),
            "mutation { createVenue(name: \"Other\", city: \"Town\") { id } }",
            json!({}),
        )
        .await["createVenue"]["id"]
        .clone();
    for rows in [
        json!([]),
        json!([{ "label": "A", "seats": 0 }]),
        json!([{ "label": "A", "seats": 2 }, { "label": "a", "seats": 2 }]),
        json!([{ "label": "", "seats": 2 }]),
    ] {
        assert_eq!(
            app.err_code(Some(&admin), screen_q, json!({ "v": venue, "rows": rows }))
                .await,
            "BAD_USER_INPUT",
            "{rows}"
        );
    }
    assert_eq!(
        app.err_code(
            Some(&admin),
            screen_q,
            json!({ "v": "777777", "rows": [{ "label": "A", "seats": 2 }] })
        )
        .await,
        "NOT_FOUND"
    );
    assert_eq!(
        app.err_code(
            Some(&admin),
            "mutation { createVenue(name: \"Other\", city: \"Town\") { id } }",
            json!({})
        )
        .await,
        "BAD_USER_INPUT",
        "duplicate venue"
    );
    assert_eq!(
        app.err_code(
            Some(&admin),
            "mutation { createMovie(title: \" \", durationMinutes: 90) { id } }",
            json!({})
        )
        .await,
        "BAD_USER_INPUT"
    );
    assert_eq!(
        app.err_code(
            Some(&admin),
            "mutation { createMovie(title: \"Long\", durationMinutes: 0) { id } }",
            json!({})
        )
        .await,
        "BAD_USER_INPUT"
    );
}

/// Admins creating shows on one screen at the same moment: every free slot is taken by its show,
/// and of several shows asking for the same slot exactly one gets it — none is refused for the
/// others' writes (`SERVICE_UNAVAILABLE`), on either database.
async fn shows_created_at_once_each_get_their_slot(b: Backend) {
    let app = TestApp::spawn(b).await;
    let OnItsScreen {
        admin,
        movie,
        screen,
        both,
        ..
    } = a_show_and_its_screen(&app).await;
    let day = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).to_rfc3339();
    let contested = day(30);
    // Twelve free slots, and four requests for one more.
    let starts: Vec<String> = (3..15)
        .map(day)
        .chain((0..4).map(|_| contested.clone()))
        .collect();
    let (admin, both) = (&admin, &both);
    let answers = futures_util::future::join_all(starts.iter().map(|t| {
        app.gql(
            Some(admin),
            CREATE_SHOW,
            json!({ "m": movie, "s": screen, "t": t, "p": both }),
        )
    }))
    .await;
    let code = |a: &serde_json::Value| {
        a["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("ok")
            .to_string()
    };
    let codes: Vec<String> = answers.iter().map(code).collect();
    assert!(codes[..12].iter().all(|c| c == "ok"), "{codes:?}");
    let won = codes[12..].iter().filter(|c| *c == "ok").count();
    let refused = codes[12..]
        .iter()
        .filter(|c| *c == "BAD_USER_INPUT")
        .count();
    assert_eq!((won, refused), (1, 3), "{codes:?}");
}

backends!(
    shows_created_at_once_each_get_their_slot,
    demo_catalogue_is_served_with_counts,
    listing_shows_costs_a_bounded_number_of_statements,
    pages_walk_every_show_once,
    admin_creates_a_show_with_its_seat_map,
    bad_catalogue_input_is_refused,
);
