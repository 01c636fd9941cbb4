//! The audit (`loadtest audit`, and `simulate`'s after a run) can fail: for each of its checks a
//! test injects exactly that check's fault — a direct write to the database or to Redis, or a
//! client's live map that is wrong — and finds that check, and only that check, failing. Its
//! list of checks is asserted by name, and it refuses to audit what it cannot prove is the
//! server's own data.
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::support::{redis_url, Backend, TestApp};
use entity::booking::BookingStatus;

/// The audit's checks, in order: the contract this file holds it to.
pub const CHECKS: [&str; 16] = [
    "no seat is in two confirmed bookings",
    "seats are live exactly on confirmed bookings",
    "every confirmed booking has one kept charge",
    "every kept charge has a confirmed booking",
    "no booking is left pending",
    "every booking a client saw confirmed is confirmed",
    "the hold store's booked seats are the database's",
    "no hold outlived its TTL by more than 2 s",
    "the hold store's seat index matches its hold records",
    "the seat map's counts are the layout's and the hold store's",
    "every live seat map shows the final seat map",
    "every live seat map reached the show's version",
    "a live seat map was kept by events alone",
    "the hold store's occupancy string matches its holds and bookings",
    "every buyer of a show with a waiting room was admitted",
    "every confirmed, cancelled and failed booking has exactly one outbox event of each kind",
];

/// Checks that read the hold store itself: not applicable to the in-process store.
const STORE_CHECKS: [&str; 4] = [CHECKS[6], CHECKS[7], CHECKS[8], CHECKS[13]];

/// A show with two confirmed bookings and a cancelled one, nothing held, nothing pending; one
/// best-available hold was taken and released (so the Redis store has the show's seat plan and
/// occupancy string).
struct Scene {
    app: TestApp,
    show: String,
    show_id: i64,
    seats: Vec<String>,
    confirmed: Vec<i64>,
    cancelled: i64,
    user: i64,
}

async fn scene(b: Backend) -> Scene {
    // No convergence pass during the test: it would repair (or expire) the faults injected
    // behind the server's back before the audit could see them.
    let app = TestApp::spawn_with(b, &["--reconcile-interval-seconds", "3600"]).await;
    let (show, seats) = app.create_show(2, 5).await;
    let users = app.users(1).await;
    let (token, user) = users[0].clone();
    let mut ids = app.book_each(&token, &show, &seats[..3]).await;
    let cancelled = ids.pop().expect("three bookings");
    let d = app
        .ok(
            Some(&token),
            "mutation($id: ID!) { cancelBooking(bookingId: $id) { status } }",
            json!({ "id": cancelled.to_string() }),
        )
        .await;
    assert_eq!(d["cancelBooking"]["status"], "CANCELLED");
    let best = app
        .ok(
            Some(&token),
            "mutation($s: ID!) { holdBestAvailable(showId: $s, count: 2) { id } }",
            json!({ "s": show }),
        )
        .await;
    let hold = best["holdBestAvailable"]["id"].as_str().expect("hold id");
    app.release(&token, hold).await;
    Scene {
        show_id: show.parse().expect("show id"),
        app,
        show,
        seats,
        confirmed: ids,
        cancelled,
        user,
    }
}

impl Scene {
    /// What a client that kept the map open by events would show now.
    async fn view(&self) -> Value {
        let (version, seats) = self.app.seat_map(None, &self.show).await;
        let seats: serde_json::Map<String, Value> = seats
            .into_iter()
            .map(|(id, status, _)| (id, Value::String(status)))
            .collect();
        json!({ "version": version, "seats": seats, "applied_since_read": 3 })
    }

    fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.app.state().db
    }

    async fn redis(&self) -> boxoffice::redis_conn::RedisConn {
        crate::support::redis_conn()
    }

    /// Set a seat's byte of the show's occupancy string, as the store's scripts do.
    async fn mark(&self, r: &mut boxoffice::redis_conn::RedisConn, seat: &str, taken: &str) {
        let pos: i64 = redis::cmd("HGET")
            .arg(self.key("plan"))
            .arg(format!("s{seat}"))
            .query_async(r)
            .await
            .expect("the seat's position in the plan");
        let _: i64 = redis::cmd("SETRANGE")
            .arg(self.key("occ"))
            .arg(pos)
            .arg(taken)
            .query_async(r)
            .await
            .expect("SETRANGE");
    }

    fn key(&self, k: &str) -> String {
        let prefix = self.app.redis_prefix.as_deref().expect("a Redis prefix");
        boxoffice::holds::redis::keys::show_key(prefix, self.show_id, k)
    }

    /// Run `loadtest audit` with these live maps and confirmed bookings (and, by default, the
    /// server's own database and Redis); the exit code, the JSON report and stderr.
    async fn audit(&self, views: Value, confirmed: &[i64], env: &[(&str, &str)]) -> Audited {
        audit_show(&self.app, &self.show, Some(views), confirmed, env).await
    }

    /// The audit with a correct live map and the confirmed bookings clients saw.
    async fn audit_as_is(&self) -> Audited {
        let views = json!([self.view().await]);
        self.audit(views, &self.confirmed, &[]).await
    }
}

/// Run `loadtest audit` on a show of `app` with these live maps (none: `None`) and confirmed
/// bookings, against the server's own database and Redis unless `env` says otherwise.
pub async fn audit_show(
    app: &TestApp,
    show: &str,
    views: Option<Value>,
    confirmed: &[i64],
    env: &[(&str, &str)],
) -> Audited {
    let dir = tempfile::tempdir().expect("temp dir");
    let confirmed_file = dir.path().join("confirmed.json");
    std::fs::write(&confirmed_file, json!(confirmed).to_string()).expect("confirmed file");
    let mut args: Vec<String> = vec![
        "audit".into(),
        "--url".into(),
        app.base.clone(),
        "--show".into(),
        show.to_string(),
        "--confirmed".into(),
        confirmed_file.display().to_string(),
        "--json".into(),
    ];
    if let Some(views) = views {
        let views_file = dir.path().join("views.json");
        std::fs::write(&views_file, views.to_string()).expect("views file");
        args.push("--views".into());
        args.push(views_file.display().to_string());
    }
    let mut vars: Vec<(String, String)> = vec![("DATABASE_URL".into(), app.database_url.clone())];
    if let Some(p) = &app.redis_prefix {
        vars.push(("REDIS_URL".into(), redis_url()));
        vars.push(("REDIS_KEY_PREFIX".into(), p.clone()));
    }
    for (k, v) in env {
        vars.retain(|(name, _)| name != k);
        if !v.is_empty() {
            vars.push((k.to_string(), v.to_string()));
        }
    }
    let out = tokio::task::spawn_blocking(move || {
        crate::support::loadtest_command()
            .envs(vars)
            .args(args)
            .output()
            .expect("run loadtest audit")
    })
    .await
    .expect("join");
    Audited {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub struct Audited {
    pub code: i32,
    pub report: Value,
    pub stderr: String,
}

impl Audited {
    /// Every check listed, by name, in order; `failing` (if any) the only violation; the hold
    /// store's own checks not applicable on the in-process store, every other one passing.
    fn assert_only(&self, backend: Backend, failing: Option<&str>) {
        let checks = self.report["checks"]
            .as_array()
            .unwrap_or_else(|| panic!("no report (exit {}): {}", self.code, self.stderr));
        let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, CHECKS, "the audit's checks");
        for c in checks {
            let name = c["name"].as_str().unwrap_or_default();
            let expected = if Some(name) == failing {
                "violation"
            } else if (backend == Backend::Embedded && STORE_CHECKS.contains(&name))
                || name == CHECKS[14]
            {
                // The scene's show has no waiting room (unless a test gives it one).
                "not_applicable"
            } else {
                "ok"
            };
            assert_eq!(
                c["outcome"], expected,
                "{name}: {}\n{:#}",
                c["detail"], self.report
            );
        }
        assert_eq!(
            self.code,
            if failing.is_some() { 1 } else { 0 },
            "{}",
            self.stderr
        );
    }
}

async fn a_clean_show_passes_every_check(b: Backend) {
    let s = scene(b).await;
    s.audit_as_is().await.assert_only(b, None);
}

async fn a_seat_in_two_confirmed_bookings_is_found(b: Backend) {
    let s = scene(b).await;
    // Only possible without the unique index: drop it in this scratch database.
    s.db()
        .execute_unprepared("DROP INDEX ux_booking_seats_live")
        .await
        .expect("drop index");
    let seat: i64 = s.seats[0].parse().expect("seat");
    let twin = s
        .app
        .insert_booking(s.user, s.show_id, "twin", BookingStatus::Confirmed)
        .await
        .expect("booking");
    s.app
        .insert_booking_seat(twin.id, s.show_id, seat, true)
        .await
        .expect("seat");
    kept_charge(&s, twin.id).await;
    s.audit_as_is().await.assert_only(b, Some(CHECKS[0]));
}

async fn a_live_flag_that_disagrees_with_its_booking_is_found(b: Backend) {
    let s = scene(b).await;
    entity::booking_seat::Entity::update_many()
        .col_expr(
            entity::booking_seat::Column::Active,
            sea_orm::sea_query::Expr::value(false),
        )
        .filter(entity::booking_seat::Column::BookingId.eq(s.confirmed[0]))
        .exec(s.db())
        .await
        .expect("update");
    s.audit_as_is().await.assert_only(b, Some(CHECKS[1]));
}

async fn a_confirmed_booking_without_a_charge_is_found(b: Backend) {
    let s = scene(b).await;
    entity::mock_gateway_ledger::Entity::delete_by_id(boxoffice::booking::charge_key(
        s.confirmed[0],
    ))
    .exec(s.db())
    .await
    .expect("delete");
    s.audit_as_is().await.assert_only(b, Some(CHECKS[2]));
}

async fn a_kept_charge_without_a_confirmed_booking_is_found(b: Backend) {
    let s = scene(b).await;
    let failed = s
        .app
        .insert_booking(s.user, s.show_id, "orphan", BookingStatus::Failed)
        .await
        .expect("booking");
    kept_charge(&s, failed.id).await;
    s.audit_as_is().await.assert_only(b, Some(CHECKS[3]));
}

async fn a_booking_without_its_outbox_event_is_found(b: Backend) {
    let s = scene(b).await;
    entity::outbox::Entity::delete_many()
        .filter(entity::outbox::Column::BookingId.eq(s.cancelled))
        .filter(entity::outbox::Column::Kind.eq("booking.cancelled"))
        .exec(s.db())
        .await
        .expect("delete");
    s.audit_as_is().await.assert_only(b, Some(CHECKS[15]));
}

async fn an_event_twice_is_found(b: Backend) {
    let s = scene(b).await;
    boxoffice::webhooks::record(
        s.db(),
        "booking.confirmed",
        s.show_id,
        Some(s.confirmed[0]),
        json!({}),
    )
    .await
    .expect("record");
    s.audit_as_is().await.assert_only(b, Some(CHECKS[15]));
}

async fn a_pending_booking_is_found(b: Backend) {
    let s = scene(b).await;
    s.app
        .insert_booking(s.user, s.show_id, "pending", BookingStatus::Pending)
        .await
        .expect("booking");
    s.audit_as_is().await.assert_only(b, Some(CHECKS[4]));
}

async fn a_booking_a_client_saw_confirmed_and_lost_is_found(b: Backend) {
    let s = scene(b).await;
    let mut saw = s.confirmed.clone();
    saw.push(s.cancelled);
    let views = json!([s.view().await]);
    s.audit(views, &saw, &[])
        .await
        .assert_only(b, Some(CHECKS[5]));
}

async fn a_live_map_that_differs_is_found(b: Backend) {
    let s = scene(b).await;
    let right = s.view().await;
    let mut wrong = right.clone();
    wrong["seats"][&s.seats[0]] = json!("AVAILABLE");
    s.audit(json!([right, wrong]), &s.confirmed, &[])
        .await
        .assert_only(b, Some(CHECKS[10]));
}

async fn a_live_map_behind_the_version_is_found(b: Backend) {
    let s = scene(b).await;
    let mut view = s.view().await;
    view["version"] = json!(view["version"].as_i64().expect("version") - 1);
    s.audit(json!([view]), &s.confirmed, &[])
        .await
        .assert_only(b, Some(CHECKS[11]));
}

async fn maps_right_only_by_re_reading_are_found(b: Backend) {
    let s = scene(b).await;
    let mut view = s.view().await;
    view["applied_since_read"] = json!(0);
    s.audit(json!([view.clone(), view]), &s.confirmed, &[])
        .await
        .assert_only(b, Some(CHECKS[12]));
}

async fn a_seat_added_to_the_layout_under_the_show_is_found(b: Backend) {
    let s = scene(b).await;
    let show = entity::show::Entity::find_by_id(s.show_id)
        .one(s.db())
        .await
        .expect("show")
        .expect("show");
    entity::seat::ActiveModel {
        screen_id: Set(show.screen_id),
        row_label: Set("Z".into()),
        number: Set(1),
        category: Set("STANDARD".into()),
        row_index: Set(99),
        col_index: Set(0),
        ..Default::default()
    }
    .insert(s.db())
    .await
    .expect("seat");
    s.audit_as_is().await.assert_only(b, Some(CHECKS[9]));
}

backends!(
    a_clean_show_passes_every_check,
    a_seat_in_two_confirmed_bookings_is_found,
    a_live_flag_that_disagrees_with_its_booking_is_found,
    a_confirmed_booking_without_a_charge_is_found,
    a_kept_charge_without_a_confirmed_booking_is_found,
    a_pending_booking_is_found,
    a_booking_without_its_outbox_event_is_found,
    an_event_twice_is_found,
    a_booking_a_client_saw_confirmed_and_lost_is_found,
    a_live_map_that_differs_is_found,
    a_live_map_behind_the_version_is_found,
    maps_right_only_by_re_reading_are_found,
    a_seat_added_to_the_layout_under_the_show_is_found,
);

/// A captured, unrefunded charge at the gateway for this booking.
async fn kept_charge(s: &Scene, booking: i64) {
    entity::mock_gateway_ledger::ActiveModel {
        idempotency_key: Set(boxoffice::booking::charge_key(booking)),
        kind: Set("CHARGE".into()),
        amount_cents: Set(1000),
        status: Set("SUCCEEDED".into()),
        provider_ref: Set(format!("ch_injected_{booking}")),
        charge_ref: Set(None),
        reason: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(s.db())
    .await
    .expect("ledger row");
}

// The hold store's own checks: Redis only (the in-process store cannot be read from outside).

async fn served_scene() -> Option<Scene> {
    if crate::support::served_skipped() {
        return None;
    }
    Some(scene(Backend::Served).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_booked_seat_cache_is_found() {
    let Some(s) = served_scene().await else {
        return;
    };
    let mut r = s.redis().await;
    let _: i64 = redis::cmd("SREM")
        .arg(s.key("booked"))
        .arg(&s.seats[0])
        .query_async(&mut r)
        .await
        .expect("SREM");
    // As a lost mirror would leave it: the occupancy string agrees with the booked set.
    s.mark(&mut r, &s.seats[0], "0").await;
    s.audit_as_is()
        .await
        .assert_only(Backend::Served, Some(CHECKS[6]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_the_sweeper_never_expired_is_found() {
    let Some(s) = served_scene().await else {
        return;
    };
    // The clients' map, read before: the seat was (and, expired, is) available.
    let view = s.view().await;
    let mut r = s.redis().await;
    // As the hold script writes one, but due 10 s ago and missing from the sweeper's index.
    let (sec, _): (String, String) = redis::cmd("TIME").query_async(&mut r).await.expect("TIME");
    let due = sec.parse::<i64>().expect("time") * 1000 - 10_000;
    let (hold, seat) = (format!("{}-{}", s.show_id, "ab".repeat(16)), &s.seats[5]);
    let _: () = redis::pipe()
        .hset(s.key("seats"), seat, &hold)
        .zadd(s.key("holds"), &hold, due)
        .hset(
            s.key("holdrec"),
            &hold,
            format!("{}|{due}|{}|{seat}", s.user, due - 600_000),
        )
        .hincr(s.key("uholds"), s.user, 1)
        .query_async(&mut r)
        .await
        .expect("inject");
    s.mark(&mut r, seat, "1").await;
    s.audit(json!([view]), &s.confirmed, &[])
        .await
        .assert_only(Backend::Served, Some(CHECKS[7]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_occupancy_string_out_of_step_is_found() {
    let Some(s) = served_scene().await else {
        return;
    };
    let mut r = s.redis().await;
    // A free seat marked taken: best available would never offer it.
    s.mark(&mut r, &s.seats[9], "1").await;
    s.audit_as_is()
        .await
        .assert_only(Backend::Served, Some(CHECKS[13]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_the_waiting_room_never_admitted_is_found() {
    let Some(s) = served_scene().await else {
        return;
    };
    // The show's sale is switched to a waiting room after its bookings were made: their buyer
    // was never admitted, as if a hold had slipped past the queue.
    let admin = s.app.admin_token().await;
    let d = s
        .app
        .ok(
            Some(&admin),
            "mutation($s: ID!, $at: DateTime!) { setOnSale(showId: $s, opensAt: $at, admitPerMinute: 60, sessionMinutes: 10, queueEnabled: true) { id } }",
            json!({ "s": s.show, "at": chrono::Utc::now().to_rfc3339() }),
        )
        .await;
    assert!(d["setOnSale"]["id"].is_string(), "{d}");
    s.audit_as_is()
        .await
        .assert_only(Backend::Served, Some(CHECKS[14]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_record_without_an_expiry_is_found() {
    let Some(s) = served_scene().await else {
        return;
    };
    let mut r = s.redis().await;
    let hold = format!("{}-{}", s.show_id, "cd".repeat(16));
    let _: () = redis::cmd("HSET")
        .arg(s.key("holdrec"))
        .arg(&hold)
        .arg(format!("{}|1|1|{}", s.user, s.seats[6]))
        .query_async(&mut r)
        .await
        .expect("inject");
    s.audit_as_is()
        .await
        .assert_only(Backend::Served, Some(CHECKS[8]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_refuses_a_key_prefix_that_is_not_the_servers() {
    let Some(s) = served_scene().await else {
        return;
    };
    let views = json!([s.view().await]);
    let a = s
        .audit(
            views,
            &s.confirmed,
            &[("REDIS_KEY_PREFIX", "not-the-servers")],
        )
        .await;
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert!(a.report.is_null(), "no report: {:#}", a.report);
    assert!(a.stderr.contains("REDIS_KEY_PREFIX"), "{}", a.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_refuses_to_skip_a_redis_it_was_not_given() {
    let Some(s) = served_scene().await else {
        return;
    };
    let views = json!([s.view().await]);
    let a = s.audit(views, &s.confirmed, &[("REDIS_URL", "")]).await;
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert!(a.stderr.contains("REDIS_URL is not set"), "{}", a.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_refuses_a_database_without_the_show() {
    let s = scene(Backend::Embedded).await;
    let other = tempfile::tempdir().expect("dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        other.path().join("other.db").display()
    );
    // Another boxoffice database, migrated but without this show.
    let (db, _) = boxoffice::db::connect(&url, std::time::Duration::from_secs(5))
        .await
        .expect("db");
    boxoffice::db::migrate(&db).await.expect("migrate");
    let views = json!([s.view().await]);
    let a = s
        .audit(views, &s.confirmed, &[("DATABASE_URL", &url)])
        .await;
    assert_eq!(a.code, 1, "{}", a.stderr);
    assert!(a.stderr.contains("is not in DATABASE_URL"), "{}", a.stderr);
}
