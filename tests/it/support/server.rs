//! A real server in the test process, built by the real `app::build`.
use boxoffice::app::App;
use boxoffice::state::AppState;

use super::*;

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

pub struct TestApp {
    pub backend: Backend,
    pub api: Api,
    pub app: App,
    pub redis_prefix: Option<String>,
    pub database_url: String,
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, &[]).await
    }

    /// Spawn with extra flags, e.g. `&["--hold-ttl-seconds", "2"]`.
    pub async fn spawn_with(backend: Backend, extra: &[&str]) -> TestApp {
        Self::spawn_via(backend, extra, |url| url).await
    }

    /// `spawn_with`, the server reaching the database at `route(url)` (e.g. through a proxy).
    pub async fn spawn_via(
        backend: Backend,
        extra: &[&str],
        route: impl Fn(String) -> String,
    ) -> TestApp {
        let (db, database_url) = TestDb::create(backend).await;
        let database_url = route(database_url);
        let prefix = unique("bo-test");
        let mut args: Vec<String> = vec![
            "boxoffice".into(),
            "--database-url".into(),
            database_url.clone(),
            "--listen-addr".into(),
            "127.0.0.1:0".into(),
            "--jwt-secret".into(),
            JWT_SECRET.into(),
            "--admin-email".into(),
            ADMIN_EMAIL.into(),
            "--admin-password".into(),
            ADMIN_PASSWORD.into(),
            "--payment-latency-ms".into(),
            "0".into(),
            // Exact outcomes: tests that want declines ask for them (rate 1.0).
            "--payment-failure-rate".into(),
            "0".into(),
            "--demo-data".into(),
            "false".into(),
            // Every test client comes from 127.0.0.1: the read budget's own test turns it on.
            "--read-budget-per-second".into(),
            "0".into(),
            "--redis-key-prefix".into(),
            prefix.clone(),
        ];
        if backend == Backend::Served {
            require_redis().await;
            args.push("--redis-url".into());
            args.push(redis_url());
        }
        // Extra flags replace the defaults above.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend(pair.iter().map(|s| s.to_string()));
        }
        let config = boxoffice::config::Config::try_from_args(&args)
            .unwrap_or_else(|e| panic!("test config: {e}"));
        Self::start(
            backend,
            config,
            db,
            database_url,
            (backend == Backend::Served).then_some(prefix),
        )
        .await
    }

    async fn start(
        backend: Backend,
        config: boxoffice::config::Config,
        db: TestDb,
        database_url: String,
        redis_prefix: Option<String>,
    ) -> TestApp {
        super::watchdog::install();
        let app = boxoffice::app::build(config)
            .await
            .unwrap_or_else(|e| panic!("app failed to build: {e:#}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = app.clone();
        tokio::spawn(async move {
            let _ = boxoffice::app::serve(served, listener).await;
        });
        TestApp {
            backend,
            api: Api::new(format!("http://{addr}")),
            app,
            redis_prefix,
            database_url,
            _db: db,
        }
    }

    /// A second instance on the same database and Redis namespace (another server process, as
    /// far as the service can tell).
    pub async fn spawn_peer(&self, extra: &[&str]) -> TestApp {
        let mut args: Vec<String> = vec![
            "boxoffice".into(),
            "--database-url".into(),
            self.database_url.clone(),
            "--jwt-secret".into(),
            JWT_SECRET.into(),
            "--payment-latency-ms".into(),
            "0".into(),
            "--payment-failure-rate".into(),
            "0".into(),
            "--demo-data".into(),
            "false".into(),
            "--read-budget-per-second".into(),
            "0".into(),
        ];
        if let Some(p) = &self.redis_prefix {
            args.extend([
                "--redis-url".into(),
                redis_url(),
                "--redis-key-prefix".into(),
                p.clone(),
            ]);
        }
        // Extra flags replace the defaults above.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| a == pair[0]) {
                args.drain(i..i + 2);
            }
            args.extend(pair.iter().map(|s| s.to_string()));
        }
        let config = boxoffice::config::Config::try_from_args(&args)
            .unwrap_or_else(|e| panic!("peer config: {e}"));
        Self::start(
            self.backend,
            config,
            TestDb::Shared,
            self.database_url.clone(),
            self.redis_prefix.clone(),
        )
        .await
    }

    pub fn state(&self) -> &AppState {
        &self.app.state
    }

    /// `n` customer accounts inserted straight into the database (no argon2: fast), with tokens.
    pub async fn users(&self, n: usize) -> Vec<(String, i64)> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
        let tag = unique("u");
        let rows: Vec<entity::user::ActiveModel> = (0..n)
            .map(|i| entity::user::ActiveModel {
                email: Set(format!("{tag}-{i}@load.test")),
                password_hash: Set("$argon2id$v=19$m=19456,t=2,p=1$unused$unused".into()),
                name: Set(None),
                role: Set(boxoffice::auth::Role::Customer),
                created_at: Set(chrono::Utc::now()),
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(200) {
            entity::user::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&self.state().db)
                .await
                .expect("users");
        }
        let users = entity::user::Entity::find()
            .filter(entity::user::Column::Email.like(format!("{tag}-%")))
            .all(&self.state().db)
            .await
            .expect("users");
        let tokens = self.state().accounts.tokens();
        users
            .into_iter()
            .map(|u| {
                (
                    tokens
                        .issue(u.id, boxoffice::auth::Role::Customer)
                        .expect("token"),
                    u.id,
                )
            })
            .collect()
    }

    /// A booking row written straight to the database (for tests of the database's own rules and
    /// of what the store does with bookings it did not make), with the outbox events the service
    /// would have written for its status.
    /// The seats of `show` in live (active) bookings, one entry per booking seat.
    pub async fn active_seats(&self, show: i64) -> Vec<i64> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        entity::booking_seat::Entity::find()
            .filter(entity::booking_seat::Column::ShowId.eq(show))
            .filter(entity::booking_seat::Column::Active.eq(true))
            .all(&self.state().db)
            .await
            .expect("booking seats")
            .into_iter()
            .map(|r| r.seat_id)
            .collect()
    }

    /// Book `seat` for `user` straight in the database (a confirmed booking) and mirror it
    /// into the hold store, as a checkout's commit does.
    pub async fn book_directly(&self, user: i64, show: i64, seat: i64) {
        let b = self
            .insert_booking(
                user,
                show,
                &format!("direct-{seat}"),
                entity::booking::BookingStatus::Confirmed,
            )
            .await
            .expect("booking");
        self.insert_booking_seat(b.id, show, seat, true)
            .await
            .expect("booking seat");
        self.state()
            .holds
            .mirror_booked(show, None, &[seat])
            .await
            .expect("mirror");
    }

    pub async fn insert_booking(
        &self,
        user: i64,
        show: i64,
        key: &str,
        status: entity::booking::BookingStatus,
    ) -> Result<entity::booking::Model, sea_orm::DbErr> {
        use entity::booking::BookingStatus;
        use sea_orm::{ActiveModelTrait, Set};
        let row = entity::booking::ActiveModel {
            user_id: Set(user),
            show_id: Set(show),
            hold_id: Set(None),
            status: Set(status),
            total_cents: Set(1000),
            idempotency_key: Set(key.into()),
            failure_reason: Set(None),
            created_at: Set(chrono::Utc::now()),
            updated_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(&self.state().db)
        .await?;
        let kinds: &[&'static str] = match status {
            BookingStatus::Confirmed => &["booking.confirmed"],
            BookingStatus::Cancelled => &["booking.confirmed", "booking.cancelled"],
            BookingStatus::Failed => &["booking.failed"],
            BookingStatus::Pending => &[],
        };
        for kind in kinds {
            boxoffice::webhooks::record(
                &self.state().db,
                kind,
                show,
                Some(row.id),
                serde_json::json!({ "bookingId": row.id.to_string() }),
            )
            .await?;
        }
        Ok(row)
    }

    /// One seat of a booking, live (`active`) or not, written straight to the database.
    pub async fn insert_booking_seat(
        &self,
        booking: i64,
        show: i64,
        seat: i64,
        active: bool,
    ) -> Result<(), sea_orm::DbErr> {
        use sea_orm::{EntityTrait, Set};
        entity::booking_seat::Entity::insert(entity::booking_seat::ActiveModel {
            booking_id: Set(booking),
            seat_id: Set(seat),
            show_id: Set(show),
            price_cents: Set(1000),
            active: Set(active),
        })
        .exec_without_returning(&self.state().db)
        .await
        .map(|_| ())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.app.state.shutdown.cancel();
        // A server that logged an error or panicked in a task failed, whatever the test saw.
        if !std::thread::panicking() {
            let faults = super::watchdog::take();
            assert!(
                faults.is_empty(),
                "the server logged errors or panicked: {faults:#?}"
            );
        }
    }
}

pub fn row_label(i: usize) -> String {
    let letters = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    if i < letters.len() {
        (letters[i] as char).to_string()
    } else {
        format!(
            "{}{}",
            letters[i / letters.len() - 1] as char,
            letters[i % letters.len()] as char
        )
    }
}
