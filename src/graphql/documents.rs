//! Parsed documents, kept: automatic persisted queries (APQ), a parse cache for every request,
//! and what a `GET /graphql` may run and cache.
//!
//! - **APQ** (Apollo's protocol, version 1): a request with
//!   `extensions.persistedQuery.sha256Hash` and no text runs the document registered under that
//!   hash, or fails with `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`) so the
//!   client sends the text once; a request with both registers it (the hash must match).
//! - **Parse cache**: a client sends the same few documents over and over; each is parsed once
//!   (keyed by the SHA-256 of its text, the same key as APQ) and the parsed form is reused.
//! - **Validation kept**: a document that passed the engine's rules is not validated again for
//!   variables the rules see alike (`super::validated`).
//! - **GET**: queries only — a mutation or subscription is refused before anything runs. A query
//!   that reads only immutable data (a show's times, movie, screen, prices and seat layout) is
//!   marked cacheable; the HTTP layer then sends `Cache-Control` and an `ETag`.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::ids::sha256_hex;
use async_graphql::extensions::{ExtensionContext, NextValidation};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{Request, ServerError, ServerResult, ValidationResult, Variables};

use super::ext::error_of;
use super::validated::{check, Check, Validations};
use crate::error::AppError;

/// Documents kept before the cache starts over (a client flooding distinct documents costs us
/// a reparse, never memory).
const KEPT_DOCUMENTS: usize = 2048;
/// Longer documents are parsed every time (and cannot be persisted).
const MAX_KEPT_LEN: usize = 16 * 1024;

/// `graphql_documents_total` by source, its handles looked up once (see `telemetry::Series`).
struct DocumentCounts {
    persisted: metrics::Counter,
    kept: metrics::Counter,
    parsed: metrics::Counter,
}

static DOCUMENTS: LazyLock<DocumentCounts> = LazyLock::new(|| DocumentCounts {
    persisted: metrics::counter!("graphql_documents_total", "source" => "persisted"),
    kept: metrics::counter!("graphql_documents_total", "source" => "kept"),
    parsed: metrics::counter!("graphql_documents_total", "source" => "parsed"),
});

/// The documents and validation results kept, shared by every request.
#[derive(Default)]
pub struct Documents {
    kept: Mutex<HashMap<String, ExecutableDocument>>,
    validations: Validations,
}

/// A request's `operationName` and the key its document is kept under (if it is).
#[derive(Default)]
struct Named {
    operation: Option<String>,
    key: Option<String>,
}

/// What one request's steps hand on to the next.
#[derive(Default)]
pub(super) struct DocumentRequest {
    /// What names this request's document and operation, before it is parsed.
    request: Mutex<Named>,
    /// What its validation checks first and keeps under, once its document is parsed.
    check: Mutex<Check>,
}

/// Request data for the HTTP layer's shared map answers (`http::responses`): whether the
/// document reads nothing but a show's immutable data and its live seat map (no per-viewer
/// field but the `M` of `seatStatuses`), what it costs, and the map states it read.
#[derive(Default)]
pub struct MapRecorder {
    pub map_only: AtomicBool,
    /// The answer differs for a viewer who holds seats (`seatStatuses` shows them as `M`).
    pub per_viewer: AtomicBool,
    pub cost: std::sync::atomic::AtomicU64,
    states: Mutex<Vec<(i64, Option<String>)>>,
}

impl MapRecorder {
    /// A show's state was read (its stamp: `None` when it cannot be reused).
    /// (Each counted field of a listed show reports it: kept once per show and stamp.)
    pub fn saw(&self, show_id: i64, stamp: Option<String>) {
        let seen = (show_id, stamp);
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if !states.contains(&seen) {
            states.push(seen);
        }
    }
    pub fn states(&self) -> Vec<(i64, Option<String>)> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Request data of a `GET /graphql`: filled in by the parse step for the HTTP layer.
#[derive(Default)]
pub struct GetRequest {
    /// The document reads only immutable data (set once parsed).
    pub cacheable: AtomicBool,
    /// The document was refused: it is not a query.
    pub refused: AtomicBool,
}

impl Documents {
    fn get(&self, key: &str) -> Option<ExecutableDocument> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn keep(&self, key: String, doc: &ExecutableDocument) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_DOCUMENTS {
            kept.clear();
        }
        kept.insert(key, doc.clone());
    }

    /// The request's document and the key it is kept under, from the cache or parsed (and
    /// kept); `None` leaves parsing (and its error) to the engine.
    fn document(
        &self,
        request: &mut Request,
    ) -> ServerResult<Option<(String, ExecutableDocument)>> {
        let persisted = request.extensions.remove("persistedQuery");
        if let Some(p) = persisted {
            let hash = match (&p, p.clone().into_json().ok()) {
                (_, Some(serde_json::Value::Object(o)))
                    if o.get("version").and_then(|v| v.as_i64()) == Some(1) =>
                {
                    o.get("sha256Hash")
                        .and_then(|h| h.as_str())
                        .map(str::to_ascii_lowercase)
                }
                _ => None,
            };
            let Some(hash) = hash else {
                return Err(error_of(&AppError::bad_input(
                    "persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<hex>\"}",
                )));
            };
            if request.query.is_empty() {
                DOCUMENTS.persisted.increment(1);
                return match self.get(&hash) {
                    Some(doc) => Ok(Some((hash, doc))),
                    None => Err(error_of(&AppError::PersistedQueryNotFound)),
                };
            }
            if sha256_hex(&request.query) != hash {
                return Err(error_of(&AppError::bad_input(
                    "persistedQuery.sha256Hash is not the SHA-256 of the query",
                )));
            }
            if request.query.len() > MAX_KEPT_LEN {
                return Err(error_of(&AppError::bad_input(format!(
                    "a persisted query is at most {MAX_KEPT_LEN} bytes"
                ))));
            }
        }
        if request.query.is_empty() || request.query.len() > MAX_KEPT_LEN {
            return Ok(None);
        }
        let key = sha256_hex(&request.query);
        if let Some(doc) = self.get(&key) {
            DOCUMENTS.kept.increment(1);
            return Ok(Some((key, doc)));
        }
        DOCUMENTS.parsed.increment(1);
        // A syntax error is left to the engine, which reports it the usual way.
        match async_graphql::parser::parse_query(&request.query) {
            Ok(doc) => {
                self.keep(key.clone(), &doc);
                Ok(Some((key, doc)))
            }
            Err(_) => Ok(None),
        }
    }

    /// The `prepare_request` step: the request's document from the cache (or parsed and kept),
    /// handed to the engine parsed.
    pub(super) fn prepare(
        &self,
        mine: &DocumentRequest,
        request: &mut Request,
    ) -> ServerResult<()> {
        let mut key = None;
        if let Some((k, doc)) = self.document(request)? {
            request.set_parsed_query(doc);
            key = Some(k);
        }
        *mine.request.lock().unwrap_or_else(|p| p.into_inner()) = Named {
            operation: request.operation_name.clone(),
            key,
        };
        Ok(())
    }

    /// The `validation` step: a kept result, or the engine's rules (`super::validated`).
    pub(super) async fn validate(
        &self,
        mine: &DocumentRequest,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let check = std::mem::take(&mut *mine.check.lock().unwrap_or_else(|p| p.into_inner()));
        self.validations.validate(check, ctx, next).await
    }
}

impl DocumentRequest {
    /// The request's `operationName`.
    pub(super) fn operation(&self) -> Option<String> {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .operation
            .clone()
    }

    /// The parsed document's step: what its validation checks, a `GET` refused unless it only
    /// reads, and what the HTTP layer may cache or share of its answer.
    pub(super) fn parsed(
        &self,
        ctx: &ExtensionContext<'_>,
        doc: &ExecutableDocument,
        variables: &Variables,
    ) -> ServerResult<()> {
        let found = {
            let request = self.request.lock().unwrap_or_else(|p| p.into_inner());
            check(
                doc,
                request.operation.as_deref(),
                request.key.as_deref(),
                variables,
            )
        };
        *self.check.lock().unwrap_or_else(|p| p.into_inner()) = found;
        if let Some(get) = ctx.data_opt::<Arc<GetRequest>>() {
            if !super::reads::only_queries(doc) {
                get.refused.store(true, Ordering::Relaxed);
                return Err(error_of(&AppError::bad_input(
                    "GET runs queries only: send mutations as POST, subscriptions over the WebSocket",
                )));
            }
        }
        let immutable = immutable(doc);
        if let Some(get) = ctx.data_opt::<Arc<GetRequest>>() {
            get.cacheable.store(immutable, Ordering::Relaxed);
        }
        if let Some(r) = ctx.data_opt::<Arc<MapRecorder>>() {
            // Queries only (`selects_only` holds every operation to `Query`).
            let map_only = !immutable && selects_only(doc, map_field);
            r.map_only.store(map_only, Ordering::Relaxed);
            // What only a shared answer needs.
            if map_only {
                r.cost.store(super::reads::cost(doc), Ordering::Relaxed);
                let statuses_aside = |t: &str, f: &str| match f {
                    "seatStatuses" => None,
                    _ => map_field(t, f),
                };
                r.per_viewer
                    .store(!selects_only(doc, statuses_aside), Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// What a field of an immutable type leads to: `Some(None)` a scalar (or list of scalars),
/// `Some(Some(type))` an object of that type, `None` a field whose value may change (or one
/// this table does not know: not cacheable). Shows, movies, screens, venues, layouts and prices
/// are never changed once created (the schema has no mutation that would).
fn immutable_field(ty: &str, field: &str) -> Option<Option<&'static str>> {
    const SCALAR: Option<Option<&str>> = Some(None);
    match (ty, field) {
        (_, "__typename") => SCALAR,
        ("Query", "show") => Some(Some("Show")),
        ("Show", "id" | "startsAt" | "endsAt") => SCALAR,
        ("Show", "movie") => Some(Some("Movie")),
        ("Show", "screen") => Some(Some("Screen")),
        ("Show", "seatLayout") => Some(Some("LayoutRow")),
        ("Show", "prices") => Some(Some("CategoryPrice")),
        ("LayoutRow", "label" | "rowIndex") => SCALAR,
        ("LayoutRow", "seats") => Some(Some("LayoutSeat")),
        (
            "LayoutSeat",
            "id" | "number" | "column" | "category" | "priceCents" | "wheelchair" | "companion"
            | "restrictedView",
        ) => SCALAR,
        ("Movie", "id" | "title" | "durationMinutes") => SCALAR,
        ("Screen", "id" | "name" | "totalSeats" | "categories") => SCALAR,
        ("Screen", "venue") => Some(Some("Venue")),
        ("Screen", "bestPoint") => Some(Some("BestPoint")),
        ("Venue", "id" | "name" | "city") => SCALAR,
        ("BestPoint", "row" | "column") => SCALAR,
        ("CategoryPrice", "category" | "priceCents") => SCALAR,
        _ => None,
    }
}

/// A field of a show's seat map: immutable, or live but derived from the map state alone and the
/// same for every viewer who holds nothing on the show (`heldByMe` is left out).
fn map_field(ty: &str, field: &str) -> Option<Option<&'static str>> {
    const SCALAR: Option<Option<&str>> = Some(None);
    immutable_field(ty, field).or(match (ty, field) {
        (
            "Show",
            "version" | "holdsKnown" | "totalSeats" | "availableSeats" | "heldSeats"
            | "bookedSeats",
        ) => SCALAR,
        ("Show", "seats") => Some(Some("Seat")),
        ("Show", "seatStatuses") => Some(Some("SeatStatuses")),
        (
            "Seat",
            "id" | "row" | "number" | "label" | "category" | "priceCents" | "status" | "wheelchair"
            | "companion" | "restrictedView" | "rowIndex" | "column",
        ) => SCALAR,
        ("SeatStatuses", "version" | "holdsKnown" | "statuses") => SCALAR,
        // A page of the show list is itself kept for `catalogue::kept::PAGE_FRESH`, and so is
        // a shared answer (`http::responses`).
        ("Query", "shows") => Some(Some("ShowConnection")),
        ("ShowConnection", "edges") => Some(Some("ShowEdge")),
        ("ShowConnection", "nodes") => Some(Some("Show")),
        ("ShowConnection", "pageInfo") => Some(Some("PageInfo")),
        ("ShowEdge", "cursor") => SCALAR,
        ("ShowEdge", "node") => Some(Some("Show")),
        ("PageInfo", "hasNextPage" | "hasPreviousPage" | "startCursor" | "endCursor") => SCALAR,
        _ => None,
    })
}

type FieldTable = fn(&str, &str) -> Option<Option<&'static str>>;

/// True when every field any operation of the document selects is immutable.
fn immutable(doc: &ExecutableDocument) -> bool {
    selects_only(doc, immutable_field)
}

/// True when every field any operation of the document selects is in `table`.
fn selects_only(doc: &ExecutableDocument, table: FieldTable) -> bool {
    let ops: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    ops.iter().all(|op| {
        op.node.ty == OperationType::Query
            && walk(doc, table, "Query", &op.node.selection_set.node, 0)
    })
}

fn walk(
    doc: &ExecutableDocument,
    table: FieldTable,
    ty: &str,
    set: &SelectionSet,
    depth: usize,
) -> bool {
    if depth > 32 {
        return false;
    }
    set.items.iter().all(|item| match &item.node {
        Selection::Field(f) => match table(ty, f.node.name.node.as_str()) {
            Some(None) => f.node.selection_set.node.items.is_empty(),
            Some(Some(child)) => walk(doc, table, child, &f.node.selection_set.node, depth + 1),
            None => false,
        },
        Selection::FragmentSpread(s) => {
            doc.fragments
                .get(&s.node.fragment_name.node)
                .is_some_and(|f| {
                    f.node.type_condition.node.on.node.as_str() == ty
                        && walk(doc, table, ty, &f.node.selection_set.node, depth + 1)
                })
        }
        Selection::InlineFragment(i) => {
            i.node
                .type_condition
                .as_ref()
                .is_none_or(|c| c.node.on.node.as_str() == ty)
                && walk(doc, table, ty, &i.node.selection_set.node, depth + 1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cacheable(q: &str) -> bool {
        immutable(&async_graphql::parser::parse_query(q).expect("parses"))
    }

    #[test]
    fn only_immutable_selections_are_cacheable() {
        assert!(cacheable(
            "query($id: ID!) { show(id: $id) { id startsAt movie { title } screen { name venue { city } bestPoint { row } }
               prices { category priceCents } seatLayout { label seats { id number column category priceCents } } } }"
        ));
        assert!(cacheable(
            "query { show(id: 1) { ...L } } fragment L on Show { seatLayout { seats { ... on LayoutSeat { id } } } }"
        ));
        // Live fields, anywhere, make it uncacheable.
        assert!(!cacheable("{ show(id: 1) { id version } }"));
        assert!(!cacheable("{ show(id: 1) { seats { id } } }"));
        assert!(!cacheable("{ show(id: 1) { seatStatuses { statuses } } }"));
        assert!(!cacheable("{ show(id: 1) { availableSeats } }"));
        assert!(!cacheable("{ shows { edges { node { id } } } }"));
        assert!(!cacheable("{ me { id } }"));
        assert!(!cacheable(
            "{ show(id: 1) { ...F } } fragment F on Show { onSale { waiting } }"
        ));
        assert!(!cacheable(
            "{ show(id: 1) { ...F } } fragment F on Movie { title }"
        ));
        assert!(!cacheable(
            "mutation { logIn(email: \"a\", password: \"b\") { token } }"
        ));
    }

    #[test]
    fn map_answers_are_shared_only_for_map_fields() {
        let map_only = |q: &str| {
            let doc = async_graphql::parser::parse_query(q).expect("parses");
            selects_only(&doc, map_field) && !immutable(&doc)
        };
        assert!(map_only(
            "{ show(id: 1) { version availableSeats seats { id label status } } }"
        ));
        assert!(map_only(
            "{ show(id: 1) { seatStatuses { version statuses } seatLayout { label } } }"
        ));
        // Per viewer, or not of the map: never shared.
        assert!(!map_only("{ show(id: 1) { seats { id heldByMe } } }"));
        assert!(!map_only("{ show(id: 1) { version onSale { waiting } } }"));
        assert!(map_only(
            "{ shows { edges { cursor node { id availableSeats } } pageInfo { hasNextPage } } }"
        ));
        assert!(!map_only(
            "{ shows { edges { node { onSale { waiting } } } } }"
        ));
        assert!(!map_only("{ show(id: 1) { version } me { id } }"));
        // Immutable alone goes the CDN way instead.
        assert!(!map_only("{ show(id: 1) { seatLayout { label } } }"));
    }

    /// Every field the table calls immutable exists in the schema with that type: a renamed or
    /// retyped field cannot silently keep a stale entry.
    #[test]
    fn the_table_matches_the_schema() {
        let sdl = crate::graphql::sdl();
        let fields: &[(&str, &str)] = &[
            ("Query", "show"),
            ("Show", "id"),
            ("Show", "seatStatuses"),
            ("Show", "seats"),
            ("Seat", "restrictedView"),
            ("SeatStatuses", "statuses"),
            ("Query", "shows"),
            ("ShowConnection", "nodes"),
            ("ShowEdge", "node"),
            ("PageInfo", "endCursor"),
            ("Show", "startsAt"),
            ("Show", "endsAt"),
            ("Show", "movie"),
            ("Show", "screen"),
            ("Show", "seatLayout"),
            ("Show", "prices"),
            ("LayoutRow", "label"),
            ("LayoutRow", "rowIndex"),
            ("LayoutRow", "seats"),
            ("LayoutSeat", "restrictedView"),
            ("Movie", "durationMinutes"),
            ("Screen", "venue"),
            ("Screen", "bestPoint"),
            ("Screen", "categories"),
            ("Venue", "city"),
            ("BestPoint", "column"),
            ("CategoryPrice", "priceCents"),
        ];
        for (ty, field) in fields {
            let body = sdl
                .split(&format!("type {ty} {{"))
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .unwrap_or_else(|| panic!("type {ty} in the schema"));
            let line = body
                .lines()
                .map(str::trim)
                .find(|l| {
                    l.starts_with(&format!("{field}:")) || l.starts_with(&format!("{field}("))
                })
                .unwrap_or_else(|| panic!("{ty}.{field} in the schema"));
            let child = map_field(ty, field).expect("in the table");
            if let Some(child) = child {
                assert!(line.contains(child), "{ty}.{field} is {line}, not {child}");
            }
        }
    }
}
