//! The integration suite, one binary: a module per area, `support` for the harness (database,
//! Redis, in-process server, server process, WebSocket client, fault proxy). Every test drives
//! the real service over HTTP/WebSocket, on SQLite + in-process holds and on PostgreSQL + Redis
//! (`backends!`).
#[macro_use]
mod support;

mod accounts;
mod audit;
mod best;
mod catalogue;
mod checkout;
mod cluster;
mod compact;
mod config;
mod crash;
mod database_rules;
mod examples;
mod faults;
mod holds;
mod integrations;
mod limits;
mod live;
mod metrics;
mod overload;
mod parsers;
mod queue;
mod reads;
mod renders;
mod schema;
mod simulate;
mod sockets;
mod webhooks;
