//! API keys (scopes, revocation across instances) and sales reports that reconcile with the
//! ledger after an on-sale with declines and cancellations.
use serde_json::{json, Value};

use crate::support::{Backend, TestApp};

const REPORT: &str = "query($s: ID!) { salesReport(showId: $s) {
  categories { category totalSeats sold held available grossCents refundsCents netCents }
  total { totalSeats sold held available grossCents refundsCents netCents }
  bookingsConfirmed bookingsCancelled bookingsFailed bookingsPending
  chargedCents refundedCents ledgerMatches } }";

async fn create_key(app: &TestApp, admin: &str, scopes: &[&str]) -> (String, String) {
    let d = app
        .ok(
            Some(admin),
            "mutation($n: String!, $s: [ApiScope!]!) { createApiKey(name: $n, scopes: $s) { secret apiKey { id name prefix scopes revokedAt } } }",
            json!({ "n": "finance system", "s": scopes }),
        )
        .await;
    let k = &d["createApiKey"];
    let secret = k["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("bok_") && secret.len() > 40, "{secret}");
    assert!(secret.starts_with(k["apiKey"]["prefix"].as_str().expect("prefix")));
    assert!(k["apiKey"]["revokedAt"].is_null());
    (secret, k["apiKey"]["id"].as_str().expect("id").to_string())
}

async fn api_keys_are_scoped_and_revoked_at_once_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin = app.admin_token().await;
    let (show, seats) = app.create_show(2, 4).await;
    let (reports, reports_id) = create_key(&app, &admin, &["READ_REPORTS"]).await;
    let (catalogue, _) = create_key(&app, &admin, &["READ_CATALOGUE"]).await;
    let customer = app.users(1).await[0].0.clone();

    // The scope opens the report; nothing else does.
    let d = app.ok(Some(&reports), REPORT, json!({ "s": show })).await;
    assert_eq!(d["salesReport"]["total"]["totalSeats"], 8);
    for (who, code) in [
        (Some(catalogue.as_str()), "FORBIDDEN"),
        (Some(customer.as_str()), "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
    ] {
        assert_eq!(app.err_code(who, REPORT, json!({ "s": show })).await, code);
    }
    // A key acts for no user and manages nothing.
    assert_eq!(
        app.err_code(
            Some(&reports),
            "mutation($s: ID!, $x: [ID!]!) { holdSeats(showId: $s, seatIds: $x) { id } }",
            json!({ "s": show, "x": [seats[0]] }),
        )
        .await,
        "FORBIDDEN"
    );
    assert_eq!(
        app.err_code(
            Some(&reports),
            "mutation { createApiKey(name: \"x\", scopes: [READ_REPORTS]) { secret } }",
            json!({}),
        )
        .await,
        "FORBIDDEN"
    );
    // Public reads work with any key (it is its own client for budgets).
    app.ok(
        Some(&catalogue),
        "query($s: ID!) { show(id: $s) { seatStatuses { statuses } } }",
        json!({ "s": show }),
    )
    .await;
    // A made-up key is a bad credential.
    assert_eq!(
        app.err_code(Some("bok_not-a-real-key"), REPORT, json!({ "s": show }))
            .await,
        "UNAUTHENTICATED"
    );
    // The list shows the keys without secrets.
    let listed = app
        .ok(
            Some(&admin),
            "{ apiKeys { id name scopes revokedAt } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["apiKeys"].as_array().map(Vec::len), Some(2));
    assert!(!listed.to_string().contains(&reports));

    // Revoked on one instance: refused on the other at the next request.
    let peer = app.spawn_peer(&[]).await;
    peer.ok(Some(&reports), REPORT, json!({ "s": show })).await;
    let d = app
        .ok(
            Some(&admin),
            "mutation($k: ID!) { revokeApiKey(id: $k) }",
            json!({ "k": reports_id }),
        )
        .await;
    assert_eq!(d["revokeApiKey"], true);
    assert_eq!(
        peer.err_code(Some(&reports), REPORT, json!({ "s": show }))
            .await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.err_code(Some(&reports), REPORT, json!({ "s": show }))
            .await,
        "UNAUTHENTICATED"
    );
    let again = app
        .ok(
            Some(&admin),
            "mutation($k: ID!) { revokeApiKey(id: $k) }",
            json!({ "k": reports_id }),
        )
        .await;
    assert_eq!(again["revokeApiKey"], false);
}

/// Every figure of the report, recomputed from the database rows directly.
async fn ledger_totals(app: &TestApp, show: i64) -> (i64, i64, i64) {
    use entity::{booking, booking_seat, payment};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let db = &app.state().db;
    let bookings = booking::Entity::find()
        .filter(booking::Column::ShowId.eq(show))
        .all(db)
        .await
        .expect("bookings");
    let ids: Vec<i64> = bookings.iter().map(|b| b.id).collect();
    let pays = payment::Entity::find()
        .filter(payment::Column::BookingId.is_in(ids))
        .filter(payment::Column::Status.eq(payment::PaymentStatus::Succeeded))
        .all(db)
        .await
        .expect("payments");
    let sum = |k: payment::PaymentKind| -> i64 {
        pays.iter()
            .filter(|p| p.kind == k)
            .map(|p| p.amount_cents)
            .sum()
    };
    let sold = booking_seat::Entity::find()
        .filter(booking_seat::Column::ShowId.eq(show))
        .filter(booking_seat::Column::Active.eq(true))
        .all(db)
        .await
        .expect("seats")
        .len() as i64;
    (
        sum(payment::PaymentKind::Charge),
        sum(payment::PaymentKind::Refund),
        sold,
    )
}

async fn the_sales_report_reconciles_with_the_ledger(b: Backend) {
    // A third of the charges are declined.
    let app = TestApp::spawn_with(
        b,
        &["--payment-failure-rate", "0.35", "--payment-seed", "11"],
    )
    .await;
    let admin = app.admin_token().await;
    let (show, seats) = app.create_show(4, 6).await;
    let users = app.users(6).await;
    let mut confirmed: Vec<(usize, String)> = Vec::new();
    let mut declined = 0;
    for (i, chunk) in seats.chunks(2).enumerate() {
        let who = i % users.len();
        let token = users[who].0.as_str();
        let hold = app
            .hold(token, &show, &chunk.iter().collect::<Vec<_>>())
            .await;
        if i % 6 == 5 {
            continue; // abandoned: still held when the report is read
        }
        let d = app
            .ok(
                Some(token),
                "mutation($h: ID!, $k: String!) { checkout(holdId: $h, idempotencyKey: $k) { id status } }",
                json!({ "h": hold, "k": format!("r{i}") }),
            )
            .await;
        match d["checkout"]["status"].as_str() {
            Some("CONFIRMED") => {
                confirmed.push((who, d["checkout"]["id"].as_str().unwrap_or("").to_string()))
            }
            _ => declined += 1,
        }
    }
    // Cancel two confirmed bookings (refunded).
    for (who, id) in confirmed.iter().take(2) {
        app.ok(
            Some(&users[*who].0),
            "mutation($b: ID!) { cancelBooking(bookingId: $b) { status } }",
            json!({ "b": id }),
        )
        .await;
    }
    let r: Value = app.ok(Some(&admin), REPORT, json!({ "s": show })).await["salesReport"].clone();
    let (charged, refunded, sold) = ledger_totals(&app, show.parse().expect("id")).await;
    assert!(
        declined > 0 && confirmed.len() > 2,
        "a mixed on-sale: {declined} declined, {} confirmed",
        confirmed.len()
    );
    assert_eq!(r["ledgerMatches"], true, "{r}");
    assert_eq!(r["chargedCents"], charged);
    assert_eq!(r["refundedCents"], refunded);
    assert!(refunded > 0);
    let t = &r["total"];
    assert_eq!(t["grossCents"], charged, "{r}");
    assert_eq!(t["refundsCents"], refunded);
    assert_eq!(t["netCents"], charged - refunded);
    assert_eq!(t["sold"], sold);
    assert_eq!(t["held"], 4, "two abandoned holds of two seats: {r}");
    assert_eq!(t["totalSeats"], 24);
    assert_eq!(t["available"], 24 - sold - 4);
    assert_eq!(r["bookingsConfirmed"], confirmed.len() as i64 - 2);
    assert_eq!(r["bookingsCancelled"], 2);
    assert_eq!(r["bookingsFailed"], declined);
    // Categories add up to the total.
    let cats = r["categories"].as_array().expect("categories");
    assert_eq!(cats.len(), 2);
    for field in [
        "totalSeats",
        "sold",
        "held",
        "available",
        "grossCents",
        "refundsCents",
        "netCents",
    ] {
        let sum: i64 = cats.iter().map(|c| c[field].as_i64().unwrap_or(0)).sum();
        assert_eq!(Some(sum), t[field].as_i64(), "{field}");
    }

    // A period: the money and bookings of that period; the seats as they are now.
    let periodic = "query($s: ID!, $since: DateTime, $until: DateTime) { salesReport(showId: $s, since: $since, until: $until) {
      total { sold grossCents refundsCents } bookingsConfirmed chargedCents ledgerMatches } }";
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let earlier = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let future = app
        .ok(Some(&admin), periodic, json!({ "s": show, "since": later }))
        .await;
    let f = &future["salesReport"];
    assert_eq!(f["total"]["grossCents"], 0, "{f}");
    assert_eq!(f["total"]["refundsCents"], 0);
    assert_eq!(f["bookingsConfirmed"], 0);
    assert_eq!(f["total"]["sold"], sold, "seats are counted now");
    let window = app
        .ok(
            Some(&admin),
            periodic,
            json!({ "s": show, "since": earlier, "until": later }),
        )
        .await;
    assert_eq!(window["salesReport"]["total"]["grossCents"], charged);
    assert_eq!(window["salesReport"]["ledgerMatches"], true);

    // The same report as CSV, for the admin; refused without the right credential.
    let csv = app
        .api
        .client
        .get(format!("{}/reports/sales.csv?showId={show}", app.api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), 200);
    assert!(csv
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv")));
    let text = csv.text().await.expect("body");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "show_id,category,total_seats,sold,held,available,gross_cents,refunds_cents,net_cents"
    );
    assert_eq!(lines.len(), 4, "{text}");
    let total: Vec<&str> = lines[3].split(',').collect();
    assert_eq!(total[1], "TOTAL");
    assert_eq!(total[6].parse::<i64>().ok(), Some(charged));
    assert_eq!(total[7].parse::<i64>().ok(), Some(refunded));
    let anonymous = app
        .api
        .client
        .get(format!("{}/reports/sales.csv?showId={show}", app.api.base))
        .send()
        .await
        .expect("csv");
    assert_eq!(anonymous.status(), 401);
    let bad = app
        .api
        .client
        .get(format!(
            "{}/reports/sales.csv?showId={show}&since=yesterday",
            app.api.base
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("csv");
    assert_eq!(bad.status(), 400);
}

backends!(
    api_keys_are_scoped_and_revoked_at_once_everywhere,
    the_sales_report_reconciles_with_the_ledger,
);

const AUDIT: &str = "query($first: Int, $after: String, $show: ID, $booking: ID, $kind: String) {
  auditLog(first: $first, after: $after, showId: $show, bookingId: $booking, kind: $kind) {
    edges { cursor node { id at kind actorKind actorId showId bookingId userId detail } }
    pageInfo { hasNextPage hasPreviousPage endCursor } } }";

fn kinds(d: &Value) -> Vec<String> {
    d["auditLog"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Every change of a booking, with who made it, pageable and filterable; readable by admins and
/// `READ_AUDIT` keys only.
async fn the_audit_log_records_who_what_when_and_why(b: Backend) {
    let app = TestApp::spawn(b).await;
    let admin = app.admin_token().await;
    let (show, seats) = app.create_show(1, 4).await;
    let (token, user) = app.users(1).await[0].clone();
    let ids = app.book_each(&token, &show, &seats[..2]).await;
    app.ok(
        Some(&token),
        "mutation($b: ID!) { cancelBooking(bookingId: $b) { status } }",
        json!({ "b": ids[0].to_string() }),
    )
    .await;
    let (auditor, _) = create_key(&app, &admin, &["READ_AUDIT"]).await;

    let d = app
        .ok(
            Some(&auditor),
            AUDIT,
            json!({ "booking": ids[0].to_string() }),
        )
        .await;
    assert_eq!(
        kinds(&d),
        [
            "refund.succeeded",
            "booking.cancelled",
            "booking.confirmed",
            "booking.created"
        ],
        "{d}"
    );
    let created = &d["auditLog"]["edges"][3]["node"];
    assert_eq!(created["actorKind"], "USER");
    assert_eq!(created["actorId"].as_str(), Some(user.to_string().as_str()));
    assert_eq!(created["userId"].as_str(), Some(user.to_string().as_str()));
    assert!(
        created["detail"]["holdId"].is_string(),
        "the consumed hold: {created}"
    );
    assert_eq!(d["auditLog"]["edges"][2]["node"]["actorKind"], "SYSTEM");

    // The show's whole story, paged two at a time with stable cursors.
    let all = app
        .ok(Some(&admin), AUDIT, json!({ "show": show, "first": 100 }))
        .await;
    let every = kinds(&all);
    assert_eq!(every.last().map(String::as_str), Some("show.created"));
    assert_eq!(every.iter().filter(|k| *k == "booking.created").count(), 2);
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = app
            .ok(
                Some(&admin),
                AUDIT,
                json!({ "show": show, "first": 2, "after": after }),
            )
            .await;
        paged.extend(kinds(&p));
        if p["auditLog"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = p["auditLog"]["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_string);
    }
    assert_eq!(paged, every);
    let shows = app
        .ok(
            Some(&admin),
            AUDIT,
            json!({ "kind": "show.created", "first": 100 }),
        )
        .await;
    assert!(kinds(&shows).iter().all(|k| k == "show.created"));
    let keys = app
        .ok(Some(&admin), AUDIT, json!({ "kind": "api_key.created" }))
        .await;
    assert_eq!(keys["auditLog"]["edges"][0]["node"]["actorKind"], "ADMIN");

    // Nobody else reads it.
    let (reports, _) = create_key(&app, &admin, &["READ_REPORTS"]).await;
    for (who, code) in [
        (Some(reports.as_str()), "FORBIDDEN"),
        (Some(token.as_str()), "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
    ] {
        assert_eq!(app.err_code(who, AUDIT, json!({})).await, code);
    }
    assert_eq!(
        app.err_code(Some(&admin), AUDIT, json!({ "after": "nonsense" }))
            .await,
        "BAD_USER_INPUT"
    );
}

/// The audit entry is written in the change's own transaction: when writing it fails (a trigger
/// refuses it), the cancellation is rolled back with it — no entry without its change, no change
/// without its entry — and the webhook event too.
async fn an_audit_entry_and_its_change_commit_or_roll_back_together(b: Backend) {
    use sea_orm::{ConnectionTrait, EntityTrait};
    let app = TestApp::spawn(b).await;
    let (show, seats) = app.create_show(1, 2).await;
    let (token, _) = app.users(1).await[0].clone();
    let ids = app.book_each(&token, &show, &seats[..1]).await;
    let db = &app.state().db;
    let (create, drop) = match b {
        Backend::Served => (
            vec![
                "CREATE FUNCTION refuse_cancel_audit() RETURNS trigger AS $$ BEGIN \
                 IF NEW.kind = 'booking.cancelled' THEN RAISE EXCEPTION 'forced'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_cancel_audit BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION refuse_cancel_audit()",
            ],
            "DROP TRIGGER refuse_cancel_audit ON audit_log",
        ),
        Backend::Embedded => (
            vec![
                "CREATE TRIGGER refuse_cancel_audit BEFORE INSERT ON audit_log \
                 WHEN NEW.kind = 'booking.cancelled' BEGIN SELECT RAISE(ABORT, 'forced'); END",
            ],
            "DROP TRIGGER refuse_cancel_audit",
        ),
    };
    for sql in create {
        db.execute_unprepared(sql).await.expect("trigger");
    }
    let cancel = "mutation($b: ID!) { cancelBooking(bookingId: $b) { status } }";
    let failed = app
        .gql(Some(&token), cancel, json!({ "b": ids[0].to_string() }))
        .await;
    assert!(failed["errors"].is_array(), "{failed}");
    // The forced failure is logged as an internal error: expected here, and nothing else (the
    // log is process-wide: under `cargo test` a neighbour may have collected it already).
    let faults = crate::support::watchdog::take();
    assert!(faults.iter().all(|f| f.contains("forced")), "{faults:#?}");
    let booking = entity::booking::Entity::find_by_id(ids[0])
        .one(db)
        .await
        .expect("read")
        .expect("booking");
    assert_eq!(booking.status, entity::booking::BookingStatus::Confirmed);
    let cancelled_events = |rows: Vec<(Option<i64>, String)>| {
        rows.into_iter()
            .filter(|(b, k)| *b == Some(ids[0]) && k == "booking.cancelled")
            .count()
    };
    let audit_rows = entity::audit_entry::Entity::find()
        .all(db)
        .await
        .expect("audit");
    assert_eq!(
        cancelled_events(
            audit_rows
                .into_iter()
                .map(|r| (r.booking_id, r.kind))
                .collect()
        ),
        0
    );
    let outbox_rows = entity::outbox::Entity::find()
        .all(db)
        .await
        .expect("outbox");
    assert_eq!(
        cancelled_events(
            outbox_rows
                .into_iter()
                .map(|r| (r.booking_id, r.kind))
                .collect()
        ),
        0
    );
    // Without the fault the same request completes, with its entry.
    db.execute_unprepared(drop).await.expect("drop trigger");
    let d = app
        .ok(Some(&token), cancel, json!({ "b": ids[0].to_string() }))
        .await;
    assert_eq!(d["cancelBooking"]["status"], "CANCELLED");
    let audit_rows = entity::audit_entry::Entity::find()
        .all(db)
        .await
        .expect("audit");
    assert_eq!(
        cancelled_events(
            audit_rows
                .into_iter()
                .map(|r| (r.booking_id, r.kind))
                .collect()
        ),
        1
    );
}

backends!(
    the_audit_log_records_who_what_when_and_why,
    an_audit_entry_and_its_change_commit_or_roll_back_together,
);
