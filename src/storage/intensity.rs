//! The intensity table: every point ever received (superseded ones too, for audit); which is in
//! force is decided when reading (`domain::intensity::in_force`).
use super::logged::{blocking, instant, instants, LoggedTable, LoggedTableError, TableSpec, SEQ};
use crate::domain::intensity::{IntensityPoint, PointKind, Signal};
use crate::domain::ZoneCode;
use chrono::DateTime;
use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::*;

pub const ZONE: &str = "zone";
pub const START: &str = "start";
pub const END: &str = "end";
pub const GCO2E_PER_KWH: &str = "gco2e_per_kwh";
pub const KIND: &str = "kind";
pub const SIGNAL: &str = "signal";
pub const SOURCE: &str = "source";
pub const SOURCE_DETAIL: &str = "source_detail";
pub const RECEIVED_AT: &str = "received_at";
/// Added after the first release: nullable, null in older files.
pub const WRITTEN_BY: &str = "written_by";

fn columns() -> Vec<StructField> {
    vec![
        StructField::new(ZONE, DeltaType::STRING, false),
        StructField::new(START, DeltaType::TIMESTAMP, false),
        StructField::new(END, DeltaType::TIMESTAMP, false),
        StructField::new(GCO2E_PER_KWH, DeltaType::DOUBLE, false),
        StructField::new(KIND, DeltaType::STRING, false),
        StructField::new(SIGNAL, DeltaType::STRING, false),
        StructField::new(SOURCE, DeltaType::STRING, false),
        StructField::new(SOURCE_DETAIL, DeltaType::STRING, true),
        StructField::new(RECEIVED_AT, DeltaType::TIMESTAMP, false),
        StructField::new(WRITTEN_BY, DeltaType::STRING, true),
    ]
}

pub const SPEC: TableSpec = TableSpec {
    name: "intensity",
    columns,
    empty,
    time_column: START,
    identity: None,
    cache_key: None,
    // A point covers at most 24 h.
    lookback_us: 86_400_000_000,
};

pub fn frame(points: &[IntensityPoint]) -> PolarsResult<DataFrame> {
    let text = |name: &str, f: fn(&IntensityPoint) -> &str| {
        Column::new(name.into(), points.iter().map(f).collect::<Vec<&str>>())
    };
    DataFrame::new(
        points.len(),
        vec![
            text(ZONE, |p| p.zone.as_str()),
            instants(START, points.iter().map(|p| p.start.timestamp_micros()))?,
            instants(END, points.iter().map(|p| p.end.timestamp_micros()))?,
            Column::new(
                GCO2E_PER_KWH.into(),
                points.iter().map(|p| p.gco2e_per_kwh).collect::<Vec<f64>>(),
            ),
            text(KIND, |p| p.kind.as_str()),
            text(SIGNAL, |p| p.signal.as_str()),
            text(SOURCE, |p| &p.source),
            Column::new(
                SOURCE_DETAIL.into(),
                points
                    .iter()
                    .map(|p| p.source_detail.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            ),
            instants(
                RECEIVED_AT,
                points.iter().map(|p| p.received_at.timestamp_micros()),
            )?,
            Column::new(
                WRITTEN_BY.into(),
                points
                    .iter()
                    .map(|p| p.written_by.as_deref())
                    .collect::<Vec<Option<&str>>>(),
            ),
        ],
    )
}

pub fn empty() -> PolarsResult<DataFrame> {
    frame(&[])
}

/// Points back from a collected scan; rows that do not parse (never written by us) are skipped.
pub fn points(frame: &DataFrame) -> PolarsResult<Vec<IntensityPoint>> {
    let text =
        |name: &str| -> PolarsResult<StringChunked> { Ok(frame.column(name)?.str()?.clone()) };
    let micros = |name: &str| -> PolarsResult<Int64Chunked> {
        Ok(frame.column(name)?.datetime()?.physical().clone())
    };
    let (zone, kind, signal, source, detail, written_by) = (
        text(ZONE)?,
        text(KIND)?,
        text(SIGNAL)?,
        text(SOURCE)?,
        text(SOURCE_DETAIL)?,
        text(WRITTEN_BY)?,
    );
    let (start, end, received) = (micros(START)?, micros(END)?, micros(RECEIVED_AT)?);
    let value = frame.column(GCO2E_PER_KWH)?.f64()?.clone();
    let instant = |us: Option<i64>| us.and_then(DateTime::from_timestamp_micros);
    Ok((0..frame.height())
        .filter_map(|i| {
            Some(IntensityPoint {
                zone: ZoneCode::parse(zone.get(i)?).ok()?,
                start: instant(start.get(i))?,
                end: instant(end.get(i))?,
                gco2e_per_kwh: value.get(i)?,
                kind: PointKind::parse(kind.get(i)?)?,
                signal: Signal::parse(signal.get(i)?)?,
                source: source.get(i)?.to_owned(),
                source_detail: detail.get(i).map(str::to_owned),
                received_at: instant(received.get(i))?,
                written_by: written_by.get(i).map(str::to_owned),
            })
        })
        .collect())
}

/// Every stored point of these zones (all zones when `None`) overlapping [from, to), as of now
/// (`None`) or of a table version.
pub async fn load(
    table: &LoggedTable,
    zones: Option<&[ZoneCode]>,
    from: DateTime<chrono::Utc>,
    to: DateTime<chrono::Utc>,
    version: Option<u64>,
) -> Result<Vec<IntensityPoint>, LoggedTableError> {
    let mut filter = col(END).gt(instant(from.timestamp_micros()));
    if let Some(zones) = zones {
        let names: Vec<&str> = zones.iter().map(ZoneCode::as_str).collect();
        let any_zone = names
            .into_iter()
            .map(|zone| col(ZONE).eq(lit(zone.to_owned())))
            .reduce(Expr::or)
            .unwrap_or(lit(false));
        filter = filter.and(any_zone);
    }
    let scan = table
        .scan(
            from.timestamp_micros(),
            to.timestamp_micros(),
            None,
            Some(filter),
            version,
        )
        .await?
        // In the order they were logged, which decides between points that otherwise rank equal
        // (files and the buffer come back in no particular order).
        .sort([SEQ], SortMultipleOptions::default());
    blocking(move || points(&scan.collect()?)).await
}

/// Appends points (durable when this returns).
pub async fn append(
    table: &LoggedTable,
    points: Vec<IntensityPoint>,
) -> Result<usize, LoggedTableError> {
    let count = points.len();
    let prepared = blocking(move || frame(&points))
        .await
        .and_then(LoggedTable::prepare)?;
    table.append(prepared).await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::logged::LoggedTableOptions;
    use crate::storage::test_stores::TestStore;

    /// The table as the first release wrote it: no `written_by`.
    fn first_release_columns() -> Vec<StructField> {
        let mut all = columns();
        all.pop();
        all
    }

    fn first_release_empty() -> PolarsResult<DataFrame> {
        empty()?.drop(WRITTEN_BY)
    }

    fn point(hour: u32) -> IntensityPoint {
        let at = |h: u32| format!("2026-03-01T{h:02}:00:00Z").parse().unwrap();
        IntensityPoint {
            zone: ZoneCode::parse("DE").unwrap(),
            start: at(hour),
            end: at(hour + 1),
            gco2e_per_kwh: 300.0,
            kind: PointKind::Actual,
            signal: Signal::Average,
            source: "manual".into(),
            source_detail: None,
            received_at: at(12),
            written_by: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_table_and_log_of_the_first_release_read_with_written_by_null() {
        let dir = TestStore::file();
        let old = TableSpec {
            columns: first_release_columns,
            empty: first_release_empty,
            ..SPEC
        };
        {
            let table = LoggedTable::open(
                &dir.location,
                dir.wal(),
                &dir.replica,
                old,
                LoggedTableOptions::default(),
            )
            .await
            .unwrap();
            let frame = |p| frame(&[p]).unwrap().drop(WRITTEN_BY).unwrap();
            table
                .append(LoggedTable::prepare(frame(point(9))).unwrap())
                .await
                .unwrap();
            table.flush().await.unwrap();
            // Acknowledged but never flushed: replayed from the log at the next open.
            table
                .append(LoggedTable::prepare(frame(point(10))).unwrap())
                .await
                .unwrap();
        }
        let table = LoggedTable::open(
            &dir.location,
            dir.wal(),
            &dir.replica,
            SPEC,
            LoggedTableOptions::default(),
        )
        .await
        .unwrap();
        let mut pushed = point(11);
        pushed.written_by = Some("key_1".into());
        append(&table, vec![pushed.clone()]).await.unwrap();
        table.flush().await.unwrap();
        let from = "2026-03-01T00:00:00Z".parse().unwrap();
        let to = "2026-03-02T00:00:00Z".parse().unwrap();
        let mut points = load(&table, None, from, to, None).await.unwrap();
        points.sort_by_key(|p| p.start);
        assert_eq!(points, vec![point(9), point(10), pushed]);
    }
}
