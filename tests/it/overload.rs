//! A busy service queues briefly and fairly, or refuses quickly and clearly — before any money
//! moves. And a transaction the database refuses for a conflict (a serialization failure, a
//! deadlock) is `SERVICE_UNAVAILABLE`, never an internal error.
use std::sync::Arc;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::support::{Backend, TestApp};

const CHECKOUT: &str =
    "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { id status } }";

/// Far more buyers than the queue admits pay at once: each checkout either completes or is
/// refused with `SERVICE_UNAVAILABLE` and a retry hint before anything was charged or written;
/// nothing is left pending, and the audit is clean.
async fn overload_is_refused_before_money_moves(b: Backend) {
    let app = TestApp::spawn_with(
        b,
        &[
            "--checkout-concurrency",
            "2",
            "--checkout-queue-limit",
            "4",
            "--checkout-queue-timeout-ms",
            "300",
            "--payment-latency-ms",
            "150",
            "--rate-limit-user-per-minute",
            "0",
            "--rate-limit-ip-per-minute",
            "0",
        ],
    )
    .await;
    let (show, seats) = app.create_show(4, 10).await;
    let users = app.users(40).await;
    let mut holds = Vec::new();
    for (i, (token, _)) in users.iter().enumerate() {
        holds.push(app.hold(token, &show, &[&seats[i]]).await);
    }
    let app = Arc::new(app);
    let barrier = Arc::new(tokio::sync::Barrier::new(users.len()));
    let mut tasks = Vec::new();
    for (i, ((token, _), hold)) in users.iter().zip(holds).enumerate() {
        let (app, barrier, token) = (app.clone(), barrier.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let key = format!("rush-{i}");
            let body = app
                .gql(Some(&token), CHECKOUT, json!({ "h": hold, "k": key }))
                .await;
            (token, hold, key, body)
        }));
    }
    let (mut confirmed, mut refused) = (Vec::new(), Vec::new());
    for t in tasks {
        let (token, hold, key, body) = t.await.expect("buyer");
        match body.get("errors") {
            None => {
                assert_eq!(body["data"]["checkout"]["status"], "CONFIRMED", "{body}");
                confirmed.push(
                    body["data"]["checkout"]["id"]
                        .as_str()
                        .expect("id")
                        .parse::<i64>()
                        .expect("id"),
                );
            }
            Some(errors) => {
                let ext = &errors[0]["extensions"];
                assert_eq!(ext["code"], "SERVICE_UNAVAILABLE", "{body}");
                assert!(
                    ext["retryAfterSeconds"].as_u64().unwrap_or(0) >= 1,
                    "{body}"
                );
                refused.push((token, hold, key));
            }
        }
    }
    println!(
        "{} confirmed, {} refused under overload",
        confirmed.len(),
        refused.len()
    );
    assert!(!confirmed.is_empty(), "the queue admits some");
    assert!(!refused.is_empty(), "40 buyers > 2 running + 4 waiting");
    let db = &app.state().db;
    // Refused before money moved: no booking, no payment attempt, no charge at the gateway.
    let written = entity::booking::Entity::find()
        .filter(
            entity::booking::Column::IdempotencyKey
                .is_in(refused.iter().map(|(_, _, k)| k.clone())),
        )
        .count(db)
        .await
        .expect("count");
    assert_eq!(written, 0, "a refused checkout wrote a booking");
    let charges = entity::mock_gateway_ledger::Entity::find()
        .count(db)
        .await
        .expect("count");
    assert_eq!(
        charges as usize,
        confirmed.len(),
        "one charge per confirmed booking"
    );
    let pending = entity::booking::Entity::find()
        .filter(entity::booking::Column::Status.eq(entity::booking::BookingStatus::Pending))
        .count(db)
        .await
        .expect("count");
    assert_eq!(pending, 0);
    let audit = crate::audit::audit_show(&app, &show, None, &confirmed, &[]).await;
    assert_eq!(
        audit.report["violations"],
        json!([]),
        "{}\n{:#}",
        audit.stderr,
        audit.report
    );
    // A refused buyer's hold is still theirs: the same request, retried, goes through.
    let (token, hold, key) = &refused[0];
    let again = app
        .ok(Some(token), CHECKOUT, json!({ "h": hold, "k": key }))
        .await;
    assert_eq!(again["checkout"]["status"], "CONFIRMED");
}

backends!(overload_is_refused_before_money_moves);

/// A real deadlock (`40P01`) and a real serialization failure (`40001`) from PostgreSQL are
/// retryable `SERVICE_UNAVAILABLE` for the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conflicts_are_service_unavailable() {
    if crate::support::served_skipped() {
        return;
    }
    use sea_orm::TransactionTrait;
    let (_db, url) = crate::support::TestDb::create(Backend::Served).await;
    let db = sea_orm::Database::connect(&url).await.expect("connect");
    db.execute_unprepared(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO t VALUES (1, 0), (2, 0);",
    )
    .await
    .expect("table");

    // Deadlock: each transaction locks one row, then wants the other's.
    let (a, b) = (db.begin().await.expect("a"), db.begin().await.expect("b"));
    a.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 1")
        .await
        .expect("a locks 1");
    b.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 2")
        .await
        .expect("b locks 2");
    let (ra, rb) = tokio::join!(
        a.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 2"),
        b.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 1"),
    );
    let deadlock = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("expected exactly one deadlock victim: {other:?}"),
    };
    a.rollback().await.expect("end a");
    b.rollback().await.expect("end b");
    assert!(deadlock.to_string().contains("deadlock"), "{deadlock}");
    assert!(boxoffice::db::is_conflict(&deadlock), "{deadlock}");
    let answered = boxoffice::error::AppError::from(deadlock);
    assert_eq!(answered.code(), "SERVICE_UNAVAILABLE");
    assert!(answered.is_db_conflict(), "{answered}");

    // Serialization failure: two serializable transactions read what the other writes.
    let serializable = || db.begin_with_config(Some(sea_orm::IsolationLevel::Serializable), None);
    let (a, b) = (
        serializable().await.expect("a"),
        serializable().await.expect("b"),
    );
    a.execute_unprepared("SELECT sum(v) FROM t")
        .await
        .expect("a reads");
    b.execute_unprepared("SELECT sum(v) FROM t")
        .await
        .expect("b reads");
    a.execute_unprepared("UPDATE t SET v = 10 WHERE id = 1")
        .await
        .expect("a writes");
    b.execute_unprepared("UPDATE t SET v = 10 WHERE id = 2")
        .await
        .expect("b writes");
    a.commit().await.expect("the first to commit wins");
    let failure = b
        .commit()
        .await
        .expect_err("the second cannot be serialized");
    assert!(boxoffice::db::is_conflict(&failure), "{failure}");
    let answered = boxoffice::error::AppError::from(failure);
    assert_eq!(answered.code(), "SERVICE_UNAVAILABLE");
    assert!(answered.is_db_conflict(), "{answered}");
    // Only a conflict is one: a database that cannot be reached is not retried as one.
    assert!(!boxoffice::error::AppError::Unavailable("the database").is_db_conflict());
}
