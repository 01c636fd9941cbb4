//! What the simulator needs before the rush: accounts and a fresh show, through the public API.
use std::collections::HashMap;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::client::Http;
use crate::target::Target;

pub(super) async fn sign_up(http: &mut Http, email: &str) -> anyhow::Result<String> {
    let d = http
        .gql(
            None,
            "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { token } }",
            json!({ "e": email, "p": "simulated-user-pass" }),
        )
        .await?
        .data()?;
    d["signUp"]["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("signUp returned no token"))
}

/// A fresh show of about `seats` seats (rows of up to 25, premium in the middle third), created
/// through the admin API with ADMIN_EMAIL / ADMIN_PASSWORD.
pub async fn create_show(http: &mut Http, config: &Target, seats: u64) -> anyhow::Result<String> {
    let admin = admin_token(http, config, "to create a show (or pass --show)").await?;
    create_show_as(http, &admin, seats).await
}

/// An admin token (ADMIN_EMAIL / ADMIN_PASSWORD); `why` says what needs it when they are unset.
pub async fn admin_token(http: &mut Http, config: &Target, why: &str) -> anyhow::Result<String> {
    let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) else {
        bail!("{why}, set ADMIN_EMAIL and ADMIN_PASSWORD (as the server has them)");
    };
    let d = http
        .gql(
            None,
            "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }",
            json!({ "e": email, "p": password }),
        )
        .await?
        .data()
        .context("admin log-in")?;
    Ok(d["logIn"]["token"].as_str().unwrap_or_default().to_string())
}

/// A fresh show of `seats` seats created with an admin token.
pub async fn create_show_as(http: &mut Http, admin: &str, seats: u64) -> anyhow::Result<String> {
    let screen = create_screen_as(http, admin, seats).await?;
    create_show_on(http, admin, &screen, 7).await
}

/// A new venue with one screen of `seats` seats (rows of 25, or of 200 above 2,500 seats; premium
/// in the middle third) and a new movie.
pub async fn create_screen_as(
    http: &mut Http,
    admin: &str,
    seats: u64,
) -> anyhow::Result<NewScreen> {
    let width = if seats > 2500 { 200 } else { 25 };
    let tag = format!("{:x}", rand::random::<u64>());
    let mut ids = HashMap::new();
    for (key, query, vars) in [
        (
            "createVenue",
            "mutation($n: String!) { createVenue(name: $n, city: \"Simville\") { id } }",
            json!({ "n": format!("Sim Hall {tag}") }),
        ),
        (
            "createMovie",
            "mutation($t: String!) { createMovie(title: $t, durationMinutes: 120) { id } }",
            json!({ "t": format!("Sim Film {tag}") }),
        ),
    ] {
        let d = http
            .gql(Some(admin), query, vars)
            .await?
            .data()
            .context(key)?;
        ids.insert(key, d[key]["id"].as_str().unwrap_or_default().to_string());
    }
    let n_rows = seats.div_ceil(width);
    let rows: Vec<Value> = (0..n_rows)
        .map(|r| {
            let in_row = if r + 1 == n_rows { seats - width * r } else { width };
            let middle = r * 3 >= n_rows && r * 3 < n_rows * 2;
            json!({ "label": row_label(r as usize), "seats": in_row, "category": if middle { "PREMIUM" } else { "STANDARD" } })
        })
        .collect();
    let d = http
        .gql(
            Some(admin),
            "mutation($v: ID!, $rows: [SeatRowInput!]!) { createScreen(venueId: $v, name: \"Main\", rows: $rows) { id } }",
            json!({ "v": ids["createVenue"], "rows": rows }),
        )
        .await?
        .data()
        .context("createScreen")?;
    Ok(NewScreen {
        movie: ids["createMovie"].clone(),
        screen: d["createScreen"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        premium: n_rows >= 2,
    })
}

/// A screen made by `create_screen_as`, with a movie to show on it.
pub struct NewScreen {
    pub movie: String,
    pub screen: String,
    /// Whether it has PREMIUM seats besides STANDARD ones (every screen of two rows or more).
    pub premium: bool,
}

/// A show on a new screen, `day` days from now (one show per day never overlaps).
pub async fn create_show_on(
    http: &mut Http,
    admin: &str,
    screen: &NewScreen,
    day: i64,
) -> anyhow::Result<String> {
    let mut prices = vec![json!({ "category": "STANDARD", "priceCents": 1200 })];
    if screen.premium {
        prices.push(json!({ "category": "PREMIUM", "priceCents": 1800 }));
    }
    let starts = (chrono::Utc::now() + chrono::Duration::days(day)).to_rfc3339();
    let d = http
        .gql(
            Some(admin),
            "mutation($m: ID!, $s: ID!, $t: DateTime!, $p: [CategoryPriceInput!]!) { createShow(movieId: $m, screenId: $s, startsAt: $t, prices: $p) { id } }",
            json!({ "m": screen.movie, "s": screen.screen, "t": starts, "p": prices }),
        )
        .await?
        .data()
        .context("createShow")?;
    d["createShow"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("createShow returned no id"))
}

/// Row labels A…Z, then AA, AB, …
pub fn row_label(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}
