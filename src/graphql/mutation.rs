//! Root mutations: accounts and the admin catalogue.
use async_graphql::{Context, InputObject, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::types::{viewer, AuthPayload, Movie, Screen, Show, User, Venue};
use crate::auth::accounts::Session;
use crate::catalogue::{NewRow, NewShow};
use crate::error::AppError;
use crate::ids::parse_id;
use crate::state::AppState;

#[derive(InputObject)]
pub struct SeatRowInput {
    /// Row label, e.g. "A" (front row first).
    pub label: String,
    /// Number of seats in the row; they are numbered from 1, left to right.
    pub seats: i32,
    /// Seat category of the row (default STANDARD).
    pub category: Option<String>,
    /// An aisle (one empty column) after each of these seat numbers: seats on either side of
    /// it are not side by side.
    #[graphql(default)]
    pub aisle_after: Vec<i32>,
    /// Seat numbers that are wheelchair spaces.
    #[graphql(default)]
    pub wheelchair: Vec<i32>,
    /// Seat numbers that are companion seats; each must be beside a wheelchair space.
    #[graphql(default)]
    pub companion: Vec<i32>,
    /// Seat numbers with a restricted view (ranked after every clear seat).
    #[graphql(default)]
    pub restricted_view: Vec<i32>,
}

/// The screen's best point, in drawing units (row from the front, column from the left).
#[derive(InputObject)]
pub struct BestPointInput {
    pub row: f64,
    pub column: f64,
}

#[derive(InputObject)]
pub struct CategoryPriceInput {
    pub category: String,
    pub price_cents: i32,
}

#[derive(Default)]
pub struct AccountMutation;

fn payload(state: &AppState, s: Session) -> AuthPayload {
    let ttl = chrono::Duration::from_std(state.accounts.tokens().ttl()).unwrap_or_default();
    AuthPayload {
        token: s.token,
        user: User(s.user),
        expires_at: Utc::now() + ttl,
    }
}

#[Object]
impl AccountMutation {
    /// Create a customer account and sign in.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        name: Option<String>,
    ) -> Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let s = state.accounts.sign_up(&email, password, name).await?;
        Ok(payload(state, s))
    }

    async fn log_in(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        // Password guessing: after LOGIN_FAILURES_PER_15_MINUTES failures an account refuses
        // further attempts for the rest of the window (before any hashing is spent on them).
        let limits = &state.limits;
        let rule = limits.login_failures_per_account;
        let key = format!("login:{}", email.trim().to_lowercase());
        if limits.exceeded(&key, rule).await {
            return Err(AppError::LimitExceeded(
                "too many failed log-ins for this account; retry in 15 minutes".into(),
            )
            .into());
        }
        match state.accounts.log_in(&email, password).await {
            Ok(s) => Ok(payload(state, s)),
            Err(e) => {
                if matches!(e, AppError::Unauthenticated(_)) {
                    limits.record(&key, rule).await;
                }
                Err(e.into())
            }
        }
    }
}

#[derive(Default)]
pub struct CatalogueMutation;

#[Object]
impl CatalogueMutation {
    /// Admin only.
    async fn create_venue(&self, ctx: &Context<'_>, name: String, city: String) -> Result<Venue> {
        viewer(ctx).require_admin()?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(Venue(state.catalogue.create_venue(&name, &city).await?))
    }

    /// Admin only. Rows front first; seats numbered from 1 left to right, rows centred.
    /// `bestPoint`: where best-available ranks seats from (default: centre of the row about
    /// two thirds back).
    async fn create_screen(
        &self,
        ctx: &Context<'_>,
        venue_id: ID,
        name: String,
        rows: Vec<SeatRowInput>,
        best_point: Option<BestPointInput>,
    ) -> Result<Screen> {
        viewer(ctx).require_admin()?;
        let venue_id = parse_id(&venue_id, "venue")?;
        let rows = rows
            .into_iter()
            .map(|r| NewRow {
                label: r.label,
                seats: r.seats,
                category: r.category,
                aisle_after: r.aisle_after,
                wheelchair: r.wheelchair,
                companion: r.companion,
                restricted_view: r.restricted_view,
            })
            .collect();
        let focal = best_point.map(|p| (p.row, p.column));
        let state = ctx.data_unchecked::<AppState>();
        Ok(Screen(
            state
                .catalogue
                .create_screen(venue_id, &name, rows, focal)
                .await?,
        ))
    }

    /// Admin only.
    async fn create_movie(
        &self,
        ctx: &Context<'_>,
        title: String,
        duration_minutes: i32,
    ) -> Result<Movie> {
        viewer(ctx).require_admin()?;
        let state = ctx.data_unchecked::<AppState>();
        Ok(Movie(
            state
                .catalogue
                .create_movie(&title, duration_minutes)
                .await?,
        ))
    }

    /// Admin only. Needs exactly one price for every seat category of the screen; refuses a
    /// start in the past and an overlap with another show on the same screen.
    async fn create_show(
        &self,
        ctx: &Context<'_>,
        movie_id: ID,
        screen_id: ID,
        starts_at: DateTime<Utc>,
        prices: Vec<CategoryPriceInput>,
    ) -> Result<Show> {
        viewer(ctx).require_admin()?;
        let movie_id = parse_id(&movie_id, "movie")?;
        let screen_id = parse_id(&screen_id, "screen")?;
        let prices = prices
            .into_iter()
            .map(|p| (p.category, p.price_cents as i64))
            .collect();
        let state = ctx.data_unchecked::<AppState>();
        let show = state
            .catalogue
            .create_show(NewShow {
                movie_id,
                screen_id,
                starts_at,
                prices,
                created_by: super::types::actor(viewer(ctx)),
            })
            .await?;
        Ok(Show::new(show))
    }
}
