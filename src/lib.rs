//! boxoffice — a ticket booking service: GraphQL API, live seat maps, atomic seat holds.
//!
//! Layers depend downward only: `app` (the builder) → `http` → `graphql` → `state` → services
//! (`queue`, `booking` → `holds` → `catalogue`, `auth`, `payment`, `limits`, `live`) → `db`, `error`,
//! `ids` → `entity`. `main.rs` parses the command line and dispatches; the load tools live in
//! their own crate (`loadtest/`).
pub mod app;
pub mod audit;
pub mod auth;
pub mod booking;
pub mod catalogue;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod group_commit;
pub mod holds;
pub mod http;
pub mod ids;
pub mod limits;
pub mod live;
pub mod payment;
pub mod queue;
pub mod redis_conn;
pub mod state;
pub mod telemetry;
pub mod webhooks;
