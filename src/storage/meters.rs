//! The meters table: every site meter's energy per interval, newest-wins by (site, meter, start)
//! so a re-sent or corrected meter reading replaces the earlier one.
use super::logged::{
    blocking, instant, instants, numbers, texts, LoggedTable, LoggedTableError, TableSpec,
};
use super::readings::{DURATION_S, ENERGY_J, SITE, START};
use crate::domain::meter::{MeterKind, MeterReading, MAX_DURATION_S};
use crate::domain::Id;
use chrono::{DateTime, Utc};
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;

pub const METER: &str = "meter";
pub const KIND: &str = "kind";

pub const IDENTITY: [&str; 3] = [SITE, METER, START];

fn columns() -> Vec<StructField> {
    vec![
        StructField::new(SITE, DeltaType::STRING, false),
        StructField::new(METER, DeltaType::STRING, false),
        StructField::new(KIND, DeltaType::STRING, false),
        StructField::new(START, DeltaType::TIMESTAMP, false),
        StructField::new(DURATION_S, DeltaType::LONG, false),
        StructField::new(ENERGY_J, DeltaType::DOUBLE, false),
    ]
}

pub const SPEC: TableSpec = TableSpec {
    name: "meters",
    columns,
    empty,
    time_column: START,
    identity: Some(&IDENTITY),
    cache_key: None,
    lookback_us: MAX_DURATION_S * 1_000_000,
};

/// Checked meter readings as the table's columns.
pub fn frame(readings: &[MeterReading]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        readings.len(),
        vec![
            texts(SITE, readings, |r| r.site.as_str()),
            texts(METER, readings, |r| r.meter.as_str()),
            texts(KIND, readings, |r| r.kind.as_str()),
            instants(START, readings.iter().map(|r| r.start.timestamp_micros()))?,
            numbers(DURATION_S, readings, |r| r.duration_s),
            numbers(ENERGY_J, readings, |r| r.energy_j),
        ],
    )
}

pub fn empty() -> PolarsResult<DataFrame> {
    frame(&[])
}

/// Meter readings overlapping [from, to), of one site or all, as stored (the newest of each
/// identity) at `version` (`None`: the latest, acknowledged readings included).
pub async fn load(
    table: &LoggedTable,
    site: Option<&Id>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    version: Option<u64>,
) -> Result<Vec<MeterReading>, LoggedTableError> {
    let scan = table
        .scan(
            from.timestamp_micros(),
            to.timestamp_micros(),
            None,
            site.map(|site| col(SITE).eq(lit(site.to_string()))),
            version,
        )
        .await?
        .filter(col(START).lt(instant(to.timestamp_micros())))
        .select([
            col(SITE),
            col(METER),
            col(KIND),
            col(START).cast(DataType::Int64),
            col(DURATION_S),
            col(ENERGY_J),
        ]);
    let frame = blocking(move || scan.collect()).await?;
    let (site, meter, kind, start, duration, energy) = (
        frame.column(SITE)?.str()?.clone(),
        frame.column(METER)?.str()?.clone(),
        frame.column(KIND)?.str()?.clone(),
        frame.column(START)?.i64()?.clone(),
        frame.column(DURATION_S)?.i64()?.clone(),
        frame.column(ENERGY_J)?.f64()?.clone(),
    );
    Ok((0..frame.height())
        .filter_map(|i| {
            let reading = MeterReading {
                site: Id::parse(site.get(i)?).ok()?,
                meter: Id::parse(meter.get(i)?).ok()?,
                kind: MeterKind::parse(kind.get(i)?)?,
                start: DateTime::from_timestamp_micros(start.get(i)?)?,
                duration_s: duration.get(i)?,
                energy_j: energy.get(i)?,
            };
            (reading.end() > from).then_some(reading)
        })
        .collect())
}
