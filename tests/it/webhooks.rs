//! Webhooks from the transactional outbox: every confirmed, failed and cancelled booking and
//! every refund is one outbox event, delivered signed to a local receiver, retried after the
//! receiver fails, visible (and re-sendable) to admins.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{Backend, TestApp};

/// A local endpoint that answers 500 to its first `fail_first` requests and records the rest.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, String)>>>,
    seen: Arc<AtomicUsize>,
    fail_first: usize,
    /// How long each answer takes.
    delay: Duration,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String) {
        Self::start_slow(fail_first, Duration::ZERO).await
    }

    async fn start_slow(fail_first: usize, delay: Duration) -> (Receiver, String) {
        let r = Receiver {
            fail_first,
            delay,
            ..Default::default()
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    let n = state.seen.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(state.delay).await;
                    if n < state.fail_first {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let sig = headers
                        .get("boxoffice-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    state.got.lock().expect("lock").push((sig, body));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, url)
    }
}

/// The receiver's side of the signature: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    hex == v1
}

async fn webhooks_deliver_every_event_once_signed_and_retried(b: Backend) {
    let app = TestApp::spawn_with(
        b,
        &[
            "--payment-failure-rate",
            "0.4",
            "--payment-seed",
            "3",
            "--webhook-retry-base-ms",
            "200",
            "--webhook-dispatch-interval-ms",
            "100",
        ],
    )
    .await;
    let admin = app.admin_token().await;
    // Bad subscriptions are refused.
    for (url, events) in [
        ("ftp://127.0.0.1/x", json!(["booking.confirmed"])),
        ("http://example.com/hook", json!(["booking.confirmed"])),
        ("https://example.com/hook", json!(["booking.exploded"])),
        ("https://example.com/hook", json!([])),
    ] {
        assert_eq!(
            app.err_code(
                Some(&admin),
                "mutation($u: String!, $e: [String!]!) { createWebhook(url: $u, events: $e) { secret } }",
                json!({ "u": url, "e": events }),
            )
            .await,
            "BAD_USER_INPUT",
            "{url} {events}"
        );
    }
    let (receiver, url) = Receiver::start(2).await;
    let d = app
        .ok(
            Some(&admin),
            "mutation($u: String!, $e: [String!]!) { createWebhook(url: $u, events: $e) { secret webhook { id url events } } }",
            json!({ "u": url, "e": ["booking.confirmed", "booking.cancelled", "booking.failed", "refund.succeeded"] }),
        )
        .await;
    let secret = d["createWebhook"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let hook = d["createWebhook"]["webhook"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Book seats until some are confirmed and some declined; cancel one confirmed booking.
    let (show, seats) = app.create_show(2, 6).await;
    let users = app.users(2).await;
    let mut confirmed = Vec::new();
    let mut failed = 0;
    for (i, seat) in seats.iter().enumerate().take(8) {
        let token = &users[i % 2].0;
        let h = app.hold(token, &show, &[seat]).await;
        let c = app
            .ok(
                Some(token),
                "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { id status } }",
                json!({ "h": h, "k": format!("w{i}") }),
            )
            .await;
        match c["checkout"]["status"].as_str() {
            Some("CONFIRMED") => confirmed.push((
                i % 2,
                c["checkout"]["id"].as_str().unwrap_or("").to_string(),
            )),
            _ => failed += 1,
        }
    }
    assert!(
        failed > 0 && confirmed.len() > 1,
        "{failed} failed, {} confirmed",
        confirmed.len()
    );
    let (who, cancelled) = confirmed[0].clone();
    app.ok(
        Some(&users[who].0),
        "mutation($b: ID!) { cancelBooking(bookingId: $b) { status } }",
        json!({ "b": cancelled }),
    )
    .await;
    let expected = confirmed.len() + failed + 2; // + booking.cancelled + refund.succeeded

    // Every event arrives (after the receiver's two failures), each signed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = receiver.got.lock().expect("lock").clone();
        let ids: std::collections::HashSet<String> = got
            .iter()
            .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        if ids.len() >= expected || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut kinds: std::collections::HashMap<String, usize> = Default::default();
    let mut ids = std::collections::HashSet::new();
    for (sig, body) in &got {
        assert!(verify(&secret, sig, body), "bad signature {sig} on {body}");
        assert!(!verify("whsec_wrong", sig, body));
        let v: Value = serde_json::from_str(body).expect("json");
        if ids.insert(v["id"].as_str().expect("id").to_string()) {
            *kinds
                .entry(v["type"].as_str().expect("type").to_string())
                .or_default() += 1;
        }
        assert!(
            v["createdAt"].is_string() && v["data"]["bookingId"].is_string(),
            "{v}"
        );
    }
    assert_eq!(ids.len(), expected, "{kinds:?}");
    assert_eq!(kinds.get("booking.confirmed"), Some(&confirmed.len()));
    assert_eq!(kinds.get("booking.failed"), Some(&failed));
    assert_eq!(kinds.get("booking.cancelled"), Some(&1));
    assert_eq!(kinds.get("refund.succeeded"), Some(&1));

    // The outbox holds exactly one event per change.
    {
        use entity::outbox;
        use sea_orm::EntityTrait;
        let rows = outbox::Entity::find()
            .all(&app.state().db)
            .await
            .expect("outbox");
        assert_eq!(rows.len(), expected);
        let mut pairs: Vec<(Option<i64>, String)> = rows
            .iter()
            .map(|r| (r.booking_id, r.kind.clone()))
            .collect();
        pairs.sort();
        let before = pairs.len();
        pairs.dedup();
        assert_eq!(pairs.len(), before, "one event per booking and kind");
    }

    // Admins see the deliveries: all delivered, the first ones after retries; and can re-send.
    // (The receiver records an event before the dispatcher has written down the answer: wait for
    // the ledger, not the receiver — a CI run saw the last retry answered but still PENDING.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = app
            .ok(
                Some(&admin),
                "query($w: ID!) { webhookDeliveries(webhookId: $w, first: 100) { id eventId eventType status attempts lastStatus } }",
                json!({ "w": hook }),
            )
            .await;
        let done = list["webhookDeliveries"]
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r["status"] == "DELIVERED"));
        if done || tokio::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = list["webhookDeliveries"].as_array().expect("deliveries");
    assert_eq!(rows.len(), expected);
    assert!(rows.iter().all(|r| r["status"] == "DELIVERED"), "{list}");
    assert!(
        rows.iter().any(|r| r["attempts"].as_i64() > Some(1)),
        "retries: {list}"
    );
    let first = rows[0]["id"].as_str().expect("id");
    let before = receiver.seen.load(Ordering::SeqCst);
    app.ok(
        Some(&admin),
        "mutation($d: ID!) { resendWebhookDelivery(id: $d) }",
        json!({ "d": first }),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.seen.load(Ordering::SeqCst) == before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.seen.load(Ordering::SeqCst) > before, "re-sent");
    // Customers see none of it.
    let customer = users[0].0.clone();
    assert_eq!(
        app.err_code(Some(&customer), "{ webhooks { id } }", json!({}))
            .await,
        "FORBIDDEN"
    );
}

/// The distinct event ids the receiver has recorded.
fn ids_of(r: &Receiver) -> std::collections::HashSet<String> {
    r.got
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

/// SIGKILL the instance while it is sending (the receiver answers slowly): another instance
/// sends what it had claimed once the lease lapses, and what it had not fanned out. No event is
/// lost, none is written twice (a receiver may see one twice: at least once).
async fn an_instance_killed_mid_delivery_loses_nothing(b: Backend) {
    use crate::support::{process_env, ServerProcess};
    let (_db, env) = process_env(
        b,
        &[
            ("PAYMENT_LATENCY_MS", "0"),
            ("PAYMENT_FAILURE_RATE", "0"),
            ("WEBHOOK_TIMEOUT_MS", "1000"),
            ("WEBHOOK_RETRY_BASE_MS", "200"),
            ("WEBHOOK_DISPATCH_INTERVAL_MS", "100"),
        ],
    )
    .await;
    let (receiver, url) = Receiver::start_slow(0, Duration::from_millis(700)).await;
    let mut first = ServerProcess::start(&env).await;
    let admin = first.api.admin_token().await;
    first
        .api
        .ok(
            Some(&admin),
            "mutation($u: String!) { createWebhook(url: $u, events: [\"booking.confirmed\"]) { secret } }",
            json!({ "u": url }),
        )
        .await;
    let (show, seats) = first.api.create_show(1, 6).await;
    let (token, _) = first.api.sign_up("hooks@example.com").await;
    let booked = first.api.book_each(&token, &show, &seats).await;
    // Kill it while a delivery is on the wire.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while receiver.seen.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        receiver.seen.load(Ordering::SeqCst) > 0,
        "a delivery started"
    );
    first.kill();
    let delivered_before = ids_of(&receiver).len();
    assert!(delivered_before < booked.len(), "killed before it was done");

    // The survivor sends the rest: what was never claimed at once, what the dead instance had
    // claimed once its lease (3 s here) lapses — even if the receiver had it already.
    let second = ServerProcess::start(&env).await;
    let d = second
        .api
        .ok(Some(&admin), "{ webhooks { id } }", json!({}))
        .await;
    let hook = d["webhooks"][0]["id"]
        .as_str()
        .expect("webhook")
        .to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = second
            .api
            .ok(
                Some(&admin),
                "query($w: ID!) { webhookDeliveries(webhookId: $w, first: 100) { eventId status } }",
                json!({ "w": hook }),
            )
            .await;
        let done = list["webhookDeliveries"].as_array().is_some_and(|r| {
            r.len() == booked.len() && r.iter().all(|x| x["status"] == "DELIVERED")
        });
        if done || tokio::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ids_of(&receiver).len(), booked.len(), "every event arrived");
    // One delivery row per event, all delivered: nothing written twice.
    let rows = list["webhookDeliveries"].as_array().expect("rows");
    assert_eq!(rows.len(), booked.len(), "{list}");
    let distinct: std::collections::HashSet<&str> =
        rows.iter().filter_map(|r| r["eventId"].as_str()).collect();
    assert_eq!(distinct.len(), booked.len());
    assert!(rows.iter().all(|r| r["status"] == "DELIVERED"), "{list}");
}

/// A migrated database of the test's own, a webhook subscribed to confirmations, and `n` events
/// not yet fanned out.
async fn outbox_of(b: Backend, n: usize) -> (crate::support::TestDb, sea_orm::DatabaseConnection) {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let (guard, url) = crate::support::TestDb::create(b).await;
    let (db, _) = boxoffice::db::connect(&url, Duration::from_secs(10))
        .await
        .expect("connect");
    boxoffice::db::migrate(&db).await.expect("migrate");
    entity::webhook::ActiveModel {
        url: Set("http://127.0.0.1:9/unused".into()),
        events: Set("booking.confirmed".into()),
        secret: Set("whsec_test".into()),
        created_by: Set(0),
        created_at: Set(chrono::Utc::now() - chrono::Duration::hours(1)),
        consecutive_failures: Set(0),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect("webhook");
    let rows: Vec<entity::outbox::ActiveModel> = (0..n)
        .map(|i| entity::outbox::ActiveModel {
            event_id: Set(format!("evt_rush_{i}")),
            kind: Set("booking.confirmed".into()),
            show_id: Set(1),
            booking_id: Set(Some(i as i64 + 1)),
            payload: Set("{}".into()),
            created_at: Set(chrono::Utc::now()),
            fanned_out: Set(false),
            ..Default::default()
        })
        .collect();
    for chunk in rows.chunks(500) {
        entity::outbox::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&db)
            .await
            .expect("events");
    }
    (guard, db)
}

fn dispatcher(db: &sea_orm::DatabaseConnection) -> boxoffice::webhooks::dispatch::Dispatcher {
    boxoffice::webhooks::dispatch::Dispatcher::new(
        db.clone(),
        Duration::from_millis(200),
        Duration::from_secs(1),
    )
    .expect("dispatcher")
}

/// Every event's fan-out state: (events fanned out, delivery rows, distinct events delivered to).
async fn fanned(db: &sea_orm::DatabaseConnection) -> (u64, u64, u64) {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
    let marked = entity::outbox::Entity::find()
        .filter(entity::outbox::Column::FannedOut.eq(true))
        .count(db)
        .await
        .expect("count");
    let rows = entity::webhook_delivery::Entity::find()
        .count(db)
        .await
        .expect("count");
    let distinct: Vec<i64> = entity::webhook_delivery::Entity::find()
        .select_only()
        .column(entity::webhook_delivery::Column::OutboxId)
        .distinct()
        .into_tuple()
        .all(db)
        .await
        .expect("distinct");
    (marked, rows, distinct.len() as u64)
}

/// Three instances' dispatchers fan out a rush of 2,500 events at once: every event gets exactly
/// one delivery row and is marked once — the events each call reports add up to the rush, none
/// counted by two instances.
async fn instances_fan_out_a_rush_once(b: Backend) {
    const N: u64 = 2500;
    let (_guard, db) = outbox_of(b, N as usize).await;
    let runs = (0..3).map(|_| {
        let d = dispatcher(&db);
        async move {
            let mut total = 0;
            loop {
                let n = d.fan_out().await.expect("fan out");
                if n == 0 {
                    break total;
                }
                total += n;
            }
        }
    });
    let each: Vec<u64> = futures_util::future::join_all(runs).await;
    // Whatever a call skipped because another held it is gone by now.
    let rest = dispatcher(&db).fan_out().await.expect("fan out");
    assert_eq!(
        each.iter().sum::<u64>() + rest,
        N,
        "marked per instance: {each:?} + {rest}"
    );
    assert_eq!(fanned(&db).await, (N, N, N));
}

/// PostgreSQL: an instance that finds a batch claimed by another (its rows locked, mid-fan-out)
/// does not wait for it, nor fan it out a second time: it takes the events after it. The old
/// dispatcher read the claimed rows too and then waited on their locks to mark them.
async fn fan_out_passes_over_a_batch_another_instance_holds(b: Backend) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if b == Backend::Embedded {
        return; // SQLite has one writer and no row locks.
    }
    let (_guard, db) = outbox_of(b, 1500).await;
    let other = db.begin().await.expect("begin");
    let held = other
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT id FROM outbox WHERE NOT fanned_out ORDER BY id LIMIT 1000 FOR UPDATE",
        ))
        .await
        .expect("claim");
    assert_eq!(held.len(), 1000);
    let d = dispatcher(&db);
    let n = tokio::time::timeout(Duration::from_secs(20), d.fan_out())
        .await
        .expect("fan-out waited for another instance's batch")
        .expect("fan out");
    assert_eq!(n, 500, "the events after the claimed batch");
    assert_eq!(fanned(&db).await, (500, 500, 500));
    other.rollback().await.expect("release");
    assert_eq!(d.fan_out().await.expect("fan out"), 1000);
    assert_eq!(fanned(&db).await, (1500, 1500, 1500));
}

backends!(
    webhooks_deliver_every_event_once_signed_and_retried,
    an_instance_killed_mid_delivery_loses_nothing,
    instances_fan_out_a_rush_once,
    fan_out_passes_over_a_batch_another_instance_holds,
);
