//! The functional-units table: counts per workload and interval (the R of the SCI), durable and
//! newest-wins by identity, like readings.
use super::logged::{
    blocking, instant, instants, numbers, texts, LoggedTable, LoggedTableError, TableSpec,
};
use super::readings::{CUSTOMER, DURATION_S, SITE, START, WORKLOAD};
use crate::domain::functional_unit::{FunctionalUnit, MAX_DURATION_S};
use crate::domain::Id;
use chrono::{DateTime, Utc};
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;

pub const UNIT: &str = "unit";
pub const COUNT: &str = "count";

/// A count sent again for the same workload, interval start and unit replaces the earlier one.
pub const IDENTITY: [&str; 5] = [CUSTOMER, WORKLOAD, SITE, START, UNIT];

fn columns() -> Vec<StructField> {
    vec![
        StructField::new(SITE, DeltaType::STRING, false),
        StructField::new(CUSTOMER, DeltaType::STRING, false),
        StructField::new(WORKLOAD, DeltaType::STRING, false),
        StructField::new(START, DeltaType::TIMESTAMP, false),
        StructField::new(DURATION_S, DeltaType::LONG, false),
        StructField::new(UNIT, DeltaType::STRING, false),
        StructField::new(COUNT, DeltaType::DOUBLE, false),
    ]
}

pub const SPEC: TableSpec = TableSpec {
    name: "functional_units",
    columns,
    empty,
    time_column: START,
    identity: Some(&IDENTITY),
    cache_key: None,
    // A count covers at most a day, so one overlapping [from, to) starts after from - 1 day.
    lookback_us: MAX_DURATION_S * 1_000_000,
};

/// Checked counts as the table's columns.
pub fn frame(units: &[FunctionalUnit]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        units.len(),
        vec![
            texts(SITE, units, |u| u.site.as_str()),
            texts(CUSTOMER, units, |u| u.customer.as_str()),
            texts(WORKLOAD, units, |u| u.workload.as_str()),
            instants(START, units.iter().map(|u| u.start.timestamp_micros()))?,
            numbers(DURATION_S, units, |u| u.duration_s),
            texts(UNIT, units, |u| &u.unit),
            numbers(COUNT, units, |u| u.count),
        ],
    )
}

pub fn empty() -> PolarsResult<DataFrame> {
    frame(&[])
}

/// A stored count: its workload, interval and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    pub workload: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub count: f64,
}

/// One customer's counts of `unit` overlapping [from, to) (only `workloads` when not empty).
pub async fn load(
    table: &LoggedTable,
    customer: &Id,
    unit: &str,
    workloads: &[Id],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Count>, LoggedTableError> {
    let mut filter = col(CUSTOMER)
        .eq(lit(customer.to_string()))
        .and(col(UNIT).eq(lit(unit.to_owned())));
    if let Some(any) = workloads
        .iter()
        .map(|w| col(WORKLOAD).eq(lit(w.to_string())))
        .reduce(Expr::or)
    {
        filter = filter.and(any);
    }
    let scan = table
        .scan(
            from.timestamp_micros(),
            to.timestamp_micros(),
            None,
            Some(filter),
            None,
        )
        .await?
        .filter(col(START).lt(instant(to.timestamp_micros())))
        .select([
            col(WORKLOAD),
            col(START).cast(DataType::Int64),
            col(DURATION_S),
            col(COUNT),
        ]);
    let frame = blocking(move || scan.collect()).await?;
    let (workload, start, duration, count) = (
        frame.column(WORKLOAD)?.str()?.clone(),
        frame.column(START)?.i64()?.clone(),
        frame.column(DURATION_S)?.i64()?.clone(),
        frame.column(COUNT)?.f64()?.clone(),
    );
    Ok((0..frame.height())
        .filter_map(|i| {
            let start = DateTime::from_timestamp_micros(start.get(i)?)?;
            let end = start + chrono::Duration::seconds(duration.get(i)?);
            let count = Count {
                workload: workload.get(i)?.to_owned(),
                start,
                end,
                count: count.get(i)?,
            };
            (end > from).then_some(count)
        })
        .collect())
}
