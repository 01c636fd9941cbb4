//! Reads cannot starve writes.
//!
//! - **A read budget per client** (`READ_BUDGET_PER_SECOND`): every query costs units by what it
//!   selects — 1 for the request, plus 10 for a full seat map (`Show.seats`), 4 for a page of
//!   `shows`, 2 for a layout, 1 for compact statuses, 2 for bookings — charged to a token
//!   bucket per signed-in user, or per client address for anonymous callers, that refills at
//!   the budget per second and holds five seconds of it. A query over budget is refused with
//!   `LIMIT_EXCEEDED` and `retryAfterSeconds` before it runs. The buckets live in each instance
//!   (no round trip added to a read): a client spread over N instances gets N budgets, in
//!   proportion to the capacity serving it.
//! - **Reads in flight** (`READ_CONCURRENCY` per instance): a query waits up to
//!   `READ_QUEUE_MS` for a slot, then is refused with `SERVICE_UNAVAILABLE` and a retry hint.
//!   Mutations never wait here: under overload the server sheds reads before holds and
//!   checkouts.
use std::time::Duration;

use async_graphql::extensions::{ExtensionContext, NextExecute};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Response, ServerResult};

use super::ext::error_of;
use crate::auth::Viewer;
use crate::error::AppError;
use crate::limits::{ClientIp, Reader};
use crate::state::AppState;

/// What each field costs on top of the request's 1 (by field name; the children of a layout are
/// part of the layout).
fn weight(field: &str) -> (u64, bool) {
    match field {
        "seats" => (10, true),
        "shows" => (4, true),
        "seatLayout" => (2, false),
        "seatStatuses" => (1, true),
        "myBookings" | "bookings" => (2, true),
        _ => (0, true),
    }
}

/// The cost of a query: 1 plus the weights of what it selects (fragments counted where used).
pub fn cost(doc: &ExecutableDocument) -> u64 {
    fn walk(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> u64 {
        if depth > 32 {
            return 0;
        }
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => {
                    let (w, deeper) = weight(f.node.name.node.as_str());
                    w + if deeper {
                        walk(doc, &f.node.selection_set.node, depth + 1)
                    } else {
                        0
                    }
                }
                Selection::InlineFragment(i) => walk(doc, &i.node.selection_set.node, depth + 1),
                Selection::FragmentSpread(s) => doc
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .map_or(0, |f| walk(doc, &f.node.selection_set.node, depth + 1)),
            })
            .sum()
    }
    1 + doc
        .operations
        .iter()
        .map(|(_, op)| walk(doc, &op.node.selection_set.node, 0))
        .sum::<u64>()
}

/// Every operation of the document is a query (a read).
pub(super) fn only_queries(doc: &ExecutableDocument) -> bool {
    doc.operations
        .iter()
        .all(|(_, op)| op.node.ty == OperationType::Query)
}

/// The read budget, charged once a document is parsed: `true` when the operation is a query
/// (which then waits for a read slot, `execute`).
pub(super) fn charge(ctx: &ExtensionContext<'_>, doc: &ExecutableDocument) -> ServerResult<bool> {
    let reads = only_queries(doc);
    let Some(limits) = ctx.data_opt::<AppState>().map(|s| &s.limits.reads) else {
        return Ok(false);
    };
    if !reads {
        return Ok(false);
    }
    let reader = Reader::of(ctx.data_opt::<Viewer>(), ctx.data_opt::<ClientIp>());
    limits.charge(reader, cost(doc)).map_err(|e| error_of(&e))?;
    Ok(true)
}

/// An operation run, a query once it has a read slot (or refused when none came in time).
pub(super) async fn execute(
    query: bool,
    ctx: &ExtensionContext<'_>,
    operation_name: Option<&str>,
    next: NextExecute<'_>,
) -> Response {
    let limits = ctx.data_opt::<AppState>().map(|s| &s.limits.reads);
    let _slot = match (query, limits) {
        (true, Some(limits)) => match limits.slot().await {
            Some(p) => Some(p),
            None => {
                metrics::counter!("read_sheds_total").increment(1);
                let busy = AppError::Busy {
                    retry_after: Duration::from_secs(1),
                };
                return Response::from_errors(vec![error_of(&busy)]);
            }
        },
        _ => None,
    };
    next.run(ctx, operation_name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_of(q: &str) -> u64 {
        cost(&async_graphql::parser::parse_query(q).expect("parses"))
    }

    #[test]
    fn a_full_map_costs_more_than_a_page_of_shows() {
        assert_eq!(cost_of("{ __typename }"), 1);
        assert_eq!(cost_of("{ show(id: 1) { seats { id status } } }"), 11);
        assert_eq!(cost_of("{ shows { edges { node { id } } } }"), 5);
        // A layout's own seats are part of the layout.
        assert_eq!(
            cost_of("{ show(id: 1) { seatLayout { seats { id } } seatStatuses { statuses } } }"),
            4
        );
        assert_eq!(
            cost_of("{ show(id: 1) { ...F } } fragment F on Show { seats { id } }"),
            11
        );
    }
}
