//! `seatUpdates(showId)`: every change of a show's seat map, in version order.
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, OutputType, Positioned, Result, ServerResult, SimpleObject,
    Subscription, Value, ID,
};
use futures_util::Stream;
use futures_util::StreamExt as _;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::types::{to_int, viewer, Seat};
use crate::catalogue::{seatmap, PricedShow};
use crate::error::AppError;
use crate::holds::SeatEvent;
use crate::ids::parse_id;
use crate::live::{Feed, LiveEvent};
use crate::state::AppState;

/// One change of a show's seat map. `version` is the previous one + 1: a client that sees a gap
/// missed an event and re-reads `show { version seats }`.
#[derive(SimpleObject)]
pub struct SeatUpdate {
    pub show_id: ID,
    pub version: i32,
    /// The seats that changed, with their new status.
    pub seats: Vec<Seat>,
    pub available_seats: i32,
    pub held_seats: i32,
    pub booked_seats: i32,
}

fn update(e: &SeatEvent, show: &PricedShow, me: Option<i64>) -> SeatUpdate {
    let seats = e
        .changes
        .iter()
        .filter_map(|c| {
            seatmap::changed_seat(
                &show.layout,
                &show.prices,
                c.seat_id,
                c.status,
                c.holder,
                me,
            )
        })
        .map(Seat)
        .collect();
    let total = show.layout.len() as i64;
    SeatUpdate {
        show_id: ID(e.show_id.to_string()),
        version: to_int(e.version),
        seats,
        available_seats: to_int(total - e.held - e.booked),
        held_seats: to_int(e.held),
        booked_seats: to_int(e.booked),
    }
}

/// Fields whose value depends on who is looking: a selection with one of them is rendered per
/// viewer, any other selection once for every viewer.
const PER_VIEWER_FIELDS: &[&str] = &["heldByMe"];

/// One event as one subscriber receives it. Resolving an event's fields for a selection was the
/// largest user-space cost of a delivery in a profile of 10,000 subscribers (serializing the
/// result: 1.5%; docs/BENCHMARKS.md, "Fan-out rendered once per selection"), and subscribers
/// mostly share a selection — the web page's, the simulator's — so the first subscriber of this
/// instance to need an event's rendering for a selection makes it and the others reuse it
/// (`LiveEvent::shared`). The type is `SeatUpdate` to the schema; the answer is exactly what
/// resolving `SeatUpdate` gives.
pub struct SharedUpdate {
    event: Arc<LiveEvent>,
    show: Arc<PricedShow>,
    me: Option<i64>,
    /// This subscription's selection key, made on its first event (`None`: not shared).
    key: Arc<OnceLock<Option<String>>>,
}

impl OutputType for SharedUpdate {
    fn type_name() -> Cow<'static, str> {
        <SeatUpdate as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <SeatUpdate as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let key = self
            .key
            .get_or_init(|| selection_key(ctx, &field.node, self.me))
            .as_deref();
        if let Some(value) = key.and_then(|k| self.event.shared.get::<Value>(k)) {
            metrics::counter!("live_renders_shared_total").increment(1);
            return Ok((*value).clone());
        }
        let value =
            OutputType::resolve(&update(&self.event, &self.show, self.me), ctx, field).await?;
        metrics::counter!("live_renders_total").increment(1);
        if let Some(k) = key {
            self.event.shared.put(k, value.clone());
        }
        Ok(value)
    }
}

/// The key under which a subscription's rendering of an event is shared: its selection spelt
/// out in full (fragments inlined, with their type conditions, arguments and directives), the
/// operation's variables and their defaults, and the viewer when the selection has a per-viewer
/// field. Equal keys mean the same fields with the same arguments and directives, so the same
/// answer. (The engine has already applied `@skip`/`@include` to the document it hands us — the
/// fields they drop are not there — and refuses unknown directives; variables are kept anyway,
/// so that a field argument taken from one can never be shared wrongly.) `None` (never shared)
/// when the selection is too large to be worth a key.
fn selection_key(ctx: &ContextSelectionSet<'_>, field: &Field, me: Option<i64>) -> Option<String> {
    const MAX_KEY: usize = 4096;
    let mut key = String::new();
    let mut per_viewer = false;
    write_selection(ctx, &field.selection_set.node, &mut key, &mut per_viewer, 0)?;
    // The variables as given, and the defaults of those not given.
    for (name, value) in ctx.query_env.variables.iter() {
        let _ = write!(key, " ${name}={value}");
    }
    for def in &ctx.query_env.operation.node.variable_definitions {
        if let Some(default) = &def.node.default_value {
            let _ = write!(key, " ${}?={}", def.node.name.node, default.node);
        }
    }
    if per_viewer {
        let _ = write!(key, " @viewer={me:?}");
    }
    (key.len() <= MAX_KEY).then_some(key)
}

fn write_selection(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    out: &mut String,
    per_viewer: &mut bool,
    depth: usize,
) -> Option<()> {
    // Validation bounds a document's depth long before this; fragments cycles are refused too.
    if depth > 32 {
        return None;
    }
    out.push('{');
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                let f = &f.node;
                if let Some(alias) = &f.alias {
                    let _ = write!(out, "{}:", alias.node);
                }
                out.push_str(&f.name.node);
                *per_viewer |= PER_VIEWER_FIELDS.contains(&f.name.node.as_str());
                for (name, value) in &f.arguments {
                    let _ = write!(out, "({}:{})", name.node, value.node);
                }
                for d in &f.directives {
                    let _ = write!(out, "{}", DirectiveKey(&d.node));
                }
                if !f.selection_set.node.items.is_empty() {
                    write_selection(ctx, &f.selection_set.node, out, per_viewer, depth + 1)?;
                }
            }
            Selection::FragmentSpread(spread) => {
                let spread = &spread.node;
                let fragment = ctx.query_env.fragments.get(&spread.fragment_name.node)?;
                let _ = write!(out, "...on {}", fragment.node.type_condition.node.on.node);
                for d in spread.directives.iter().chain(&fragment.node.directives) {
                    let _ = write!(out, "{}", DirectiveKey(&d.node));
                }
                write_selection(
                    ctx,
                    &fragment.node.selection_set.node,
                    out,
                    per_viewer,
                    depth + 1,
                )?;
            }
            Selection::InlineFragment(inline) => {
                let inline = &inline.node;
                out.push_str("...");
                if let Some(on) = &inline.type_condition {
                    let _ = write!(out, "on {}", on.node.on.node);
                }
                for d in &inline.directives {
                    let _ = write!(out, "{}", DirectiveKey(&d.node));
                }
                write_selection(ctx, &inline.selection_set.node, out, per_viewer, depth + 1)?;
            }
        }
        out.push(' ');
    }
    out.push('}');
    Some(())
}

struct DirectiveKey<'a>(&'a async_graphql::parser::types::Directive);

impl std::fmt::Display for DirectiveKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "@{}", self.0.name.node)?;
        for (name, value) in &self.0.arguments {
            write!(f, "({}:{})", name.node, value.node)?;
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// Seat status changes of one show. A subscriber too slow to keep up gets a
    /// `SERVICE_UNAVAILABLE` error and its stream ends: re-read the map and subscribe again.
    async fn seat_updates(
        &self,
        ctx: &Context<'_>,
        show_id: ID,
    ) -> Result<impl Stream<Item = Result<SharedUpdate>>> {
        let id = parse_id(&show_id, "show")?;
        let state = ctx.data_unchecked::<AppState>();
        let show = Arc::new(state.catalogue.priced_show(id).await?);
        let me = viewer(ctx).user_id();
        let sub = state.live.subscribe(id);
        let shutdown = state.shutdown.clone();
        // Items until the first error, which ends the stream at once (the client re-reads and
        // subscribes again), or until the server shuts down.
        let init = (sub, Some(show), shutdown);
        let key = Arc::new(OnceLock::new());
        Ok(futures_util::stream::unfold(
            init,
            move |(mut sub, show, shutdown)| {
                let key = key.clone();
                async move {
                    let show = show?;
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        next = sub.next() => next?,
                    };
                    let item = match next {
                        Ok(Feed::Event(event)) => Ok(SharedUpdate {
                            event,
                            show: show.clone(),
                            me,
                            key: key.clone(),
                        }),
                        Ok(Feed::Interrupted) => {
                            metrics::counter!("live_subscribers_interrupted_total").increment(1);
                            Err(AppError::Unavailable(
                            "the live seat feed (interrupted: re-read the seat map and subscribe again)",
                        ))
                        }
                        Err(BroadcastStreamRecvError::Lagged(missed)) => {
                            metrics::counter!("live_subscribers_dropped_total").increment(1);
                            tracing::info!(show = id, missed, "slow subscriber dropped");
                            Err(AppError::Unavailable(
                                "this live seat map (you fell behind)",
                            ))
                        }
                    };
                    let show = item.is_ok().then_some(show);
                    Some((item.map_err(Into::into), (sub, show, shutdown)))
                }
            },
        ))
    }
}
