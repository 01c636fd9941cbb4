//! Every root field of a query or mutation answers within a bounded time. Each database and
//! Redis call already has its own timeouts where the drivers offer them (connect, acquire,
//! Redis response), but a statement on an established PostgreSQL connection has none: a slow or
//! frozen server, or a network that drops packets, would hold the request until TCP gives up.
//! So each root field gets a budget derived from `DEPENDENCY_TIMEOUT_MS` (plus the payment
//! timeout for the fields that charge or refund); past it the field answers
//! `SERVICE_UNAVAILABLE` (safe to retry). Work that moves money is detached and finishes on its
//! own (`graphql::booking::detached`), so a deadline never leaves a charge half-recorded.
use std::time::Duration;

use async_graphql::extensions::{ExtensionContext, NextResolve, ResolveInfo};
use async_graphql::{PathSegment, Pos, ServerResult, Value};

use crate::config::Config;
use crate::error::AppError;
use crate::state::AppState;

/// How long a root field may take.
pub fn budget(config: &Config, field: &str) -> Duration {
    let dep = config.dependency_timeout();
    match field {
        // Database, hold store, gateway, database again.
        "checkout" | "cancelBooking" => dep * 3 + config.payment_timeout(),
        // The password-hashing queue may hold a sign-in for a few seconds in a rush.
        "signUp" | "logIn" => dep * 2 + Duration::from_secs(10),
        _ => dep * 2,
    }
}

/// A field resolved within its budget: the schema extension's `resolve` hook
/// (`super::pipeline`), through which every field passes.
pub(super) async fn resolve(
    ctx: &ExtensionContext<'_>,
    info: ResolveInfo<'_>,
    next: NextResolve<'_>,
) -> ServerResult<Option<Value>> {
    // A subscription's root field resolves once per event, from memory (the stream was set
    // up before, outside this hook): no dependency to wait for, and no timer per delivery.
    let root = info.path_node.parent.is_none()
        && !info.is_for_introspection
        && !super::is_subscription_root(info.parent_type);
    // Every field passes here: the state is looked up only for a root field.
    let Some(state) = root.then(|| ctx.data_opt::<AppState>()).flatten() else {
        return next.run(ctx, info).await;
    };
    let budget = budget(&state.config, info.name);
    let name = info.alias.unwrap_or(info.name);
    match tokio::time::timeout(budget, next.run(ctx, info)).await {
        Ok(result) => result,
        Err(_) => {
            let key = name.to_string();
            metrics::counter!("graphql_deadline_exceeded_total", "field" => key.clone())
                .increment(1);
            tracing::warn!(field = %key, ?budget, "root field ran out of time");
            let mut e = async_graphql::Error::new_with_source(AppError::Unavailable(
                "a slow dependency (database or hold store)",
            ))
            .into_server_error(Pos::default());
            e.path = vec![PathSegment::Field(key)];
            Err(e)
        }
    }
}
