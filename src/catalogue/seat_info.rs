//! One seat of a screen's layout, as the layout cache, the seat plan and clients see it.

/// One seat of a layout, as clients see it.
#[derive(Debug, Clone)]
pub struct SeatInfo {
    pub id: i64,
    pub row: String,
    pub number: i32,
    pub category: String,
    pub row_index: i32,
    pub col_index: i32,
    pub wheelchair: bool,
    pub companion: bool,
    pub restricted_view: bool,
}

impl SeatInfo {
    pub fn label(&self) -> String {
        format!("{}{}", self.row, self.number)
    }
}
