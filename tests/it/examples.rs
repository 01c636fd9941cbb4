//! The example operations in `playground/examples` run green against the server (demo data).

use crate::support::{Backend, TestApp, WsClient};
use serde_json::json;

async fn playground_examples_run_green(b: Backend) {
    let app = TestApp::spawn_with(b, &["--demo-data", "true"]).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/playground/examples");
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("graphql") {
            continue;
        }
        let query = std::fs::read_to_string(&path).unwrap();
        if query.contains("subscription") {
            // Subscriptions: the operation is accepted and streams without error.
            let mut ws = WsClient::connect(&app.base, None).await.unwrap();
            ws.subscribe("1", &query, json!({})).await;
            let msg = ws.next(std::time::Duration::from_millis(500)).await;
            assert!(
                msg.is_none() || msg.as_ref().unwrap()["type"] == "next",
                "{}: {msg:?}",
                path.display()
            );
        } else {
            app.ok(None, &query, json!({})).await;
        }
        ran += 1;
    }
    assert!(ran >= 4);
}

backends!(playground_examples_run_green);
