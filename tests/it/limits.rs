//! Abuse limits: per-user and per-address mutation budgets (shared by instances through Redis),
//! log-in throttling, alias and root-field caps. Over a limit: `LIMIT_EXCEEDED`, nothing runs.

use crate::support::{Backend, TestApp};
use serde_json::json;

const RELEASE: &str = "mutation($h: ID!) { releaseHold(holdId: $h) }";

async fn mutations_over_the_user_budget_are_refused(b: Backend) {
    let app = TestApp::spawn_with(b, &["--rate-limit-user-per-minute", "5"]).await;
    let users = app.users(2).await;
    let (alice, bob) = (&users[0].0, &users[1].0);
    for _ in 0..5 {
        app.ok(Some(alice), RELEASE, json!({ "h": "1-00" })).await;
    }
    assert_eq!(
        app.err_code(Some(alice), RELEASE, json!({ "h": "1-00" }))
            .await,
        "LIMIT_EXCEEDED"
    );
    // Reads are not mutations; other users have their own budget.
    app.ok(Some(alice), "{ me { id } }", json!({})).await;
    app.ok(Some(bob), RELEASE, json!({ "h": "1-00" })).await;
}

async fn mutations_over_the_address_budget_are_refused(b: Backend) {
    let app = TestApp::spawn_with(b, &["--rate-limit-ip-per-minute", "4"]).await;
    let bad_sign_up = "mutation { signUp(email: \"not-an-email\", password: \"x\") { token } }";
    for _ in 0..4 {
        assert_eq!(
            app.err_code(None, bad_sign_up, json!({})).await,
            "BAD_USER_INPUT"
        );
    }
    assert_eq!(
        app.err_code(None, bad_sign_up, json!({})).await,
        "LIMIT_EXCEEDED"
    );
}

async fn password_guessing_is_throttled(b: Backend) {
    let app = TestApp::spawn_with(b, &["--login-failures-per-15-minutes", "3"]).await;
    app.sign_up("victim@example.com").await;
    app.sign_up("bystander@example.com").await;
    let log_in = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }";
    for guess in ["123456", "password", "qwerty12"] {
        assert_eq!(
            app.err_code(
                None,
                log_in,
                json!({ "e": "victim@example.com", "p": guess })
            )
            .await,
            "UNAUTHENTICATED"
        );
    }
    // Even the right password is refused for the rest of the window (case-insensitive email).
    assert_eq!(
        app.err_code(
            None,
            log_in,
            json!({ "e": "Victim@Example.com", "p": crate::support::USER_PASSWORD })
        )
        .await,
        "LIMIT_EXCEEDED"
    );
    app.ok(
        None,
        log_in,
        json!({ "e": "bystander@example.com", "p": crate::support::USER_PASSWORD }),
    )
    .await;
}

async fn aliases_and_root_fields_are_capped(b: Backend) {
    let app = TestApp::spawn(b).await;
    let users = app.users(1).await;
    let many: String = (0..6)
        .map(|i| format!("r{i}: releaseHold(holdId: \"1-00\") "))
        .collect();
    assert_eq!(
        app.err_code(
            Some(&users[0].0),
            &format!("mutation {{ {many} }}"),
            json!({})
        )
        .await,
        "LIMIT_EXCEEDED"
    );
    let aliases: String = (0..31).map(|i| format!("a{i}: __typename ")).collect();
    assert_eq!(
        app.err_code(None, &format!("{{ {aliases} }}"), json!({}))
            .await,
        "LIMIT_EXCEEDED"
    );
    // Within the caps, fine.
    let few: String = (0..5)
        .map(|i| format!("r{i}: releaseHold(holdId: \"1-00\") "))
        .collect();
    app.ok(
        Some(&users[0].0),
        &format!("mutation {{ {few} }}"),
        json!({}),
    )
    .await;
}

/// Many mutations of the same accounts at the same moment (with Redis, their counts share round
/// trips and each account's counter is added to once per batch): each account gets exactly its
/// budget, whatever the interleaving — never one more, never one fewer.
async fn a_burst_gets_exactly_its_budget(b: Backend) {
    let app = TestApp::spawn_with(b, &["--rate-limit-user-per-minute", "10"]).await;
    let users = app.users(3).await;
    let app = &app;
    let burst = users.iter().flat_map(|(token, _)| {
        (0..30).map(move |_| app.gql(Some(token), RELEASE, json!({ "h": "1-00" })))
    });
    let answers = futures_util::future::join_all(burst).await;
    for (i, per_user) in answers.chunks(30).enumerate() {
        let ok = per_user
            .iter()
            .filter(|a| a.get("errors").is_none())
            .count();
        let refused = per_user
            .iter()
            .filter(|a| a["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED")
            .count();
        assert_eq!((ok, refused), (10, 20), "user {i}: {:?}", codes(per_user));
    }
}

/// Each answer's error code, or "ok".
fn codes(answers: &[serde_json::Value]) -> Vec<String> {
    answers
        .iter()
        .map(|a| match a["errors"][0]["extensions"]["code"].as_str() {
            Some(code) => code.to_string(),
            None => "ok".to_string(),
        })
        .collect()
}

backends!(
    a_burst_gets_exactly_its_budget,
    mutations_over_the_user_budget_are_refused,
    mutations_over_the_address_budget_are_refused,
    password_guessing_is_throttled,
    aliases_and_root_fields_are_capped
);

/// With Redis the budget is one for all instances: requests spread over two instances add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_are_shared_by_instances() {
    if crate::support::served_skipped() {
        return;
    }
    let a = TestApp::spawn_with(Backend::Served, &["--rate-limit-user-per-minute", "4"]).await;
    let b = a.spawn_peer(&["--rate-limit-user-per-minute", "4"]).await;
    let users = a.users(1).await;
    let t = &users[0].0;
    for app in [&a, &b, &a, &b] {
        app.ok(Some(t), RELEASE, json!({ "h": "1-00" })).await;
    }
    assert_eq!(
        a.err_code(Some(t), RELEASE, json!({ "h": "1-00" })).await,
        "LIMIT_EXCEEDED"
    );
    assert_eq!(
        b.err_code(Some(t), RELEASE, json!({ "h": "1-00" })).await,
        "LIMIT_EXCEEDED"
    );

    // A burst spread over both instances at once: one budget, counted exactly.
    let a = TestApp::spawn_with(Backend::Served, &["--rate-limit-user-per-minute", "25"]).await;
    let b = a.spawn_peer(&["--rate-limit-user-per-minute", "25"]).await;
    let users = a.users(1).await;
    let t = &users[0].0;
    let burst = (0..80).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.gql(Some(t), RELEASE, json!({ "h": "1-00" }))
    });
    let answers = futures_util::future::join_all(burst).await;
    let ok = answers.iter().filter(|x| x.get("errors").is_none()).count();
    let refused = answers
        .iter()
        .filter(|x| x["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED")
        .count();
    assert_eq!((ok, refused), (25, 55), "{:?}", codes(&answers));
}
