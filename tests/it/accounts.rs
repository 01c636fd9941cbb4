//! Accounts and authentication through the real router.

use crate::support::{Backend, TestApp, JWT_SECRET};
use base64::Engine;
use serde_json::json;

const ME: &str = "{ me { id email role } }";
const MY_BOOKINGS: &str = "{ myBookings { id } }";

async fn sign_up_log_in_and_me(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (token, id) = app.sign_up("Alice@Example.com").await;
    let me = app.ok(Some(&token), ME, json!({})).await;
    assert_eq!(me["me"]["id"], id);
    assert_eq!(
        me["me"]["email"], "alice@example.com",
        "emails are stored lower-cased"
    );
    assert_eq!(me["me"]["role"], "customer");

    let login = app
        .ok(None, "mutation { logIn(email: \" ALICE@example.com \", password: \"correct horse battery\") { token user { id } } }", json!({}))
        .await;
    assert_eq!(login["logIn"]["user"]["id"], id);
    assert_eq!(
        app.ok(None, ME, json!({})).await["me"],
        serde_json::Value::Null,
        "anonymous me is null"
    );
    assert_eq!(
        app.ok(Some(&token), MY_BOOKINGS, json!({})).await["myBookings"],
        json!([])
    );
}

async fn bad_sign_ups_are_bad_user_input(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.sign_up("bob@example.com").await;
    let q = "mutation($e: String!, $p: String!) { signUp(email: $e, password: $p) { token } }";
    for (email, pwd) in [
        ("bob@example.com", "another good password"),
        ("BOB@example.com", "another good password"),
        ("not-an-email", "another good password"),
        ("carol@example.com", "short"),
        ("carol@example.com", "aaaaaaaaaaaa"),
    ] {
        assert_eq!(
            app.err_code(None, q, json!({ "e": email, "p": pwd })).await,
            "BAD_USER_INPUT",
            "{email} / {pwd}"
        );
    }
}

async fn wrong_credentials_are_unauthenticated(b: Backend) {
    let app = TestApp::spawn(b).await;
    app.sign_up("dave@example.com").await;
    let q = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }";
    assert_eq!(
        app.err_code(
            None,
            q,
            json!({ "e": "dave@example.com", "p": "wrong password!" })
        )
        .await,
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.err_code(
            None,
            q,
            json!({ "e": "nobody@example.com", "p": "whatever123" })
        )
        .await,
        "UNAUTHENTICATED"
    );
}

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn hs(alg: jsonwebtoken::Algorithm, secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn bad_tokens_are_unauthenticated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, id) = app.sign_up("eve@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| json!({ "sub": id, "role": "admin", "iss": "boxoffice", "aud": "boxoffice", "iat": now, "exp": exp });

    let expired = hs(
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET,
        claims(now - 3600),
    );
    let forged = hs(
        jsonwebtoken::Algorithm::HS256,
        "some-other-secret-entirely-0000",
        claims(now + 3600),
    );
    let wrong_alg = hs(
        jsonwebtoken::Algorithm::HS512,
        JWT_SECRET,
        claims(now + 3600),
    );
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&claims(now + 3600))
    );
    let no_exp = hs(
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET,
        json!({ "sub": id, "role": "admin", "iss": "boxoffice", "aud": "boxoffice" }),
    );
    let wrong_aud = hs(
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET,
        json!({ "sub": id, "role": "admin", "iss": "boxoffice", "aud": "elsewhere", "exp": now + 3600 }),
    );

    for (what, token) in [
        ("expired", expired.as_str()),
        ("forged", forged.as_str()),
        ("HS512", wrong_alg.as_str()),
        ("alg none", alg_none.as_str()),
        ("no exp", no_exp.as_str()),
        ("wrong aud", wrong_aud.as_str()),
        ("garbage", "not.a.jwt"),
    ] {
        assert_eq!(
            app.err_code(Some(token), MY_BOOKINGS, json!({})).await,
            "UNAUTHENTICATED",
            "{what}"
        );
        assert_eq!(
            app.err_code(Some(token), ME, json!({})).await,
            "UNAUTHENTICATED",
            "{what} on me"
        );
        // A bad token never grants admin.
        let code = app
            .err_code(
                Some(token),
                "mutation { createMovie(title: \"X\", durationMinutes: 90) { id } }",
                json!({}),
            )
            .await;
        assert_eq!(code, "UNAUTHENTICATED", "{what} on an admin mutation");
    }
    // No token at all.
    assert_eq!(
        app.err_code(None, MY_BOOKINGS, json!({})).await,
        "UNAUTHENTICATED"
    );
    // Public fields still answer with a bad token.
    let body = app
        .gql(
            Some("not.a.jwt"),
            "{ shows { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

async fn customers_cannot_run_admin_mutations(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (token, _) = app.sign_up("frank@example.com").await;
    for m in [
        "mutation { createVenue(name: \"V\", city: \"C\") { id } }",
        "mutation { createMovie(title: \"X\", durationMinutes: 90) { id } }",
        "mutation { createScreen(venueId: \"1\", name: \"S\", rows: [{label: \"A\", seats: 3}]) { id } }",
        "mutation { createShow(movieId: \"1\", screenId: \"1\", startsAt: \"2030-01-01T10:00:00Z\", prices: []) { id } }",
    ] {
        assert_eq!(app.err_code(Some(&token), m, json!({})).await, "FORBIDDEN", "{m}");
        assert_eq!(app.err_code(None, m, json!({})).await, "UNAUTHENTICATED", "{m}");
    }
}

backends!(
    sign_up_log_in_and_me,
    bad_sign_ups_are_bad_user_input,
    wrong_credentials_are_unauthenticated,
    bad_tokens_are_unauthenticated,
    customers_cannot_run_admin_mutations,
);
