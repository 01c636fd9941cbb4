//! Shared answers for seat-map reads: one serialized answer per (document, variables) and map
//! state, served to every reader until the map changes.
//!
//! In an on-sale thousands of buyers read the same map between two changes. The engine would
//! build and serialize the same JSON for each (a 3,000-seat full map: ~1.7 ms of CPU, most of it
//! cloning and serializing values). A query that reads only a show's seat map and immutable
//! data (`documents::MapRecorder::map_only`) is answered once through the engine; its bytes are
//! kept with the stamps of the map states it read. The next identical request asks the store
//! whether those states are unchanged (one round trip, answered `SAME`) and, if so, gets the
//! kept bytes. Per-viewer data never leaks: `heldByMe` makes a document ineligible, and a
//! signed-in viewer who holds seats on the show (whose `seatStatuses` would show `M`) is always
//! answered by the engine. The read budget is charged on a hit as on a miss. A page of the show
//! list with live counts is shared the same way; since the page itself is kept for
//! `PAGE_FRESH` (a show created on another instance appears within it), no answer is kept
//! longer than that.
use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

use crate::auth::Viewer;
use crate::catalogue::seatmap::SharedState;
use crate::catalogue::PAGE_FRESH;
use crate::holds::Holds;

/// Answers kept before the cache starts over, and the largest one kept.
const KEPT_ANSWERS: usize = 512;
const MAX_ANSWER_BYTES: usize = 1 << 20;

struct Kept {
    /// Whether a viewer's own holds change the answer (it shows `seatStatuses`).
    per_viewer: bool,
    at: std::time::Instant,
    /// `Catalogue::list_generation` before the answer was built.
    generation: u64,
    states: Vec<(i64, String)>,
    body: Bytes,
    cost: u64,
}

#[derive(Default)]
pub struct MapAnswers(Mutex<HashMap<String, Kept>>);

/// What names a request's answer apart from the map states: document (or its persisted hash),
/// operation and variables.
pub fn key_of(request: &async_graphql::Request) -> Option<String> {
    let variables = serde_json::to_string(&request.variables).ok()?;
    let persisted = request
        .extensions
        .get("persistedQuery")
        .and_then(|v| v.clone().into_json().ok())
        .map(|v| v.to_string())
        .unwrap_or_default();
    if request.query.len() > 16 * 1024 {
        return None;
    }
    Some(format!(
        "{}\u{0}{}\u{0}{}\u{0}{}",
        request.query,
        request.operation_name.as_deref().unwrap_or(""),
        variables,
        persisted
    ))
}

/// True when the viewer holds a seat in any of these states (their answer would differ).
fn holds_here<'a>(viewer: &Viewer, states: impl IntoIterator<Item = &'a SharedState>) -> bool {
    match viewer.user_id() {
        Some(me) => states
            .into_iter()
            .any(|s| s.held.values().any(|h| h.user_id == me)),
        None => false,
    }
}

impl MapAnswers {
    /// The kept answer for `key` when every map state it was built from is still current, with
    /// its read cost.
    pub async fn lookup(
        &self,
        holds: &Holds,
        generation: u64,
        key: &str,
        viewer: &Viewer,
    ) -> Option<(Bytes, u64)> {
        let (states, body, cost, per_viewer) = {
            let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let k = kept.get(key)?;
            if k.at.elapsed() >= PAGE_FRESH || k.generation != generation {
                return None;
            }
            (k.states.clone(), k.body.clone(), k.cost, k.per_viewer)
        };
        let ids: Vec<i64> = states.iter().map(|(id, _)| *id).collect();
        // The stamps alone (two numbers and a stamp per show), unless the viewer's holds matter.
        let (now, mine): (HashMap<i64, Option<String>>, bool) =
            if per_viewer && viewer.user_id().is_some() {
                let full = holds.states(&ids).await.ok()?;
                let mine = holds_here(viewer, full.values());
                (
                    full.into_iter()
                        .map(|(id, s)| (id, s.stamp.clone()))
                        .collect(),
                    mine,
                )
            } else {
                let counts = holds.counts(&ids).await.ok()?;
                (
                    counts.into_iter().map(|(id, c)| (id, c.stamp)).collect(),
                    false,
                )
            };
        let current = states
            .iter()
            .all(|(id, stamp)| now.get(id).and_then(|s| s.as_deref()) == Some(stamp.as_str()));
        if !current || mine {
            metrics::counter!("seat_map_answers_total", "outcome" => "stale").increment(1);
            return None;
        }
        metrics::counter!("seat_map_answers_total", "outcome" => "shared").increment(1);
        Some((body, cost))
    }

    /// Keep an answer built from these map states (each must have a stamp, and the viewer must
    /// hold nothing in them).
    #[allow(clippy::too_many_arguments)]
    pub async fn keep(
        &self,
        holds: &Holds,
        generation: u64,
        per_viewer: bool,
        key: String,
        viewer: &Viewer,
        read: Vec<(i64, Option<String>)>,
        body: Bytes,
        cost: u64,
    ) {
        if body.len() > MAX_ANSWER_BYTES || read.is_empty() {
            return;
        }
        let Some(states) = read
            .into_iter()
            .map(|(id, s)| Some((id, s?)))
            .collect::<Option<Vec<(i64, String)>>>()
        else {
            return;
        };
        if per_viewer && viewer.user_id().is_some() {
            // The viewer's holds are in the states just read (kept by `Holds`, no round trip
            // when unchanged).
            let ids: Vec<i64> = states.iter().map(|(id, _)| *id).collect();
            match holds.states(&ids).await {
                Ok(now) if !holds_here(viewer, now.values()) => {}
                _ => return,
            }
        }
        metrics::counter!("seat_map_answers_total", "outcome" => "built").increment(1);
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_ANSWERS {
            kept.clear();
        }
        kept.insert(
            key,
            Kept {
                per_viewer,
                at: std::time::Instant::now(),
                generation,
                states,
                body,
                cost,
            },
        );
    }
}
