//! Request-shape limits the engine does not have, and mutation rate limits, checked once the
//! document is parsed and before anything runs: at most `MAX_ALIASES` aliases and
//! `MAX_ROOT_FIELDS` root fields per operation (`MAX_ROOT_MUTATIONS` for mutations — aliases
//! would otherwise turn one request into a hundred holds), and every root mutation field counts
//! against the caller's per-user and per-address budgets.
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Request, ServerError, ServerResult, Variables};

use crate::auth::Viewer;
use crate::error::AppError;
use crate::limits::ClientIp;
use crate::state::AppState;

pub const MAX_ALIASES: usize = 30;
pub const MAX_ROOT_FIELDS: usize = 20;
pub const MAX_ROOT_MUTATIONS: usize = 5;

pub struct Guard;

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExt {
            operation: Mutex::new(None),
        })
    }
}

struct GuardExt {
    operation: Mutex<Option<String>>,
}

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

#[async_trait::async_trait]
impl Extension for GuardExt {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut op) = self.operation.lock() {
            op.clone_from(&request.operation_name);
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let mut seen = Vec::new();
        let mut total_aliases = 0;
        for (_, op) in doc.operations.iter() {
            total_aliases += aliases(&doc, &op.node.selection_set.node, &mut seen);
        }
        if total_aliases > MAX_ALIASES {
            return Err(refuse(AppError::LimitExceeded(format!(
                "at most {MAX_ALIASES} aliases in one request"
            ))));
        }
        let wanted = self.operation.lock().ok().and_then(|o| o.clone());
        let op = doc
            .operations
            .iter()
            .find(|(name, _)| match (&wanted, name) {
                (Some(w), Some(n)) => n.as_str() == w,
                (None, _) => true,
                _ => false,
            })
            .map(|(_, op)| op);
        let Some(op) = op else {
            return Ok(doc); // the engine reports the unknown operation
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
                let limits = &state.limits;
                let client = match ctx.data_opt::<Viewer>() {
                    Some(Viewer::User { id, .. }) => Some(format!("user:{id}")),
                    Some(Viewer::ApiKey { id, .. }) => Some(format!("key:{id}")),
                    _ => None,
                };
                let ip = ctx
                    .data_opt::<ClientIp>()
                    .map(|ClientIp(ip)| format!("ip:{ip}"));
                // Both budgets in one round trip to Redis.
                let mut budgets: Vec<(&str, crate::limits::Rule, &str)> = Vec::new();
                if let Some(c) = &client {
                    budgets.push((c, limits.mutations_per_user, "requests from this account"));
                }
                if let Some(a) = &ip {
                    budgets.push((a, limits.mutations_per_ip, "requests from this address"));
                }
                limits
                    .charge_all(&budgets, roots as u64)
                    .await
                    .map_err(refuse)?;
            }
        }
        Ok(doc)
    }
}
