//! The read path over HTTP: queries over GET (never mutations), automatic persisted queries,
//! cache headers on immutable data only, compression, and the read budget.
use serde_json::{json, Value};

use crate::support::{Backend, TestApp};

const LAYOUT: &str = "query($s: ID!) { show(id: $s) { id startsAt movie { title } \
     seatLayout { label seats { id number column category priceCents } } } }";
const LIVE: &str = "query($s: ID!) { show(id: $s) { version seatStatuses { statuses } } }";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn get(
    app: &TestApp,
    params: &[(&str, String)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let url =
        url::Url::parse_with_params(&format!("{}/graphql", app.api.base), params).expect("url");
    let mut req = app.api.client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("GET")
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn get_runs_queries_and_caches_only_immutable_data(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, _) = app.create_show(2, 4).await;
    let vars = json!({ "s": show }).to_string();

    // Immutable data: cacheable for ever, with an ETag a revalidation matches.
    let r = get(
        &app,
        &[("query", LAYOUT.into()), ("variables", vars.clone())],
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let cache = header(&r, "cache-control").expect("cache-control");
    assert!(
        cache.contains("public") && cache.contains("max-age"),
        "{cache}"
    );
    let etag = header(&r, "etag").expect("etag");
    let raw = r.text().await.expect("body");
    let body: Value = serde_json::from_str(&raw).expect("json");
    assert_eq!(
        body["data"]["show"]["seatLayout"][0]["seats"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    let again = get(
        &app,
        &[("query", LAYOUT.into()), ("variables", vars.clone())],
        &[("if-none-match", &etag)],
    )
    .await;
    let status = again.status();
    if status != 304 {
        let h = format!("{:?}", again.headers());
        let b = again.text().await.unwrap_or_default();
        panic!("revalidation of {etag}: {status} {h}\n{b}\nfirst: {raw}");
    }
    assert_eq!(header(&again, "etag").as_deref(), Some(etag.as_str()));

    // Live data over GET runs, and is never cached; nor is a show that does not exist.
    let live = get(
        &app,
        &[("query", LIVE.into()), ("variables", vars.clone())],
        &[],
    )
    .await;
    assert_eq!(live.status(), 200);
    assert_eq!(header(&live, "cache-control").as_deref(), Some("no-store"));
    assert!(header(&live, "etag").is_none());
    let body: Value = live.json().await.expect("json");
    assert_eq!(body["data"]["show"]["seatStatuses"]["statuses"], "AAAAAAAA");
    let missing = get(
        &app,
        &[
            ("query", LAYOUT.into()),
            ("variables", json!({ "s": "999999" }).to_string()),
        ],
        &[],
    )
    .await;
    assert_eq!(
        header(&missing, "cache-control").as_deref(),
        Some("no-store")
    );

    // A signed-in user's data is never cached either.
    let token = app.users(1).await[0].0.clone();
    let me = get(
        &app,
        &[("query", "{ me { id } myBookings { id } }".into())],
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(me.status(), 200);
    assert_eq!(header(&me, "cache-control").as_deref(), Some("no-store"));

    // GET refuses mutations before anything runs.
    let m = get(
        &app,
        &[(
            "query",
            "mutation { signUp(email: \"x@example.com\", password: \"long enough 1\", name: \"X\") { token } }"
                .into(),
        )],
        &[],
    )
    .await;
    assert_eq!(m.status(), 405);
    let body: Value = m.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    let still = app
        .gql(
            None,
            "mutation { logIn(email: \"x@example.com\", password: \"long enough 1\") { token } }",
            json!({}),
        )
        .await;
    assert!(
        still["errors"].is_array(),
        "the GET created no account: {still}"
    );

    // Without a query, GET is still the IDE.
    assert_eq!(app.get_status("/graphql").await, 200);
}

async fn automatic_persisted_queries(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, _) = app.create_show(1, 3).await;
    let hash = sha256_hex(LIVE);
    let persisted = |h: &str| json!({ "persistedQuery": { "version": 1, "sha256Hash": h } });
    let vars = json!({ "s": show });

    // The hash alone, unknown: the client is told to send the text.
    let r = get(
        &app,
        &[
            ("extensions", persisted(&hash).to_string()),
            ("variables", vars.to_string()),
        ],
        &[],
    )
    .await;
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["message"], "PersistedQueryNotFound",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );

    // A wrong hash is refused; the right one registers the text (over POST here).
    let wrong = app
        .api
        .client
        .post(format!("{}/graphql", app.api.base))
        .json(
            &json!({ "query": LIVE, "variables": vars, "extensions": persisted(&"0".repeat(64)) }),
        )
        .send()
        .await
        .expect("post")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(
        wrong["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{wrong}"
    );
    let first = app
        .api
        .client
        .post(format!("{}/graphql", app.api.base))
        .json(&json!({ "query": LIVE, "variables": vars, "extensions": persisted(&hash) }))
        .send()
        .await
        .expect("post")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(
        first["data"]["show"]["seatStatuses"]["statuses"], "AAA",
        "{first}"
    );

    // Now the hash alone runs it, over GET.
    let r = get(
        &app,
        &[
            ("extensions", persisted(&hash).to_string()),
            ("variables", vars.to_string()),
        ],
        &[],
    )
    .await;
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["data"]["show"]["seatStatuses"]["statuses"], "AAA",
        "{body}"
    );
}

async fn large_answers_are_compressed(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, _) = app.create_show(10, 30).await;
    for (encoding, expect) in [
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("identity", None),
    ] {
        let r = app
            .api
            .client
            .post(format!("{}/graphql", app.api.base))
            .header("accept-encoding", encoding)
            .json(&json!({
                "query": "query($s: ID!) { show(id: $s) { seats { id label status category priceCents } } }",
                "variables": { "s": show },
            }))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "content-encoding").as_deref(),
            expect,
            "{encoding}"
        );
        let bytes = r.bytes().await.expect("body");
        if expect.is_some() {
            // 300 seats of JSON (about 25 KB) shrink severalfold.
            assert!(bytes.len() < 8_000, "{encoding}: {} bytes", bytes.len());
        } else {
            assert!(bytes.len() > 15_000);
        }
    }
}

/// A flood of anonymous map reads from one address is refused with `LIMIT_EXCEEDED` once its
/// budget is spent; another client's hold still succeeds meanwhile.
async fn the_read_budget_refuses_a_flood_but_not_holds(b: Backend) {
    let app = TestApp::spawn_with(b, &["--read-budget-per-second", "20"]).await;
    let (show, seats) = app.create_show(2, 10).await;
    let token = app.users(1).await[0].0.clone();
    let full = "query($s: ID!) { show(id: $s) { seats { id status } } }";
    let mut refused = None;
    // 20 units/s with 5 s of burst: 100 units; a full map costs 11.
    for i in 0..40 {
        let body = app.gql(None, full, json!({ "s": show })).await;
        if let Some(e) = body["errors"].get(0) {
            refused = Some((i, e.clone()));
            break;
        }
    }
    let (after, err) = refused.expect("the flood was refused");
    assert!((8..=12).contains(&after), "refused after {after} reads");
    assert_eq!(err["extensions"]["code"], "LIMIT_EXCEEDED", "{err}");
    assert!(err["extensions"]["retryAfterSeconds"]
        .as_u64()
        .is_some_and(|s| s >= 1));
    // Mutations are not charged to the read budget: a hold goes through.
    let hold = app.hold(&token, &show, &[&seats[0]]).await;
    assert!(!hold.is_empty());
    // A signed-in reader has a budget of their own.
    let mine = app.gql(Some(&token), full, json!({ "s": show })).await;
    assert!(mine["errors"].is_null(), "{mine}");
}

/// Validations answered from the kept results so far (`/metrics`).
async fn kept_validations(app: &TestApp) -> f64 {
    app.api
        .metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("graphql_validations_total") && l.contains("\"kept\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A document validated once is not validated again for variables the rules would see alike —
/// but anything they could tell apart is validated afresh: a kept result never lets a value
/// through that validation refuses. (Validation refuses the whole operation before anything
/// runs; had a bad value reached execution, the first hold of this two-hold mutation would
/// have been made before the second failed.)
async fn a_kept_validation_still_refuses_bad_variables(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(1, 6).await;
    let users = app.users(3).await;
    const TWO: &str = "mutation($s: ID!, $a: [ID!]!, $b: [ID!]!) { \
        a: holdSeats(showId: $s, seatIds: $a) { id seats { id } } \
        b: holdSeats(showId: $s, seatIds: $b) { id seats { id } } }";
    let before = kept_validations(&app).await;
    for ((token, _), pair) in users.iter().zip(seats.chunks(2)).take(2) {
        let r = app
            .gql(
                Some(token),
                TWO,
                json!({ "s": show, "a": [pair[0]], "b": [pair[1]] }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    assert!(
        kept_validations(&app).await >= before + 1.0,
        "the second request reused the first's validation"
    );

    // Values the rules refuse, after the same document passed: refused before anything runs.
    let (token, free) = (&users[2].0, &seats[4]);
    for bad in [
        json!({ "s": show, "a": [free], "b": [true] }),
        json!({ "s": show, "a": [free], "b": [null] }),
        json!({ "s": show, "a": [free], "b": [[seats[5]]] }),
        json!({ "s": show, "a": [free], "b": [{ "id": seats[5] }] }),
        json!({ "s": show, "a": [free], "b": null }),
        json!({ "s": show, "a": [free] }),
        json!({ "s": 1.5, "a": [free], "b": [seats[5]] }),
    ] {
        let r = app.gql(Some(token), TWO, bad.clone()).await;
        assert_eq!(
            r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{bad}: {r}"
        );
        assert!(r["data"].is_null(), "{bad}: {r}");
    }
    // None of them held the free seat.
    let r = app
        .gql(
            Some(token),
            TWO,
            json!({ "s": show, "a": [free], "b": [seats[5]] }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["a"]["seats"][0]["id"], *free);
}

backends!(
    get_runs_queries_and_caches_only_immutable_data,
    a_kept_validation_still_refuses_bad_variables,
    automatic_persisted_queries,
    large_answers_are_compressed,
    the_read_budget_refuses_a_flood_but_not_holds,
);

/// Every answer carries an `x-request-id`: the client's own, or a fresh random UUID (made from
/// the thread's generator since 2026-12-04, no longer a system call per request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let post = |id: Option<&'static str>| {
        let mut req = app
            .api
            .client
            .post(format!("{}/graphql", app.api.base))
            .json(&json!({ "query": "{ __typename }" }));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    let mut made = Vec::new();
    for _ in 0..2 {
        let r = post(None).await.expect("POST");
        assert_eq!(r.status(), 200);
        let id = header(&r, "x-request-id").expect("x-request-id");
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(parts[2].starts_with('4'), "a version 4 UUID: {id}");
        made.push(id);
    }
    assert_ne!(made[0], made[1]);
    let r = post(Some("client-chosen-7")).await.expect("POST");
    assert_eq!(
        header(&r, "x-request-id").as_deref(),
        Some("client-chosen-7")
    );
}
