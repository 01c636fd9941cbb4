//! `/metrics` counts every request from the start, not from its first scrape (the recorder used
//! to be installed by the first scrape, so a server's earlier traffic was lost).
use serde_json::json;

use crate::support::{process_env, Backend, ServerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_served_before_the_first_scrape() {
    // A process of its own: the recorder is process-wide, and this must be its first scrape.
    let (_db, env) = process_env(Backend::Embedded, &[]).await;
    let server = ServerProcess::start(&env).await;
    for _ in 0..12 {
        server
            .api
            .ok(
                None,
                "{ shows(first: 5) { edges { node { id } } } }",
                json!({}),
            )
            .await;
    }
    let body = server.api.metrics().await;
    let counted: f64 = body
        .lines()
        .filter(|l| {
            l.starts_with("graphql_requests_total{")
                && l.contains("operation=\"query:shows\"")
                && l.contains("outcome=\"ok\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    // The readiness probe's and start-up's own queries are not `shows`: exactly our twelve.
    assert_eq!(counted, 12.0, "graphql_requests_total in:\n{body}");
    let http: f64 = body
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/graphql\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(
        http >= 12.0,
        "http_requests_total for /graphql: {http}\n{body}"
    );
}
