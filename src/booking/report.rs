//! Sales reports: per show and seat category, what is sold, held and available, and the money —
//! read from the ledger itself (bookings, their seats at the price paid, payments), so the
//! numbers reconcile exactly with it.
//!
//! Definitions (per category, and for the show):
//! - `sold`: seats of confirmed bookings; `held`: seats held now (the hold store's live state);
//!   `available` = total − sold − held.
//! - `gross`: the price paid for every seat of a booking whose charge succeeded (confirmed, or
//!   since cancelled, or failed after a late capture); `refunds`: the price of every seat of a
//!   booking whose refund succeeded; `net` = gross − refunds. A charge and a refund are each of
//!   the booking's whole total.
//! - The show's `gross` and `refunds` are also summed from the payments table (succeeded charges
//!   and refunds) and reported beside the per-seat sums: they agree unless the ledger is broken
//!   (`ledgerMatches`).
use std::collections::{BTreeMap, HashMap};

use entity::booking::{self, BookingStatus};
use entity::booking_seat;
use entity::payment::{self, PaymentKind, PaymentStatus};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::Bookings;
use crate::catalogue::layout::Layout;
use crate::catalogue::seatmap::ShowState;
use crate::error::AppResult;

/// A report's period: `since` ≤ t < `until`; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Period {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Period {
    fn contains(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategorySales {
    pub category: String,
    pub total: i64,
    pub sold: i64,
    pub held: i64,
    pub available: i64,
    pub gross_cents: i64,
    pub refunds_cents: i64,
    pub net_cents: i64,
}

#[derive(Debug, Clone, Default)]
pub struct SalesReport {
    pub show_id: i64,
    pub categories: Vec<CategorySales>,
    /// The sums over every category.
    pub total: CategorySales,
    pub bookings_confirmed: i64,
    pub bookings_cancelled: i64,
    pub bookings_failed: i64,
    pub bookings_pending: i64,
    /// Succeeded charges and refunds of the show's bookings, from the payments table.
    pub charged_cents: i64,
    pub refunded_cents: i64,
}

impl SalesReport {
    /// The per-seat sums agree with the payments.
    pub fn ledger_matches(&self) -> bool {
        self.total.gross_cents == self.charged_cents
            && self.total.refunds_cents == self.refunded_cents
    }

    /// The report as CSV: a header, one line per category, then `TOTAL`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "show_id,category,total_seats,sold,held,available,gross_cents,refunds_cents,net_cents\n",
        );
        for c in self.categories.iter().chain(std::iter::once(&self.total)) {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                self.show_id,
                csv_field(&c.category),
                c.total,
                c.sold,
                c.held,
                c.available,
                c.gross_cents,
                c.refunds_cents,
                c.net_cents
            ));
        }
        out
    }
}

/// A CSV field: quoted when it holds a separator or quote, and never starting with a character a
/// spreadsheet would run as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

impl Bookings {
    /// The sales report of one show, from its layout, its live state and the ledger.
    ///
    /// With a period (`since` ≤ t < `until`, either end open), the money and the booking counts
    /// are those of the period: charges and refunds that succeeded in it (a payment's last update
    /// is when it succeeded), bookings made in it; seat counts (sold, held, available) are now.
    pub async fn sales_report(
        &self,
        show_id: i64,
        layout: &Layout,
        state: &ShowState,
        period: Period,
    ) -> AppResult<SalesReport> {
        let mut bookings = booking::Entity::find()
            .filter(booking::Column::ShowId.eq(show_id))
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = bookings.iter().map(|b| b.id).collect();
        let seats = booking_seat::Entity::find()
            .filter(booking_seat::Column::ShowId.eq(show_id))
            .all(&self.db)
            .await?;
        let mut payments = if ids.is_empty() {
            Vec::new()
        } else {
            payment::Entity::find()
                .filter(payment::Column::BookingId.is_in(ids))
                .filter(payment::Column::Status.eq(PaymentStatus::Succeeded))
                .all(&self.db)
                .await?
        };
        let status: HashMap<i64, BookingStatus> =
            bookings.iter().map(|b| (b.id, b.status)).collect();
        payments.retain(|p| period.contains(p.updated_at));
        bookings.retain(|b| period.contains(b.created_at));
        let paid = |kind: PaymentKind| -> std::collections::HashSet<i64> {
            payments
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| p.booking_id)
                .collect()
        };
        let (charged, refunded) = (paid(PaymentKind::Charge), paid(PaymentKind::Refund));

        let mut by_cat: BTreeMap<String, CategorySales> = BTreeMap::new();
        for s in &layout.seats {
            let c = by_cat.entry(s.category.clone()).or_default();
            c.total += 1;
            if state.held.contains_key(&s.id) && !state.booked.contains(&s.id) {
                c.held += 1;
            }
        }
        for bs in &seats {
            let Some(info) = layout.seat(bs.seat_id) else {
                continue;
            };
            let c = by_cat.entry(info.category.clone()).or_default();
            if status.get(&bs.booking_id) == Some(&BookingStatus::Confirmed) && bs.active {
                c.sold += 1;
            }
            if charged.contains(&bs.booking_id) {
                c.gross_cents += bs.price_cents;
            }
            if refunded.contains(&bs.booking_id) {
                c.refunds_cents += bs.price_cents;
            }
        }
        let mut report = SalesReport {
            show_id,
            ..Default::default()
        };
        report.total.category = "TOTAL".into();
        for (name, mut c) in by_cat {
            c.category = name;
            // A seat sold in the database but shown as held by a stale hold counts once, sold.
            c.held = c.held.min(c.total - c.sold);
            c.available = c.total - c.sold - c.held;
            c.net_cents = c.gross_cents - c.refunds_cents;
            let t = &mut report.total;
            t.total += c.total;
            t.sold += c.sold;
            t.held += c.held;
            t.available += c.available;
            t.gross_cents += c.gross_cents;
            t.refunds_cents += c.refunds_cents;
            t.net_cents += c.net_cents;
            report.categories.push(c);
        }
        for b in &bookings {
            match b.status {
                BookingStatus::Confirmed => report.bookings_confirmed += 1,
                BookingStatus::Cancelled => report.bookings_cancelled += 1,
                BookingStatus::Failed => report.bookings_failed += 1,
                BookingStatus::Pending => report.bookings_pending += 1,
            }
        }
        for p in &payments {
            match p.kind {
                PaymentKind::Charge => report.charged_cents += p.amount_cents,
                PaymentKind::Refund => report.refunded_cents += p.amount_cents,
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("STANDARD"), "STANDARD");
        assert_eq!(csv_field("A,B"), "\"A,B\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }
}
