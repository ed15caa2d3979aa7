//! The readings table: its columns, identity and the frame a validated batch becomes.
use super::logged::{blocking, utc_micros, LoggedTable, LoggedTableError, TableSpec};
use crate::domain::reading::{IdColumn, ReadingBatch};
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;

pub const SITE: &str = "site";
pub const CUSTOMER: &str = "customer";
pub const WORKLOAD: &str = "workload";
pub const START: &str = "start";
pub const DURATION_S: &str = "duration_s";
pub const ENERGY_J: &str = "energy_j";
pub const POWER_W: &str = "power_w";

/// A reading sent again with the same identity replaces the earlier one.
pub const IDENTITY: [&str; 4] = [CUSTOMER, WORKLOAD, SITE, START];

fn columns() -> Vec<StructField> {
    vec![
        StructField::new(SITE, DeltaType::STRING, false),
        StructField::new(CUSTOMER, DeltaType::STRING, false),
        StructField::new(WORKLOAD, DeltaType::STRING, false),
        StructField::new(START, DeltaType::TIMESTAMP, false),
        StructField::new(DURATION_S, DeltaType::INTEGER, false),
        StructField::new(ENERGY_J, DeltaType::DOUBLE, true),
        StructField::new(POWER_W, DeltaType::DOUBLE, true),
    ]
}

pub const SPEC: TableSpec = TableSpec {
    name: "readings",
    columns,
    empty,
    time_column: START,
    identity: Some(&IDENTITY),
    // Reports read one customer at a time.
    cache_key: Some(CUSTOMER),
    // Readings last at most an hour, so one overlapping [from, to) starts after from - 1 h.
    lookback_us: 3_600_000_000,
};

/// The distinct values gathered by code: rows copy 16-byte string views, never string bytes.
fn ids(name: &str, column: &IdColumn) -> PolarsResult<Column> {
    let distinct = StringChunked::from_iter_values(name.into(), column.distinct().iter());
    let codes = IdxCa::from_vec(
        name.into(),
        column.codes().iter().map(|&c| c as IdxSize).collect(),
    );
    Ok(distinct.take(&codes)?.into_column())
}

/// A validated batch as the table's columns.
pub fn frame(batch: ReadingBatch) -> PolarsResult<DataFrame> {
    let height = batch.len();
    let start = Column::new(START.into(), batch.start_us).cast(&utc_micros())?;
    DataFrame::new(
        height,
        vec![
            ids(SITE, &batch.site)?,
            ids(CUSTOMER, &batch.customer)?,
            ids(WORKLOAD, &batch.workload)?,
            start,
            Column::new(DURATION_S.into(), batch.duration_s),
            Column::new(ENERGY_J.into(), batch.energy_j),
            Column::new(POWER_W.into(), batch.power_w),
        ],
    )
}

/// The table's columns with no rows.
pub fn empty() -> PolarsResult<DataFrame> {
    frame(ReadingBatch::default())
}

/// 2100-01-01T00:00:00Z: after every reading (none starts more than minutes ahead).
const END_OF_READINGS_US: i64 = 4_102_444_800_000_000;

/// Whether any stored reading, in the table or still in the log, has `value` in `column`. A scan
/// of every date: for registry deletions, which are rare.
pub async fn mention(
    table: &LoggedTable,
    column: &'static str,
    value: &str,
) -> Result<bool, LoggedTableError> {
    let matching = col(column).eq(lit(value.to_owned()));
    let scan = table
        .scan(0, END_OF_READINGS_US, None, Some(matching), None)
        .await?;
    let found = blocking(move || scan.select([col(column)]).limit(1).collect()).await?;
    Ok(found.height() > 0)
}
