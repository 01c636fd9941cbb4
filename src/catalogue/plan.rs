//! A screen's seat plan: what best-available needs of a layout, computed once per screen.
//!
//! Seats are numbered by *position*, their index in drawing order (front row first, left to
//! right). Each position has flags (adjacent to the previous position, wheelchair space,
//! companion seat, restricted view), a category index and a quality *rank* (0 = best): seats
//! are ordered by their distance to the screen's best point, every restricted-view seat after
//! every clear one. A *window* of `n` is `n` consecutive positions side by side in one row (no
//! aisle between them); for each `n` up to [`BEST_AVAILABLE_MAX`] the windows are listed best
//! first (lowest sum of ranks, then leftmost-front).
//!
//! The Redis store keeps the same plan, encoded by [`SeatPlan::redis_fields`], in the show's
//! slot; `holds/scripts/best.lua` reads it with the same meaning.
use super::seat_info::SeatInfo;

/// The most seats one best-available request may ask for (windows are precomputed up to it).
pub const BEST_AVAILABLE_MAX: usize = 10;

/// The position right before this one is its neighbour (same row, next column).
pub const LEFT: u8 = 1;
pub const WHEELCHAIR: u8 = 2;
pub const COMPANION: u8 = 4;
pub const RESTRICTED: u8 = 8;

/// Distance weights: a row nearer or further costs more than a seat to the side.
const ROW_WEIGHT: f64 = 1.0;
const COLUMN_WEIGHT: f64 = 0.6;

#[derive(Debug)]
pub struct SeatPlan {
    /// Seat id of each position.
    pub ids: Vec<i64>,
    pub flags: Vec<u8>,
    /// Index into `categories`.
    pub category: Vec<u8>,
    pub categories: Vec<String>,
    pub rank: Vec<u16>,
    pub row: Vec<u8>,
    /// For each row index, its positions `[start, end)` (empty for a row index with no seats).
    pub rows: Vec<(u16, u16)>,
    /// `windows[n - 1]`: start positions of every window of `n`, best first.
    pub windows: Vec<Vec<u16>>,
    /// `plain[n - 1]`: the windows of `n` without a wheelchair space or companion seat, in the
    /// same order (all a request without wheelchair spaces can take).
    pub plain: Vec<Vec<u16>>,
    /// The best point used for the ranks, in drawing units (row, column).
    pub focal: (f64, f64),
}

/// The default best point: centre of the widest row, about two thirds of the way back.
pub fn default_focal(seats: &[SeatInfo]) -> (f64, f64) {
    let last_row = seats.iter().map(|s| s.row_index).max().unwrap_or(0) as f64;
    let (lo, hi) = seats.iter().fold((i32::MAX, i32::MIN), |(lo, hi), s| {
        (lo.min(s.col_index), hi.max(s.col_index))
    });
    let centre = if lo <= hi {
        (lo + hi) as f64 / 2.0
    } else {
        0.0
    };
    ((last_row * 2.0 / 3.0).round(), centre)
}

impl SeatPlan {
    /// `seats` in drawing order (as `Layout` keeps them). Layouts are bounded by `createScreen`
    /// (at most 100 rows and 20,000 seats), so positions fit in 16 bits and rows in 8.
    pub fn new(seats: &[SeatInfo], focal: Option<(f64, f64)>) -> Self {
        let focal = focal.unwrap_or_else(|| default_focal(seats));
        let mut categories: Vec<String> = Vec::new();
        let mut plan = SeatPlan {
            ids: Vec::with_capacity(seats.len()),
            flags: Vec::with_capacity(seats.len()),
            category: Vec::with_capacity(seats.len()),
            categories: Vec::new(),
            rank: vec![0; seats.len()],
            row: Vec::with_capacity(seats.len()),
            rows: Vec::new(),
            windows: Vec::new(),
            plain: Vec::new(),
            focal,
        };
        for (p, s) in seats.iter().enumerate() {
            let mut f = 0;
            if p > 0 {
                let prev = &seats[p - 1];
                if prev.row_index == s.row_index && prev.col_index + 1 == s.col_index {
                    f |= LEFT;
                }
            }
            if s.wheelchair {
                f |= WHEELCHAIR;
            }
            if s.companion {
                f |= COMPANION;
            }
            if s.restricted_view {
                f |= RESTRICTED;
            }
            let c = match categories.iter().position(|c| c == &s.category) {
                Some(i) => i,
                None => {
                    categories.push(s.category.clone());
                    categories.len() - 1
                }
            };
            plan.ids.push(s.id);
            plan.flags.push(f);
            plan.category.push(c.min(255) as u8);
            let r = s.row_index.clamp(0, 255) as usize;
            plan.row.push(r as u8);
            if plan.rows.len() <= r {
                plan.rows.resize(r + 1, (p as u16, p as u16));
            }
            plan.rows[r].1 = p as u16 + 1;
        }
        // Row indexes with no seat get an empty range.
        for r in plan.rows.iter_mut() {
            if r.1 < r.0 {
                r.1 = r.0;
            }
        }
        plan.categories = categories;
        let score = |s: &SeatInfo| {
            let dy = (s.row_index as f64 - focal.0) * ROW_WEIGHT;
            let dx = (s.col_index as f64 - focal.1) * COLUMN_WEIGHT;
            let d = (dy * dy + dx * dx).sqrt();
            if s.restricted_view {
                d + 1e6
            } else {
                d
            }
        };
        let mut order: Vec<usize> = (0..seats.len()).collect();
        order.sort_by(|a, b| {
            score(&seats[*a])
                .total_cmp(&score(&seats[*b]))
                .then(a.cmp(b))
        });
        for (rank, p) in order.into_iter().enumerate() {
            plan.rank[p] = rank.min(u16::MAX as usize) as u16;
        }
        for n in 1..=BEST_AVAILABLE_MAX {
            let mut w: Vec<(u32, u16)> = (0..seats.len().saturating_sub(n - 1))
                .filter(|&s| (s + 1..s + n).all(|p| plan.flags[p] & LEFT != 0))
                .map(|s| (plan.window_score(s, n), s as u16))
                .collect();
            w.sort_unstable();
            let w: Vec<u16> = w.into_iter().map(|(_, s)| s).collect();
            let special = |s: u16| {
                (s as usize..s as usize + n).any(|p| plan.flags[p] & (WHEELCHAIR | COMPANION) != 0)
            };
            plan.plain
                .push(w.iter().copied().filter(|s| !special(*s)).collect());
            plan.windows.push(w);
        }
        plan
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Sum of the ranks of the window of `n` starting at `start`.
    pub fn window_score(&self, start: usize, n: usize) -> u32 {
        self.rank[start..start + n].iter().map(|r| *r as u32).sum()
    }

    /// `position` has a neighbour right before it (same row, no aisle between).
    pub fn joins_left(&self, position: usize) -> bool {
        self.flags.get(position).is_some_and(|f| f & LEFT != 0)
    }

    /// Index of a category name, if the layout has it.
    pub fn category_index(&self, name: &str) -> Option<usize> {
        self.categories.iter().position(|c| c == name)
    }

    /// The plan as the Redis store keeps it: a hash of fixed-width binary strings (big-endian
    /// u16 where two bytes), plus `s<seat id>` → position and `i<position>` → seat id.
    pub fn redis_fields(&self) -> Vec<(String, Vec<u8>)> {
        let u16s = |v: &mut dyn Iterator<Item = u16>| -> Vec<u8> {
            v.flat_map(|x| x.to_be_bytes()).collect()
        };
        let mut out = vec![
            ("n".to_string(), self.len().to_string().into_bytes()),
            ("attr".to_string(), self.flags.clone()),
            ("cat".to_string(), self.category.clone()),
            ("row".to_string(), self.row.clone()),
            ("rank".to_string(), u16s(&mut self.rank.iter().copied())),
            (
                "rows".to_string(),
                u16s(&mut self.rows.iter().flat_map(|(a, b)| [*a, *b])),
            ),
        ];
        for (i, w) in self.windows.iter().enumerate() {
            out.push((format!("w{}", i + 1), u16s(&mut w.iter().copied())));
        }
        for (i, w) in self.plain.iter().enumerate() {
            out.push((format!("p{}", i + 1), u16s(&mut w.iter().copied())));
        }
        for (p, id) in self.ids.iter().enumerate() {
            out.push((format!("s{id}"), p.to_string().into_bytes()));
            out.push((format!("i{p}"), id.to_string().into_bytes()));
        }
        out
    }

    /// True when these seats are side by side in one row with no gap (one seat counts).
    pub fn side_by_side(&self, positions: &[usize]) -> bool {
        let mut sorted = positions.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() == positions.len()
            && !sorted.is_empty()
            && sorted
                .windows(2)
                .all(|w| w[1] == w[0] + 1 && self.joins_left(w[1]))
    }
}
