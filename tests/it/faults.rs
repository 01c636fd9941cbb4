//! Dependency faults caused for real: the Redis server the test started is killed and restarted,
//! or frozen with SIGSTOP; PostgreSQL is cut off by a proxy that drops every connection, or slowed
//! by one that holds every packet back.

use std::time::{Duration, Instant};

use crate::support::{Backend, FaultProxy, PrivateRedis, TestApp, WsClient, SEAT_UPDATES};
use serde_json::json;

const HOLD: &str =
    "mutation($show: ID!, $seats: [ID!]!) { holdSeats(showId: $show, seatIds: $seats) { id } }";
const MAP: &str = "query($id: ID!) { show(id: $id) { holdsKnown version bookedSeats heldSeats
    seats { id status heldByMe } } }";

fn status_of(map: &serde_json::Value, seat: &str) -> String {
    map["show"]["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .find(|s| s["id"] == seat)
        .map(|s| s["status"].as_str().unwrap_or_default().to_string())
        .expect("seat in map")
}

/// Retry `body` until it answers without errors (the dependency is back); panics after ~10 s.
/// A private Redis, a server on it with a 1 s dependency timeout, and a 1×4 show.
async fn on_private_redis() -> (PrivateRedis, TestApp, String, Vec<String>) {
    let redis = PrivateRedis::start().await;
    let app = TestApp::spawn_with(
        Backend::Served,
        &[
            "--redis-url",
            &redis.url(),
            "--dependency-timeout-ms",
            "1000",
        ],
    )
    .await;
    let (show, seats) = app.create_show(1, 4).await;
    (redis, app, show, seats)
}

/// Retry until the request succeeds (10 s at most) after a dependency came back. Until then
/// the only acceptable answer is `SERVICE_UNAVAILABLE`: anything else is a failure of its own.
async fn until_ok(
    app: &TestApp,
    token: &str,
    query: &str,
    vars: serde_json::Value,
) -> serde_json::Value {
    for _ in 0..50 {
        let body = app.gql(Some(token), query, vars.clone()).await;
        let Some(errors) = body.get("errors") else {
            return body["data"].clone();
        };
        assert_eq!(
            errors[0]["extensions"]["code"], "SERVICE_UNAVAILABLE",
            "while recovering: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("still failing after the dependency came back: {query}");
}

/// Redis down: holds answer SERVICE_UNAVAILABLE within a bounded time, the catalogue still
/// answers, /readyz says 503; when Redis is back (empty) everything recovers by itself and the
/// booked seat is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_service_unavailable_then_recovers() {
    if crate::support::served_skipped() {
        return;
    }
    let (mut redis, app, show, seats) = on_private_redis().await;
    let users = app.users(2).await;
    let t = &users[0].0;
    let h = app
        .ok(Some(t), HOLD, json!({ "show": show, "seats": [seats[0]] }))
        .await;
    let paid = app
        .ok(
            Some(t),
            "mutation($h: ID!) { checkout(holdId: $h, idempotencyKey: \"f\") { status } }",
            json!({ "h": h["holdSeats"]["id"] }),
        )
        .await;
    assert_eq!(paid["checkout"]["status"], "CONFIRMED");
    // A live map open across the outage: its stream must end (versions restart with an empty
    // Redis, so its client has to re-read), not go quiet.
    let mut ws = WsClient::connect(&app.base, None).await.expect("connect");
    ws.subscribe("1", SEAT_UPDATES, json!({ "show": show }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    let ended = ws
        .next(Duration::from_secs(10))
        .await
        .expect("the stream is told");
    assert_eq!(ended["type"], "next", "{ended}");
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"], "SERVICE_UNAVAILABLE",
        "{ended}"
    );
    let after = ws.next(Duration::from_secs(5)).await.expect("then it ends");
    assert_eq!(after["type"], "complete", "{after}");
    let started = Instant::now();
    assert_eq!(
        app.err_code(Some(t), HOLD, json!({ "show": show, "seats": [seats[1]] }))
            .await,
        "SERVICE_UNAVAILABLE"
    );
    println!("hold with Redis down answered in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "bounded time");
    let list = app
        .ok(
            None,
            "{ shows { edges { node { id movie { title } } } } }",
            json!({}),
        )
        .await;
    assert!(
        !list["shows"]["edges"].as_array().unwrap().is_empty(),
        "the catalogue still answers"
    );
    let mine = app
        .ok(Some(t), "{ myBookings { status } }", json!({}))
        .await;
    assert_eq!(
        mine["myBookings"][0]["status"], "CONFIRMED",
        "bookings still answer"
    );
    // The seat map still answers, from the database, and says that holds are unknown.
    let started = Instant::now();
    let map = app.ok(None, MAP, json!({ "id": show })).await;
    println!(
        "seat map with Redis down answered in {:?}",
        started.elapsed()
    );
    assert_eq!(map["show"]["holdsKnown"], false);
    assert_eq!(map["show"]["version"], -1, "no event follows from it");
    assert_eq!(map["show"]["bookedSeats"], 1);
    assert_eq!(status_of(&map, seats[0].as_str()), "BOOKED");
    assert_eq!(app.get_status("/readyz").await, 503);

    redis.restart().await;
    // Holds work again once Redis is back.
    until_ok(
        &app,
        &users[1].0,
        HOLD,
        json!({ "show": show, "seats": [seats[1]] }),
    )
    .await;
    assert_eq!(
        app.err_code(
            Some(&users[1].0),
            HOLD,
            json!({ "show": show, "seats": [seats[0]] })
        )
        .await,
        "SEATS_UNAVAILABLE",
        "the booking survived"
    );
    let map = app.ok(None, MAP, json!({ "id": show })).await;
    assert_eq!(map["show"]["holdsKnown"], true);
    assert_eq!(app.get_status("/readyz").await, 200);
}

/// Redis frozen (SIGSTOP: the socket stays open, nothing answers — a hung or swapping server):
/// holds answer SERVICE_UNAVAILABLE within the dependency timeout instead of hanging, the seat
/// map answers from the database, /readyz says 503; after SIGCONT everything answers again and
/// nothing held before the freeze was lost. A hold whose answer timed out may still have been
/// applied when Redis woke: it then belongs to its requester and expires with its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_frozen_by_sigstop_is_service_unavailable_then_recovers() {
    if crate::support::served_skipped() {
        return;
    }
    let (redis, app, show, seats) = on_private_redis().await;
    let users = app.users(3).await;
    let (a, b, c) = (&users[0].0, &users[1].0, &users[2].0);
    app.ok(Some(a), HOLD, json!({ "show": show, "seats": [seats[0]] }))
        .await;

    redis.pause();
    let started = Instant::now();
    assert_eq!(
        app.err_code(Some(b), HOLD, json!({ "show": show, "seats": [seats[1]] }))
            .await,
        "SERVICE_UNAVAILABLE"
    );
    println!("hold with Redis frozen answered in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the timeout"
    );
    let started = Instant::now();
    let map = app.ok(None, MAP, json!({ "id": show })).await;
    println!(
        "seat map with Redis frozen answered in {:?}",
        started.elapsed()
    );
    assert_eq!(map["show"]["holdsKnown"], false);
    assert_eq!(app.get_status("/readyz").await, 503);

    redis.resume();
    until_ok(&app, b, HOLD, json!({ "show": show, "seats": [seats[2]] })).await;
    assert_eq!(
        // (`c`: `b` may be at its live-hold limit if its timed-out hold was applied late.)
        app.err_code(Some(c), HOLD, json!({ "show": show, "seats": [seats[0]] }))
            .await,
        "SEATS_UNAVAILABLE",
        "the hold made before the freeze survived it"
    );
    let map = app.ok(Some(b), MAP, json!({ "id": show })).await;
    assert_eq!(map["show"]["holdsKnown"], true);
    assert_eq!(status_of(&map, seats[0].as_str()), "HELD");
    let late = map["show"]["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == seats[1].as_str())
        .cloned()
        .unwrap();
    assert!(
        late["status"] == "AVAILABLE" || (late["status"] == "HELD" && late["heldByMe"] == true),
        "the timed-out hold is either not applied or its requester's: {late}"
    );
    assert_eq!(app.get_status("/readyz").await, 200);
}

/// Redis down when the server starts: it starts anyway (degraded: catalogue answers, holds are
/// SERVICE_UNAVAILABLE, /readyz 503) and recovers by itself when Redis comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_at_start_up_degrades_then_recovers() {
    if crate::support::served_skipped() {
        return;
    }
    let mut redis = PrivateRedis::start().await;
    let first = TestApp::spawn_with(Backend::Served, &["--redis-url", &redis.url()]).await;
    let (show, seats) = first.create_show(1, 4).await;
    let users = first.users(1).await;
    let t = &users[0].0;
    redis.kill();
    // A new instance starts while Redis is down.
    let app = first
        .spawn_peer(&[
            "--redis-url",
            &redis.url(),
            "--dependency-timeout-ms",
            "1000",
        ])
        .await;
    assert_eq!(app.get_status("/readyz").await, 503);
    assert_eq!(
        app.err_code(Some(t), HOLD, json!({ "show": show, "seats": [seats[0]] }))
            .await,
        "SERVICE_UNAVAILABLE"
    );
    app.ok(None, "{ shows { edges { node { id } } } }", json!({}))
        .await;
    redis.restart().await;
    // Holds work once Redis is up.
    until_ok(&app, t, HOLD, json!({ "show": show, "seats": [seats[0]] })).await;
    assert_eq!(app.get_status("/readyz").await, 200);
}

/// PostgreSQL cut off (every connection dropped, new ones refused): checkout and bookings answer
/// SERVICE_UNAVAILABLE within a bounded time, /readyz is 503, nothing is half-written; holds keep
/// working (shows and layouts are cached, holds live in Redis); all recovers when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_cut_off_is_service_unavailable_then_recovers() {
    if crate::support::served_skipped() {
        return;
    }
    let proxy = FaultProxy::start("127.0.0.1:5432").await;
    let port = proxy.port;
    let app = TestApp::spawn_via(
        Backend::Served,
        &["--dependency-timeout-ms", "1000"],
        |url| url.replace("127.0.0.1:5432", &format!("127.0.0.1:{port}")),
    )
    .await;
    let (show, seats) = app.create_show(1, 6).await;
    let users = app.users(2).await;
    let t = &users[0].0;
    let checkout =
        "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { status } }";
    let h = app
        .ok(Some(t), HOLD, json!({ "show": show, "seats": [seats[0]] }))
        .await;
    assert_eq!(
        app.ok(
            Some(t),
            checkout,
            json!({ "h": h["holdSeats"]["id"], "k": "before" })
        )
        .await["checkout"]["status"],
        "CONFIRMED"
    );

    proxy.cut();
    let h = app
        .ok(Some(t), HOLD, json!({ "show": show, "seats": [seats[1]] }))
        .await;
    let started = Instant::now();
    assert_eq!(
        app.err_code(
            Some(t),
            checkout,
            json!({ "h": h["holdSeats"]["id"], "k": "during" })
        )
        .await,
        "SERVICE_UNAVAILABLE"
    );
    assert_eq!(
        app.err_code(Some(t), "{ myBookings { status } }", json!({}))
            .await,
        "SERVICE_UNAVAILABLE"
    );
    println!(
        "checkout with PostgreSQL cut off answered in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded time");
    assert_eq!(app.get_status("/readyz").await, 503);

    proxy.heal();
    // Checkout works again once PostgreSQL is back.
    let paid = until_ok(
        &app,
        t,
        checkout,
        json!({ "h": h["holdSeats"]["id"], "k": "after" }),
    )
    .await;
    assert_eq!(paid["checkout"]["status"], "CONFIRMED");
    assert_eq!(app.get_status("/readyz").await, 200);
    // Nothing half-written: no booking stuck in PENDING, the failed attempt left no row.
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let pending = entity::booking::Entity::find()
        .filter(entity::booking::Column::Status.eq("PENDING"))
        .count(&app.state().db)
        .await
        .expect("count");
    assert_eq!(pending, 0);
    let bookings = app
        .ok(Some(t), "{ myBookings { status } }", json!({}))
        .await;
    assert_eq!(bookings["myBookings"].as_array().unwrap().len(), 2);
}

/// PostgreSQL slow (a proxy holds every packet back 3 s, over a 1 s dependency timeout — a
/// statement on an open connection has no driver timeout, so this is the request deadline's
/// job): checkout and bookings answer SERVICE_UNAVAILABLE within a bounded time instead of
/// queueing for ever, /readyz is 503, holds keep working. The checkout that ran out of time is
/// not abandoned half-way: retried with the same key once PostgreSQL is fast again, it yields
/// exactly one booking, confirmed, one charge, and nothing is left PENDING.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_slow_is_service_unavailable_then_recovers() {
    if crate::support::served_skipped() {
        return;
    }
    let proxy = FaultProxy::start("127.0.0.1:5432").await;
    let port = proxy.port;
    let app = TestApp::spawn_via(
        Backend::Served,
        &[
            "--dependency-timeout-ms",
            "1000",
            "--payment-timeout-ms",
            "1000",
            "--reconcile-interval-seconds",
            "1",
        ],
        |url| url.replace("127.0.0.1:5432", &format!("127.0.0.1:{port}")),
    )
    .await;
    let (show, seats) = app.create_show(1, 6).await;
    let users = app.users(1).await;
    let t = &users[0].0;
    let checkout = "mutation($h: ID!, $k: String!) {
        checkout(holdId: $h, idempotencyKey: $k) { id status } }";
    let h = app
        .ok(Some(t), HOLD, json!({ "show": show, "seats": [seats[0]] }))
        .await;
    let pay = json!({ "h": h["holdSeats"]["id"], "k": "once" });

    proxy.slow(3000);
    let started = Instant::now();
    assert_eq!(
        app.err_code(Some(t), checkout, pay.clone()).await,
        "SERVICE_UNAVAILABLE"
    );
    println!(
        "checkout with PostgreSQL slow answered in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded time");
    let started = Instant::now();
    assert_eq!(
        app.err_code(Some(t), "{ myBookings { status } }", json!({}))
            .await,
        "SERVICE_UNAVAILABLE"
    );
    println!(
        "myBookings with PostgreSQL slow answered in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10), "bounded time");
    assert_eq!(app.get_status("/readyz").await, 503);
    // Holds need no database round trip (shows and layouts are cached): they keep working.
    app.ok(Some(t), HOLD, json!({ "show": show, "seats": [seats[1]] }))
        .await;

    proxy.heal();
    // The client retries with the same key: the same booking, whatever the first attempt reached.
    let first = until_ok(&app, t, checkout, pay.clone()).await;
    let id = first["checkout"]["id"].clone();
    let mut status = first["checkout"]["status"]
        .as_str()
        .unwrap_or("")
        .to_string();
    for _ in 0..100 {
        if status != "PENDING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = app.ok(Some(t), checkout, pay.clone()).await;
        assert_eq!(again["checkout"]["id"], id, "one key, one booking");
        status = again["checkout"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
    }
    assert_eq!(status, "CONFIRMED");
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let show_id: i64 = show.parse().expect("show id");
    let db = &app.state().db;
    let count = |status: &'static str| {
        entity::booking::Entity::find()
            .filter(entity::booking::Column::ShowId.eq(show_id))
            .filter(entity::booking::Column::Status.eq(status))
            .count(db)
    };
    assert_eq!(
        count("PENDING").await.expect("count"),
        0,
        "nothing half-written"
    );
    assert_eq!(
        count("CONFIRMED").await.expect("count"),
        1,
        "exactly one booking"
    );
    let charges = entity::mock_gateway_ledger::Entity::find()
        .filter(entity::mock_gateway_ledger::Column::Kind.eq("CHARGE"))
        .filter(entity::mock_gateway_ledger::Column::Status.eq("SUCCEEDED"))
        .count(db)
        .await
        .expect("count");
    assert_eq!(charges, 1, "charged once");
    assert_eq!(app.get_status("/readyz").await, 200);
}

/// PostgreSQL drops every connection of the service (a restart, a failover, a proxy's idle
/// timeout) while they sit idle — the pool's, and the ones the group writers keep from one group
/// to the next (`group_commit::Lane`). Nothing a buyer does afterwards fails for it: the pool
/// tests a connection before handing it out, and a group that fails on a writer's dead
/// connection is written again alone through the pool (and the writer takes a fresh one). Reads
/// and checkouts succeed at once, one after another and many together, each checkout CONFIRMED.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_dropping_every_connection_fails_no_request() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if crate::support::served_skipped() {
        return;
    }
    let app = TestApp::spawn(Backend::Served).await;
    let (show, seats) = app.create_show(2, 10).await;
    // One buyer per seat (a buyer holds at most two seats at once).
    let users = app.users(12).await;
    let mine = "{ myBookings { status } }";
    let checkout =
        "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { status } }";
    let app = &app;
    let buy = |i: usize| {
        let (t, seat, show) = (users[i].0.clone(), seats[i].clone(), show.clone());
        async move {
            let h = app
                .ok(Some(&t), HOLD, json!({ "show": show, "seats": [seat] }))
                .await;
            app.ok(
                Some(&t),
                checkout,
                json!({ "h": h["holdSeats"]["id"], "k": "k" }),
            )
            .await["checkout"]["status"]
                .clone()
        }
    };
    // Connections in the pool and in the writers' hands, all used a moment ago.
    let first = futures_util::future::join_all((0..4).map(buy));
    assert!(first.await.iter().all(|s| s == "CONFIRMED"));
    let admin = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("a connection of the test's own");
    let killed = admin
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ))
        .await
        .expect("terminate")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("a count");
    assert!(killed >= 2, "the service held {killed} connections");
    for (i, (t, _)) in users.iter().enumerate().take(6).skip(4) {
        assert_eq!(buy(i).await, "CONFIRMED");
        app.ok(Some(t), mine, json!({})).await;
    }
    let together = futures_util::future::join_all((6..12).map(buy));
    assert!(together.await.iter().all(|s| s == "CONFIRMED"));
    for (t, _) in &users {
        let bookings = app.ok(Some(t), mine, json!({})).await;
        assert_eq!(bookings["myBookings"].as_array().map(Vec::len), Some(1));
    }
}

/// A group writer's own connection (`group_commit::Lane`) that the server ends is let go after
/// the one statement that finds it dead, and the next statement runs on a fresh one; a refusal
/// the group expects (a unique violation) keeps the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_writers_connection_the_server_ended_is_replaced() {
    use boxoffice::group_commit::{query, Lane};
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if crate::support::served_skipped() {
        return;
    }
    let app = TestApp::spawn(Backend::Served).await;
    let db = &app.state().db;
    let mut lane = Lane::default();
    /// The PostgreSQL backend serving the lane's connection.
    async fn backend(
        db: &sea_orm::DatabaseConnection,
        lane: &mut Lane,
    ) -> Result<i32, sea_orm::DbErr> {
        let rows = query(db, Some(lane), "SELECT pg_backend_pid() AS pid", vec![]).await?;
        rows[0].try_get::<i32>("", "pid")
    }
    let first = backend(db, &mut lane).await.expect("first");
    assert_eq!(
        backend(db, &mut lane).await.expect("again"),
        first,
        "the lane keeps its connection"
    );
    // A refusal the group expects (a key used twice, class 23) leaves it.
    let once =
        "INSERT INTO app_settings (key, value, updated_at) VALUES ($1, 'x', now()) RETURNING key";
    query(db, Some(&mut lane), once, vec!["lane-probe".into()])
        .await
        .expect("the first insert");
    let twice = query(db, Some(&mut lane), once, vec!["lane-probe".into()]).await;
    assert!(
        twice
            .as_ref()
            .err()
            .and_then(boxoffice::db::unique_violation)
            .is_some(),
        "{twice:?}"
    );
    assert_eq!(
        backend(db, &mut lane).await.expect("after"),
        first,
        "kept after a unique violation"
    );
    // The server ends it.
    db.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        format!("SELECT pg_terminate_backend({first})"),
    ))
    .await
    .expect("terminate");
    let dead = backend(db, &mut lane).await;
    assert!(dead.is_err(), "the ended connection answered: {dead:?}");
    let fresh = backend(db, &mut lane).await.expect("fresh");
    assert_ne!(fresh, first, "a new connection");
}
