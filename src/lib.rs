//! boxoffice — a ticket booking service: GraphQL API, live seat maps, atomic seat holds.
//!
//! Layers depend downward only: `http` → `graphql` → services (`catalogue`, `auth`, `holds`,
//! `booking`) → `entity` and the stores.
pub mod app;
pub mod auth;
pub mod booking;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod holds;
pub mod http;
pub mod ids;
pub mod limits;
pub mod live;
pub mod payment;
pub mod telemetry;
