//! Request-shape limits the engine does not have, and mutation rate limits, checked once the
//! document is parsed and before anything runs: at most `MAX_ALIASES` aliases and
//! `MAX_ROOT_FIELDS` root fields per operation (`MAX_ROOT_MUTATIONS` for mutations — aliases
//! would otherwise turn one request into a hundred holds), and every root mutation field counts
//! against the caller's per-user and per-address budgets.
use async_graphql::extensions::ExtensionContext;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};

use crate::auth::Viewer;
use crate::error::AppError;
use crate::limits::{ClientIp, Limits, Rule};
use crate::state::AppState;

pub const MAX_ALIASES: usize = 30;
pub const MAX_ROOT_FIELDS: usize = 20;
pub const MAX_ROOT_MUTATIONS: usize = 5;

fn refuse(e: AppError) -> ServerError {
    super::ext::error_of(&e)
}

/// Aliases in a selection set, fragments included once each.
fn aliases(doc: &ExecutableDocument, set: &SelectionSet, seen: &mut Vec<String>) -> usize {
    let mut n = 0;
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                n += usize::from(f.node.alias.is_some());
                n += aliases(doc, &f.node.selection_set.node, seen);
            }
            Selection::InlineFragment(fr) => n += aliases(doc, &fr.node.selection_set.node, seen),
            Selection::FragmentSpread(sp) => {
                let name = sp.node.fragment_name.node.to_string();
                if seen.contains(&name) {
                    continue;
                }
                seen.push(name.clone());
                if let Some(fr) = doc.fragments.get(sp.node.fragment_name.node.as_str()) {
                    n += aliases(doc, &fr.node.selection_set.node, seen);
                }
            }
        }
    }
    n
}

/// A parsed document checked against the shape limits (`wanted`: the request's
/// `operationName`), and a mutation's root fields charged against its caller's budgets.
pub(super) async fn check(
    ctx: &ExtensionContext<'_>,
    doc: &ExecutableDocument,
    wanted: Option<&str>,
) -> ServerResult<()> {
    let mut seen = Vec::new();
    let mut total_aliases = 0;
    for (_, op) in doc.operations.iter() {
        total_aliases += aliases(doc, &op.node.selection_set.node, &mut seen);
    }
    if total_aliases > MAX_ALIASES {
        return Err(refuse(AppError::LimitExceeded(format!(
            "at most {MAX_ALIASES} aliases in one request"
        ))));
    }
    let op = doc
        .operations
        .iter()
        .find(|(name, _)| match (wanted, name) {
            (Some(w), Some(n)) => n.as_str() == w,
            (None, _) => true,
            _ => false,
        })
        .map(|(_, op)| op);
    let Some(op) = op else {
        return Ok(()); // the engine reports the unknown operation
    };
    let roots = op.node.selection_set.node.items.len();
    let mutation = op.node.ty == OperationType::Mutation;
    let max = if mutation {
        MAX_ROOT_MUTATIONS
    } else {
        MAX_ROOT_FIELDS
    };
    if roots > max {
        return Err(refuse(AppError::LimitExceeded(format!(
            "at most {max} root fields in one {}",
            if mutation { "mutation" } else { "operation" }
        ))));
    }
    if mutation {
        if let Some(state) = ctx.data_opt::<AppState>() {
            charge(ctx, &state.limits, roots as u64).await?;
        }
    }
    Ok(())
}

/// A mutation's root fields counted against its account's and its address's budgets, in one
/// round trip to Redis (none when both limits are off).
async fn charge(ctx: &ExtensionContext<'_>, limits: &Limits, roots: u64) -> ServerResult<()> {
    let (per_user, per_ip) = (limits.mutations_per_user, limits.mutations_per_ip);
    let client = match ctx.data_opt::<Viewer>() {
        Some(Viewer::User { id, .. }) if per_user.limit > 0 => Some(format!("user:{id}")),
        Some(Viewer::ApiKey { id, .. }) if per_user.limit > 0 => Some(format!("key:{id}")),
        _ => None,
    };
    let ip = ctx
        .data_opt::<ClientIp>()
        .filter(|_| per_ip.limit > 0)
        .map(|ClientIp(ip)| format!("ip:{ip}"));
    let mut budgets: Vec<(&str, Rule, &str)> = Vec::new();
    if let Some(c) = &client {
        budgets.push((c, per_user, "requests from this account"));
    }
    if let Some(a) = &ip {
        budgets.push((a, per_ip, "requests from this address"));
    }
    if budgets.is_empty() {
        return Ok(());
    }
    limits.charge_all(&budgets, roots).await.map_err(refuse)
}
