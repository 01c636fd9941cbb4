//! Schema assembly. Resolvers are thin: they parse ids, check the viewer, call a service.
pub mod booking;
pub mod deadline;
pub mod documents;
pub mod ext;
pub mod guard;
pub mod holds;
pub mod integrations;
pub mod loaders;
pub mod mutation;
pub mod pipeline;
pub mod query;
pub mod queue;
pub mod reads;
pub mod seat;
pub mod seat_list;
pub mod subscription;
pub mod types;
pub mod validated;

use async_graphql::{MergedObject, MergedSubscription, Schema, SchemaBuilder};

use crate::state::AppState;

#[derive(MergedObject, Default)]
pub struct Query(
    query::CatalogueQuery,
    queue::QueueQuery,
    integrations::IntegrationsQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    mutation::AccountMutation,
    holds::HoldMutation,
    booking::BookingMutation,
    mutation::CatalogueMutation,
    queue::QueueMutation,
    integrations::IntegrationsMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(subscription::LiveSubscription, queue::QueueSubscription);

/// Whether a root field's parent type, as the engine names it to extensions, is one of the parts
/// of `Subscription` above: each part reports its own name (`LiveSubscription`,
/// `QueueSubscription`), not the merged `Subscription`. (A new part goes here too.)
pub(crate) fn is_subscription_root(parent_type: &str) -> bool {
    use async_graphql::SubscriptionType;
    [
        subscription::LiveSubscription::type_name(),
        queue::QueueSubscription::type_name(),
    ]
    .iter()
    .any(|name| name == parent_type)
}

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Depth and complexity limits: generous for real clients (the IDE's introspection query needs
/// depth 15 / recursive depth 17), small enough that a hostile query is refused before it runs.
pub const MAX_DEPTH: usize = 16;
pub const MAX_RECURSIVE_DEPTH: usize = 32;
pub const MAX_COMPLEXITY: usize = 1000;

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    // One extension for every step the service adds (an extension costs every field a pass).
    .extension(pipeline::Pipeline::default())
}

pub fn build_schema(state: AppState) -> AppSchema {
    let mut b = builder();
    if !state.config.graphql_introspection {
        b = b.disable_introspection();
    }
    b.data(seat_list::RenderedMaps::default())
        .data(state)
        .finish()
}

/// The schema's SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
