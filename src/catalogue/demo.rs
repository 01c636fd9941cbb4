//! A small, real-looking demo catalogue, loaded into an empty database when `DEMO_DATA` is on:
//! two venues, screens of different shapes and categories, and a week of shows.
use chrono::{Duration, DurationRound, Utc};
use entity::venue;
use sea_orm::{EntityTrait, PaginatorTrait};

use super::{Catalogue, NewRow, NewShow};
use crate::error::AppResult;

fn rows(spec: &[(&str, i32, &str)]) -> Vec<NewRow> {
    spec.iter()
        .map(|(label, seats, cat)| NewRow {
            label: label.to_string(),
            seats: *seats,
            category: Some(cat.to_string()),
            ..Default::default()
        })
        .collect()
}

/// Give the rows named in `labels` the same aisles and seat attributes.
fn shape(mut rows: Vec<NewRow>, labels: &[&str], f: impl Fn(&mut NewRow)) -> Vec<NewRow> {
    for r in rows
        .iter_mut()
        .filter(|r| labels.contains(&r.label.as_str()))
    {
        f(r);
    }
    rows
}

/// Load the demo catalogue if there are no venues yet. Returns whether it loaded anything.
pub async fn load_if_empty(cat: &Catalogue) -> AppResult<bool> {
    if venue::Entity::find().count(cat.db()).await? > 0 {
        return Ok(false);
    }
    let riverside = cat
        .create_venue("Riverside Picturehouse", "Bristol")
        .await?;
    let aurora = cat.create_venue("Kino Aurora", "Leeds").await?;

    let grand_rows = rows(&[
        ("A", 10, "STANDARD"),
        ("B", 12, "STANDARD"),
        ("C", 14, "STANDARD"),
        ("D", 14, "STANDARD"),
        ("E", 16, "STANDARD"),
        ("F", 16, "PREMIUM"),
        ("G", 16, "PREMIUM"),
        ("H", 16, "PREMIUM"),
        ("J", 12, "RECLINER"),
        ("K", 12, "RECLINER"),
    ]);
    // Two aisles through the middle block; wheelchair spaces with companion seats at the ends
    // of row E (step-free access); pillars hide part of the screen from the front corners.
    let grand_rows = shape(grand_rows, &["C", "D"], |r| r.aisle_after = vec![3, 11]);
    let grand_rows = shape(grand_rows, &["E", "F", "G", "H"], |r| {
        r.aisle_after = vec![3, 13]
    });
    let grand_rows = shape(grand_rows, &["E"], |r| {
        r.wheelchair = vec![1, 16];
        r.companion = vec![2, 15];
    });
    let grand_rows = shape(grand_rows, &["A", "B"], |r| {
        r.restricted_view = vec![1, r.seats]
    });
    let grand = cat
        .create_screen(riverside.id, "Grand", grand_rows, None)
        .await?;
    let studio = cat
        .create_screen(
            riverside.id,
            "Studio",
            rows(&[
                ("A", 6, "STANDARD"),
                ("B", 8, "STANDARD"),
                ("C", 8, "STANDARD"),
                ("D", 8, "STANDARD"),
                ("E", 6, "SOFA"),
            ]),
            None,
        )
        .await?;
    let one_rows = rows(&[
        ("A", 18, "STANDARD"),
        ("B", 18, "STANDARD"),
        ("C", 20, "STANDARD"),
        ("D", 20, "STANDARD"),
        ("E", 20, "STANDARD"),
        ("F", 20, "STANDARD"),
        ("G", 22, "PREMIUM"),
        ("H", 22, "PREMIUM"),
        ("J", 22, "PREMIUM"),
        ("K", 22, "PREMIUM"),
        ("L", 20, "PREMIUM"),
        ("M", 16, "VIP"),
    ]);
    let one_rows = shape(one_rows, &["C", "D", "E", "F", "L"], |r| {
        r.aisle_after = vec![4, 16]
    });
    let one_rows = shape(one_rows, &["G", "H", "J", "K"], |r| {
        r.aisle_after = vec![5, 17]
    });
    let one_rows = shape(one_rows, &["F"], |r| {
        r.wheelchair = vec![5, 16];
        r.companion = vec![6, 15];
    });
    let one = cat
        .create_screen(aurora.id, "Screen 1", one_rows, None)
        .await?;
    let two = cat
        .create_screen(
            aurora.id,
            "Screen 2",
            rows(&[
                ("A", 9, "STANDARD"),
                ("B", 10, "STANDARD"),
                ("C", 10, "STANDARD"),
                ("D", 11, "STANDARD"),
                ("E", 11, "STANDARD"),
                ("F", 12, "STANDARD"),
            ]),
            None,
        )
        .await?;

    let films = [
        ("The Lighthouse Keeper's Daughter", 112),
        ("Paper Moons", 98),
        ("Northbound Express", 131),
        ("A Quiet Orbit", 104),
        ("Saltwater Kings", 121),
    ];
    let mut movies = Vec::new();
    for (title, minutes) in films {
        movies.push(cat.create_movie(title, minutes).await?);
    }

    let price = |cat: &str| -> i64 {
        match cat {
            "PREMIUM" => 1450,
            "RECLINER" => 1850,
            "SOFA" => 2200,
            "VIP" => 2400,
            _ => 1050,
        }
    };
    let today = Utc::now()
        .duration_trunc(Duration::days(1))
        .unwrap_or_else(|_| Utc::now());
    let slots = [(13, 0), (17, 30), (20, 45)];
    let screens = [&grand, &studio, &one, &two];
    let mut film = 0usize;
    for day in 0..7 {
        for (si, screen) in screens.iter().enumerate() {
            for (slot_i, (h, m)) in slots.iter().enumerate() {
                let starts_at = today
                    + Duration::days(day)
                    + Duration::hours(*h)
                    + Duration::minutes(*m + 5 * si as i64);
                if starts_at <= Utc::now() + Duration::minutes(5) {
                    continue;
                }
                let movie = &movies[(film + si + slot_i) % movies.len()];
                let layout = cat.layouts().layout(cat.db(), screen.id).await?;
                let prices = layout
                    .map(|l| {
                        l.categories()
                            .into_iter()
                            .map(|c| {
                                let p = price(&c);
                                (c, p)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                cat.create_show(NewShow {
                    movie_id: movie.id,
                    screen_id: screen.id,
                    starts_at,
                    prices,
                    created_by: crate::audit::Actor::System,
                })
                .await?;
            }
        }
        film += 1;
    }
    // Always have something on right now-ish, whatever the hour the demo starts.
    let soon = Utc::now()
        .duration_trunc(Duration::minutes(5))
        .unwrap_or_else(|_| Utc::now())
        + Duration::minutes(20);
    let _ = cat
        .create_show(NewShow {
            movie_id: movies[1].id,
            screen_id: studio.id,
            starts_at: soon,
            prices: vec![("STANDARD".into(), 1050), ("SOFA".into(), 2200)],
            created_by: crate::audit::Actor::System,
        })
        .await;
    Ok(true)
}
