//! A GraphQL client of one server over HTTP.
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

/// A GraphQL client of one server, by URL.
/// The password `Api::sign_up` gives every account.
pub const USER_PASSWORD: &str = "correct horse battery";

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        // reqwest is built with rustls and no default crypto provider (the server's webhooks
        // install ring): a test process that starts no in-process server installs it here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// The server's `/metrics` page (Prometheus text).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    }

    /// Run an operation; returns the whole response body (`data` and `errors`).
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 200, "GraphQL over HTTP answers 200");
        resp.json().await.expect("json body")
    }

    /// The HTTP status of `GET <path>` (e.g. `/readyz`).
    pub async fn get_status(&self, path: &str) -> u16 {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        resp.status().as_u16()
    }

    /// Run an operation that must succeed; returns `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    /// Run an operation that must fail; returns the first error's `extensions.code`.
    pub async fn err_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let body = self.gql(token, query, variables).await;
        let code = body["errors"][0]["extensions"]["code"].as_str();
        code.unwrap_or_else(|| panic!("expected an error with a code, got {body}"))
            .to_string()
    }

    pub async fn sign_up(&self, email: &str) -> (String, String) {
        let d = self
            .ok(
                None,
                "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { token user { id } } }",
                json!({ "e": email, "p": USER_PASSWORD }),
            )
            .await;
        (
            d["signUp"]["token"].as_str().unwrap().to_string(),
            d["signUp"]["user"]["id"].as_str().unwrap().to_string(),
        )
    }

    pub async fn admin_token(&self) -> String {
        let d = self
            .ok(
                None,
                "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }",
                json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
            )
            .await;
        d["logIn"]["token"].as_str().unwrap().to_string()
    }

    /// A fresh show starting tomorrow on a new screen of `rows` rows of `per_row` seats
    /// (rows A, B, … ; the back half PREMIUM). Returns (show id, seat ids in layout order).
    pub async fn create_show(&self, rows: usize, per_row: i32) -> (String, Vec<String>) {
        let row_inputs: Vec<Value> = (0..rows)
            .map(|i| {
                json!({
                    "label": row_label(i),
                    "seats": per_row,
                    "category": if i * 2 >= rows { "PREMIUM" } else { "STANDARD" },
                })
            })
            .collect();
        self.create_show_on(row_inputs, None).await
    }

    /// A fresh show starting tomorrow on a new screen of these `SeatRowInput`s (and best
    /// point), every category priced. Returns (show id, seat ids in layout order).
    pub async fn create_show_on(
        &self,
        row_inputs: Vec<Value>,
        best_point: Option<Value>,
    ) -> (String, Vec<String>) {
        let admin = self.admin_token().await;
        let venue = self
            .ok(
                Some(&admin),
                "mutation($n: String!) { createVenue(name: $n, city: \"Testville\") { id } }",
                json!({ "n": unique("Test Hall") }),
            )
            .await["createVenue"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let mut categories: Vec<String> = row_inputs
            .iter()
            .map(|r| r["category"].as_str().unwrap_or("STANDARD").to_string())
            .collect();
        let screen = self
            .ok(
                Some(&admin),
                "mutation($v: ID!, $rows: [SeatRowInput!]!, $best: BestPointInput) { createScreen(venueId: $v, name: \"Main\", rows: $rows, bestPoint: $best) { id } }",
                json!({ "v": venue, "rows": row_inputs, "best": best_point }),
            )
            .await["createScreen"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let movie = self
            .ok(
                Some(&admin),
                "mutation { createMovie(title: \"Test Film\", durationMinutes: 100) { id } }",
                json!({}),
            )
            .await["createMovie"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let starts = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        categories.sort();
        categories.dedup();
        let prices: Vec<Value> = categories
            .iter()
            .map(|c| {
                let cents = if c == "STANDARD" { 1000 } else { 1500 };
                json!({ "category": c, "priceCents": cents })
            })
            .collect();
        let show = self
            .ok(
                Some(&admin),
                "mutation($m: ID!, $s: ID!, $t: DateTime!, $p: [CategoryPriceInput!]!) { createShow(movieId: $m, screenId: $s, startsAt: $t, prices: $p) { id seats { id } } }",
                json!({ "m": movie, "s": screen, "t": starts, "p": prices }),
            )
            .await;
        let id = show["createShow"]["id"].as_str().unwrap().to_string();
        let seats = show["createShow"]["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        (id, seats)
    }

    /// The show's seat map as `(version, [(seat id, status, heldByMe)])`, seen by `token`.
    pub async fn seat_map(
        &self,
        token: Option<&str>,
        show: &str,
    ) -> (i64, Vec<(String, String, bool)>) {
        let d = self
            .ok(
                token,
                "query($id: ID!) { show(id: $id) { version seats { id status heldByMe } } }",
                json!({ "id": show }),
            )
            .await;
        let seats = d["show"]["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["status"].as_str().unwrap().to_string(),
                    s["heldByMe"].as_bool().unwrap(),
                )
            })
            .collect();
        (d["show"]["version"].as_i64().unwrap(), seats)
    }

    /// Hold these seats; the hold's id.
    pub async fn hold(&self, token: &str, show: &str, seats: &[&String]) -> String {
        self.ok(
            Some(token),
            "mutation($show: ID!, $seats: [ID!]!) { holdSeats(showId: $show, seatIds: $seats) { id } }",
            json!({ "show": show, "seats": seats }),
        )
        .await["holdSeats"]["id"]
            .as_str()
            .expect("hold id")
            .to_string()
    }

    /// Release a live hold of this user's (it must answer `true`).
    pub async fn release(&self, token: &str, hold: &str) {
        let d = self
            .ok(
                Some(token),
                "mutation($h: ID!) { releaseHold(holdId: $h) }",
                json!({ "h": hold }),
            )
            .await;
        assert_eq!(d["releaseHold"], true, "release {hold}");
    }

    /// Hold and pay for each seat on its own; the confirmed bookings' ids.
    pub async fn book_each(&self, token: &str, show: &str, seats: &[String]) -> Vec<i64> {
        let mut ids = Vec::new();
        for (i, s) in seats.iter().enumerate() {
            let h = self.hold(token, show, &[s]).await;
            let d = self
                .ok(
                    Some(token),
                    "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { id status } }",
                    json!({ "h": h, "k": format!("k{i}-{h}") }),
                )
                .await;
            assert_eq!(d["checkout"]["status"], "CONFIRMED", "{d}");
            ids.push(
                d["checkout"]["id"]
                    .as_str()
                    .expect("id")
                    .parse()
                    .expect("id"),
            );
        }
        ids
    }
}
