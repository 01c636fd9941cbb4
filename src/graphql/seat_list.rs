//! `Show.seats`, the full seat map, rendered once per map state and selection and shared by
//! every reader of that state.
//!
//! A 3,000-seat map resolved field by field is 15,000–40,000 resolver calls per request. Here a
//! plain selection (scalar fields of `Seat`, with or without aliases, no fragments or
//! directives) is rendered straight from the layout and the state, once per stamp, and each
//! request clones the rendered list and lays the viewer's own holds (`heldByMe`) over it. Any
//! other selection goes through the engine as before. The schema type stays `[Seat!]!`.
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};

use super::seat::{to_int, Seat};
use crate::catalogue::layout::{price_of, Layout, Prices};
use crate::catalogue::seatmap::{self, SeatStatus, SharedState};

/// What `Show.seats` returns: everything needed to render the map.
pub struct SeatList {
    pub show_id: i64,
    pub layout: Arc<Layout>,
    pub prices: Arc<Prices>,
    pub state: SharedState,
    pub viewer: Option<i64>,
}

/// A map rendered for one selection, and the stamp of the state it was rendered from.
type Rendered = (String, Arc<Vec<Value>>);

/// Rendered maps, one per (show, selection).
#[derive(Default)]
pub struct RenderedMaps(Mutex<HashMap<(i64, String), Rendered>>);

/// Rendered maps kept before the cache starts over.
const KEPT_MAPS: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum SeatField {
    Id,
    Row,
    Number,
    Label,
    Category,
    PriceCents,
    Status,
    HeldByMe,
    Wheelchair,
    Companion,
    RestrictedView,
    RowIndex,
    Column,
    Typename,
}

impl SeatField {
    fn of(name: &str) -> Option<SeatField> {
        Some(match name {
            "id" => SeatField::Id,
            "row" => SeatField::Row,
            "number" => SeatField::Number,
            "label" => SeatField::Label,
            "category" => SeatField::Category,
            "priceCents" => SeatField::PriceCents,
            "status" => SeatField::Status,
            "heldByMe" => SeatField::HeldByMe,
            "wheelchair" => SeatField::Wheelchair,
            "companion" => SeatField::Companion,
            "restrictedView" => SeatField::RestrictedView,
            "rowIndex" => SeatField::RowIndex,
            "column" => SeatField::Column,
            "__typename" => SeatField::Typename,
            _ => return None,
        })
    }
}

/// The response keys and fields of a plain selection; `None` for anything else (fragments,
/// directives, arguments, unknown fields), which the engine resolves.
fn plain(set: &SelectionSet) -> Option<Vec<(Name, SeatField)>> {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                let Field {
                    name,
                    arguments,
                    directives,
                    selection_set,
                    ..
                } = &f.node;
                if !arguments.is_empty()
                    || !directives.is_empty()
                    || !selection_set.node.items.is_empty()
                {
                    return None;
                }
                Some((
                    f.node.response_key().node.clone(),
                    SeatField::of(name.node.as_str())?,
                ))
            }
            _ => None,
        })
        .collect()
}

fn status_name(s: SeatStatus) -> &'static str {
    match s {
        SeatStatus::Available => "AVAILABLE",
        SeatStatus::Held => "HELD",
        SeatStatus::Booked => "BOOKED",
    }
}

impl SeatList {
    /// The map for nobody in particular (`heldByMe` false everywhere).
    fn render(&self, fields: &[(Name, SeatField)]) -> Vec<Value> {
        let status = Name::new(status_name(SeatStatus::Available));
        let (held, booked) = (
            Name::new(status_name(SeatStatus::Held)),
            Name::new(status_name(SeatStatus::Booked)),
        );
        self.layout
            .seats
            .iter()
            .map(|info| {
                let mut seat = async_graphql::indexmap::IndexMap::with_capacity(fields.len());
                for (key, field) in fields {
                    let v = match field {
                        SeatField::Id => Value::String(info.id.to_string()),
                        SeatField::Row => Value::String(info.row.clone()),
                        SeatField::Number => Value::from(info.number),
                        SeatField::Label => Value::String(info.label()),
                        SeatField::Category => Value::String(info.category.clone()),
                        SeatField::PriceCents => {
                            Value::from(to_int(price_of(&self.prices, &info.category)))
                        }
                        SeatField::Status => Value::Enum(match self.state.status(info.id) {
                            SeatStatus::Available => status.clone(),
                            SeatStatus::Held => held.clone(),
                            SeatStatus::Booked => booked.clone(),
                        }),
                        SeatField::HeldByMe => Value::Boolean(false),
                        SeatField::Wheelchair => Value::Boolean(info.wheelchair),
                        SeatField::Companion => Value::Boolean(info.companion),
                        SeatField::RestrictedView => Value::Boolean(info.restricted_view),
                        SeatField::RowIndex => Value::from(info.row_index),
                        SeatField::Column => Value::from(info.col_index),
                        SeatField::Typename => Value::String("Seat".into()),
                    };
                    seat.insert(key.clone(), v);
                }
                Value::Object(seat)
            })
            .collect()
    }

    /// The shared rendering of this state for this selection (rendered on first use).
    fn shared(&self, maps: Option<&RenderedMaps>, fields: &[(Name, SeatField)]) -> Arc<Vec<Value>> {
        let (Some(maps), Some(stamp)) = (maps, self.state.stamp.as_deref()) else {
            return Arc::new(self.render(fields));
        };
        let key = (
            self.show_id,
            fields
                .iter()
                .map(|(k, f)| format!("{}={}", k, *f as u8))
                .collect::<Vec<_>>()
                .join(","),
        );
        if let Some((s, v)) = maps.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if s == stamp {
                return v.clone();
            }
        }
        let rendered = Arc::new(self.render(fields));
        let mut kept = maps.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_MAPS {
            kept.clear();
        }
        kept.insert(key, (stamp.to_string(), rendered.clone()));
        rendered
    }
}

impl OutputType for SeatList {
    fn type_name() -> Cow<'static, str> {
        <Vec<Seat> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Seat> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Seat> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let Some(fields) = plain(&ctx.item.node) else {
            let seats: Vec<Seat> =
                seatmap::seat_views(&self.layout, &self.prices, &self.state, self.viewer)
                    .into_iter()
                    .map(Seat)
                    .collect();
            return OutputType::resolve(&seats, ctx, field).await;
        };
        let shared = self.shared(ctx.data_opt::<RenderedMaps>(), &fields);
        let mut list = (*shared).clone();
        // The viewer's own holds, laid over the shared map.
        let mine: Vec<&Name> = fields
            .iter()
            .filter(|(_, f)| *f == SeatField::HeldByMe)
            .map(|(k, _)| k)
            .collect();
        if let (Some(me), false) = (self.viewer, mine.is_empty()) {
            for (seat, holder) in &self.state.held {
                if holder.user_id != me || self.state.booked.contains(seat) {
                    continue;
                }
                let at = self.layout.position(*seat);
                if let Some(Value::Object(o)) = at.and_then(|p| list.get_mut(p)) {
                    for k in &mine {
                        o.insert((*k).clone(), Value::Boolean(true));
                    }
                }
            }
        }
        Ok(Value::List(list))
    }
}
