//! Redis Cluster and Redis housekeeping: key lifetimes of past shows, the eviction guard, and a
//! real failover (a master SIGKILLed under load on a private 3 + 3 cluster).
//!
//! The rest of the Redis-backed suite runs against a shared local cluster too: scripts/test.sh
//! starts one and runs the hold, live-map, two-instance, crash and rate-limit tests with
//! `TEST_REDIS_URL=redis+cluster://…`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::support::{
    loadtest_bin, redis_conn, Backend, PrivateCluster, PrivateRedis, TestApp, WsClient,
    SEAT_UPDATES,
};
use boxoffice::holds::redis::keys::{show_key, KEY_NAMES};
use serde_json::json;

const HOLD: &str =
    "mutation($show: ID!, $seats: [ID!]!) { holdSeats(showId: $show, seatIds: $seats) { id } }";

/// How many of a show's keys exist.
async fn keys_of(conn: &mut boxoffice::redis_conn::RedisConn, prefix: &str, show: i64) -> i64 {
    let mut n = 0;
    for name in KEY_NAMES {
        let e: i64 = redis::cmd("EXISTS")
            .arg(show_key(prefix, show, name))
            .query_async(conn)
            .await
            .expect("EXISTS");
        n += e;
    }
    n
}

/// Finished shows: their keys expire (start + grace) and a late read rebuilds a correct map.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_of_past_shows_expire_and_a_late_read_is_still_right() {
    if crate::support::served_skipped() {
        return;
    }
    let app = TestApp::spawn_with(Backend::Served, &["--redis-key-grace-seconds", "2"]).await;
    let prefix = app.redis_prefix.clone().expect("prefix");
    let users = app.users(1).await;
    let user = users[0].1;
    let mut shows = Vec::new();
    for _ in 0..10 {
        let (show, seats) = app.create_show(1, 4).await;
        shows.push((show.parse::<i64>().expect("id"), seats));
    }
    // The shows are over: started two days ago (as the database will say once they have run).
    {
        use sea_orm::{ActiveModelTrait, Set};
        let past = chrono::Utc::now() - chrono::Duration::days(2);
        for (id, _) in &shows {
            entity::show::ActiveModel {
                id: Set(*id),
                starts_at: Set(past),
                ends_at: Set(past + chrono::Duration::hours(2)),
                ..Default::default()
            }
            .update(&app.state().db)
            .await
            .expect("move the show into the past");
        }
    }
    // Their keys were loaded when the shows were created (lifetime: tomorrow + grace). As after a
    // Redis restart, they go; the next reads load them again, now with the past start: they
    // live `grace` from now. Then each show sells a seat (a key created after the load).
    let mut conn = redis_conn();
    for (id, seats) in &shows {
        for name in KEY_NAMES {
            let _: i64 = redis::cmd("DEL")
                .arg(show_key(&prefix, *id, name))
                .query_async(&mut conn)
                .await
                .expect("DEL");
        }
        app.seat_map(None, &id.to_string()).await;
        app.book_directly(user, *id, seats[1].parse().expect("seat"))
            .await;
    }
    let mut before = 0;
    for (id, _) in &shows {
        before += keys_of(&mut conn, &prefix, *id).await;
    }
    assert!(before >= 2 * shows.len() as i64, "keys loaded: {before}");
    // Past their lifetime (max(start + grace, load + grace) = load + 2 s): every key is gone.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    for (id, _) in &shows {
        let mut left = Vec::new();
        for name in KEY_NAMES {
            let k = show_key(&prefix, *id, name);
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .expect("PTTL");
            if ttl != -2 {
                left.push(format!("{name} (ttl {ttl} ms)"));
            }
        }
        assert!(left.is_empty(), "show {id}: keys left: {left:?}");
    }
    println!(
        "keys of {} past shows: {before} before, 0 after",
        shows.len()
    );
    // A late read is still right: the sold seat is booked, the rest available.
    for (id, seats) in &shows {
        let (_, map) = app.seat_map(None, &id.to_string()).await;
        for (seat, status, _) in map {
            let want = if seat == seats[1] {
                "BOOKED"
            } else {
                "AVAILABLE"
            };
            assert_eq!(status, want, "show {id} seat {seat}");
        }
    }
}

/// The milliseconds each of a show's hold keys (seats, holds, holdrec, uholds) has to live: -1
/// for a key without an expiry, -2 for one that does not exist.
async fn hold_key_ttls(
    conn: &mut boxoffice::redis_conn::RedisConn,
    prefix: &str,
    show: i64,
) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for name in &KEY_NAMES[..4] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(show_key(prefix, show, name))
            .query_async(conn)
            .await
            .expect("PTTL");
        out.push((*name, ttl));
    }
    out
}

/// The hold keys are created by the first hold on a show (and again after the last one ended,
/// since Redis drops an emptied key): each time they get the show's lifetime, and a later hold
/// beside a live one leaves it as it was. (hold.lua finds "created afresh" from the held-seat
/// count its event carries, without a read of its own: a key left without an expiry would
/// outlive its show for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_keys_get_the_show_lifetime_each_time_they_are_created() {
    if crate::support::served_skipped() {
        return;
    }
    let app = TestApp::spawn(Backend::Served).await;
    let prefix = app.redis_prefix.clone().expect("prefix");
    let users = app.users(2).await;
    let (show, seats) = app.create_show(1, 6).await;
    let id: i64 = show.parse().expect("id");
    let mut conn = redis_conn();
    let lives = |ttls: &[(&str, i64)]| ttls.iter().all(|(_, t)| *t > 0);
    for round in 0..2 {
        let before = hold_key_ttls(&mut conn, &prefix, id).await;
        assert!(
            before.iter().all(|(_, t)| *t == -2),
            "round {round}: no hold keys before the first hold: {before:?}"
        );
        let first = app.hold(&users[0].0, &show, &[&seats[0], &seats[1]]).await;
        let after_first = hold_key_ttls(&mut conn, &prefix, id).await;
        assert!(lives(&after_first), "round {round}: {after_first:?}");
        let second = app.hold(&users[1].0, &show, &[&seats[2]]).await;
        let after_second = hold_key_ttls(&mut conn, &prefix, id).await;
        assert!(lives(&after_second), "round {round}: {after_second:?}");
        for ((name, a), (_, b)) in after_first.iter().zip(&after_second) {
            // Both are the show's lifetime (start + grace), read a moment apart.
            assert!((a - b).abs() < 60_000, "{name}: {a} ms, then {b} ms");
        }
        app.release(&users[0].0, &first).await;
        app.release(&users[1].0, &second).await;
    }
}

/// A Redis that may evict keys is refused at start-up with one line naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_up_under_an_evicting_policy_is_refused() {
    if crate::support::served_skipped() {
        return;
    }
    let redis = PrivateRedis::start().await;
    redis
        .cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .await;
    let dir = std::env::temp_dir().join(crate::support::unique("evict"));
    std::fs::create_dir_all(&dir).expect("dir");
    let server = loadtest_bin().with_file_name("boxoffice");
    let run = |allow: &str| {
        std::process::Command::new(&server)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display()),
            )
            .env("REDIS_URL", redis.url())
            .env("REDIS_ALLOW_EVICTION", allow)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("JWT_SECRET", crate::support::JWT_SECRET)
            .env("DEMO_DATA", "false")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the server")
    };
    let out = run("false").wait_with_output().expect("it exits");
    assert!(!out.status.success(), "refused");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("maxmemory-policy is allkeys-lru"))
        .unwrap_or_else(|| panic!("one line naming the setting: {err}"));
    assert!(
        line.contains("noeviction") && line.contains("REDIS_ALLOW_EVICTION"),
        "{line}"
    );
    // The operator who accepts the risk may start it.
    let mut accepted = run("true");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        accepted.try_wait().expect("status").is_none(),
        "REDIS_ALLOW_EVICTION=true starts"
    );
    let _ = accepted.kill();
    let _ = accepted.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Until `f` answers without errors: `(time taken, SERVICE_UNAVAILABLE answers meanwhile)`.
/// Any other error is a failure.
async fn until_served(app: &TestApp, token: &str, vars: serde_json::Value) -> (Duration, usize) {
    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let body = app.gql(Some(token), HOLD, vars.clone()).await;
        match body.get("errors") {
            None => return (start.elapsed(), refused),
            Some(errors) => {
                assert_eq!(
                    errors[0]["extensions"]["code"], "SERVICE_UNAVAILABLE",
                    "during the failover: {body}"
                );
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("holds did not resume within 60 s of the failover");
}

/// SIGKILL the master that owns a show while users hold seats and watch its map: a replica is
/// promoted, holds resume, no seat is sold twice, nothing stays blocked past TTL + 2 s, every map
/// converges; the outage is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_fails_over() {
    if crate::support::served_skipped() {
        return;
    }
    let mut cluster = PrivateCluster::start().await;
    let app = TestApp::spawn_with(
        Backend::Served,
        &[
            "--redis-url",
            &cluster.url(),
            "--dependency-timeout-ms",
            "1000",
            "--hold-ttl-seconds",
            "6",
        ],
    )
    .await;
    let prefix = app.redis_prefix.clone().expect("prefix");
    let (show, seats) = app.create_show(4, 10).await;
    let show_id: i64 = show.parse().expect("id");
    let users = app.users(12).await;
    // Before: ten users hold a seat each; two bought one; a map is open.
    for (i, (token, _)) in users.iter().take(10).enumerate() {
        app.hold(token, &show, &[&seats[i]]).await;
    }
    let sold = app.book_each(&users[10].0, &show, &seats[10..12]).await;
    assert_eq!(sold.len(), 2);
    let mut ws = WsClient::connect(&app.base, None).await.expect("ws");
    ws.subscribe("1", SEAT_UPDATES, json!({ "show": show }))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let master = cluster.master_of(&show_key(&prefix, show_id, "meta")).await;
    cluster.kill(master);
    let killed = Instant::now();
    let (outage, refused) = until_served(
        &app,
        &users[11].0,
        json!({ "show": show, "seats": [seats[20]] }),
    )
    .await;
    let promoted = cluster.master_of(&show_key(&prefix, show_id, "meta")).await;
    assert_ne!(promoted, master, "a replica took over");
    println!(
        "failover: holds answered SERVICE_UNAVAILABLE {refused} times over {:.1} s after the kill",
        outage.as_secs_f64()
    );
    // The open map's stream was told (its client re-reads), or — if the feed kept going — it
    // still gets every later change; either way the map converges below.
    let mut told = false;
    while let Some(frame) = ws.next(Duration::from_secs(2)).await {
        if frame["payload"]["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            || frame["type"] == "complete"
        {
            told = true;
            break;
        }
    }
    println!("open map told to re-read: {told}");

    // Holds resume for everyone; a checkout after the failover books; nothing sold twice.
    let after = app.book_each(&users[11].0, &show, &seats[30..32]).await;
    assert_eq!(after.len(), 2);
    let again = app
        .gql(
            Some(&users[0].0),
            HOLD,
            json!({ "show": show, "seats": [seats[10]] }),
        )
        .await;
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "SEATS_UNAVAILABLE",
        "a seat sold before the failover stays sold: {again}"
    );
    // Nothing stays blocked past TTL + 2 s after the failover: every hold taken before it (and
    // the probe's) is gone by then, whether or not it survived the promotion.
    tokio::time::sleep(Duration::from_secs(6 + 2)).await;
    let (_, map) = app.seat_map(None, &show).await;
    let booked: HashSet<&String> = seats[10..12].iter().chain(&seats[30..32]).collect();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for (seat, status, _) in &map {
        let want = if booked.contains(seat) {
            "BOOKED"
        } else {
            "AVAILABLE"
        };
        assert_eq!(
            status,
            want,
            "seat {seat}, {:?} after the failover",
            killed.elapsed()
        );
        *statuses.entry(status.clone()).or_default() += 1;
    }
    assert_eq!(statuses.get("BOOKED"), Some(&4));
    // The database agrees: four live bookings, one per seat.
    let rows = app.active_seats(show_id).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        rows.iter().collect::<HashSet<_>>().len(),
        4,
        "one booking per seat"
    );
    drop(cluster);
}

/// A workload over many shows spreads over the masters: keys and commands per master, reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_shows_spread_over_the_masters() {
    if crate::support::served_skipped() {
        return;
    }
    let cluster = PrivateCluster::start().await;
    let app = TestApp::spawn_with(
        Backend::Served,
        &[
            "--redis-url",
            &cluster.url(),
            "--rate-limit-user-per-minute",
            "10000",
            "--rate-limit-ip-per-minute",
            "100000",
        ],
    )
    .await;
    let users = app.users(4).await;
    let mut shows = Vec::new();
    for _ in 0..48 {
        shows.push(app.create_show(1, 8).await);
    }
    let before = cluster.masters().await;
    for (show, seats) in &shows {
        for (i, (token, _)) in users.iter().enumerate() {
            app.hold(token, show, &[&seats[2 * i], &seats[2 * i + 1]])
                .await;
        }
        app.seat_map(None, show).await;
    }
    let after = cluster.masters().await;
    assert_eq!(after.len(), 3, "three masters: {after:?}");
    let keys: Vec<u64> = after.iter().map(|m| m.1).collect();
    let ops: Vec<u64> = after
        .iter()
        .map(|(port, _, total)| {
            let was = before
                .iter()
                .find(|m| m.0 == *port)
                .map(|m| m.2)
                .unwrap_or(0);
            total - was
        })
        .collect();
    let spread = |v: &[u64]| {
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        v.iter()
            .map(|x| (*x as f64 - mean) / mean * 100.0)
            .fold(0.0f64, |m, d| m.max(d.abs()))
    };
    println!(
        "spread over 3 masters, 48 shows: keys {keys:?} (±{:.0}%), commands {ops:?} (±{:.0}%)",
        spread(&keys),
        spread(&ops)
    );
    assert!(
        keys.iter().all(|k| *k > 0),
        "every master holds shows: {keys:?}"
    );
    assert!(spread(&keys) < 50.0, "keys spread evenly enough: {keys:?}");
}
